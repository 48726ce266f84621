#pragma once

// The SQS-compatible API: the HTTP server's API handler. Parses a request in either wire
// protocol, checks its signature when configured to, runs the action against the broker and
// answers in the request's protocol. An SQS queue is a Spool queue: names, attributes,
// messages and receipt handles are the broker's (docs/sqs-compatibility.md lists every
// action, attribute and difference).
//
// Actions never block the I/O thread: broker calls answer through callbacks, on broker
// threads, and a long poll parks in the broker.
//
// Thread-safety: Handle and RenderMetrics may be called from any thread; the few bits of
// state kept here (the times of recent deletes and purges, the error counts) are behind a
// mutex.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "broker/broker.h"
#include "common/metrics.h"
#include "protocol/http_server.h"

namespace spool::protocol::sqs {

class SigV4Verifier;
struct Actions;

struct SqsOptions {
  // Queue URLs are `<advertised_url>/<account_id>/<queue name>`; no trailing slash.
  std::string advertised_url = "http://127.0.0.1:9324";
  std::string account_id = "000000000000";
  std::string region = "us-east-1";
  // With keys, every request must carry a valid AWS Signature V4 by one of them
  // (access key id -> secret); without, signatures are not checked.
  std::map<std::string, std::string> access_keys;
  bool verify_signatures = false;
  // AWS allows one purge per queue per minute, and no re-creating a deleted queue's name for
  // a minute; 0 turns either rule off.
  std::int64_t purge_interval_ms = 60'000;
  std::int64_t recreate_wait_ms = 60'000;
};

class SqsApi {
 public:
  SqsApi(broker::Broker& broker, SqsOptions options);
  ~SqsApi();
  SqsApi(const SqsApi&) = delete;
  SqsApi& operator=(const SqsApi&) = delete;

  void Handle(HttpRequest request, HttpServer::Reply reply);

  const SqsOptions& options() const { return options_; }

  // spool_sqs_request_duration_seconds{action} (time to the answer, long polls included) and
  // spool_sqs_errors_total{action,code}. Requests without a known action count as
  // action="unknown".
  void RenderMetrics(MetricsWriter& out) const;

  struct Call;  // one request being answered (api.cc)

 private:
  friend struct Actions;

  // Counts one answered request; `error_code` is empty for a success.
  void Record(std::string_view action, std::string_view error_code, double seconds);

  broker::Broker& broker_;
  const SqsOptions options_;
  std::unique_ptr<SigV4Verifier> verifier_;
  std::unique_ptr<Actions> actions_;  // what broker callbacks call back into

  // A FIFO receive's answer, kept for retries that carry its ReceiveRequestAttemptId.
  struct Attempt {
    std::int64_t expires_ms = 0;
    nlohmann::json result;
    std::vector<broker::QueueReceipt> receipts;
    std::size_t bytes = 0;  // about what `result` holds
  };
  // Drops a kept answer (mu_ held).
  void ForgetAttempt(const std::string& key) {
    if (auto it = attempts_.find(key); it != attempts_.end()) {
      attempt_bytes_ -= it->second.bytes;
      attempts_.erase(it);
    }
  }

  // Filled in the constructor and never changed, so lookups need no lock.
  std::map<std::string, std::unique_ptr<Histogram>, std::less<>> latency_;

  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::uint64_t> errors_;  // (action, code)
  std::map<std::string, std::int64_t> deleted_ms_;  // queue name -> when it was deleted
  std::map<std::string, std::int64_t> purged_ms_;   // queue name -> when it was last purged
  std::map<std::string, Attempt> attempts_;         // "<queue>\n<attempt id>" -> its answer
  std::size_t attempt_bytes_ = 0;
};

}  // namespace spool::protocol::sqs
