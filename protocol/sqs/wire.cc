#include "protocol/sqs/wire.h"

#include <algorithm>
#include <array>

#include <openssl/evp.h>

namespace spool::protocol::sqs {
namespace {

using nlohmann::json;

constexpr std::string_view kXmlns = "http://queue.amazonaws.com/doc/2012-11-05/";
constexpr std::string_view kSqsPrefix = "AWS.SimpleQueueService.";

struct ErrorInfo {
  std::string_view code;
  std::string_view json_type;  // short name; the namespace is added by ErrorJsonType
  int status;
};

// Query code -> JSON shape and status, from the SQS model and the responses AWS records.
constexpr std::array<ErrorInfo, 26> kErrors = {{
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", 400},
    {"QueueAlreadyExists", "QueueNameExists", 400},
    {"AWS.SimpleQueueService.PurgeQueueInProgress", "PurgeQueueInProgress", 403},
    {"OverLimit", "OverLimit", 403},
    {"InvalidParameterValue", "InvalidParameterValueException", 400},
    {"MissingParameter", "MissingRequiredParameterException", 400},
    {"AccessDenied", "AccessDeniedException", 403},
    {"ResourceNotFoundException", "ResourceNotFoundException", 404},
    {"MalformedQueryString", "MalformedQueryString", 404},
    {"InternalFailure", "InternalFailure", 500},
    {"ServiceUnavailable", "ServiceUnavailable", 503},
    {"SignatureDoesNotMatch", "SignatureDoesNotMatch", 403},
    {"InvalidClientTokenId", "InvalidClientTokenId", 403},
    {"MissingAuthenticationToken", "MissingAuthenticationToken", 403},
    {"InvalidAttributeName", "InvalidAttributeName", 400},
    {"InvalidAttributeValue", "InvalidAttributeValue", 400},
    {"ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid", 400},
    {"InvalidMessageContents", "InvalidMessageContents", 400},
    {"InvalidAction", "InvalidAction", 400},
    {"MissingAction", "MissingAction", 400},
    {"IncompleteSignature", "IncompleteSignature", 400},
    {"RequestExpired", "RequestExpired", 400},
    {"UnsupportedOperation", "UnsupportedOperation", 400},
    {"InvalidAddress", "InvalidAddress", 400},
    {"RequestThrottled", "RequestThrottled", 400},
    {"InvalidSecurity", "InvalidSecurity", 400},
}};

const ErrorInfo* FindError(std::string_view code) {
  for (const ErrorInfo& e : kErrors) {
    if (e.code == code) return &e;
  }
  return nullptr;
}

std::string ScalarText(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  return v.dump();
}

void WriteElement(std::string& out, std::string_view name, std::string_view text) {
  out.append("<").append(name).append(">");
  out.append(XmlEscape(text));
  out.append("</").append(name).append(">");
}

void WriteMembers(std::string& out, const json& object, std::string_view action);

void WriteMember(std::string& out, const std::string& key, const json& value,
                 std::string_view action) {
  if ((key == "Attributes" || key == "Tags") && value.is_object()) {
    const bool tags = key == "Tags";
    for (const auto& [k, v] : value.items()) {
      out.append(tags ? "<Tag>" : "<Attribute>");
      WriteElement(out, tags ? "Key" : "Name", k);
      WriteElement(out, "Value", ScalarText(v));
      out.append(tags ? "</Tag>" : "</Attribute>");
    }
    return;
  }
  if (key == "MessageAttributes" && value.is_object()) {
    for (const auto& [k, v] : value.items()) {
      out.append("<MessageAttribute>");
      WriteElement(out, "Name", k);
      out.append("<Value>");
      WriteMembers(out, v, action);
      out.append("</Value></MessageAttribute>");
    }
    return;
  }
  if (value.is_array()) {
    // Lists are flattened: one element per item, named for the item.
    std::string item = key;
    if (key == "QueueUrls" || key == "queueUrls") item = "QueueUrl";
    if (key == "Messages") item = "Message";
    if (key == "Successful" || key == "Results") item = std::string(action) + "ResultEntry";
    if (key == "Failed") item = "BatchResultErrorEntry";
    for (const json& v : value) {
      if (v.is_object()) {
        out.append("<").append(item).append(">");
        WriteMembers(out, v, action);
        out.append("</").append(item).append(">");
      } else {
        WriteElement(out, item, ScalarText(v));
      }
    }
    return;
  }
  if (value.is_object()) {
    out.append("<").append(key).append(">");
    WriteMembers(out, value, action);
    out.append("</").append(key).append(">");
    return;
  }
  WriteElement(out, key, ScalarText(value));
}

void WriteMembers(std::string& out, const json& object, std::string_view action) {
  for (const auto& [key, value] : object.items())
    WriteMember(out, key, value, action);
}

bool HasOutput(std::string_view action) {
  static constexpr std::array<std::string_view, 9> kNoOutput = {
      "DeleteMessage",           "DeleteQueue", "PurgeQueue", "SetQueueAttributes",
      "ChangeMessageVisibility", "TagQueue",    "UntagQueue", "AddPermission",
      "RemovePermission"};
  return std::find(kNoOutput.begin(), kNoOutput.end(), action) == kNoOutput.end();
}

void PutU32(std::string& out, std::uint32_t v) {
  out.push_back(static_cast<char>(v >> 24));
  out.push_back(static_cast<char>(v >> 16));
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}

}  // namespace

int ErrorStatus(std::string_view code) {
  const ErrorInfo* e = FindError(code);
  return e != nullptr ? e->status : 400;
}

std::string ErrorJsonType(std::string_view code) {
  if (const ErrorInfo* e = FindError(code)) {
    if (e->json_type == "InvalidParameterValueException" ||
        e->json_type == "MissingRequiredParameterException" ||
        e->json_type == "AccessDeniedException") {
      return "com.amazon.coral.service#" + std::string(e->json_type);
    }
    return "com.amazonaws.sqs#" + std::string(e->json_type);
  }
  if (code.starts_with(kSqsPrefix)) code.remove_prefix(kSqsPrefix.size());
  return "com.amazonaws.sqs#" + std::string(code);
}

WireReply SuccessReply(WireProtocol protocol, std::string_view action, const json& result,
                       const std::string& request_id) {
  WireReply reply;
  reply.headers.emplace_back("x-amzn-RequestId", request_id);
  if (protocol == WireProtocol::kJson) {
    reply.headers.emplace_back("Content-Type", "application/x-amz-json-1.0");
    // Bytes that are not UTF-8 (a body sent over gRPC, say) must not abort the reply.
    reply.body = result.dump(-1, ' ', false, json::error_handler_t::replace);
  } else {
    reply.headers.emplace_back("Content-Type", "text/xml");
    reply.body = ToQueryXml(action, result, request_id);
  }
  return reply;
}

WireReply ErrorReply(WireProtocol protocol, const SqsError& error, const std::string& request_id) {
  WireReply reply;
  reply.status = ErrorStatus(error.code);
  const bool sender = reply.status < 500;
  reply.headers.emplace_back("x-amzn-RequestId", request_id);
  if (protocol == WireProtocol::kJson) {
    reply.headers.emplace_back("Content-Type", "application/x-amz-json-1.0");
    // SDKs of the JSON era read the legacy Query code from this header.
    reply.headers.emplace_back("x-amzn-query-error",
                               error.code + (sender ? ";Sender" : ";Receiver"));
    json body = {{"__type", ErrorJsonType(error.code)}, {"message", error.message}};
    reply.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  } else {
    reply.headers.emplace_back("Content-Type", "text/xml");
    std::string& out = reply.body;
    out.append("<?xml version=\"1.0\"?><ErrorResponse xmlns=\"").append(kXmlns).append("\">");
    out.append("<Error>");
    WriteElement(out, "Type", sender ? "Sender" : "Receiver");
    WriteElement(out, "Code", error.code);
    WriteElement(out, "Message", error.message);
    out.append("<Detail/></Error>");
    WriteElement(out, "RequestId", request_id);
    out.append("</ErrorResponse>");
  }
  return reply;
}

std::string ToQueryXml(std::string_view action, const json& result, const std::string& request_id) {
  std::string out = "<?xml version=\"1.0\"?>";
  out.append("<").append(action).append("Response xmlns=\"").append(kXmlns).append("\">");
  if (HasOutput(action)) {
    out.append("<").append(action).append("Result>");
    if (result.is_object()) WriteMembers(out, result, action);
    out.append("</").append(action).append("Result>");
  }
  out.append("<ResponseMetadata>");
  WriteElement(out, "RequestId", request_id);
  out.append("</ResponseMetadata>");
  out.append("</").append(action).append("Response>");
  return out;
}

std::string XmlEscape(std::string_view text) {
  // What XML 1.0 cannot carry (a body sent over gRPC may hold anything) becomes U+FFFD, so
  // that one such message does not make the whole reply unreadable.
  if (!IsValidMessageText(text)) {
    std::string cleaned;
    std::size_t i = 0;
    while (i < text.size()) {
      std::size_t len = 1;
      const auto c = static_cast<unsigned char>(text[i]);
      if (c >= 0xC0) len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
      const std::string_view piece = text.substr(i, len);
      if (piece.size() == len && IsValidMessageText(piece)) {
        cleaned.append(piece);
        i += len;
      } else {
        cleaned.append("\xEF\xBF\xBD");
        i += 1;
      }
    }
    return XmlEscape(cleaned);
  }
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out.append("&amp;");
        break;
      case '<':
        out.append("&lt;");
        break;
      case '>':
        out.append("&gt;");
        break;
      case '"':
        out.append("&quot;");
        break;
      case '\r':
        // A literal CR would be normalised away by the client's XML parser.
        out.append("&#xD;");
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

std::string LowerHex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) {
    const auto byte = static_cast<unsigned char>(c);
    out.push_back(kDigits[byte >> 4]);
    out.push_back(kDigits[byte & 0xf]);
  }
  return out;
}

std::string Md5Hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(data.data(), data.size(), digest, &size, EVP_md5(), nullptr);
  return LowerHex({reinterpret_cast<const char*>(digest), size});
}

std::optional<std::string> Md5OfAttributes(std::vector<MessageAttribute> attributes) {
  if (attributes.empty()) return std::nullopt;
  std::sort(attributes.begin(), attributes.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  std::string bytes;
  for (const MessageAttribute& a : attributes) {
    PutU32(bytes, static_cast<std::uint32_t>(a.name.size()));
    bytes.append(a.name);
    PutU32(bytes, static_cast<std::uint32_t>(a.data_type.size()));
    bytes.append(a.data_type);
    bytes.push_back(a.binary() ? 2 : 1);
    PutU32(bytes, static_cast<std::uint32_t>(a.value.size()));
    bytes.append(a.value);
  }
  return Md5Hex(bytes);
}

std::string Base64Encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::optional<std::string> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                       c == '+' || c == '/';
    const bool pad =
        c == '=' && i + 2 >= text.size() && (i + 1 == text.size() || text[i + 1] == '=');
    if (!alpha && !pad) return std::nullopt;
  }
  std::string out(3 * (text.size() / 4), '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()),
                                static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  out.resize(static_cast<std::size_t>(n));
  // EVP_DecodeBlock counts the padding as zero bytes.
  if (text.ends_with("==")) {
    out.resize(out.size() - 2);
  } else if (text.ends_with("=")) {
    out.resize(out.size() - 1);
  }
  return out;
}

bool IsValidMessageText(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    std::uint32_t cp = 0;
    std::size_t len = 0;
    if (c < 0x80) {
      cp = c;
      len = 1;
    } else if ((c & 0xE0) == 0xC0) {
      cp = c & 0x1F;
      len = 2;
    } else if ((c & 0xF0) == 0xE0) {
      cp = c & 0x0F;
      len = 3;
    } else if ((c & 0xF8) == 0xF0) {
      cp = c & 0x07;
      len = 4;
    } else {
      return false;
    }
    if (i + len > text.size()) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms encode a character in more bytes than it needs.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) {
      return false;
    }
    const bool allowed = cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) ||
                         (cp >= 0xE000 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0x10FFFF);
    if (!allowed) return false;
    i += len;
  }
  return true;
}

}  // namespace spool::protocol::sqs
