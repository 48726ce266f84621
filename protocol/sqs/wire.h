#pragma once

// What the SQS API writes back: success bodies in either protocol, errors with the status,
// JSON type and legacy code each SDK looks for, and the digests SDKs verify.
//
// A handler builds its result in the JSON protocol's output shape; ToQueryXml turns that
// into the Query protocol's flattened XML (`Attributes` become `<Attribute><Name/><Value/>`
// elements, `Messages` become `<Message>` elements, and so on).
//
// Thread-safety: pure functions.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "protocol/sqs/request.h"

namespace spool::protocol::sqs {

struct WireReply {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// HTTP status of an error code (400 unless AWS documents another).
int ErrorStatus(std::string_view code);
// The JSON protocol's `__type` of an error code (`com.amazonaws.sqs#QueueDoesNotExist`).
std::string ErrorJsonType(std::string_view code);

WireReply SuccessReply(WireProtocol protocol, std::string_view action, const nlohmann::json& result,
                       const std::string& request_id);
WireReply ErrorReply(WireProtocol protocol, const SqsError& error, const std::string& request_id);

// The Query protocol's `<ActionResponse>` document for a JSON-shaped result.
std::string ToQueryXml(std::string_view action, const nlohmann::json& result,
                       const std::string& request_id);

// Text as XML 1.0 character data.
std::string XmlEscape(std::string_view text);

// --- digests and encodings -------------------------------------------------------------

// Lower-case hex of bytes, as AWS writes digests and signatures.
std::string LowerHex(std::string_view bytes);
std::string Md5Hex(std::string_view data);

// A message attribute as SQS has it: a data type (`String`, `Number.int`, `Binary.gif`, ...)
// and a string or binary value, by the type's base.
struct MessageAttribute {
  std::string name;
  std::string data_type;
  std::string value;  // the string, or the raw bytes of a Binary type
  bool binary() const { return data_type.starts_with("Binary"); }
};

// MD5OfMessageAttributes: over the attributes sorted by name, each as length-prefixed name,
// type and value with a transport byte (1 string, 2 binary). nullopt for no attributes.
std::optional<std::string> Md5OfAttributes(std::vector<MessageAttribute> attributes);

std::string Base64Encode(std::string_view bytes);
std::optional<std::string> Base64Decode(std::string_view text);

// Whether every character is one SQS allows in a body or string attribute: valid UTF-8 of
// #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF.
bool IsValidMessageText(std::string_view text);

}  // namespace spool::protocol::sqs
