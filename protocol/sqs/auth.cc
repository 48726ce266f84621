#include "protocol/sqs/auth.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "protocol/sqs/wire.h"

namespace spool::protocol::sqs {
namespace {

constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";
constexpr std::string_view kService = "sqs";
constexpr std::string_view kTerminator = "aws4_request";
constexpr std::int64_t kMaxSkewMs = std::int64_t{15} * 60 * 1000;

constexpr std::string_view kMismatchMessage =
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details.";

SqsError Incomplete(std::string message) {
  return {"IncompleteSignature", std::move(message)};
}
SqsError Mismatch(std::string message) {
  return {"SignatureDoesNotMatch", std::move(message)};
}

char ToLower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), ToLower);
  return out;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return ToLower(x) == ToLower(y);
         });
}

bool IsSpace(char c) {
  return c == ' ' || c == '\t';
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back()))
    s.remove_suffix(1);
  return s;
}

// Trimmed, with inner runs of whitespace collapsed to one space, as the SDKs canonicalize it.
std::string CanonicalHeaderValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  bool in_space = false;
  for (char c : Trim(value)) {
    if (IsSpace(c)) {
      in_space = true;
      continue;
    }
    if (in_space) out.push_back(' ');
    in_space = false;
    out.push_back(c);
  }
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 3986 decoding: unlike form decoding, '+' stays a plus. A '%' that starts no valid escape
// is kept as is, so the client's and our canonical forms can still agree on it.
std::string UriDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 && HexValue(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string UriEncode(std::string_view s) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~';
    if (unreserved) {
      out.push_back(c);
    } else {
      const auto byte = static_cast<unsigned char>(c);
      out.push_back('%');
      out.push_back(kDigits[byte >> 4]);
      out.push_back(kDigits[byte & 0xf]);
    }
  }
  return out;
}

// Clients differ in which characters they escape in the URL, but all sign the same canonical
// form, so it is rebuilt from the decoded parameters rather than taken from the raw query.
std::string CanonicalQuery(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> params;
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const std::size_t eq = pair.find('=');
    const std::string_view name = pair.substr(0, eq);
    const std::string_view value =
        eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    params.emplace_back(UriEncode(UriDecode(name)), UriEncode(UriDecode(value)));
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [name, value] : params) {
    if (!out.empty()) out.push_back('&');
    out.append(name).append("=").append(value);
  }
  return out;
}

std::vector<std::string_view> Split(std::string_view s, char separator) {
  std::vector<std::string_view> parts;
  while (true) {
    const std::size_t pos = s.find(separator);
    parts.push_back(s.substr(0, pos));
    if (pos == std::string_view::npos) return parts;
    s.remove_prefix(pos + 1);
  }
}

const std::string* FindHeader(const SignedRequest& request, std::string_view name) {
  for (const auto& [key, value] : request.headers) {
    if (EqualsIgnoreCase(key, name)) return &value;
  }
  return nullptr;
}

// `signed_headers` are lower-case names in the order the client listed them. A header sent
// more than once is signed as its values joined by commas, in the order received.
std::string CanonicalRequest(const SignedRequest& request,
                             const std::vector<std::string_view>& signed_headers,
                             std::string_view signed_header_list) {
  const std::size_t question = request.target.find('?');
  std::string_view path = request.target.substr(0, question);
  const std::string_view query =
      question == std::string_view::npos ? std::string_view() : request.target.substr(question + 1);
  if (path.empty()) path = "/";

  std::string out;
  out.append(request.method).append("\n");
  out.append(path).append("\n");
  out.append(CanonicalQuery(query)).append("\n");
  for (std::string_view name : signed_headers) {
    std::string joined;
    bool first = true;
    for (const auto& [key, value] : request.headers) {
      if (!EqualsIgnoreCase(key, name)) continue;
      if (!first) joined.push_back(',');
      first = false;
      joined.append(CanonicalHeaderValue(value));
    }
    out.append(name).append(":").append(joined).append("\n");
  }
  out.append("\n").append(signed_header_list).append("\n");
  out.append(Sha256Hex(request.body));
  return out;
}

std::string Signature(std::string_view canonical_request, std::string_view secret,
                      std::string_view amz_date, std::string_view date, std::string_view region,
                      std::string_view service) {
  std::string string_to_sign(kAlgorithm);
  string_to_sign.append("\n").append(amz_date).append("\n");
  string_to_sign.append(date).append("/").append(region).append("/").append(service);
  string_to_sign.append("/").append(kTerminator).append("\n");
  string_to_sign.append(Sha256Hex(canonical_request));

  std::string key = HmacSha256("AWS4" + std::string(secret), date);
  key = HmacSha256(key, region);
  key = HmacSha256(key, service);
  key = HmacSha256(key, kTerminator);
  const std::string mac = HmacSha256(key, string_to_sign);
  return LowerHex(mac);
}

// X-Amz-Date's ISO 8601 basic format, `20150830T123600Z`, as milliseconds since the epoch.
std::optional<std::int64_t> ParseAmzDate(std::string_view text) {
  if (text.size() != 16 || text[8] != 'T' || text[15] != 'Z') return std::nullopt;
  auto number = [&](std::size_t pos, std::size_t len) -> int {
    int n = 0;
    for (std::size_t i = pos; i < pos + len; ++i) {
      if (text[i] < '0' || text[i] > '9') return -1;
      n = n * 10 + (text[i] - '0');
    }
    return n;
  };
  const int year = number(0, 4);
  const int month = number(4, 2);
  const int day = number(6, 2);
  const int hour = number(9, 2);
  const int minute = number(11, 2);
  const int second = number(13, 2);
  if (year < 0 || month < 0 || day < 0 || hour < 0 || hour > 23 || minute < 0 || minute > 59 ||
      second < 0 || second > 60) {
    return std::nullopt;
  }
  const std::chrono::year_month_day ymd{std::chrono::year(year),
                                        std::chrono::month(static_cast<unsigned>(month)),
                                        std::chrono::day(static_cast<unsigned>(day))};
  if (!ymd.ok()) return std::nullopt;
  const auto time = std::chrono::sys_days{ymd} + std::chrono::hours(hour) +
                    std::chrono::minutes(minute) + std::chrono::seconds(second);
  return std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch()).count();
}

std::string FormatAmzDate(std::int64_t ms) {
  namespace chrono = std::chrono;
  const chrono::sys_time<chrono::milliseconds> time{chrono::milliseconds(ms)};
  const chrono::sys_days days = chrono::floor<chrono::days>(time);
  const chrono::year_month_day ymd(days);
  const chrono::hh_mm_ss<chrono::seconds> hms(chrono::floor<chrono::seconds>(time - days));
  std::array<char, 32> buffer{};
  std::snprintf(buffer.data(), buffer.size(), "%04d%02u%02uT%02d%02d%02dZ",
                static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                static_cast<unsigned>(ymd.day()), static_cast<int>(hms.hours().count()),
                static_cast<int>(hms.minutes().count()), static_cast<int>(hms.seconds().count()));
  return std::string(buffer.data());
}

struct Authorization {
  std::string_view access_key;
  std::string_view date;
  std::string_view region;
  std::string_view service;
  std::string_view signed_header_list;
  std::vector<std::string_view> signed_headers;
  std::string_view signature;
};

// `AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/sqs/aws4_request,
// SignedHeaders=host;x-amz-date, Signature=<hex>`; components in any order.
std::optional<SqsError> ParseAuthorization(std::string_view header, Authorization& out) {
  header = Trim(header);
  const std::size_t space = header.find(' ');
  if (header.substr(0, space) != kAlgorithm) {
    return Incomplete("Unsupported AWS 'algorithm': '" + std::string(header.substr(0, space)) +
                      "'. Only '" + std::string(kAlgorithm) + "' is supported.");
  }
  std::string_view credential;
  const std::string_view rest = space == std::string_view::npos ? "" : header.substr(space + 1);
  for (std::string_view component : Split(rest, ',')) {
    component = Trim(component);
    if (component.empty()) continue;
    const std::size_t eq = component.find('=');
    if (eq == std::string_view::npos) {
      return Incomplete("Authorization header component '" + std::string(component) +
                        "' is not a key=value pair.");
    }
    const std::string_view key = Trim(component.substr(0, eq));
    const std::string_view value = Trim(component.substr(eq + 1));
    if (key == "Credential") credential = value;
    if (key == "SignedHeaders") out.signed_header_list = value;
    if (key == "Signature") out.signature = value;
  }
  std::string missing;
  if (credential.empty()) missing += "Authorization header requires 'Credential' parameter. ";
  if (out.signed_header_list.empty()) {
    missing += "Authorization header requires 'SignedHeaders' parameter. ";
  }
  if (out.signature.empty()) missing += "Authorization header requires 'Signature' parameter. ";
  if (!missing.empty()) {
    return Incomplete(missing + "Authorization=" + std::string(header));
  }

  const std::vector<std::string_view> scope = Split(credential, '/');
  if (scope.size() != 5 || scope[0].empty() || scope[1].size() != 8 || scope[2].empty() ||
      scope[4] != kTerminator) {
    return Incomplete("Credential should be of the form <access key>/<yyyymmdd>/<region>/" +
                      std::string(kService) + "/" + std::string(kTerminator) + ", got '" +
                      std::string(credential) + "'.");
  }
  out.access_key = scope[0];
  out.date = scope[1];
  out.region = scope[2];
  out.service = scope[3];

  out.signed_headers = Split(out.signed_header_list, ';');
  bool signs_host = false;
  for (std::string_view name : out.signed_headers) {
    if (name.empty() || Lower(name) != name) {
      return Incomplete(
          "SignedHeaders must be a ';'-separated list of lower-case header names, "
          "got '" +
          std::string(out.signed_header_list) + "'.");
    }
    signs_host = signs_host || name == "host";
  }
  if (!signs_host) {
    return Incomplete("'Host' must be a 'SignedHeader' in the AWS Authorization.");
  }
  return std::nullopt;
}

}  // namespace

std::string Sha256Hex(std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  // Cannot fail with a built-in digest and a buffer of EVP_MAX_MD_SIZE.
  EVP_Digest(data.data(), data.size(), digest.data(), &size, EVP_sha256(), nullptr);
  return LowerHex({reinterpret_cast<const char*>(digest.data()), size});
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int size = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac.data(), &size);
  return std::string(reinterpret_cast<const char*>(mac.data()), size);
}

std::string SignV4(const SignedRequest& request, std::string_view access_key,
                   std::string_view secret, std::string_view region, std::string_view amz_date) {
  return SignV4ForService(request, access_key, secret, region, kService, amz_date);
}

std::string SignV4ForService(const SignedRequest& request, std::string_view access_key,
                             std::string_view secret, std::string_view region,
                             std::string_view service, std::string_view amz_date) {
  std::vector<std::string> names;
  for (const auto& header : request.headers)
    names.push_back(Lower(header.first));
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  std::string signed_header_list;
  std::vector<std::string_view> signed_headers;
  for (const std::string& name : names) {
    if (!signed_header_list.empty()) signed_header_list.push_back(';');
    signed_header_list.append(name);
    signed_headers.push_back(name);
  }
  const std::string_view date = amz_date.substr(0, 8);
  const std::string signature =
      Signature(CanonicalRequest(request, signed_headers, signed_header_list), secret, amz_date,
                date, region, service);
  std::string out(kAlgorithm);
  out.append(" Credential=").append(access_key).append("/").append(date).append("/");
  out.append(region).append("/").append(service).append("/").append(kTerminator);
  out.append(", SignedHeaders=").append(signed_header_list);
  out.append(", Signature=").append(signature);
  return out;
}

std::optional<SqsError> SigV4Verifier::Verify(const SignedRequest& request,
                                              std::int64_t now_ms) const {
  const std::string* header = FindHeader(request, "authorization");
  if (header == nullptr) {
    return SqsError{"MissingAuthenticationToken", "Request is missing Authentication Token"};
  }
  Authorization auth;
  if (auto error = ParseAuthorization(*header, auth)) return error;
  // The headers that choose the protocol and the action must be signed, or a captured
  // request could be replayed as another action (SDKs sign both).
  for (std::string_view name : {"x-amz-target", "content-type"}) {
    if (FindHeader(request, name) != nullptr &&
        std::find(auth.signed_headers.begin(), auth.signed_headers.end(), name) ==
            auth.signed_headers.end()) {
      return Incomplete("'" + std::string(name) +
                        "' must be a 'SignedHeader' in the AWS "
                        "Authorization.");
    }
  }

  const std::string* amz_date = FindHeader(request, "x-amz-date");
  if (amz_date == nullptr) {
    return Incomplete("Authorization header requires existence of a 'X-Amz-Date' header.");
  }
  const std::optional<std::int64_t> signed_at = ParseAmzDate(*amz_date);
  if (!signed_at) {
    return Incomplete("X-Amz-Date must be in ISO 8601 basic format (yyyyMMdd'T'HHmmss'Z'), got '" +
                      *amz_date + "'.");
  }
  if (auth.service != kService) {
    return Mismatch("Credential should be scoped to correct service: '" + std::string(kService) +
                    "'. ");
  }
  if (auth.date != amz_date->substr(0, 8)) {
    return Mismatch(
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
        "date from HTTP: '" +
        std::string(auth.date) + "' != '" + amz_date->substr(0, 8) + "', from '" + *amz_date +
        "'.");
  }
  if (*signed_at < now_ms - kMaxSkewMs) {
    return SqsError{"RequestExpired", "Signature expired: " + *amz_date + " is now earlier than " +
                                          FormatAmzDate(now_ms - kMaxSkewMs) + " (" +
                                          FormatAmzDate(now_ms) + " - 15 min.)"};
  }
  if (*signed_at > now_ms + kMaxSkewMs) {
    return SqsError{"RequestExpired", "Signature not yet current: " + *amz_date +
                                          " is still later than " +
                                          FormatAmzDate(now_ms + kMaxSkewMs) + " (" +
                                          FormatAmzDate(now_ms) + " + 15 min.)"};
  }

  const auto key = keys_.find(std::string(auth.access_key));
  if (key == keys_.end()) {
    return SqsError{"InvalidClientTokenId",
                    "The security token included in the request is invalid."};
  }

  const std::string expected =
      Signature(CanonicalRequest(request, auth.signed_headers, auth.signed_header_list),
                key->second, *amz_date, auth.date, auth.region, auth.service);
  if (expected.size() != auth.signature.size() ||
      CRYPTO_memcmp(expected.data(), auth.signature.data(), expected.size()) != 0) {
    return Mismatch(std::string(kMismatchMessage));
  }
  return std::nullopt;
}

}  // namespace spool::protocol::sqs
