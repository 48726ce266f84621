#pragma once

// Parsing SQS requests from either wire protocol into one form.
//
// Both the Query protocol (form-encoded `Action=...` in a POST body or a GET query string)
// and AWS JSON 1.0 (`X-Amz-Target: AmazonSQS.<Action>`) become an SqsRequest whose `params`
// has the shape of the JSON protocol's input: Query's flattened keys (`Attribute.1.Name`,
// `SendMessageBatchRequestEntry.2.MessageBody`, ...) are folded into the same maps, lists and
// structures. Query scalars stay strings; handlers read numbers from either form.
//
// Nothing here touches the broker, so the fuzz target links only this file.
//
// Thread-safety: pure functions.

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace spool::protocol::sqs {

enum class WireProtocol { kQuery, kJson };

// An SQS error, named by its Query error code (`AWS.SimpleQueueService.NonExistentQueue`,
// `InvalidParameterValue`, ...). The JSON type, HTTP status and fault come from the code.
struct SqsError {
  std::string code;
  std::string message;
};

struct SqsRequest {
  WireProtocol protocol = WireProtocol::kQuery;
  std::string action;
  nlohmann::json params = nlohmann::json::object();
};

// A form-encoded parameter list (`a=1&b=x%20y`); `out.action` comes from `Action`.
// MissingAction, InvalidAction, MalformedQueryString (bad escapes, a repeated key), or
// InvalidParameterValue / MissingParameter for a malformed list or map member.
std::optional<SqsError> ParseQuery(std::string_view form, SqsRequest& out);

// A JSON 1.0 request: `target` is the X-Amz-Target value (`AmazonSQS.SendMessage`), `body`
// the JSON object (empty means `{}`). SerializationException-style errors become
// `InvalidParameterValue`/`InvalidAction`, never an exception.
std::optional<SqsError> ParseJson(std::string_view target, std::string_view body, SqsRequest& out);

// Whether `action` is one this API serves.
bool IsKnownAction(std::string_view action);
// Every action this API serves.
std::span<const std::string_view> KnownActions();

// Percent-decoding as forms use it ('+' is a space); nullopt on a malformed escape.
std::optional<std::string> FormDecode(std::string_view text);

}  // namespace spool::protocol::sqs
