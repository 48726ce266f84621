#include "broker/queue_config.h"

#include <algorithm>

#include "common/coding.h"

namespace spool::broker {
namespace {

constexpr std::uint8_t kQueueFormatVersion = 1;
constexpr std::string_view kFifoSuffix = ".fifo";

bool IsQueueNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

Status InRange(std::string_view what, std::int64_t value, std::int64_t low, std::int64_t high) {
  if (value >= low && value <= high) return Ok();
  return InvalidArgument(std::string(what) + " " + std::to_string(value) + " is out of range " +
                         std::to_string(low) + "-" + std::to_string(high));
}

}  // namespace

Status ValidateQueueName(std::string_view name, bool fifo) {
  if (name.empty()) return InvalidArgument("queue name is empty");
  if (name.size() > kMaxQueueNameLength) {
    return InvalidArgument("queue name is " + std::to_string(name.size()) +
                           " characters long; the limit is " + std::to_string(kMaxQueueNameLength));
  }
  const bool suffixed = name.ends_with(kFifoSuffix);
  if (suffixed != fifo) {
    return InvalidArgument(fifo ? "a FIFO queue's name must end in \".fifo\""
                                : "only a FIFO queue's name may end in \".fifo\"");
  }
  const std::string_view stem = suffixed ? name.substr(0, name.size() - kFifoSuffix.size()) : name;
  if (stem.empty()) return InvalidArgument("queue name has nothing before \".fifo\"");
  for (std::size_t i = 0; i < stem.size(); ++i) {
    if (!IsQueueNameChar(stem[i])) {
      return InvalidArgument("queue name has a character not allowed at position " +
                             std::to_string(i) + "; allowed are letters, digits, '_' and '-'");
    }
  }
  return Ok();
}

Status ValidateQueueAttributes(std::string_view name, const QueueAttributes& a) {
  if (Status s =
          InRange("visibility_timeout_ms", a.visibility_timeout_ms, 0, kMaxVisibilityTimeoutMs);
      !s) {
    return s;
  }
  if (Status s = InRange("delivery_delay_ms", a.delivery_delay_ms, 0, kMaxDeliveryDelayMs); !s) {
    return s;
  }
  if (a.retention_ms != -1) {
    if (Status s =
            InRange("retention_ms", a.retention_ms, kMinQueueRetentionMs, kMaxQueueRetentionMs);
        !s) {
      return s;
    }
  }
  if (Status s = InRange("max_message_bytes", a.max_message_bytes, 1, kMaxQueueMessageBytes); !s) {
    return s;
  }
  if (Status s = InRange("receive_wait_ms", a.receive_wait_ms, 0, kMaxReceiveWaitMs); !s) {
    return s;
  }
  if (Status s = InRange("max_in_flight", a.max_in_flight, 1, kMaxInFlightLimit); !s) return s;
  if (Status s = InRange("partitions", a.partitions, 1, 1024); !s) return s;
  if (a.content_based_deduplication && !a.fifo) {
    return InvalidArgument("content_based_deduplication is for FIFO queues only");
  }
  if (a.redrive_policy) {
    const RedrivePolicy& p = *a.redrive_policy;
    if (p.dead_letter_queue == name) {
      return InvalidArgument("a queue cannot be its own dead-letter queue");
    }
    // Its type is checked against the queue's when it is found (FailedPrecondition).
    if (Status s = ValidateQueueName(p.dead_letter_queue, p.dead_letter_queue.ends_with(".fifo"));
        !s) {
      return InvalidArgument("dead-letter queue: " + s.error().message);
    }
    if (Status s = InRange("max_receive_count", p.max_receive_count, 1, kMaxMaxReceiveCount); !s) {
      return s;
    }
  }
  const RedriveAllowPolicy& allow = a.redrive_allow_policy;
  if (allow.permission == RedrivePermission::kByQueue) {
    if (allow.source_queues.empty() || allow.source_queues.size() > kMaxRedriveSourceQueues) {
      return InvalidArgument("a redrive allow policy by queue names 1-" +
                             std::to_string(kMaxRedriveSourceQueues) + " source queues");
    }
    for (const auto& q : allow.source_queues) {
      if (ValidateQueueName(q, q.ends_with(kFifoSuffix))) continue;
      return InvalidArgument("redrive allow policy: bad source queue name");
    }
  } else if (!allow.source_queues.empty()) {
    return InvalidArgument("source queues are only for a redrive allow policy by queue");
  }
  if (a.extra.size() > kMaxExtraAttributes) {
    return InvalidArgument("at most " + std::to_string(kMaxExtraAttributes) +
                           " extra attributes are kept");
  }
  for (const auto& [key, value] : a.extra) {
    if (key.empty() || key.size() > 256 || value.size() > kMaxExtraAttributeBytes) {
      return InvalidArgument("extra attribute '" + key.substr(0, 256) +
                             "': names are 1-256 bytes and values at most " +
                             std::to_string(kMaxExtraAttributeBytes));
    }
  }
  return Ok();
}

Status ValidateQueueTags(const QueueTags& tags) {
  if (tags.size() > kMaxQueueTags) {
    return InvalidArgument("a queue has at most " + std::to_string(kMaxQueueTags) + " tags, not " +
                           std::to_string(tags.size()));
  }
  for (const auto& [key, value] : tags) {
    if (key.empty() || key.size() > kMaxTagKeyBytes) {
      return InvalidArgument("tag key '" + key + "' must be 1-" + std::to_string(kMaxTagKeyBytes) +
                             " bytes");
    }
    if (value.size() > kMaxTagValueBytes) {
      return InvalidArgument("the value of tag '" + key + "' is longer than " +
                             std::to_string(kMaxTagValueBytes) + " bytes");
    }
  }
  return Ok();
}

bool RedriveAllows(const RedriveAllowPolicy& allow, std::string_view source) {
  switch (allow.permission) {
    case RedrivePermission::kAllowAll:
      return true;
    case RedrivePermission::kDenyAll:
      return false;
    case RedrivePermission::kByQueue:
      return std::find(allow.source_queues.begin(), allow.source_queues.end(), source) !=
             allow.source_queues.end();
  }
  return false;
}

std::string EncodeQueueMetadata(const QueueMetadata& q) {
  const QueueAttributes& a = q.attributes;
  std::string out;
  out.push_back(static_cast<char>(kQueueFormatVersion));
  PutLengthPrefixed(out, q.name);
  PutFixed32BE(out, q.subscription);
  PutLengthPrefixed(out, q.topic);
  out.push_back(q.owns_topic ? 1 : 0);
  PutVarsint64(out, q.created_ms);
  PutVarsint64(out, q.modified_ms);
  PutVarsint64(out, a.visibility_timeout_ms);
  PutVarsint64(out, a.delivery_delay_ms);
  PutVarsint64(out, a.retention_ms);
  PutVarsint64(out, a.max_message_bytes);
  PutVarsint64(out, a.receive_wait_ms);
  out.push_back(static_cast<char>((a.fifo ? 1 : 0) | (a.content_based_deduplication ? 2 : 0) |
                                  (a.redrive_policy ? 4 : 0)));
  if (a.redrive_policy) {
    PutLengthPrefixed(out, a.redrive_policy->dead_letter_queue);
    PutVarint64(out, a.redrive_policy->max_receive_count);
  }
  out.push_back(static_cast<char>(a.redrive_allow_policy.permission));
  PutVarint64(out, a.redrive_allow_policy.source_queues.size());
  for (const auto& s : a.redrive_allow_policy.source_queues)
    PutLengthPrefixed(out, s);
  PutVarint64(out, a.max_in_flight);
  PutVarint64(out, a.partitions);
  if (!q.tags.empty() || !a.extra.empty()) {
    for (const auto* map : {&q.tags, &a.extra}) {
      PutVarint64(out, map->size());
      for (const auto& [key, value] : *map) {
        PutLengthPrefixed(out, key);
        PutLengthPrefixed(out, value);
      }
    }
  }
  return out;
}

Result<QueueMetadata> DecodeQueueMetadata(std::string_view in) {
  auto corrupt = [] { return DataLoss("stored queue metadata is corrupt"); };
  if (in.empty() || static_cast<std::uint8_t>(in[0]) != kQueueFormatVersion) {
    return DataLoss("stored queue metadata has an unknown format version");
  }
  in.remove_prefix(1);
  QueueMetadata q;
  QueueAttributes& a = q.attributes;
  std::string_view name, topic;
  if (!GetLengthPrefixed(in, &name) || !GetFixed32BE(in, &q.subscription) ||
      !GetLengthPrefixed(in, &topic) || in.empty()) {
    return corrupt();
  }
  q.name = name;
  q.topic = topic;
  q.owns_topic = in[0] != 0;
  in.remove_prefix(1);
  if (!GetVarsint64(in, &q.created_ms) || !GetVarsint64(in, &q.modified_ms) ||
      !GetVarsint64(in, &a.visibility_timeout_ms) || !GetVarsint64(in, &a.delivery_delay_ms) ||
      !GetVarsint64(in, &a.retention_ms) || !GetVarsint64(in, &a.max_message_bytes) ||
      !GetVarsint64(in, &a.receive_wait_ms) || in.empty()) {
    return corrupt();
  }
  const auto flags = static_cast<std::uint8_t>(in[0]);
  in.remove_prefix(1);
  a.fifo = (flags & 1) != 0;
  a.content_based_deduplication = (flags & 2) != 0;
  if ((flags & 4) != 0) {
    std::string_view dlq;
    std::uint64_t count = 0;
    if (!GetLengthPrefixed(in, &dlq) || !GetVarint64(in, &count) || count > kMaxMaxReceiveCount) {
      return corrupt();
    }
    a.redrive_policy = RedrivePolicy{std::string(dlq), static_cast<std::uint32_t>(count)};
  }
  std::uint64_t sources = 0, in_flight = 0, partitions = 0;
  if (in.empty() || static_cast<std::uint8_t>(in[0]) > 2) return corrupt();
  a.redrive_allow_policy.permission = static_cast<RedrivePermission>(in[0]);
  in.remove_prefix(1);
  if (!GetVarint64(in, &sources) || sources > kMaxRedriveSourceQueues) return corrupt();
  for (std::uint64_t i = 0; i < sources; ++i) {
    std::string_view s;
    if (!GetLengthPrefixed(in, &s)) return corrupt();
    a.redrive_allow_policy.source_queues.emplace_back(s);
  }
  if (!GetVarint64(in, &in_flight) || !GetVarint64(in, &partitions) ||
      in_flight > kMaxInFlightLimit || partitions > 1024) {
    return corrupt();
  }
  if (!in.empty()) {
    for (auto* map : {&q.tags, &a.extra}) {
      std::uint64_t count = 0;
      if (!GetVarint64(in, &count) || count > kMaxQueueTags + kMaxExtraAttributes) return corrupt();
      for (std::uint64_t i = 0; i < count; ++i) {
        std::string_view key, value;
        if (!GetLengthPrefixed(in, &key) || !GetLengthPrefixed(in, &value)) return corrupt();
        (*map)[std::string(key)] = std::string(value);
      }
    }
    if (!in.empty()) return corrupt();
  }
  a.max_in_flight = static_cast<std::uint32_t>(in_flight);
  a.partitions = static_cast<std::uint32_t>(partitions);
  return q;
}

}  // namespace spool::broker
