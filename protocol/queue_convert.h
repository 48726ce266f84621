#pragma once

// Conversions between the queue messages of spool.v1 (queue.proto) and the broker's queue
// types: message ids, receipt handles, attributes, received messages and redrive tasks.
// Shared by the unary QueueService calls and StreamingReceive.
//
// Thread-safety: pure functions, except IdsOf, which reads the broker's tables (thread-safe).

#include <cstdint>
#include <string>

#include "broker/broker.h"
#include "common/error.h"
#include "spool/v1/queue.pb.h"

namespace spool::protocol {

inline constexpr std::int64_t kMsPerSecond = 1000;

// A message id: the record's place in its topic, shaped like a UUID (as SQS clients expect).
std::string MessageId(std::uint32_t topic_id, std::uint32_t partition, std::uint64_t offset);
// A received record's message id: that of the message as first sent when a dead-letter move
// recorded it (broker::kDeadLetterOriginHeader), else its own place.
std::string MessageIdOf(const storage::Record& record, std::uint32_t topic_id,
                        std::uint32_t partition, std::uint64_t offset);

// Receipt handles name one receive of one message of one queue (subscription).
std::string EncodeReceipt(std::uint32_t subscription, const broker::QueueReceipt& r);
// InvalidArgument for a malformed handle or one of another queue.
Result<broker::QueueReceipt> DecodeReceipt(const std::string& handle, std::uint32_t subscription);

// The fields set in `in` replace those of `base`.
Result<broker::QueueAttributes> AttributesFromProto(const v1::QueueAttributes& in,
                                                    broker::QueueAttributes base);
void QueueToProto(const broker::QueueInfo& in, v1::Queue* out);
// Moves the body, key and headers out of `in`: a receive copies nothing it has read.
void MessageToProto(broker::QueueMessage&& in, std::uint32_t topic_id, std::uint32_t subscription,
                    bool fifo, v1::QueueMessage* out);

// Redrive task ids on the wire: the broker's number as 16 hex digits.
std::string TaskId(std::uint64_t id);
Result<std::uint64_t> ParseTaskId(const std::string& id);
void RedriveTaskToProto(const broker::RedriveTask& in, v1::RedriveTask* out);

// What handles and message ids of a queue need.
struct QueueIds {
  std::uint32_t subscription = 0;
  std::uint32_t topic_id = 0;
  bool fifo = false;
  std::int64_t receive_wait_ms = 0;
};
// InvalidArgument for a bad name, NotFound for no such queue.
Result<QueueIds> IdsOf(const broker::Broker& broker, const std::string& queue);

}  // namespace spool::protocol
