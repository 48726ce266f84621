#pragma once

// A queue's attributes (issue limits follow SQS), their validation and their stored form.
//
// A queue is a queue subscription on a topic: the topic holds the messages, the subscription
// (id below) keys the queue's progress in `queue_state`.
//
// Thread-safety: plain values and pure functions.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace spool::broker {

inline constexpr std::size_t kMaxQueueNameLength = 80;
inline constexpr std::int64_t kMaxVisibilityTimeoutMs = 12LL * 3600 * 1000;
inline constexpr std::int64_t kMaxDeliveryDelayMs = 900'000;
inline constexpr std::int64_t kMinQueueRetentionMs = 60'000;
inline constexpr std::int64_t kMaxQueueRetentionMs = 14LL * 24 * 3600 * 1000;
inline constexpr std::int64_t kMaxQueueMessageBytes = 1 << 20;
inline constexpr std::int64_t kMaxReceiveWaitMs = 20'000;
inline constexpr std::uint32_t kMaxMaxReceiveCount = 1'000;
inline constexpr std::uint32_t kMaxInFlightLimit = 120'000;
inline constexpr std::size_t kMaxRedriveSourceQueues = 10;

struct RedrivePolicy {
  std::string dead_letter_queue;
  std::uint32_t max_receive_count = 0;  // 1-1,000
  bool operator==(const RedrivePolicy&) const = default;
};

enum class RedrivePermission : std::uint8_t { kAllowAll = 0, kDenyAll = 1, kByQueue = 2 };

struct RedriveAllowPolicy {
  RedrivePermission permission = RedrivePermission::kAllowAll;
  std::vector<std::string> source_queues;  // kByQueue only, 1-10 names
  bool operator==(const RedriveAllowPolicy&) const = default;
};

struct QueueAttributes {
  std::int64_t visibility_timeout_ms = 30'000;
  std::int64_t delivery_delay_ms = 0;
  std::int64_t retention_ms = 4LL * 24 * 3600 * 1000;
  std::int64_t max_message_bytes = kMaxQueueMessageBytes;
  std::int64_t receive_wait_ms = 0;
  bool fifo = false;
  bool content_based_deduplication = false;
  std::optional<RedrivePolicy> redrive_policy;
  RedriveAllowPolicy redrive_allow_policy;
  std::uint32_t max_in_flight = kMaxInFlightLimit;
  std::uint32_t partitions = 1;
  // Attributes kept for an API front end but not acted on here: the SQS API's Policy,
  // encryption and FIFO throughput settings, by their SQS names. Each is at most
  // kMaxExtraAttributeBytes; the front end validates their values.
  std::map<std::string, std::string> extra;
  bool operator==(const QueueAttributes&) const = default;
};

inline constexpr std::size_t kMaxExtraAttributes = 16;
inline constexpr std::size_t kMaxExtraAttributeBytes = 64 * 1024;
inline constexpr std::size_t kMaxQueueTags = 50;
inline constexpr std::size_t kMaxTagKeyBytes = 128;
inline constexpr std::size_t kMaxTagValueBytes = 256;

using QueueTags = std::map<std::string, std::string>;

// A queue as stored.
struct QueueMetadata {
  std::string name;
  std::uint32_t subscription = 0;  // keys its state; never reused
  std::string topic;               // the topic it reads
  bool owns_topic = true;          // created the topic and deletes it with the queue
  QueueAttributes attributes;
  QueueTags tags;  // cost-allocation style labels; not settings (creating again ignores them)
  std::int64_t created_ms = 0;
  std::int64_t modified_ms = 0;
  bool operator==(const QueueMetadata&) const = default;
};

// 1-80 characters of [A-Za-z0-9_-], plus a ".fifo" suffix exactly when `fifo`.
Status ValidateQueueName(std::string_view name, bool fifo);
// Ranges of every attribute and their combinations (a queue's own name in its redrive
// policy, content-based deduplication on a standard queue, ...). `name` is the queue's.
Status ValidateQueueAttributes(std::string_view name, const QueueAttributes& attributes);
// Tag count and sizes (keys 1-128 bytes, values up to 256, at most 50 tags).
Status ValidateQueueTags(const QueueTags& tags);
// Whether `allow` (the dead-letter queue's) admits `source` as one of its source queues.
bool RedriveAllows(const RedriveAllowPolicy& allow, std::string_view source);

// Tags and extra attributes follow the original fields, so metadata stored before they
// existed still decodes (with neither).
std::string EncodeQueueMetadata(const QueueMetadata& queue);
Result<QueueMetadata> DecodeQueueMetadata(std::string_view bytes);

}  // namespace spool::broker
