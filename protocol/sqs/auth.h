#pragma once

// AWS Signature Version 4 verification for the SQS API (`sqs_auth: sigv4`).
//
// The request's signature is recomputed from its method, path, query string, the headers it
// names in SignedHeaders and the SHA-256 of the body bytes as received, with the secret of
// the access key named in its Credential, and compared in constant time.
//
// Thread-safety: pure functions; a SigV4Verifier is immutable after construction.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/sqs/request.h"

namespace spool::protocol::sqs {

// What verification needs of an HTTP request. Header names are matched case-insensitively.
struct SignedRequest {
  std::string_view method;  // "POST"
  std::string_view target;  // path and query string as sent: "/", "/000000000000/q?Action=..."
  std::vector<std::pair<std::string, std::string>> headers;
  std::string_view body;
};

class SigV4Verifier {
 public:
  // access key id -> secret access key.
  explicit SigV4Verifier(std::map<std::string, std::string> keys) : keys_(std::move(keys)) {}

  // nullopt when the request carries a valid signature by a known key, made within 15
  // minutes of `now_ms` (wall clock). Otherwise the AWS error: MissingAuthenticationToken
  // (no Authorization header), IncompleteSignature (malformed header), InvalidClientTokenId
  // (unknown access key), SignatureDoesNotMatch (wrong secret or altered request),
  // RequestExpired (X-Amz-Date too far off). All of them are HTTP 403 except
  // IncompleteSignature and RequestExpired (400).
  std::optional<SqsError> Verify(const SignedRequest& request, std::int64_t now_ms) const;

 private:
  std::map<std::string, std::string> keys_;
};

// Lower-case hex of SHA-256 / HMAC-SHA256 (exposed for tests and the benchmark's signer).
std::string Sha256Hex(std::string_view data);
std::string HmacSha256(std::string_view key, std::string_view data);  // raw bytes

// Signs a request as an AWS SDK would: the Authorization header value signing every header in
// `headers`, which must include host and x-amz-date (equal to `amz_date`). Used by tests and
// spool-bench.
std::string SignV4(const SignedRequest& request, std::string_view access_key,
                   std::string_view secret, std::string_view region, std::string_view amz_date);

// SignV4 for another service name; AWS's published SigV4 test vectors are scoped to "service".
std::string SignV4ForService(const SignedRequest& request, std::string_view access_key,
                             std::string_view secret, std::string_view region,
                             std::string_view service, std::string_view amz_date);

}  // namespace spool::protocol::sqs
