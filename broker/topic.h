#pragma once

// Topic configuration, its validation and its stored form.
//
// Thread-safety: plain values and pure functions.

#include <cstdint>
#include <string>
#include <string_view>

#include "common/error.h"

namespace spool::broker {

inline constexpr std::size_t kMaxTopicNameLength = 249;
inline constexpr std::uint32_t kMaxPartitions = 1024;
inline constexpr std::int64_t kDefaultRetentionMs = 7LL * 24 * 3600 * 1000;
inline constexpr std::int64_t kDefaultMaxMessageBytes = 1 << 20;
// The largest max_message_bytes a topic may ask for; bounds the memory of one record.
inline constexpr std::int64_t kMaxMaxMessageBytes = 64 << 20;

struct TopicConfig {
  std::string name;
  std::uint32_t partitions = 1;
  std::int64_t retention_ms = kDefaultRetentionMs;  // -1: keep forever
  std::int64_t retention_bytes = -1;                // per partition; -1: no size limit
  std::int64_t max_message_bytes = kDefaultMaxMessageBytes;

  bool operator==(const TopicConfig&) const = default;
};

// A topic as stored: its config plus the id that keys its data. Ids are never reused, so a
// topic deleted and created again never sees the old topic's records.
struct TopicMetadata {
  std::uint32_t id = 0;
  TopicConfig config;
  std::int64_t created_ms = 0;
};

// Names: 1-249 characters of [A-Za-z0-9._-], and not "." or "..".
Status ValidateTopicName(std::string_view name);
Status ValidateTopicConfig(const TopicConfig& config);

std::string EncodeTopicMetadata(const TopicMetadata& topic);
Result<TopicMetadata> DecodeTopicMetadata(std::string_view bytes);

}  // namespace spool::broker
