#include "protocol/sqs/api.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "broker/queue_config.h"
#include "common/logging.h"
#include "protocol/queue_convert.h"
#include "protocol/sqs/auth.h"
#include "protocol/sqs/request.h"
#include "protocol/sqs/wire.h"

namespace spool::protocol::sqs {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxBatchEntries = 10;
constexpr std::string_view kUnknownAction = "unknown";  // the metrics' label
constexpr std::int64_t kMaxBatchBytes = 1 << 20;
constexpr std::size_t kMaxMessageAttributes = 10;
constexpr std::int64_t kMaxVisibilitySeconds = 43'200;
constexpr std::int64_t kMaxDelaySeconds = 900;
constexpr std::int64_t kMaxWaitSeconds = 20;
constexpr std::uint32_t kMaxMoveTaskRate = 500;
constexpr std::size_t kMaxPolicyBytes = 8192;
constexpr std::int64_t kAttemptMs = 5 * 60 * 1000;
// Kept answers of receive attempts: bounded in count and in bytes, since each may hold ten
// large messages.
constexpr std::size_t kMaxAttempts = 10'000;
constexpr std::size_t kMaxAttemptBytes = 64 << 20;

spdlog::logger& Log() {
  static spdlog::logger& logger = ModuleLogger("sqs");
  return logger;
}

// Parameter and validation failures unwind to the action's entry point, which answers with
// the error: each action then reads as a straight line of checks. Callbacks from the broker
// catch them too (Guard below). `whole_request` marks a batch entry's error that AWS reports
// for the whole batch.
struct Reject {
  SqsError error;
  bool whole_request = false;
};

[[noreturn]] void Throw(std::string code, std::string message) {
  throw Reject{{std::move(code), std::move(message)}};
}

[[noreturn]] void ThrowInvalid(std::string message) {
  Throw("InvalidParameterValue", std::move(message));
}

[[noreturn]] void ThrowMissing(std::string_view name) {
  Throw("MissingParameter", fmt::format("The request must contain the parameter {}.", name));
}

// --- reading parameters (JSON-shaped; Query values arrive as strings) ------------------

const json* Find(const json& p, std::string_view name) {
  auto it = p.find(name);
  if (it == p.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<std::string> Str(const json& p, std::string_view name) {
  const json* v = Find(p, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_string()) ThrowInvalid(fmt::format("Value for parameter {} must be a string.", name));
  return v->get<std::string>();
}

std::string Required(const json& p, std::string_view name) {
  auto v = Str(p, name);
  if (!v || v->empty()) ThrowMissing(name);
  return *v;
}

std::optional<std::int64_t> Int(const json& p, std::string_view name) {
  const json* v = Find(p, name);
  if (v == nullptr) return std::nullopt;
  if (v->is_number_integer()) return v->get<std::int64_t>();
  if (v->is_string()) {
    const std::string s = v->get<std::string>();
    std::int64_t out = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    if (!s.empty() && ec == std::errc() && end == s.data() + s.size()) return out;
    ThrowInvalid(
        fmt::format("Value {} for parameter {} is invalid. Reason: must be an integer.", s, name));
  }
  ThrowInvalid(fmt::format("Value for parameter {} is invalid. Reason: must be an integer.", name));
}

std::vector<std::string> StrList(const json& p, std::string_view name) {
  std::vector<std::string> out;
  const json* v = Find(p, name);
  if (v == nullptr) return out;
  if (!v->is_array()) ThrowInvalid(fmt::format("Value for parameter {} must be a list.", name));
  for (const json& item : *v) {
    if (!item.is_string()) {
      ThrowInvalid(fmt::format("Value for parameter {} must be a list of strings.", name));
    }
    out.push_back(item.get<std::string>());
  }
  return out;
}

std::map<std::string, std::string> StrMap(const json& p, std::string_view name) {
  std::map<std::string, std::string> out;
  const json* v = Find(p, name);
  if (v == nullptr) return out;
  if (!v->is_object()) ThrowInvalid(fmt::format("Value for parameter {} must be a map.", name));
  for (const auto& [key, value] : v->items()) {
    if (value.is_string()) {
      out[key] = value.get<std::string>();
    } else if (value.is_number() || value.is_boolean()) {
      out[key] = value.dump();
    } else {
      ThrowInvalid(fmt::format("Value for {}.{} must be a string.", name, key));
    }
  }
  return out;
}

// --- names, URLs, ARNs -----------------------------------------------------------------

// The queue a QueueUrl names: the last path segment of a URL, the last field of an ARN, or
// the value itself when it is a bare name (AWS accepts all three).
std::string QueueNameFromUrl(std::string_view url) {
  if (url.starts_with("arn:")) return std::string(url.substr(url.rfind(':') + 1));
  if (const auto scheme = url.find("://"); scheme != std::string_view::npos) {
    url.remove_prefix(scheme + 3);
    const auto slash = url.find('/');
    url = slash == std::string_view::npos ? std::string_view() : url.substr(slash);
  }
  url = url.substr(0, url.find('?'));
  while (url.ends_with('/'))
    url.remove_suffix(1);
  return std::string(url.substr(url.rfind('/') + 1));
}

std::string QueueNameFromArn(std::string_view arn, std::string_view parameter) {
  // arn:aws:sqs:<region>:<account>:<name>
  int colons = 0;
  for (char c : arn)
    colons += c == ':' ? 1 : 0;
  if (!arn.starts_with("arn:") || colons != 5) {
    ThrowInvalid(fmt::format("Value {} for parameter {} is invalid. Reason: {} is not a queue ARN.",
                             arn, parameter, arn));
  }
  return std::string(arn.substr(arn.rfind(':') + 1));
}

bool IsBatchEntryId(std::string_view id) {
  if (id.empty() || id.size() > 80) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '_';
  });
}

// MessageGroupId, MessageDeduplicationId, ReceiveRequestAttemptId: 1-128 characters, letters,
// digits and ASCII punctuation.
bool IsFifoId(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x80 && (std::isalnum(u) != 0 || std::ispunct(u) != 0);
  });
}

void CheckFifoId(const std::string& value, std::string_view parameter) {
  if (!IsFifoId(value)) {
    ThrowInvalid(
        fmt::format("Value {} for parameter {} is invalid. Reason: {} can only include "
                    "alphanumeric and punctuation characters. 1 to 128 in length.",
                    value, parameter, parameter));
  }
}

std::string NewRequestId() {
  thread_local std::mt19937_64 random{std::random_device{}()};
  const std::uint64_t a = random(), b = random();
  return fmt::format("{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0xfff,
                     0x8000 | (b >> 48 & 0x3fff), b & 0xffffffffffffULL);
}

std::string Seconds(std::int64_t ms) {
  return std::to_string(ms / 1000);
}

// --- errors from the broker ------------------------------------------------------------

SqsError FromBroker(const Error& e) {
  switch (e.code) {
    case ErrorCode::kNotFound:
      return {"AWS.SimpleQueueService.NonExistentQueue", e.message};
    case ErrorCode::kAlreadyExists:
      return {"QueueAlreadyExists", e.message};
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kFailedPrecondition:
    case ErrorCode::kOutOfRange:
      return {"InvalidParameterValue", e.message};
    case ErrorCode::kResourceExhausted:
      return {"OverLimit", e.message};
    case ErrorCode::kUnavailable:
      return {"ServiceUnavailable", e.message};
    case ErrorCode::kDataLoss:
    case ErrorCode::kInternal:
      return {"InternalFailure", e.message};
  }
  return {"InternalFailure", e.message};
}

// --- message attributes ----------------------------------------------------------------

bool IsAttributeName(std::string_view name) {
  if (name.empty() || name.size() > 256 || name.front() == '.' || name.back() == '.' ||
      name.find("..") != std::string_view::npos) {
    return false;
  }
  auto lower = [](std::string_view s) {
    std::string out(s);
    for (char& c : out)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
  };
  const std::string l = lower(name);
  if (l.starts_with("aws.") || l.starts_with("amazon.")) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-' || c == '.';
  });
}

bool IsNumber(std::string_view s) {
  std::size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  std::size_t digits = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])) != 0)
    ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])) != 0)
      ++i, ++digits;
  }
  if (digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    std::size_t exponent = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])) != 0)
      ++i, ++exponent;
    if (exponent == 0) return false;
  }
  return i == s.size();
}

bool IsDataType(std::string_view type) {
  if (type.size() > 256) return false;
  for (std::string_view base : {"String", "Number", "Binary"}) {
    if (type == base) return true;
    if (type.starts_with(base) && type.size() > base.size() + 1 && type[base.size()] == '.') {
      return true;
    }
  }
  return false;
}

// SQS message attributes from a JSON-shaped map (name -> {DataType, StringValue|BinaryValue}).
std::vector<MessageAttribute> ReadMessageAttributes(const json& p, std::string_view member) {
  std::vector<MessageAttribute> out;
  const json* map = Find(p, member);
  if (map == nullptr) return out;
  if (!map->is_object()) ThrowInvalid(fmt::format("Value for parameter {} must be a map.", member));
  if (map->size() > kMaxMessageAttributes) {
    ThrowInvalid(fmt::format("Number of message attributes [{}] exceeds the allowed maximum [{}].",
                             map->size(), kMaxMessageAttributes));
  }
  for (const auto& [name, value] : map->items()) {
    if (!IsAttributeName(name) || name.starts_with("spool.")) {
      ThrowInvalid(fmt::format(
          "Message (user) attribute name '{}' is invalid. Names are 1-256 characters of letters, "
          "digits, '_', '-' and '.', without a leading, trailing or doubled '.', and may not "
          "start with 'AWS.', 'Amazon.' or 'spool.'.",
          name));
    }
    if (!value.is_object()) ThrowInvalid(fmt::format("Message attribute '{}' is malformed.", name));
    auto type = Str(value, "DataType");
    if (!type || type->empty()) {
      ThrowInvalid(fmt::format(
          "The message attribute '{}' must contain non-empty message attribute type.", name));
    }
    if (!IsDataType(*type)) {
      ThrowInvalid(fmt::format(
          "The type of message (user) attribute '{}' is invalid. You must use only the following "
          "supported type prefixes: Binary, Number, String.",
          name));
    }
    MessageAttribute a{name, *type, {}};
    if (a.binary()) {
      auto encoded = Str(value, "BinaryValue");
      auto bytes = encoded ? Base64Decode(*encoded) : std::nullopt;
      if (!bytes || bytes->empty()) {
        ThrowInvalid(fmt::format(
            "Message (user) attribute '{}' must contain a non-empty value of type 'Binary'.",
            name));
      }
      a.value = std::move(*bytes);
    } else {
      auto text = Str(value, "StringValue");
      if (!text || text->empty()) {
        ThrowInvalid(fmt::format(
            "Message (user) attribute '{}' must contain a non-empty value of type '{}'.", name,
            type->starts_with("Number") ? "Number" : "String"));
      }
      if (!IsValidMessageText(*text)) {
        ThrowInvalid(
            fmt::format("Message (user) attribute '{}' contains invalid characters.", name));
      }
      if (type->starts_with("Number") && !IsNumber(*text)) {
        ThrowInvalid(fmt::format(
            "Can't cast the value of message (user) attribute '{}' to a number.", name));
      }
      a.value = std::move(*text);
    }
    out.push_back(std::move(a));
  }
  return out;
}

// The attributes a stored message carries: its headers, typed by their `spool.type.` headers
// (headers sent over gRPC have none: text is a String, other bytes Binary).
std::vector<MessageAttribute> AttributesOf(const storage::Record& r) {
  std::map<std::string, std::string> types;
  for (const auto& [key, value] : r.headers) {
    if (key.starts_with(broker::kHeaderTypePrefix)) {
      types[key.substr(broker::kHeaderTypePrefix.size())] = value;
    }
  }
  std::vector<MessageAttribute> out;
  std::set<std::string> seen;
  for (const auto& [key, value] : r.headers) {
    if (key.starts_with("spool.") || !seen.insert(key).second) continue;
    auto type = types.find(key);
    std::string data_type = type != types.end()                           ? type->second
                            : IsValidMessageText(value) && !value.empty() ? "String"
                                                                          : "Binary";
    out.push_back({key, std::move(data_type), value});
  }
  return out;
}

json AttributeJson(const MessageAttribute& a) {
  json v = {{"DataType", a.data_type}};
  if (a.binary()) {
    v["BinaryValue"] = Base64Encode(a.value);
  } else {
    v["StringValue"] = a.value;
  }
  return v;
}

bool Selected(const std::vector<std::string>& names, std::string_view name) {
  for (const std::string& n : names) {
    if (n == "All" || n == ".*" || n == name) return true;
    if (n.ends_with(".*") && name.starts_with(std::string_view(n).substr(0, n.size() - 1))) {
      return true;
    }
  }
  return false;
}

}  // namespace

// --- one call --------------------------------------------------------------------------

struct SqsApi::Call {
  SqsApi* api = nullptr;
  SqsRequest request;
  std::string path;  // the URL path, decoded: a queue URL's path when the client posts there
  std::string request_id;
  HttpServer::Reply reply;
  std::function<bool()> client_gone;  // see HttpRequest::client_gone
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  const json& params() const { return request.params; }

  void Ok(const json& result) {
    Send(SuccessReply(request.protocol, request.action, result, request_id), {});
  }
  void Fail(const SqsError& error) {
    if (ErrorStatus(error.code) >= 500) {
      Log().warn("{} failed: {}: {}", request.action, error.code, error.message);
    }
    Send(ErrorReply(request.protocol, error, request_id), error.code);
  }
  void Send(WireReply w, std::string_view error_code) {
    api->Record(request.action, error_code,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    reply(HttpResponse{w.status, std::move(w.headers), std::move(w.body)});
  }
};

namespace {

using CallPtr = std::shared_ptr<SqsApi::Call>;

// Runs `fn`, answering the call with any Reject it throws.
template <class Fn>
void Guard(const CallPtr& call, Fn&& fn) {
  try {
    fn();
  } catch (const Reject& r) {
    call->Fail(r.error);
  } catch (const std::exception& e) {
    call->Fail({"InternalFailure", e.what()});
  }
}

}  // namespace

struct Actions {
  SqsApi& api;
  broker::Broker& broker;
  const SqsOptions& options;

  std::string UrlOf(const std::string& queue) const {
    return options.advertised_url + "/" + options.account_id + "/" + queue;
  }
  std::string ArnOf(const std::string& queue) const {
    return "arn:aws:sqs:" + options.region + ":" + options.account_id + ":" + queue;
  }

  [[noreturn]] void ThrowNoQueue(const CallPtr& call) const {
    Throw("AWS.SimpleQueueService.NonExistentQueue",
          call->request.protocol == WireProtocol::kQuery
              ? "The specified queue does not exist for this wsdl version."
              : "The specified queue does not exist.");
  }

  // The queue the call addresses: its QueueUrl, else the URL path it was posted to.
  std::shared_ptr<const broker::QueueMetadata> Queue(const CallPtr& call) const {
    std::string name;
    if (auto url = Str(call->params(), "QueueUrl"); url && !url->empty()) {
      name = QueueNameFromUrl(*url);
    } else {
      name = QueueNameFromUrl(call->path);
      if (name.empty()) ThrowMissing("QueueUrl");
    }
    auto queue = broker.FindQueueMetadata(name);
    if (!queue) ThrowNoQueue(call);
    return queue;
  }

  QueueIds Ids(const CallPtr& call, const std::string& name) const {
    auto ids = IdsOf(broker, name);
    if (!ids) ThrowNoQueue(call);
    return *ids;
  }

  // Answers the broker's error, or runs `then` on success, with Rejects answered.
  template <class T, class Fn>
  auto OnResult(const CallPtr& call, Fn then) const {
    return [call, then = std::move(then)](Result<T> r) mutable {
      if (!r) return call->Fail(FromBroker(r.error()));
      Guard(call, [&] { then(std::move(*r)); });
    };
  }
  template <class Fn>
  auto OnStatus(const CallPtr& call, Fn then) const {
    return [call, then = std::move(then)](Status s) mutable {
      if (!s) return call->Fail(FromBroker(s.error()));
      Guard(call, [&] { then(); });
    };
  }

  // --- queue attributes -----------------------------------------------------------------

  static json RedrivePolicyJson(const broker::RedrivePolicy& p, const Actions& a) {
    return json{{"deadLetterTargetArn", a.ArnOf(p.dead_letter_queue)},
                {"maxReceiveCount", p.max_receive_count}};
  }

  // Every attribute GetQueueAttributes(All) shows, as strings.
  std::map<std::string, std::string> Render(const broker::QueueInfo& info) const {
    const broker::QueueMetadata& q = info.metadata;
    const broker::QueueAttributes& a = q.attributes;
    std::map<std::string, std::string> out;
    out["ApproximateNumberOfMessages"] = std::to_string(info.counts.visible);
    out["ApproximateNumberOfMessagesNotVisible"] = std::to_string(info.counts.in_flight);
    out["ApproximateNumberOfMessagesDelayed"] = std::to_string(info.counts.delayed);
    out["CreatedTimestamp"] = Seconds(q.created_ms);
    out["LastModifiedTimestamp"] = Seconds(q.modified_ms);
    out["DelaySeconds"] = Seconds(a.delivery_delay_ms);
    out["MaximumMessageSize"] = std::to_string(a.max_message_bytes);
    out["MessageRetentionPeriod"] = Seconds(a.retention_ms);
    out["QueueArn"] = ArnOf(q.name);
    out["ReceiveMessageWaitTimeSeconds"] = Seconds(a.receive_wait_ms);
    out["VisibilityTimeout"] = Seconds(a.visibility_timeout_ms);
    out["SqsManagedSseEnabled"] = a.extra.contains("KmsMasterKeyId") ? "false" : "true";
    for (const auto& [key, value] : a.extra)
      out[key] = value;
    if (a.redrive_policy) out["RedrivePolicy"] = RedrivePolicyJson(*a.redrive_policy, *this).dump();
    if (a.redrive_allow_policy.permission != broker::RedrivePermission::kAllowAll) {
      json allow;
      if (a.redrive_allow_policy.permission == broker::RedrivePermission::kDenyAll) {
        allow["redrivePermission"] = "denyAll";
      } else {
        allow["redrivePermission"] = "byQueue";
        allow["sourceQueueArns"] = json::array();
        for (const auto& s : a.redrive_allow_policy.source_queues) {
          allow["sourceQueueArns"].push_back(ArnOf(s));
        }
      }
      out["RedriveAllowPolicy"] = allow.dump();
    }
    if (a.fifo) {
      out["FifoQueue"] = "true";
      out["ContentBasedDeduplication"] = a.content_based_deduplication ? "true" : "false";
      if (!out.contains("DeduplicationScope")) out["DeduplicationScope"] = "queue";
      if (!out.contains("FifoThroughputLimit")) out["FifoThroughputLimit"] = "perQueue";
    }
    return out;
  }

  static bool IsAttributeKnown(std::string_view name) {
    static const std::set<std::string_view> kNames = {
        "All",
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
        "CreatedTimestamp",
        "LastModifiedTimestamp",
        "DelaySeconds",
        "MaximumMessageSize",
        "MessageRetentionPeriod",
        "QueueArn",
        "ReceiveMessageWaitTimeSeconds",
        "VisibilityTimeout",
        "SqsManagedSseEnabled",
        "KmsMasterKeyId",
        "KmsDataKeyReusePeriodSeconds",
        "Policy",
        "RedrivePolicy",
        "RedriveAllowPolicy",
        "FifoQueue",
        "ContentBasedDeduplication",
        "DeduplicationScope",
        "FifoThroughputLimit",
    };
    return kNames.contains(name);
  }

  static std::int64_t SecondsIn(const std::string& name, const std::string& value, std::int64_t lo,
                                std::int64_t hi) {
    std::int64_t v = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (value.empty() || ec != std::errc() || end != value.data() + value.size() || v < lo ||
        v > hi) {
      Throw("InvalidAttributeValue",
            fmt::format("Invalid value for the parameter {}. Reason: must be an integer from {} "
                        "to {}.",
                        name, lo, hi));
    }
    return v;
  }

  static bool Boolean(const std::string& name, const std::string& value) {
    if (value == "true") return true;
    if (value == "false") return false;
    Throw("InvalidAttributeValue",
          fmt::format("Invalid value for the parameter {}. Reason: must be true or false.", name));
  }

  // Applies SQS attributes to `a` (a queue's, `fifo` saying its type; `creating` for
  // CreateQueue, where FifoQueue is allowed).
  void Apply(const std::map<std::string, std::string>& attributes, broker::QueueAttributes& a,
             bool creating) const {
    for (const auto& [name, value] : attributes) {
      const bool fifo_only = name == "ContentBasedDeduplication" || name == "DeduplicationScope" ||
                             name == "FifoThroughputLimit";
      if (fifo_only && !a.fifo) {
        if (name == "ContentBasedDeduplication") {
          Throw("InvalidAttributeName", "Unknown Attribute ContentBasedDeduplication.");
        }
        Throw("InvalidAttributeName",
              fmt::format("You can specify the {} only when FifoQueue is set to true.", name));
      }
      if (name == "VisibilityTimeout") {
        a.visibility_timeout_ms = SecondsIn(name, value, 0, kMaxVisibilitySeconds) * 1000;
      } else if (name == "DelaySeconds") {
        a.delivery_delay_ms = SecondsIn(name, value, 0, kMaxDelaySeconds) * 1000;
      } else if (name == "MaximumMessageSize") {
        a.max_message_bytes = SecondsIn(name, value, 1024, broker::kMaxQueueMessageBytes);
      } else if (name == "MessageRetentionPeriod") {
        a.retention_ms = SecondsIn(name, value, 60, 1'209'600) * 1000;
      } else if (name == "ReceiveMessageWaitTimeSeconds") {
        a.receive_wait_ms = SecondsIn(name, value, 0, kMaxWaitSeconds) * 1000;
      } else if (name == "FifoQueue") {
        if (!a.fifo) Throw("InvalidAttributeName", "Unknown Attribute FifoQueue.");
        if (value != "true") {
          Throw("InvalidAttributeValue",
                creating ? "Invalid value for the parameter FifoQueue."
                         : "Invalid value for the parameter FifoQueue. Reason: Modifying queue "
                           "type is not supported.");
        }
      } else if (name == "ContentBasedDeduplication") {
        a.content_based_deduplication = Boolean(name, value);
      } else if (name == "DeduplicationScope") {
        if (value != "queue" && value != "messageGroup") {
          Throw("InvalidAttributeValue",
                "Invalid value for the parameter DeduplicationScope. Reason: must be queue or "
                "messageGroup.");
        }
        a.extra[name] = value;
      } else if (name == "FifoThroughputLimit") {
        if (value != "perQueue" && value != "perMessageGroupId") {
          Throw("InvalidAttributeValue",
                "Invalid value for the parameter FifoThroughputLimit. Reason: must be perQueue "
                "or perMessageGroupId.");
        }
        a.extra[name] = value;
      } else if (name == "Policy") {
        if (value.empty()) {
          a.extra.erase(name);
          continue;
        }
        const json policy = json::parse(value, nullptr, false);
        if (policy.is_discarded() || !policy.is_object() || value.size() > kMaxPolicyBytes) {
          Throw("InvalidAttributeValue",
                "Invalid value for the parameter Policy. Reason: must be a JSON object of at "
                "most 8192 bytes.");
        }
        a.extra[name] = value;
      } else if (name == "KmsMasterKeyId") {
        if (value.empty()) {
          a.extra.erase(name);
        } else {
          a.extra[name] = value;
        }
      } else if (name == "KmsDataKeyReusePeriodSeconds") {
        SecondsIn(name, value, 60, 86'400);
        if (value == "300") {
          a.extra.erase(name);  // the default, which AWS does not show
        } else {
          a.extra[name] = value;
        }
      } else if (name == "SqsManagedSseEnabled") {
        Boolean(name, value);
        a.extra.erase(name);  // shown from KmsMasterKeyId's presence
      } else if (name == "RedrivePolicy") {
        if (value.empty()) {
          a.redrive_policy.reset();
          continue;
        }
        auto invalid = [&](std::string_view reason) {
          ThrowInvalid(fmt::format("Value {} for parameter RedrivePolicy is invalid. Reason: {}",
                                   value, reason));
        };
        const json p = json::parse(value, nullptr, false);
        if (p.is_discarded() || !p.is_object()) invalid("Redrive policy is not a JSON object.");
        if (!p.contains("deadLetterTargetArn") || !p["deadLetterTargetArn"].is_string()) {
          invalid("Redrive policy does not contain mandatory attribute: deadLetterTargetArn.");
        }
        if (!p.contains("maxReceiveCount")) {
          invalid("Redrive policy does not contain mandatory attribute: maxReceiveCount.");
        }
        std::int64_t count = 0;
        const json& c = p["maxReceiveCount"];
        if (c.is_number_integer()) {
          count = c.get<std::int64_t>();
        } else if (c.is_string()) {
          const std::string s = c.get<std::string>();
          auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), count);
          if (ec != std::errc() || end != s.data() + s.size()) count = -1;
        } else {
          count = -1;
        }
        if (count < 1 || count > broker::kMaxMaxReceiveCount) {
          invalid(
              fmt::format("Invalid value for maxReceiveCount: {}, valid values are from 1 to "
                          "1000 both inclusive.",
                          c.dump()));
        }
        a.redrive_policy = broker::RedrivePolicy{
            QueueNameFromArn(p["deadLetterTargetArn"].get<std::string>(), "RedrivePolicy"),
            static_cast<std::uint32_t>(count)};
      } else if (name == "RedriveAllowPolicy") {
        auto invalid = [&](std::string_view reason) {
          ThrowInvalid(fmt::format(
              "Value {} for parameter RedriveAllowPolicy is invalid. Reason: {}", value, reason));
        };
        if (value.empty()) {
          a.redrive_allow_policy = {};
          continue;
        }
        const json p = json::parse(value, nullptr, false);
        if (p.is_discarded() || !p.is_object() || !p.contains("redrivePermission") ||
            !p["redrivePermission"].is_string()) {
          invalid("Redrive allow policy must be a JSON object with a redrivePermission.");
        }
        const std::string permission = p["redrivePermission"].get<std::string>();
        broker::RedriveAllowPolicy allow;
        if (permission == "allowAll") {
          allow.permission = broker::RedrivePermission::kAllowAll;
        } else if (permission == "denyAll") {
          allow.permission = broker::RedrivePermission::kDenyAll;
        } else if (permission == "byQueue") {
          allow.permission = broker::RedrivePermission::kByQueue;
        } else {
          invalid("redrivePermission must be allowAll, denyAll or byQueue.");
        }
        if (p.contains("sourceQueueArns")) {
          if (!p["sourceQueueArns"].is_array()) invalid("sourceQueueArns must be a list.");
          for (const json& arn : p["sourceQueueArns"]) {
            if (!arn.is_string()) invalid("sourceQueueArns must be a list of ARNs.");
            allow.source_queues.push_back(
                QueueNameFromArn(arn.get<std::string>(), "RedriveAllowPolicy"));
          }
        }
        if ((allow.permission == broker::RedrivePermission::kByQueue) !=
            !allow.source_queues.empty()) {
          invalid("sourceQueueArns must be given with byQueue (1-10 ARNs), and only then.");
        }
        if (allow.source_queues.size() > broker::kMaxRedriveSourceQueues) {
          invalid("At most 10 sourceQueueArns are allowed.");
        }
        a.redrive_allow_policy = std::move(allow);
      } else {
        // Unknown, or read-only (QueueArn, the counts, ...): AWS answers both alike.
        Throw("InvalidAttributeName", fmt::format("Unknown Attribute {}.", name));
      }
    }
  }

  // --- queue actions --------------------------------------------------------------------

  void CreateQueue(const CallPtr& call) {
    const json& p = call->params();
    const std::string name = Required(p, "QueueName");
    auto attributes = StrMap(p, "Attributes");
    auto tags = StrMap(p, "tags");
    const auto fifo_attr = attributes.find("FifoQueue");
    const bool fifo = fifo_attr != attributes.end() && fifo_attr->second == "true";
    if (fifo_attr != attributes.end() && !fifo && !name.ends_with(".fifo")) {
      Throw("InvalidAttributeName", "Unknown Attribute FifoQueue.");
    }
    if (fifo_attr != attributes.end() && fifo_attr->second != "true" &&
        fifo_attr->second != "false") {
      Throw("InvalidAttributeValue", "Invalid value for the parameter FifoQueue.");
    }
    if (!broker::ValidateQueueName(name, name.ends_with(".fifo"))) {
      ThrowInvalid(
          "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length.");
    }
    if (name.ends_with(".fifo") != fifo) {
      ThrowInvalid(fifo ? "The name of a FIFO queue can only include alphanumeric characters, "
                          "hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in "
                          "length."
                        : "Can only include alphanumeric characters, hyphens, or underscores. 1 "
                          "to 80 in length. A queue named with the .fifo suffix must have "
                          "FifoQueue set to true.");
    }
    for (const auto& [key, value] : tags)
      CheckTag(key, value);
    broker::QueueMetadata queue;
    queue.name = name;
    queue.attributes.fifo = fifo;
    Apply(attributes, queue.attributes, /*creating=*/true);
    queue.tags = std::move(tags);

    if (auto existing = broker.FindQueueMetadata(name)) {
      // AWS compares only the attributes given: an existing queue with other values for
      // attributes the call leaves out is still "the same queue".
      return broker.DescribeQueue(
          name, OnResult<broker::QueueInfo>(call, [this, call, attributes](broker::QueueInfo info) {
            CheckSame(info, attributes);
            call->Ok({{"QueueUrl", UrlOf(info.metadata.name)}});
          }));
    }
    {
      std::lock_guard lock(api.mu_);
      auto it = api.deleted_ms_.find(name);
      const std::int64_t now = broker.clock().WallMillis();
      if (it != api.deleted_ms_.end() && now - it->second < options.recreate_wait_ms) {
        Throw("AWS.SimpleQueueService.QueueDeletedRecently",
              fmt::format("You must wait {} seconds after deleting a queue before you can create "
                          "another with the same name.",
                          options.recreate_wait_ms / 1000));
      }
    }
    broker.CreateQueue(
        std::move(queue), [this, call, attributes](Result<broker::CreateQueueResult> created) {
          if (!created) {
            SqsError e = FromBroker(created.error());
            // The dead-letter queue a redrive policy names, missing or of the other type.
            if (created.error().code == ErrorCode::kNotFound ||
                created.error().code == ErrorCode::kFailedPrecondition) {
              e.code = "InvalidParameterValue";
              e.message = "Value for parameter RedrivePolicy is invalid. Reason: " + e.message;
            }
            if (created.error().code == ErrorCode::kAlreadyExists) {
              e.message =
                  "A queue already exists with the same name and a different value for "
                  "an attribute";
            }
            return call->Fail(e);
          }
          Guard(call, [&] {
            CheckSame(created->queue, attributes);
            call->Ok({{"QueueUrl", UrlOf(created->queue.metadata.name)}});
          });
        });
  }

  void CheckSame(const broker::QueueInfo& info,
                 const std::map<std::string, std::string>& attributes) const {
    broker::QueueAttributes wanted = info.metadata.attributes;
    Apply(attributes, wanted, /*creating=*/true);
    const auto have = Render(info);
    broker::QueueInfo as_wanted = info;
    as_wanted.metadata.attributes = wanted;
    const auto want = Render(as_wanted);
    for (const auto& [name, value] : attributes) {
      auto h = have.find(name);
      auto w = want.find(name);
      const std::string hv = h == have.end() ? "" : h->second;
      const std::string wv = w == want.end() ? "" : w->second;
      if (hv != wv) {
        Throw("QueueAlreadyExists",
              fmt::format("A queue already exists with the same name and a different value for "
                          "attribute {}",
                          name));
      }
    }
  }

  void GetQueueUrl(const CallPtr& call) {
    const std::string name = Required(call->params(), "QueueName");
    if (!broker.FindQueueMetadata(name)) ThrowNoQueue(call);
    call->Ok({{"QueueUrl", UrlOf(name)}});
  }

  static std::string EncodeToken(const std::string& after) { return Base64Encode(after); }
  static std::string DecodeToken(const json& p) {
    auto token = Str(p, "NextToken");
    if (!token || token->empty()) return {};
    auto after = Base64Decode(*token);
    if (!after) ThrowInvalid("Invalid NextToken value.");
    return *after;
  }

  static std::optional<std::size_t> MaxResults(const json& p, std::int64_t hi) {
    auto max = Int(p, "MaxResults");
    if (!max) return std::nullopt;
    if (*max < 1 || *max > hi) {
      ThrowInvalid(
          fmt::format("Value {} for parameter MaxResults is invalid. Reason: must be "
                      "between 1 and {}.",
                      *max, hi));
    }
    return static_cast<std::size_t>(*max);
  }

  void ListQueues(const CallPtr& call) {
    const json& p = call->params();
    const std::string prefix = Str(p, "QueueNamePrefix").value_or("");
    const auto max = MaxResults(p, 1000);
    const std::string after = DecodeToken(p);
    const std::size_t limit = max.value_or(1000);
    auto names = broker.ListQueues(prefix, after, limit + 1);
    json result = json::object();
    const bool more = names.size() > limit;
    if (more) names.resize(limit);
    if (!names.empty()) {
      result["QueueUrls"] = json::array();
      for (const auto& n : names)
        result["QueueUrls"].push_back(UrlOf(n));
    }
    // AWS gives a token only to a caller that asked for pages.
    if (more && max) result["NextToken"] = EncodeToken(names.back());
    call->Ok(result);
  }

  void DeleteQueue(const CallPtr& call) {
    auto queue = Queue(call);
    broker.DeleteQueue(queue->name, OnStatus(call, [this, call, name = queue->name] {
                         std::lock_guard lock(api.mu_);
                         const std::int64_t now = broker.clock().WallMillis();
                         std::erase_if(api.deleted_ms_, [&](const auto& e) {
                           return now - e.second >= options.recreate_wait_ms;
                         });
                         api.deleted_ms_[name] = now;
                         api.purged_ms_.erase(name);
                         call->Ok(json::object());
                       }));
  }

  void PurgeQueue(const CallPtr& call) {
    auto queue = Queue(call);
    {
      std::lock_guard lock(api.mu_);
      const std::int64_t now = broker.clock().WallMillis();
      auto it = api.purged_ms_.find(queue->name);
      if (it != api.purged_ms_.end() && now - it->second < options.purge_interval_ms) {
        Throw("AWS.SimpleQueueService.PurgeQueueInProgress",
              fmt::format("Only one PurgeQueue operation on {} is allowed every {} seconds.",
                          queue->name, options.purge_interval_ms / 1000));
      }
      std::erase_if(api.purged_ms_,
                    [&](const auto& e) { return now - e.second >= options.purge_interval_ms; });
      api.purged_ms_[queue->name] = now;
    }
    broker.PurgeQueue(queue->name, OnResult<std::uint64_t>(
                                       call, [call](std::uint64_t) { call->Ok(json::object()); }));
  }

  void GetQueueAttributes(const CallPtr& call) {
    auto queue = Queue(call);
    auto names = StrList(call->params(), "AttributeNames");
    for (const auto& n : names) {
      if (!IsAttributeKnown(n))
        Throw("InvalidAttributeName", fmt::format("Unknown Attribute {}.", n));
    }
    broker.DescribeQueue(
        queue->name, OnResult<broker::QueueInfo>(call, [this, call, names](broker::QueueInfo info) {
          const auto all = Render(info);
          json attributes = json::object();
          for (const auto& [k, v] : all) {
            if (Selected(names, k)) attributes[k] = v;
          }
          json result = json::object();
          if (!attributes.empty()) {
            result["Attributes"] = std::move(attributes);
          }
          call->Ok(result);
        }));
  }

  void SetQueueAttributes(const CallPtr& call) {
    auto queue = Queue(call);
    const json* given = Find(call->params(), "Attributes");
    if (given == nullptr) ThrowMissing("Attributes");
    auto attributes = StrMap(call->params(), "Attributes");
    // Checked here as well as in `change`, so that a bad value is answered as such rather
    // than as the broker's error.
    broker::QueueAttributes probe = queue->attributes;
    Apply(attributes, probe, /*creating=*/false);
    auto rejected = std::make_shared<std::optional<SqsError>>();
    broker.SetQueueAttributes(
        queue->name,
        [this, attributes,
         rejected](const broker::QueueAttributes& current) -> Result<broker::QueueAttributes> {
          broker::QueueAttributes next = current;
          try {
            Apply(attributes, next, /*creating=*/false);
          } catch (const Reject& r) {
            *rejected = r.error;
            return InvalidArgument(r.error.message);
          } catch (const std::exception& e) {  // runs on a broker thread
            *rejected = SqsError{"InternalFailure", e.what()};
            return Internal(e.what());
          }
          return next;
        },
        [call, rejected](Result<broker::QueueInfo> r) {
          if (r) return call->Ok(json::object());
          if (*rejected) return call->Fail(**rejected);
          SqsError e = FromBroker(r.error());
          if (r.error().code == ErrorCode::kNotFound &&
              e.message.find("dead-letter") != std::string::npos) {
            e.code = "InvalidParameterValue";
          }
          call->Fail(e);
        });
  }

  static void CheckTag(const std::string& key, const std::string& value) {
    if (key.empty() || key.size() > broker::kMaxTagKeyBytes || key.starts_with("aws:")) {
      ThrowInvalid(
          fmt::format("Tag key '{}' is invalid: keys are 1-128 characters and may not "
                      "start with 'aws:'.",
                      key));
    }
    if (value.size() > broker::kMaxTagValueBytes) {
      ThrowInvalid(fmt::format("The value of tag '{}' is longer than 256 characters.", key));
    }
  }

  void TagQueue(const CallPtr& call) {
    auto queue = Queue(call);
    if (Find(call->params(), "Tags") == nullptr) ThrowMissing("Tags");
    auto tags = StrMap(call->params(), "Tags");
    for (const auto& [k, v] : tags)
      CheckTag(k, v);
    broker.SetQueueTags(
        queue->name,
        [tags](const broker::QueueTags& current) -> Result<broker::QueueTags> {
          broker::QueueTags next = current;
          for (const auto& [k, v] : tags)
            next[k] = v;
          if (next.size() > broker::kMaxQueueTags) {
            return InvalidArgument("Too many tags: a queue has at most 50.");
          }
          return next;
        },
        OnResult<broker::QueueInfo>(call, [call](broker::QueueInfo) { call->Ok(json::object()); }));
  }

  void UntagQueue(const CallPtr& call) {
    auto queue = Queue(call);
    if (Find(call->params(), "TagKeys") == nullptr) ThrowMissing("TagKeys");
    auto keys = StrList(call->params(), "TagKeys");
    broker.SetQueueTags(
        queue->name,
        [keys](const broker::QueueTags& current) -> Result<broker::QueueTags> {
          broker::QueueTags next = current;
          for (const auto& k : keys)
            next.erase(k);
          return next;
        },
        OnResult<broker::QueueInfo>(call, [call](broker::QueueInfo) { call->Ok(json::object()); }));
  }

  void ListQueueTags(const CallPtr& call) {
    auto queue = Queue(call);
    json result = json::object();
    if (!queue->tags.empty()) result["Tags"] = queue->tags;
    call->Ok(result);
  }

  void ListDeadLetterSourceQueues(const CallPtr& call) {
    auto queue = Queue(call);
    const json& p = call->params();
    const auto max = MaxResults(p, 1000);
    const std::size_t limit = max.value_or(1000);
    auto names = broker.DeadLetterSourceQueues(queue->name, DecodeToken(p), limit + 1);
    if (!names) ThrowNoQueue(call);
    const bool more = names->size() > limit;
    if (more) names->resize(limit);
    json result = {{"queueUrls", json::array()}};
    for (const auto& n : *names)
      result["queueUrls"].push_back(UrlOf(n));
    if (more && max) result["NextToken"] = EncodeToken(names->back());
    call->Ok(result);
  }

  // Permissions live in the queue's Policy attribute, as AWS keeps them; Spool does not
  // evaluate policies (docs/sqs-compatibility.md).
  void AddPermission(const CallPtr& call) {
    auto queue = Queue(call);
    const json& p = call->params();
    const std::string label = Required(p, "Label");
    if (!IsBatchEntryId(label)) {
      ThrowInvalid(
          fmt::format("Value {} for parameter Label is invalid. Reason: Can only include "
                      "alphanumeric characters, hyphens, or underscores. 1 to 80 in "
                      "length.",
                      label));
    }
    auto accounts = StrList(p, "AWSAccountIds");
    auto actions = StrList(p, "Actions");
    if (accounts.empty()) ThrowMissing("AWSAccountIds");
    if (actions.empty()) ThrowMissing("Actions");
    if (actions.size() > 7) Throw("OverLimit", "7 actions are the most one permission may grant.");
    json statement = {{"Sid", label}, {"Effect", "Allow"}, {"Resource", ArnOf(queue->name)}};
    for (const auto& account : accounts) {
      statement["Principal"]["AWS"].push_back("arn:aws:iam::" + account + ":root");
    }
    for (const auto& action : actions)
      statement["Action"].push_back("SQS:" + action);
    ChangePolicy(call, queue->name, [this, label, statement, name = queue->name](json& policy) {
      if (policy.is_null()) {
        policy = {{"Version", "2008-10-17"},
                  {"Id", ArnOf(name) + "/SQSDefaultPolicy"},
                  {"Statement", json::array()}};
      }
      // A policy set with SetQueueAttributes may have any shape; AddPermission needs a
      // statement list to add to.
      if (!policy.is_object() || !policy.contains("Statement") || !policy["Statement"].is_array()) {
        ThrowInvalid("The queue's Policy has no Statement list to add a permission to.");
      }
      for (const json& s : policy["Statement"]) {
        if (s.is_object() && s.contains("Sid") && s["Sid"] == label) {
          ThrowInvalid(fmt::format(
              "Value {} for parameter Label is invalid. Reason: Already exists.", label));
        }
      }
      policy["Statement"].push_back(statement);
    });
  }

  void RemovePermission(const CallPtr& call) {
    auto queue = Queue(call);
    const std::string label = Required(call->params(), "Label");
    ChangePolicy(call, queue->name, [label](json& policy) {
      bool found = false;
      if (policy.is_object() && policy.contains("Statement") && policy["Statement"].is_array()) {
        auto& statements = policy["Statement"];
        for (auto it = statements.begin(); it != statements.end(); ++it) {
          if (it->is_object() && it->contains("Sid") && (*it)["Sid"] == label) {
            statements.erase(it);
            found = true;
            break;
          }
        }
        if (statements.empty()) policy = nullptr;
      }
      if (!found) {
        ThrowInvalid(fmt::format(
            "Value {} for parameter Label is invalid. Reason: can't find label.", label));
      }
    });
  }

  void ChangePolicy(const CallPtr& call, const std::string& queue,
                    std::function<void(json&)> change) {
    auto rejected = std::make_shared<std::optional<SqsError>>();
    broker.SetQueueAttributes(
        queue,
        [change,
         rejected](const broker::QueueAttributes& current) -> Result<broker::QueueAttributes> {
          broker::QueueAttributes next = current;
          json policy = nullptr;
          if (auto it = next.extra.find("Policy"); it != next.extra.end()) {
            policy = json::parse(it->second, nullptr, false);
            if (policy.is_discarded()) policy = nullptr;
          }
          // This runs on a broker thread: nothing may escape it.
          try {
            change(policy);
            if (policy.is_null()) {
              next.extra.erase("Policy");
            } else {
              std::string text = policy.dump(-1, ' ', false, json::error_handler_t::replace);
              if (text.size() > kMaxPolicyBytes) {
                Throw("OverLimit", fmt::format("The queue's Policy would be {} bytes; the limit "
                                               "is {}.",
                                               text.size(), kMaxPolicyBytes));
              }
              next.extra["Policy"] = std::move(text);
            }
          } catch (const Reject& r) {
            *rejected = r.error;
            return InvalidArgument(r.error.message);
          } catch (const std::exception& e) {
            *rejected = SqsError{"InternalFailure", e.what()};
            return Internal(e.what());
          }
          return next;
        },
        [call, rejected](Result<broker::QueueInfo> r) {
          if (r) return call->Ok(json::object());
          if (*rejected) return call->Fail(**rejected);
          call->Fail(FromBroker(r.error()));
        });
  }

  // --- messages -------------------------------------------------------------------------

  struct PreparedSend {
    broker::QueueSend send;
    std::string md5_body;
    std::optional<std::string> md5_attributes;
    std::optional<std::string> md5_system;
    std::int64_t bytes = 0;  // as SQS counts a message: body and attribute names, types, values
  };

  static constexpr char kGroupSeparator = '\x1f';

  static bool IsPerGroupDeduplication(const broker::QueueAttributes& a) {
    auto it = a.extra.find("DeduplicationScope");
    return it != a.extra.end() && it->second == "messageGroup";
  }

  static PreparedSend Prepare(const json& p, const broker::QueueMetadata& queue) {
    const broker::QueueAttributes& a = queue.attributes;
    PreparedSend out;
    auto body = Str(p, "MessageBody");
    if (!body || body->empty()) ThrowMissing("MessageBody");
    if (!IsValidMessageText(*body)) {
      Throw("InvalidMessageContents",
            "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to "
            "#xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF");
    }
    auto delay = Int(p, "DelaySeconds");
    if (delay && (*delay < 0 || *delay > kMaxDelaySeconds)) {
      ThrowInvalid(
          fmt::format("Value {} for parameter DelaySeconds is invalid. Reason: must be "
                      "between 0 and 900, if provided.",
                      *delay));
    }
    if (a.fifo && delay && *delay != 0) {
      ThrowInvalid(
          fmt::format("Value {} for parameter DelaySeconds is invalid. Reason: The request "
                      "include parameter that is not valid for this queue type.",
                      *delay));
    }
    auto group = Str(p, "MessageGroupId");
    auto dedup = Str(p, "MessageDeduplicationId");
    if (a.fifo) {
      if (!group || group->empty()) {
        throw Reject{{"MissingParameter", "The request must contain the parameter MessageGroupId."},
                     /*whole_request=*/true};
      }
      if (!dedup && !a.content_based_deduplication) {
        throw Reject{{"InvalidParameterValue",
                      "The queue should either have ContentBasedDeduplication enabled or "
                      "MessageDeduplicationId provided explicitly"},
                     /*whole_request=*/true};
      }
    } else if (dedup) {
      ThrowInvalid(
          fmt::format("Value {} for parameter MessageDeduplicationId is invalid. Reason: "
                      "The request includes a parameter that is not valid for this "
                      "queue type.",
                      *dedup));
    }
    if (group) CheckFifoId(*group, "MessageGroupId");
    if (dedup) CheckFifoId(*dedup, "MessageDeduplicationId");

    auto attributes = ReadMessageAttributes(p, "MessageAttributes");
    auto system = ReadMessageAttributes(p, "MessageSystemAttributes");
    for (const auto& s : system) {
      if (s.name != "AWSTraceHeader" || s.data_type != "String") {
        ThrowInvalid(
            fmt::format("Message system attribute name '{}' is invalid: only "
                        "AWSTraceHeader, of type String, may be sent.",
                        s.name));
      }
    }
    out.bytes = static_cast<std::int64_t>(body->size());
    storage::Record& r = out.send.record;
    for (const auto& attr : attributes) {
      out.bytes +=
          static_cast<std::int64_t>(attr.name.size() + attr.data_type.size() + attr.value.size());
      r.headers.emplace_back(attr.name, attr.value);
      if (attr.data_type != "String") {
        r.headers.emplace_back(std::string(broker::kHeaderTypePrefix) + attr.name, attr.data_type);
      }
    }
    if (out.bytes > a.max_message_bytes) {
      ThrowInvalid(
          fmt::format("One or more parameters are invalid. Reason: Message must be "
                      "shorter than {} bytes.",
                      a.max_message_bytes));
    }
    if (!system.empty()) {
      r.headers.emplace_back(std::string(broker::kTraceHeader), system.front().value);
      out.md5_system = Md5OfAttributes(system);
    }
    out.md5_body = Md5Hex(*body);
    out.md5_attributes = Md5OfAttributes(std::move(attributes));
    if (group && IsPerGroupDeduplication(a)) {
      if (!dedup) dedup = Sha256Hex(*body);  // content-based, as the broker would hash it
      // The broker deduplicates per queue; the group in the key makes the scope the group.
      // Ids cannot contain the separator, so receives can take the prefix off again.
      dedup = *group + kGroupSeparator + *dedup;
    }
    r.value = std::move(*body);
    if (group) r.message_group_id = std::move(*group);
    if (dedup) r.dedup_id = std::move(*dedup);
    if (delay) out.send.delay_ms = *delay * 1000;
    if (Status s = broker::CheckQueueSend(a, out.send); !s) ThrowInvalid(s.error().message);
    return out;
  }

  static json SentJson(const PreparedSend& s, const broker::ProducedRecord& produced,
                       const QueueIds& ids) {
    json out = {{"MessageId", MessageId(ids.topic_id, produced.partition, produced.offset)},
                {"MD5OfMessageBody", s.md5_body}};
    if (s.md5_attributes) out["MD5OfMessageAttributes"] = *s.md5_attributes;
    if (s.md5_system) out["MD5OfMessageSystemAttributes"] = *s.md5_system;
    if (ids.fifo) {
      out["SequenceNumber"] =
          SequenceNumber(produced.partition, produced.offset, produced.sequence);
    }
    return out;
  }

  // A 1, then the record's sequence number (which increases across the queue) in 24 digits:
  // above every number given before sequence numbers were stored (the partition + 1, then
  // the offset in 20 digits: increasing only within a partition), which such records keep.
  static std::string SequenceNumber(std::uint32_t partition, std::uint64_t offset,
                                    std::optional<std::uint64_t> sequence) {
    if (sequence) return fmt::format("1{:024}", *sequence);
    return fmt::format("{}{:020}", partition + 1, offset);
  }

  void SendMessage(const CallPtr& call) {
    auto queue = Queue(call);
    const QueueIds ids = Ids(call, queue->name);
    auto prepared = std::make_shared<PreparedSend>(Prepare(call->params(), *queue));
    std::vector<broker::QueueSend> sends{prepared->send};
    broker.SendMessages(queue->name, std::move(sends),
                        OnResult<std::vector<broker::ProducedRecord>>(
                            call, [call, prepared, ids](std::vector<broker::ProducedRecord> sent) {
                              call->Ok(SentJson(*prepared, sent.at(0), ids));
                            }));
  }

  // Entries of a batch action: 1-10, with distinct, well-formed ids.
  static const json& BatchEntries(const json& p, std::string_view entry_name) {
    const json* entries = Find(p, "Entries");
    if (entries == nullptr) ThrowMissing("Entries");
    if (!entries->is_array()) ThrowInvalid("Value for parameter Entries must be a list.");
    if (entries->empty()) {
      Throw("AWS.SimpleQueueService.EmptyBatchRequest",
            fmt::format("There should be at least one {} in the request.", entry_name));
    }
    if (entries->size() > kMaxBatchEntries) {
      Throw("AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            fmt::format("Maximum number of entries per request are {}. You have sent {}.",
                        kMaxBatchEntries, entries->size()));
    }
    std::set<std::string> ids;
    for (const json& e : *entries) {
      if (!e.is_object()) ThrowInvalid("Each entry of Entries must be a structure.");
      auto id = Str(e, "Id");
      if (!id) ThrowMissing(fmt::format("{}.Id", entry_name));
      if (!IsBatchEntryId(*id)) {
        Throw("AWS.SimpleQueueService.InvalidBatchEntryId",
              "A batch entry id can only contain alphanumeric characters, hyphens and "
              "underscores. It can be at most 80 letters long.");
      }
      if (!ids.insert(*id).second) {
        Throw("AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
              fmt::format("Id {} repeated.", *id));
      }
    }
    return *entries;
  }

  static json Failure(const std::string& id, const SqsError& e) {
    return {{"Id", id},
            {"SenderFault", ErrorStatus(e.code) < 500},
            {"Code", e.code},
            {"Message", e.message}};
  }

  void SendMessageBatch(const CallPtr& call) {
    auto queue = Queue(call);
    const QueueIds ids = Ids(call, queue->name);
    const json& entries = BatchEntries(call->params(), "SendMessageBatchRequestEntry");
    std::int64_t total = 0;
    for (const json& e : entries) {
      if (auto body = Find(e, "MessageBody"); body != nullptr && body->is_string()) {
        total += static_cast<std::int64_t>(body->get_ref<const std::string&>().size());
      }
      // As AWS counts it: bodies and message attributes; system attributes do not count.
      for (const char* member : {"MessageAttributes"}) {
        const json* attrs = Find(e, member);
        if (attrs == nullptr || !attrs->is_object()) continue;
        for (const auto& [name, v] : attrs->items()) {
          total += static_cast<std::int64_t>(name.size());
          if (!v.is_object()) continue;
          for (const char* f : {"DataType", "StringValue", "BinaryValue"}) {
            if (auto it = v.find(f); it != v.end() && it->is_string()) {
              total += static_cast<std::int64_t>(it->get_ref<const std::string&>().size());
            }
          }
        }
      }
    }
    if (total > kMaxBatchBytes) {
      Throw("AWS.SimpleQueueService.BatchRequestTooLong",
            fmt::format("Batch requests cannot be longer than {} bytes. You have sent {} bytes.",
                        kMaxBatchBytes, total));
    }
    auto prepared = std::make_shared<std::vector<PreparedSend>>();
    auto sent_ids = std::make_shared<std::vector<std::string>>();
    json failed = json::array();
    for (const json& e : entries) {
      const std::string id = e["Id"].get<std::string>();
      try {
        prepared->push_back(Prepare(e, *queue));
        sent_ids->push_back(id);
      } catch (const Reject& r) {
        // AWS answers a FIFO entry without its group or deduplication id for the whole
        // batch, as an invalid value.
        if (r.whole_request) ThrowInvalid(r.error.message);
        failed.push_back(Failure(id, r.error));
      }
    }
    if (prepared->empty()) {
      return call->Ok({{"Successful", json::array()}, {"Failed", std::move(failed)}});
    }
    std::vector<broker::QueueSend> sends;
    for (const auto& s : *prepared)
      sends.push_back(s.send);
    broker.SendMessages(
        queue->name, std::move(sends),
        [call, prepared, sent_ids, ids,
         failed = std::move(failed)](Result<std::vector<broker::ProducedRecord>> sent) mutable {
          Guard(call, [&] {
            json successful = json::array();
            for (std::size_t i = 0; i < sent_ids->size(); ++i) {
              if (!sent) {
                failed.push_back(Failure((*sent_ids)[i], FromBroker(sent.error())));
                continue;
              }
              json entry = SentJson((*prepared)[i], sent->at(i), ids);
              entry["Id"] = (*sent_ids)[i];
              successful.push_back(std::move(entry));
            }
            call->Ok({{"Successful", std::move(successful)}, {"Failed", std::move(failed)}});
          });
        });
  }

  json MessageJson(const broker::QueueMessage& m, const QueueIds& ids,
                   const std::vector<std::string>& system_names,
                   const std::vector<std::string>& attribute_names) const {
    const broker::ReceivedMessage& rm = m.message;
    const storage::Record& r = rm.record;
    json out = {
        {"MessageId", MessageIdOf(r, ids.topic_id, m.partition, rm.offset)},
        {"ReceiptHandle", EncodeReceipt(ids.subscription, {m.partition, rm.offset, rm.generation})},
        {"MD5OfBody", Md5Hex(r.value)},
        {"Body", r.value}};
    std::uint32_t earlier_receives = 0;
    std::int64_t sent_ms = r.append_timestamp_ms;
    std::optional<std::string> source_queue, trace;
    for (const auto& [key, value] : r.headers) {
      if (key == "spool.dlq.source_queue") source_queue = value;
      if (key == "spool.dlq.receive_count") {
        earlier_receives = static_cast<std::uint32_t>(std::strtoul(value.c_str(), nullptr, 10));
      }
      if (key == "spool.dlq.sent_timestamp_ms") sent_ms = std::strtoll(value.c_str(), nullptr, 10);
      if (key == broker::kTraceHeader) trace = value;
    }
    std::map<std::string, std::string> system;
    system["SenderId"] = options.account_id;
    system["SentTimestamp"] = std::to_string(sent_ms);
    system["ApproximateReceiveCount"] = std::to_string(earlier_receives + rm.receive_count);
    system["ApproximateFirstReceiveTimestamp"] = std::to_string(rm.first_receive_ms);
    if (r.message_group_id) system["MessageGroupId"] = *r.message_group_id;
    if (ids.fifo) {
      if (r.dedup_id) {
        const auto separator = r.dedup_id->find(kGroupSeparator);
        system["MessageDeduplicationId"] =
            separator == std::string::npos ? *r.dedup_id : r.dedup_id->substr(separator + 1);
      }
      system["SequenceNumber"] = SequenceNumber(m.partition, rm.offset, r.sequence);
    }
    if (trace) system["AWSTraceHeader"] = *trace;
    if (source_queue) system["DeadLetterQueueSourceArn"] = ArnOf(*source_queue);
    json attributes = json::object();
    for (const auto& [k, v] : system) {
      if (Selected(system_names, k)) attributes[k] = v;
    }
    if (!attributes.empty()) out["Attributes"] = std::move(attributes);
    std::vector<MessageAttribute> returned;
    for (auto& a : AttributesOf(r)) {
      if (Selected(attribute_names, a.name)) returned.push_back(std::move(a));
    }
    if (!returned.empty()) {
      json map = json::object();
      for (const auto& a : returned)
        map[a.name] = AttributeJson(a);
      out["MessageAttributes"] = std::move(map);
      out["MD5OfMessageAttributes"] = *Md5OfAttributes(std::move(returned));
    }
    return out;
  }

  void ReceiveMessage(const CallPtr& call) {
    auto queue = Queue(call);
    const QueueIds ids = Ids(call, queue->name);
    const json& p = call->params();
    broker::QueueReceive receive;
    receive.queue = queue->name;
    if (auto max = Int(p, "MaxNumberOfMessages")) {
      if (*max < 1 || *max > static_cast<std::int64_t>(kMaxBatchEntries)) {
        ThrowInvalid(
            fmt::format("Value {} for parameter MaxNumberOfMessages is invalid. Reason: "
                        "Must be between 1 and 10, if provided.",
                        *max));
      }
      receive.max_messages = static_cast<std::size_t>(*max);
    }
    if (auto visibility = Int(p, "VisibilityTimeout")) {
      if (*visibility < 0 || *visibility > kMaxVisibilitySeconds) {
        ThrowInvalid(
            fmt::format("Value {} for parameter VisibilityTimeout is invalid. Reason: "
                        "Must be >= 0 and <= 43200, if provided.",
                        *visibility));
      }
      receive.visibility_ms = *visibility * 1000;
    }
    if (auto wait = Int(p, "WaitTimeSeconds")) {
      if (*wait < 0 || *wait > kMaxWaitSeconds) {
        ThrowInvalid(
            fmt::format("Value {} for parameter WaitTimeSeconds is invalid. Reason: Must "
                        "be >= 0 and <= 20, if provided.",
                        *wait));
      }
      receive.wait_ms = *wait * 1000;
    }
    std::string attempt_key;
    if (auto attempt = Str(p, "ReceiveRequestAttemptId")) {
      CheckFifoId(*attempt, "ReceiveRequestAttemptId");
      if (ids.fifo) attempt_key = queue->name + '\n' + *attempt;
    }
    auto system_names = StrList(p, "AttributeNames");
    for (auto& n : StrList(p, "MessageSystemAttributeNames"))
      system_names.push_back(std::move(n));
    auto attribute_names = StrList(p, "MessageAttributeNames");
    const bool long_poll =
        receive.wait_ms ? *receive.wait_ms > 0 : queue->attributes.receive_wait_ms > 0;
    const std::int64_t visibility_ms =
        receive.visibility_ms.value_or(queue->attributes.visibility_timeout_ms);
    // A worker stopped mid-poll must not take the next message with it.
    if (long_poll) receive.cancelled = call->client_gone;
    auto receive_now = [this, call, ids, system_names, attribute_names, long_poll, attempt_key,
                        receive = std::move(receive)]() mutable {
      Receive(call, ids, std::move(receive), system_names, attribute_names, long_poll, attempt_key);
    };
    if (attempt_key.empty()) return receive_now();
    std::optional<SqsApi::Attempt> earlier;
    {
      std::lock_guard lock(api.mu_);
      auto it = api.attempts_.find(attempt_key);
      if (it != api.attempts_.end() && it->second.expires_ms > broker.clock().WallMillis()) {
        earlier = it->second;
      }
    }
    if (!earlier) return receive_now();
    // A retried receive (FIFO): the same messages and handles again, their visibility reset,
    // unless one of them was deleted, received again or its lease ran out meanwhile.
    struct Reset {
      std::mutex mu;
      std::size_t left = 0;
      bool all_held = true;
    };
    auto reset = std::make_shared<Reset>();
    reset->left = earlier->receipts.size();
    auto result = std::make_shared<json>(std::move(earlier->result));
    auto fallback = std::make_shared<decltype(receive_now)>(std::move(receive_now));
    for (const broker::QueueReceipt& r : earlier->receipts) {
      broker.ChangeMessageVisibility(queue->name, r, visibility_ms,
                                     [this, reset, result, fallback, call, attempt_key](Status s) {
                                       bool last = false;
                                       bool held = false;
                                       {
                                         std::lock_guard lock(reset->mu);
                                         reset->all_held = reset->all_held && s.has_value();
                                         last = --reset->left == 0;
                                         held = reset->all_held;
                                       }
                                       if (!last) return;
                                       if (held) return call->Ok(*result);
                                       {
                                         std::lock_guard lock(api.mu_);
                                         api.ForgetAttempt(attempt_key);
                                       }
                                       Guard(call, [&] { (*fallback)(); });
                                     });
    }
  }

  void Receive(const CallPtr& call, const QueueIds& ids, broker::QueueReceive receive,
               const std::vector<std::string>& system_names,
               const std::vector<std::string>& attribute_names, bool long_poll,
               const std::string& attempt_key) {
    const std::string queue = receive.queue;
    broker.ReceiveMessages(
        std::move(receive), [this, call, ids, system_names, attribute_names, long_poll, attempt_key,
                             queue](Result<std::vector<broker::QueueMessage>> got) {
          if (!got) {
            // At the in-flight limit a long poll answers empty, as AWS does.
            if (got.error().code == ErrorCode::kResourceExhausted && long_poll) {
              return call->Ok(json::object());
            }
            return call->Fail(FromBroker(got.error()));
          }
          if (long_poll && call->client_gone && call->client_gone()) {
            // Leased just as the client left: nobody will read the answer.
            for (const auto& m : *got) {
              broker.ChangeMessageVisibility(
                  queue, {m.partition, m.message.offset, m.message.generation}, 0, [](Status) {});
            }
            return call->Ok(json::object());
          }
          Guard(call, [&] {
            json result = json::object();
            if (!got->empty()) {
              result["Messages"] = json::array();
              for (const auto& m : *got) {
                result["Messages"].push_back(MessageJson(m, ids, system_names, attribute_names));
              }
              if (!attempt_key.empty()) RememberAttempt(attempt_key, *got, result);
            }
            call->Ok(result);
          });
        });
  }

  // Keeps a FIFO receive's answer for retries with its ReceiveRequestAttemptId (5 minutes,
  // as AWS), dropping expired ones and bounding how many are kept.
  void RememberAttempt(const std::string& key, const std::vector<broker::QueueMessage>& got,
                       const json& result) {
    SqsApi::Attempt attempt;
    attempt.expires_ms = broker.clock().WallMillis() + kAttemptMs;
    attempt.result = result;
    for (const auto& m : got) {
      // Good only while the lease lasts: a retry must not lease again what a lapsed lease
      // made receivable (that would skip a receive count).
      attempt.receipts.push_back({m.partition, m.message.offset, m.message.generation, true});
      attempt.bytes += m.message.record.value.size() + key.size();
      for (const auto& [k, v] : m.message.record.headers)
        attempt.bytes += k.size() + v.size();
    }
    std::lock_guard lock(api.mu_);
    const std::int64_t now = broker.clock().WallMillis();
    std::erase_if(api.attempts_, [&](const auto& e) {
      if (e.second.expires_ms > now) return false;
      api.attempt_bytes_ -= e.second.bytes;
      return true;
    });
    if (api.attempts_.size() >= kMaxAttempts ||
        api.attempt_bytes_ + attempt.bytes > kMaxAttemptBytes || api.attempts_.contains(key)) {
      return;  // a retry after this then receives afresh
    }
    api.attempt_bytes_ += attempt.bytes;
    api.attempts_[key] = std::move(attempt);
  }

  static broker::QueueReceipt Receipt(const std::string& handle, const QueueIds& ids) {
    auto receipt = DecodeReceipt(handle, ids.subscription);
    if (!receipt) {
      Throw("ReceiptHandleIsInvalid",
            fmt::format("The input receipt handle \"{}\" is not a valid receipt handle.", handle));
    }
    // FIFO receipt handles expire with their visibility timeout; standard ones do not.
    receipt->expires_with_lease = ids.fifo;
    return *receipt;
  }

  // The answer to a delete or visibility change the broker refused, or nullopt for one AWS
  // accepts without effect (a standard queue's stale receipt handle).
  static std::optional<SqsError> ReceiptOutcome(const Error& e, const std::string& handle,
                                                bool fifo, bool deleting) {
    const bool stale = e.message.find("received again") != std::string::npos ||
                       e.message.find("has expired") != std::string::npos;
    const bool deleted = e.message.find("was deleted") != std::string::npos;
    if (e.code != ErrorCode::kFailedPrecondition) {
      if (e.code == ErrorCode::kInvalidArgument && !deleting) {
        return SqsError{"InvalidParameterValue",
                        fmt::format("Value for parameter VisibilityTimeout is invalid. Reason: "
                                    "Total VisibilityTimeout for the message is beyond the limit "
                                    "[43200 seconds]. ({})",
                                    e.message)};
      }
      return FromBroker(e);
    }
    if (stale) {
      if (deleting && !fifo) return std::nullopt;
      return SqsError{"InvalidParameterValue",
                      fmt::format("Value {} for parameter ReceiptHandle is invalid. Reason: The "
                                  "receipt handle has expired.",
                                  handle)};
    }
    if (deleted && !deleting) {
      return SqsError{"InvalidParameterValue",
                      fmt::format("Value {} for parameter ReceiptHandle is invalid. Reason: "
                                  "Message does not exist or is not available for visibility "
                                  "timeout change.",
                                  handle)};
    }
    return SqsError{
        "ReceiptHandleIsInvalid",
        fmt::format("The input receipt handle \"{}\" is not a valid receipt handle.", handle)};
  }

  void DeleteMessage(const CallPtr& call) {
    auto queue = Queue(call);
    const QueueIds ids = Ids(call, queue->name);
    const std::string handle = Required(call->params(), "ReceiptHandle");
    const broker::QueueReceipt receipt = Receipt(handle, ids);
    broker.DeleteMessage(queue->name, receipt, [call, handle, fifo = ids.fifo](Status s) {
      if (s) return call->Ok(json::object());
      if (auto e = ReceiptOutcome(s.error(), handle, fifo, /*deleting=*/true))
        return call->Fail(*e);
      call->Ok(json::object());
    });
  }

  static std::int64_t VisibilityOf(const json& p) {
    auto v = Int(p, "VisibilityTimeout");
    if (!v) ThrowMissing("VisibilityTimeout");
    if (*v < 0 || *v > kMaxVisibilitySeconds) {
      ThrowInvalid(
          fmt::format("Value {} for parameter VisibilityTimeout is invalid. Reason: Must "
                      "be >= 0 and <= 43200, if provided.",
                      *v));
    }
    return *v;
  }

  void ChangeMessageVisibility(const CallPtr& call) {
    auto queue = Queue(call);
    const QueueIds ids = Ids(call, queue->name);
    const std::string handle = Required(call->params(), "ReceiptHandle");
    const std::int64_t seconds = VisibilityOf(call->params());
    const broker::QueueReceipt receipt = Receipt(handle, ids);
    broker.ChangeMessageVisibility(
        queue->name, receipt, seconds * 1000, [call, handle, fifo = ids.fifo](Status s) {
          if (s) return call->Ok(json::object());
          if (auto e = ReceiptOutcome(s.error(), handle, fifo, /*deleting=*/false)) {
            return call->Fail(*e);
          }
          call->Ok(json::object());
        });
  }

  // Runs `one` for each entry, gathering Successful and Failed; answers once all are done.
  struct BatchGather {
    std::mutex mu;
    json successful = json::array();
    json failed = json::array();
    std::size_t left = 0;
    CallPtr call;
    void Done(const std::string& id, const std::optional<SqsError>& error) {
      std::lock_guard lock(mu);
      if (error) {
        failed.push_back(Failure(id, *error));
      } else {
        successful.push_back({{"Id", id}});
      }
      if (--left == 0) call->Ok({{"Successful", successful}, {"Failed", failed}});
    }
  };

  void DeleteMessageBatch(const CallPtr& call) {
    auto queue = Queue(call);
    const QueueIds ids = Ids(call, queue->name);
    const json& entries = BatchEntries(call->params(), "DeleteMessageBatchRequestEntry");
    auto gather = std::make_shared<BatchGather>();
    gather->call = call;
    gather->left = entries.size();
    // Well-formed receipts go to the broker together: one write per partition.
    std::vector<broker::QueueReceipt> receipts;
    std::vector<std::pair<std::string, std::string>> sent;  // (entry id, handle)
    for (const json& e : entries) {
      const std::string id = e["Id"].get<std::string>();
      try {
        const std::string handle = Required(e, "ReceiptHandle");
        receipts.push_back(Receipt(handle, ids));
        sent.emplace_back(id, handle);
      } catch (const Reject& r) {
        gather->Done(id, r.error);
      }
    }
    if (receipts.empty()) return;
    broker.DeleteMessages(
        queue->name, std::move(receipts),
        [gather, sent = std::move(sent), fifo = ids.fifo](Result<std::vector<Status>> done) {
          for (std::size_t k = 0; k < sent.size(); ++k) {
            const auto& [id, handle] = sent[k];
            const Status s = done ? (*done)[k] : Status(done.error());
            gather->Done(id, s ? std::nullopt : ReceiptOutcome(s.error(), handle, fifo, true));
          }
        });
  }

  void ChangeMessageVisibilityBatch(const CallPtr& call) {
    auto queue = Queue(call);
    const QueueIds ids = Ids(call, queue->name);
    const json& entries = BatchEntries(call->params(), "ChangeMessageVisibilityBatchRequestEntry");
    auto gather = std::make_shared<BatchGather>();
    gather->call = call;
    gather->left = entries.size();
    for (const json& e : entries) {
      const std::string id = e["Id"].get<std::string>();
      std::string handle;
      broker::QueueReceipt receipt;
      std::int64_t seconds = 0;
      try {
        handle = Required(e, "ReceiptHandle");
        seconds = VisibilityOf(e);
        receipt = Receipt(handle, ids);
      } catch (const Reject& r) {
        gather->Done(id, r.error);
        continue;
      }
      broker.ChangeMessageVisibility(
          queue->name, receipt, seconds * 1000, [gather, id, handle, fifo = ids.fifo](Status s) {
            gather->Done(id, s ? std::nullopt : ReceiptOutcome(s.error(), handle, fifo, false));
          });
    }
  }

  // --- message move tasks (redrive) -----------------------------------------------------

  std::string ExistingQueueOfArn(const std::string& arn, std::string_view parameter) const {
    const std::string name = QueueNameFromArn(arn, parameter);
    if (!broker.FindQueueMetadata(name)) {
      Throw("ResourceNotFoundException",
            fmt::format("The resource that you specified for the {} parameter doesn't exist.",
                        parameter));
    }
    return name;
  }

  // Task handles carry the source queue too, as AWS's do, so a handle names its task alone.
  static std::string TaskHandle(const broker::RedriveTask& t) {
    return Base64Encode(TaskId(t.id) + ":" + t.source);
  }

  void StartMessageMoveTask(const CallPtr& call) {
    const json& p = call->params();
    broker::RedriveRequest request;
    request.source = ExistingQueueOfArn(Required(p, "SourceArn"), "SourceArn");
    if (auto destination = Str(p, "DestinationArn"); destination && !destination->empty()) {
      request.destination = ExistingQueueOfArn(*destination, "DestinationArn");
    }
    if (auto rate = Int(p, "MaxNumberOfMessagesPerSecond")) {
      if (*rate < 1 || *rate > kMaxMoveTaskRate) {
        ThrowInvalid(
            fmt::format("Value {} for parameter MaxNumberOfMessagesPerSecond is invalid. "
                        "Reason: must be between 1 and 500.",
                        *rate));
      }
      request.max_per_second = static_cast<std::uint32_t>(*rate);
    }
    broker.StartRedrive(std::move(request), [call](Result<broker::RedriveTask> task) {
      if (task) return call->Ok({{"TaskHandle", TaskHandle(*task)}});
      const Error& e = task.error();
      if (e.message.find("still running") != std::string::npos) {
        return call->Fail({"InvalidParameterValue",
                           "There is already a task running. Only one active task is allowed "
                           "for a source queue arn at a given time."});
      }
      if (e.message.find("not the dead-letter queue") != std::string::npos) {
        return call->Fail(
            {"InvalidParameterValue", "Source queue must be configured as a Dead Letter Queue."});
      }
      call->Fail(FromBroker(e));
    });
  }

  static std::string StatusName(broker::RedriveStatus s) {
    return std::string(broker::RedriveStatusName(s));
  }

  void ListMessageMoveTasks(const CallPtr& call) {
    const json& p = call->params();
    const std::string source = ExistingQueueOfArn(Required(p, "SourceArn"), "SourceArn");
    const std::size_t max = MaxResults(p, 10).value_or(1);
    auto tasks = broker.ListRedriveTasks(source, max);
    if (!tasks) ThrowNoQueue(call);
    json results = json::array();
    for (const auto& t : *tasks) {
      json r = {{"Status", StatusName(t.status)},
                {"SourceArn", ArnOf(t.source)},
                {"ApproximateNumberOfMessagesMoved", t.moved},
                {"ApproximateNumberOfMessagesToMove", t.to_move},
                {"StartedTimestamp", t.started_ms}};
      if (t.status == broker::RedriveStatus::kRunning) r["TaskHandle"] = TaskHandle(t);
      if (!t.destination.empty()) r["DestinationArn"] = ArnOf(t.destination);
      if (t.max_per_second != broker::kDefaultRedriveRate) {
        r["MaxNumberOfMessagesPerSecond"] = t.max_per_second;
      }
      if (t.status == broker::RedriveStatus::kFailed) r["FailureReason"] = t.failure;
      results.push_back(std::move(r));
    }
    call->Ok({{"Results", std::move(results)}});
  }

  void CancelMessageMoveTask(const CallPtr& call) {
    const std::string handle = Required(call->params(), "TaskHandle");
    auto decoded = Base64Decode(handle);
    std::optional<std::uint64_t> id;
    if (decoded && decoded->size() > 17 && (*decoded)[16] == ':') {
      if (auto parsed = ParseTaskId(decoded->substr(0, 16))) id = *parsed;
    }
    if (!id) ThrowInvalid("Value for parameter TaskHandle is invalid.");
    broker.CancelRedrive(*id, [call](Result<broker::RedriveTask> task) {
      if (task) return call->Ok({{"ApproximateNumberOfMessagesMoved", task->moved}});
      if (task.error().code == ErrorCode::kNotFound) {
        return call->Fail({"ResourceNotFoundException", "Task does not exist."});
      }
      call->Fail(FromBroker(task.error()));
    });
  }

  void Dispatch(const CallPtr& call) {
    const std::string& a = call->request.action;
    if (a == "SendMessage") return SendMessage(call);
    if (a == "ReceiveMessage") return ReceiveMessage(call);
    if (a == "DeleteMessage") return DeleteMessage(call);
    if (a == "SendMessageBatch") return SendMessageBatch(call);
    if (a == "DeleteMessageBatch") return DeleteMessageBatch(call);
    if (a == "ChangeMessageVisibility") return ChangeMessageVisibility(call);
    if (a == "ChangeMessageVisibilityBatch") return ChangeMessageVisibilityBatch(call);
    if (a == "CreateQueue") return CreateQueue(call);
    if (a == "GetQueueUrl") return GetQueueUrl(call);
    if (a == "ListQueues") return ListQueues(call);
    if (a == "DeleteQueue") return DeleteQueue(call);
    if (a == "PurgeQueue") return PurgeQueue(call);
    if (a == "GetQueueAttributes") return GetQueueAttributes(call);
    if (a == "SetQueueAttributes") return SetQueueAttributes(call);
    if (a == "TagQueue") return TagQueue(call);
    if (a == "UntagQueue") return UntagQueue(call);
    if (a == "ListQueueTags") return ListQueueTags(call);
    if (a == "ListDeadLetterSourceQueues") return ListDeadLetterSourceQueues(call);
    if (a == "AddPermission") return AddPermission(call);
    if (a == "RemovePermission") return RemovePermission(call);
    if (a == "StartMessageMoveTask") return StartMessageMoveTask(call);
    if (a == "ListMessageMoveTasks") return ListMessageMoveTasks(call);
    if (a == "CancelMessageMoveTask") return CancelMessageMoveTask(call);
    Throw("InvalidAction", "The action " + a + " is not valid for this web service.");
  }
};

SqsApi::SqsApi(broker::Broker& broker, SqsOptions options)
    : broker_(broker), options_(std::move(options)) {
  if (options_.verify_signatures) {
    verifier_ = std::make_unique<SigV4Verifier>(options_.access_keys);
  }
  actions_ = std::make_unique<Actions>(Actions{*this, broker_, options_});
  for (std::string_view action : KnownActions()) {
    latency_.emplace(action, std::make_unique<Histogram>(Histogram::LatencyBounds()));
  }
  latency_.emplace(kUnknownAction, std::make_unique<Histogram>(Histogram::LatencyBounds()));
}

SqsApi::~SqsApi() = default;

void SqsApi::Record(std::string_view action, std::string_view error_code, double seconds) {
  // A request that failed before its action was known (or named one this API does not
  // serve) counts under one label, so that clients cannot grow the label set.
  auto it = latency_.find(action);
  if (it == latency_.end()) it = latency_.find(kUnknownAction);
  it->second->Observe(seconds);
  if (error_code.empty()) return;
  std::lock_guard lock(mu_);
  ++errors_[{it->first, std::string(error_code)}];
}

void SqsApi::RenderMetrics(MetricsWriter& out) const {
  out.Family("spool_sqs_request_duration_seconds", "histogram",
             "Time from an SQS API request to its answer (long polls included), by action.");
  for (const auto& [action, histogram] : latency_) {
    out.HistogramSamples("spool_sqs_request_duration_seconds", {{"action", action}}, *histogram);
  }
  out.Family("spool_sqs_errors_total", "counter",
             "SQS API requests answered with an error, by action and error code.");
  std::lock_guard lock(mu_);
  for (const auto& [key, count] : errors_) {
    out.Sample("spool_sqs_errors_total", {{"action", key.first}, {"code", key.second}},
               static_cast<double>(count));
  }
}

void SqsApi::Handle(HttpRequest http, HttpServer::Reply reply) {
  auto call = std::make_shared<Call>();
  call->api = this;
  call->request_id = NewRequestId();
  call->reply = std::move(reply);
  call->client_gone = std::move(http.client_gone);
  const std::string_view target = http.target;
  const auto question = target.find('?');
  call->path =
      FormDecode(target.substr(0, question)).value_or(std::string(target.substr(0, question)));
  const std::string_view query =
      question == std::string_view::npos ? std::string_view() : target.substr(question + 1);
  const std::string_view amz_target = http.Header("X-Amz-Target");
  const bool json_protocol =
      !amz_target.empty() || http.Header("Content-Type").starts_with("application/x-amz-json");
  call->request.protocol = json_protocol ? WireProtocol::kJson : WireProtocol::kQuery;

  if (verifier_) {
    SignedRequest signed_request{http.method, http.target, http.headers, http.body};
    if (auto error = verifier_->Verify(signed_request, broker_.clock().WallMillis())) {
      return call->Fail(*error);
    }
  }
  std::optional<SqsError> error;
  if (json_protocol) {
    error = ParseJson(amz_target, http.body, call->request);
  } else {
    std::string form(query);
    if (http.method == "POST" && !http.body.empty()) {
      if (!form.empty()) form.push_back('&');
      form.append(http.body);
    }
    error = ParseQuery(form, call->request);
  }
  if (error) return call->Fail(*error);
  Guard(call, [&] { actions_->Dispatch(call); });
}

}  // namespace spool::protocol::sqs
