// libFuzzer target for the SQS request parsers (run by run.sh).
//
// The first input byte modulo 3 picks the parser ('0', '1' and '2' in the seed corpus):
// ParseQuery on the rest; ParseJson with the rest split at its first newline into X-Amz-Target
// and body; or FormDecode on the rest. Besides the memory and UB errors the sanitizers catch,
// each call checks properties that hold for any input.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "protocol/sqs/request.h"

namespace {

using nlohmann::json;
using spool::protocol::sqs::FormDecode;
using spool::protocol::sqs::IsKnownAction;
using spool::protocol::sqs::ParseJson;
using spool::protocol::sqs::ParseQuery;
using spool::protocol::sqs::SqsError;
using spool::protocol::sqs::SqsRequest;
using spool::protocol::sqs::WireProtocol;

void Check(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}

bool OneOf(const std::string& code, std::initializer_list<std::string_view> codes) {
  for (std::string_view c : codes) {
    if (code == c) return true;
  }
  return false;
}

// Query input is flattened text, so whatever it folds into has only strings at the leaves.
bool OnlyStringLeaves(const json& value) {
  if (value.is_string()) return true;
  if (!value.is_object() && !value.is_array()) return false;
  for (const json& child : value) {
    if (!OnlyStringLeaves(child)) return false;
  }
  return true;
}

// Handlers may serialize what they were given, so it must always be serializable (invalid
// UTF-8 in a string is replaced rather than thrown on, as the response writers do).
void Serialize(const json& params) {
  (void)params.dump(-1, ' ', false, json::error_handler_t::replace);
}

void FuzzQuery(std::string_view form) {
  SqsRequest out;
  const std::optional<SqsError> error = ParseQuery(form, out);
  Check(out.protocol == WireProtocol::kQuery, "ParseQuery sets the Query protocol");
  if (error) {
    Check(!error->message.empty(), "ParseQuery errors have a message");
    Check(OneOf(error->code, {"MissingAction", "MalformedQueryString", "InvalidAction",
                              "InvalidParameterValue", "MissingParameter"}),
          "ParseQuery returns only its documented error codes");
    return;
  }
  Check(IsKnownAction(out.action), "ParseQuery succeeds only for a known action");
  Check(out.params.is_object(), "ParseQuery params are an object");
  Check(OnlyStringLeaves(out.params), "ParseQuery params hold only strings at the leaves");
  Check(!out.params.contains("Action") && !out.params.contains("Version"),
        "Action and Version are not action input");
  Serialize(out.params);

  SqsRequest again;
  Check(!ParseQuery(form, again) && again.action == out.action && again.params == out.params,
        "ParseQuery is deterministic");
}

void FuzzJson(std::string_view input) {
  const std::size_t newline = input.find('\n');
  const std::string_view target = input.substr(0, newline);
  const std::string_view body =
      newline == std::string_view::npos ? std::string_view() : input.substr(newline + 1);
  SqsRequest out;
  const std::optional<SqsError> error = ParseJson(target, body, out);
  Check(out.protocol == WireProtocol::kJson, "ParseJson sets the JSON protocol");
  if (error) {
    Check(!error->message.empty(), "ParseJson errors have a message");
    Check(OneOf(error->code, {"InvalidAction", "InvalidParameterValue"}),
          "ParseJson returns only its documented error codes");
    return;
  }
  Check(IsKnownAction(out.action), "ParseJson succeeds only for a known action");
  Check("AmazonSQS." + out.action == target, "the action is the target's operation");
  Check(out.params.is_object(), "ParseJson params are an object");
  Serialize(out.params);
}

void FuzzFormDecode(std::string_view text) {
  const std::optional<std::string> decoded = FormDecode(text);
  if (!decoded) {
    Check(text.find('%') != std::string_view::npos, "FormDecode fails only on a '%' escape");
    return;
  }
  Check(decoded->size() <= text.size(), "FormDecode never grows its input");
  if (text.find_first_of("%+") == std::string_view::npos) {
    Check(*decoded == text, "FormDecode leaves text without escapes unchanged");
  }
  // Escaping every byte and decoding again is the identity.
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string encoded;
  for (unsigned char c : *decoded) {
    encoded.push_back('%');
    encoded.push_back(kDigits[c >> 4]);
    encoded.push_back(kDigits[c & 0xf]);
  }
  const std::optional<std::string> again = FormDecode(encoded);
  Check(again && *again == *decoded, "FormDecode inverts percent-encoding");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      FuzzQuery(rest);
      break;
    case 1:
      FuzzJson(rest);
      break;
    default:
      FuzzFormDecode(rest);
      break;
  }
  return 0;
}
