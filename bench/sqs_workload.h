#pragma once

// spool-bench's SQS workload: the AWS JSON 1.0 protocol over keep-alive HTTP/1.1, as the
// AWS SDKs speak it, against spoold's SQS-compatible API.

#include <cstddef>
#include <string>

namespace spool::bench {

struct SqsWorkloadOptions {
  std::string endpoint = "127.0.0.1:9324";  // host:port of spoold's HTTP listener
  std::string queue = "bench-sqs";          // the run's queue is this plus "-<pid>"
  std::size_t connections = 16;
  std::size_t message_size = 256;
  double duration_s = 10;
};

// Phase 1: every connection sends SendMessageBatch of 10 for the duration. Phase 2: every
// connection receives 10 (long poll) and deletes them with one DeleteMessageBatch until the
// queue is drained. Prints both rates; returns a process exit code.
int RunSqsWorkload(const SqsWorkloadOptions& options);

}  // namespace spool::bench
