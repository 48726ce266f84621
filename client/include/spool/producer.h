#pragma once

// spool::Producer: asynchronous, batching publisher over one PublishStream.
//
// Send() puts a record into the open batch of its (topic, partition) and returns at once. A
// batch is sent when it is full (max_batch_bytes / max_batch_records), when it has waited
// `linger`, or on Flush(). Up to max_in_flight batches are outstanding on the stream; each
// record's Delivery (partition and offset, or an error) arrives once the server has made it
// durable.
//
// Retries: a batch that fails with a transient status (the server unreachable, restarting or
// shutting down) is sent again, with backoff, until delivery_timeout. The server answers a
// stream's batches of one partition in order and fails them as a suffix, so the producer
// stops sending when a batch fails, waits for every outstanding answer, and resends the
// failed batches in their original order: a partition's records are never reordered. A batch
// whose answer was lost with the connection may be written twice (at-least-once).

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "spool/client.h"

namespace spool {

enum class BufferFullPolicy {
  kBlock,  // Send waits up to max_block for room, then fails with RESOURCE_EXHAUSTED
  kFail,   // Send fails with RESOURCE_EXHAUSTED at once
};

struct ProducerOptions {
  std::chrono::milliseconds linger{5};
  std::size_t max_batch_bytes = 1 << 20;
  std::size_t max_batch_records = 10'000;  // 0 counts as 1
  // Batches written to the stream and not yet answered, over all partitions; 0 counts as 1.
  std::size_t max_in_flight = 16;
  // Bytes of records accepted by Send and not yet delivered (or failed).
  std::size_t buffer_bytes = 64 << 20;
  BufferFullPolicy when_full = BufferFullPolicy::kBlock;
  std::chrono::milliseconds max_block{60'000};
  // From Send until a record's batch stops being retried. A batch written to the stream is
  // waited for until it is answered or the stream breaks (a Close bounds that wait).
  std::chrono::milliseconds delivery_timeout{120'000};
  std::chrono::milliseconds retry_backoff{100};
  std::chrono::milliseconds max_retry_backoff{1'000};
};

struct ProducerRecord {
  std::string topic;
  std::optional<std::uint32_t> partition;  // else by key hash, else spread by the server
  std::optional<std::string> key;
  std::string value;
  std::vector<std::pair<std::string, std::string>> headers;
  std::int64_t timestamp_ms = 0;  // producer timestamp; 0: none
};

struct Delivery {
  grpc::Status status;
  std::string topic;
  std::uint32_t partition = 0;
  std::uint64_t offset = 0;

  bool ok() const { return status.ok(); }
};

using DeliveryCallback = std::function<void(const Delivery&)>;

class Producer {
 public:
  explicit Producer(const Client& client, ProducerOptions options = {});
  // Close() with a 30 s bound.
  ~Producer();

  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;

  // The future becomes ready when the record is durable or has failed. A record refused at
  // once (buffer full, producer closed, too large for the buffer) is ready at once.
  std::future<Delivery> Send(ProducerRecord record);

  // `done` runs exactly once, on a producer thread or (when refused at once) on the caller's:
  // keep it short and do not call Flush or Close from it.
  void Send(ProducerRecord record, DeliveryCallback done);

  // Sends every open batch now and waits until every record sent before the call has its
  // Delivery. False if `timeout` passed first.
  bool Flush(std::chrono::milliseconds timeout = std::chrono::hours(24));

  // Flushes for up to `timeout`, fails what is left with CANCELLED, and stops. Later sends
  // fail with FAILED_PRECONDITION. Idempotent. A stream the server has not ended by then is
  // cancelled, so Close returns within about `timeout` (it still waits for a connection
  // attempt in progress, up to max_retry_backoff).
  void Close(std::chrono::milliseconds timeout = std::chrono::seconds(30));

  struct Stats {
    std::uint64_t records_sent = 0;  // delivered successfully
    std::uint64_t records_failed = 0;
    std::uint64_t batches_sent = 0;  // stream writes, retries included
    std::uint64_t batches_retried = 0;
    std::uint64_t streams_opened = 0;
    std::size_t buffered_bytes = 0;
  };
  Stats stats() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace spool
