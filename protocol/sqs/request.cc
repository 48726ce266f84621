#include "protocol/sqs/request.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <map>
#include <vector>

namespace spool::protocol::sqs {
namespace {

using nlohmann::json;

constexpr std::array<std::string_view, 23> kActions = {
    "AddPermission",
    "CancelMessageMoveTask",
    "ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch",
    "CreateQueue",
    "DeleteMessage",
    "DeleteMessageBatch",
    "DeleteQueue",
    "GetQueueAttributes",
    "GetQueueUrl",
    "ListDeadLetterSourceQueues",
    "ListMessageMoveTasks",
    "ListQueueTags",
    "ListQueues",
    "PurgeQueue",
    "ReceiveMessage",
    "RemovePermission",
    "SendMessage",
    "SendMessageBatch",
    "SetQueueAttributes",
    "StartMessageMoveTask",
    "TagQueue",
    "UntagQueue",
};

// Clients never nest deeper than a batch entry's attribute value (4 levels); the bound keeps
// hostile input from costing stack or memory out of proportion.
constexpr int kMaxJsonDepth = 16;
// More members than any action takes, even with 10 batch entries of 10 attributes each.
constexpr std::size_t kMaxQueryParameters = 2'000;
constexpr std::uint64_t kMaxIndex = 1'000;

SqsError Malformed(std::string message) {
  return {"MalformedQueryString", std::move(message)};
}

SqsError Invalid(std::string message) {
  return {"InvalidParameterValue", std::move(message)};
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    const std::size_t at = s.find(sep, start);
    out.push_back(
        s.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) break;
    start = at + 1;
  }
  return out;
}

std::optional<std::uint64_t> ParseIndex(std::string_view s) {
  std::uint64_t v = 0;
  if (s.empty() || s.size() > 4) return std::nullopt;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v == 0 || v > kMaxIndex) {
    return std::nullopt;
  }
  return v;
}

// Query lists and maps arrive as `Prefix.N[.Field...]`; they are gathered by index first,
// then ordered, since clients may send the indexes in any order.
struct IndexedGroups {
  std::map<std::uint64_t, std::map<std::string, std::string>> by_index;
};

// Which member a flattened Query prefix fills, and how.
enum class Shape {
  kScalarList,    // AttributeName.1=All -> "AttributeNames": ["All"]
  kNameValueMap,  // Attribute.1.Name / Attribute.1.Value -> "Attributes": {name: value}
  kKeyValueMap,   // Tag.1.Key / Tag.1.Value -> "Tags": {key: value}
  kAttributeMap,  // MessageAttribute.1.Name / .Value.DataType ... -> {name: {DataType...}}
  kEntryList,     // SendMessageBatchRequestEntry.1.Field -> "Entries": [{Field...}]
};

struct Member {
  std::string_view prefix;
  std::string_view name;
  Shape shape;
};

constexpr std::array<Member, 13> kMembers = {{
    {"AttributeName", "AttributeNames", Shape::kScalarList},
    {"MessageAttributeName", "MessageAttributeNames", Shape::kScalarList},
    {"MessageSystemAttributeName", "MessageSystemAttributeNames", Shape::kScalarList},
    {"TagKey", "TagKeys", Shape::kScalarList},
    {"AWSAccountId", "AWSAccountIds", Shape::kScalarList},
    {"ActionName", "Actions", Shape::kScalarList},
    {"Attribute", "Attributes", Shape::kNameValueMap},
    {"Tag", "Tags", Shape::kKeyValueMap},
    {"MessageAttribute", "MessageAttributes", Shape::kAttributeMap},
    {"MessageSystemAttribute", "MessageSystemAttributes", Shape::kAttributeMap},
    {"SendMessageBatchRequestEntry", "Entries", Shape::kEntryList},
    {"DeleteMessageBatchRequestEntry", "Entries", Shape::kEntryList},
    {"ChangeMessageVisibilityBatchRequestEntry", "Entries", Shape::kEntryList},
}};

const Member* FindMember(std::string_view prefix) {
  for (const Member& m : kMembers) {
    if (m.prefix == prefix) return &m;
  }
  return nullptr;
}

// Folds flat `key=value` pairs into `out`; recursive for batch entries, whose fields may
// themselves be flattened (`...Entry.1.MessageAttribute.2.Name`).
std::optional<SqsError> Fold(const std::vector<std::pair<std::string, std::string>>& pairs,
                             json& out, std::string_view action) {
  std::map<const Member*, IndexedGroups> groups;
  for (const auto& [key, value] : pairs) {
    const std::size_t dot = key.find('.');
    if (dot == std::string::npos) {
      // A bare list or map name with no value is how an empty list is sent.
      if (const Member* m = FindMember(key); m != nullptr && value.empty()) {
        groups[m];
        continue;
      }
      const Member* named = nullptr;
      for (const Member& m : kMembers) {
        if (m.name == key && value.empty()) named = &m;
      }
      if (named != nullptr) {
        groups[named];
        continue;
      }
      if (out.contains(key)) return Malformed("parameter " + key + " is given more than once");
      out[key] = value;
      continue;
    }
    const std::string_view prefix = std::string_view(key).substr(0, dot);
    const Member* member = FindMember(prefix);
    if (member == nullptr) {
      return Invalid("parameter " + key + " is not valid for this action");
    }
    std::string_view rest = std::string_view(key).substr(dot + 1);
    const std::size_t dot2 = rest.find('.');
    auto index = ParseIndex(rest.substr(0, dot2));
    if (!index) {
      return Invalid("parameter " + key + " has a bad index (1-" + std::to_string(kMaxIndex) +
                     " expected)");
    }
    const std::string field =
        dot2 == std::string_view::npos ? "" : std::string(rest.substr(dot2 + 1));
    auto& slot = groups[member].by_index[*index];
    if (!slot.emplace(field, value).second) {
      return Malformed("parameter " + key + " is given more than once");
    }
  }
  for (auto& [member, group] : groups) {
    // CreateQueue's tag map is lower-case in the API model; TagQueue's is not.
    std::string name(member->name);
    if (member->shape == Shape::kKeyValueMap && action == "CreateQueue") name = "tags";
    if (out.contains(name)) return Malformed("parameter " + name + " is given more than once");
    const std::string prefix(member->prefix);
    switch (member->shape) {
      case Shape::kScalarList: {
        json list = json::array();
        for (auto& [i, fields] : group.by_index) {
          if (fields.size() != 1 || !fields.contains("")) {
            return Invalid("parameter " + prefix + "." + std::to_string(i) + " is malformed");
          }
          list.push_back(fields[""]);
        }
        out[name] = std::move(list);
        break;
      }
      case Shape::kNameValueMap:
      case Shape::kKeyValueMap: {
        const bool named = member->shape == Shape::kNameValueMap;
        const std::string key_field = named ? "Name" : "Key";
        json map = json::object();
        for (auto& [i, fields] : group.by_index) {
          const std::string at = prefix + "." + std::to_string(i) + ".";
          for (const auto& [f, v] : fields) {
            if (f != key_field && f != "Value")
              return Invalid("parameter " + at + f + " is not valid");
          }
          if (!fields.contains(key_field)) {
            return {{"MissingParameter",
                     "The request must contain the parameter " + at + key_field + "."}};
          }
          if (!fields.contains("Value")) {
            return {
                {"MissingParameter", "The request must contain the parameter " + at + "Value."}};
          }
          if (map.contains(fields[key_field])) {
            return Invalid(std::string(named ? "Attribute" : "Tag key") + " " + fields[key_field] +
                           " is given more than once");
          }
          map[fields[key_field]] = fields["Value"];
        }
        out[name] = std::move(map);
        break;
      }
      case Shape::kAttributeMap: {
        json map = json::object();
        for (auto& [i, fields] : group.by_index) {
          const std::string at = prefix + "." + std::to_string(i) + ".";
          if (!fields.contains("Name")) {
            return {{"MissingParameter", "The request must contain the parameter " + at + "Name."}};
          }
          json value = json::object();
          for (const auto& [f, v] : fields) {
            if (f == "Name") continue;
            if (f == "Value.DataType" || f == "Value.StringValue" || f == "Value.BinaryValue") {
              value[f.substr(6)] = v;
            } else if (f.starts_with("Value.StringListValue.") ||
                       f.starts_with("Value.BinaryListValue.")) {
              value[f.substr(6, f.find('.', 6) - 6)] = json::array();  // reserved by AWS
            } else {
              return Invalid("parameter " + at + f + " is not valid");
            }
          }
          const std::string& attribute = fields["Name"];
          if (map.contains(attribute)) {
            return Invalid("Message attribute name '" + attribute + "' is used more than once.");
          }
          map[attribute] = std::move(value);
        }
        out[name] = std::move(map);
        break;
      }
      case Shape::kEntryList: {
        json list = json::array();
        for (auto& [i, fields] : group.by_index) {
          std::vector<std::pair<std::string, std::string>> inner(fields.begin(), fields.end());
          json entry = json::object();
          for (const auto& [f, v] : inner) {
            if (f.empty()) {
              return Invalid("parameter " + prefix + "." + std::to_string(i) + " is malformed");
            }
          }
          if (auto error = Fold(inner, entry, action)) return error;
          list.push_back(std::move(entry));
        }
        out[name] = std::move(list);
        break;
      }
    }
  }
  return std::nullopt;
}

int MaxDepth(std::string_view body) {
  int depth = 0, max = 0;
  bool in_string = false, escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      max = std::max(max, ++depth);
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return max;
}

}  // namespace

bool IsKnownAction(std::string_view action) {
  return std::find(kActions.begin(), kActions.end(), action) != kActions.end();
}

std::span<const std::string_view> KnownActions() {
  return kActions;
}

std::optional<std::string> FormDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      const int hi = HexValue(text[i + 1]);
      const int lo = HexValue(text[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::optional<SqsError> ParseQuery(std::string_view form, SqsRequest& out) {
  out.protocol = WireProtocol::kQuery;
  out.action.clear();
  out.params = json::object();
  std::vector<std::pair<std::string, std::string>> pairs;
  if (!form.empty()) {
    const auto parts = Split(form, '&');
    if (parts.size() > kMaxQueryParameters) {
      return Malformed("the request has more than " + std::to_string(kMaxQueryParameters) +
                       " parameters");
    }
    for (std::string_view part : parts) {
      if (part.empty()) continue;
      const std::size_t eq = part.find('=');
      auto key = FormDecode(part.substr(0, eq));
      auto value = FormDecode(eq == std::string_view::npos ? "" : part.substr(eq + 1));
      if (!key || !value) return Malformed("the query string has a malformed percent escape");
      if (key->empty()) continue;
      // Protocol and signing parameters that are not the action's input.
      if (*key == "Version" || key->starts_with("X-Amz-") || *key == "AWSAccessKeyId" ||
          *key == "Signature" || *key == "SignatureMethod" || *key == "SignatureVersion" ||
          *key == "Timestamp" || *key == "Expires" || *key == "SecurityToken") {
        continue;
      }
      if (*key == "Action") {
        if (!out.action.empty()) return Malformed("parameter Action is given more than once");
        out.action = std::move(*value);
        continue;
      }
      pairs.emplace_back(std::move(*key), std::move(*value));
    }
  }
  if (out.action.empty()) {
    return SqsError{"MissingAction", "The request must contain the parameter Action."};
  }
  if (!IsKnownAction(out.action)) {
    return SqsError{"InvalidAction",
                    "The action " + out.action + " is not valid for this web service."};
  }
  return Fold(pairs, out.params, out.action);
}

std::optional<SqsError> ParseJson(std::string_view target, std::string_view body, SqsRequest& out) {
  out.protocol = WireProtocol::kJson;
  out.action.clear();
  out.params = json::object();
  constexpr std::string_view kPrefix = "AmazonSQS.";
  if (!target.starts_with(kPrefix)) {
    return SqsError{"InvalidAction", "X-Amz-Target must name an AmazonSQS operation"};
  }
  out.action = target.substr(kPrefix.size());
  if (!IsKnownAction(out.action)) {
    return SqsError{"InvalidAction",
                    "The action " + out.action + " is not valid for this web service."};
  }
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return std::nullopt;
  if (MaxDepth(body) > kMaxJsonDepth) {
    return Invalid("the request body nests deeper than " + std::to_string(kMaxJsonDepth) +
                   " levels");
  }
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return Invalid("the request body is not valid JSON");
  if (!parsed.is_object()) return Invalid("the request body must be a JSON object");
  out.params = std::move(parsed);
  return std::nullopt;
}

}  // namespace spool::protocol::sqs
