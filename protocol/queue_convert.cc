#include "protocol/queue_convert.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include <fmt/format.h>

namespace spool::protocol {
namespace {

constexpr std::uint8_t kReceiptVersion = 2;
// Version, subscription, partition and offset; the generation follows (16 digits; 8 in
// version 1).
constexpr std::size_t kReceiptPrefixDigits = 2 + 8 + 8 + 16;

// Lower-case hex digits, as the encoders write them; false on anything else.
bool ParseHex(std::string_view digits, std::uint64_t* out) {
  *out = 0;
  for (char c : digits) {
    int v = 0;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else {
      return false;
    }
    *out = (*out << 4) | static_cast<std::uint64_t>(v);
  }
  return true;
}

// Writes the low `digits` hex digits of `v` at `out`. Message ids and receipt handles are
// made for every message received; fmt's format-string parsing showed in profiles there.
char* PutHex(char* out, std::uint64_t v, int digits) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (int i = digits - 1; i >= 0; --i) {
    out[i] = kDigits[v & 0xf];
    v >>= 4;
  }
  return out + digits;
}

}  // namespace

std::string MessageId(std::uint32_t topic_id, std::uint32_t partition, std::uint64_t offset) {
  std::string id(36, '-');  // 8-4-4-4-12, like a UUID
  char* p = id.data();
  p = PutHex(p, topic_id, 8) + 1;
  p = PutHex(p, partition >> 16, 4) + 1;
  p = PutHex(p, partition & 0xffff, 4) + 1;
  p = PutHex(p, offset >> 48, 4) + 1;
  PutHex(p, offset & 0xffffffffffffULL, 12);
  return id;
}

// Receipt handles: version, subscription, partition, offset and generation, in hex. They
// name one receive; the broker checks the generation, so a forged handle can do no more
// than a stale one. Version 1 carried a 32-bit generation; its handles, from before an
// upgrade, still name the same receives (their generations stay below 2^32).
std::string EncodeReceipt(std::uint32_t subscription, const broker::QueueReceipt& r) {
  std::string handle(kReceiptPrefixDigits + 16, '0');
  char* p = handle.data();
  p = PutHex(p, kReceiptVersion, 2);
  p = PutHex(p, subscription, 8);
  p = PutHex(p, r.partition, 8);
  p = PutHex(p, r.offset, 16);
  PutHex(p, r.generation, 16);
  return handle;
}

Result<broker::QueueReceipt> DecodeReceipt(const std::string& handle, std::uint32_t subscription) {
  auto bad = [] { return InvalidArgument("the receipt handle is malformed"); };
  auto field = [&](std::size_t at, std::size_t len, std::uint64_t* out) {
    return ParseHex(std::string_view(handle).substr(at, len), out);
  };
  std::uint64_t version = 0, sub = 0, partition = 0, offset = 0, generation = 0;
  if (handle.size() < 2 || !field(0, 2, &version)) return bad();
  const std::size_t generation_digits = version == kReceiptVersion ? 16 : version == 1 ? 8 : 0;
  if (generation_digits == 0 || handle.size() != kReceiptPrefixDigits + generation_digits) {
    return bad();
  }
  if (!field(2, 8, &sub) || !field(10, 8, &partition) || !field(18, 16, &offset) ||
      !field(kReceiptPrefixDigits, generation_digits, &generation)) {
    return bad();
  }
  if (sub != subscription) {
    return InvalidArgument("the receipt handle belongs to another queue");
  }
  return broker::QueueReceipt{static_cast<std::uint32_t>(partition), offset, generation};
}

Result<broker::QueueAttributes> AttributesFromProto(const v1::QueueAttributes& in,
                                                    broker::QueueAttributes base) {
  if (in.has_visibility_timeout_seconds()) {
    base.visibility_timeout_ms = in.visibility_timeout_seconds() * kMsPerSecond;
  }
  if (in.has_delivery_delay_seconds()) {
    base.delivery_delay_ms = in.delivery_delay_seconds() * kMsPerSecond;
  }
  if (in.has_retention_seconds()) {
    const std::int64_t seconds = in.retention_seconds();
    // Checked before the conversion to milliseconds, which could overflow and wrap into range.
    if (seconds != -1 && (seconds < 0 || seconds > INT64_MAX / kMsPerSecond)) {
      return InvalidArgument("retention_seconds " + std::to_string(seconds) +
                             " is out of range 60-1209600 (or -1: kept until deleted)");
    }
    base.retention_ms = seconds == -1 ? -1 : seconds * kMsPerSecond;
  }
  if (in.has_max_message_bytes()) base.max_message_bytes = in.max_message_bytes();
  if (in.has_receive_wait_seconds()) {
    base.receive_wait_ms = in.receive_wait_seconds() * kMsPerSecond;
  }
  if (in.has_fifo()) base.fifo = in.fifo();
  if (in.has_content_based_deduplication()) {
    base.content_based_deduplication = in.content_based_deduplication();
  }
  if (in.has_redrive_policy()) {
    base.redrive_policy = broker::RedrivePolicy{in.redrive_policy().dead_letter_queue(),
                                                in.redrive_policy().max_receive_count()};
  }
  if (in.has_redrive_allow_policy()) {
    const auto& a = in.redrive_allow_policy();
    switch (a.permission()) {
      case v1::REDRIVE_PERMISSION_ALLOW_ALL:
        base.redrive_allow_policy.permission = broker::RedrivePermission::kAllowAll;
        break;
      case v1::REDRIVE_PERMISSION_DENY_ALL:
        base.redrive_allow_policy.permission = broker::RedrivePermission::kDenyAll;
        break;
      case v1::REDRIVE_PERMISSION_BY_QUEUE:
        base.redrive_allow_policy.permission = broker::RedrivePermission::kByQueue;
        break;
      default:
        return InvalidArgument("redrive_allow_policy.permission is not set");
    }
    base.redrive_allow_policy.source_queues.assign(a.source_queues().begin(),
                                                   a.source_queues().end());
  }
  if (in.has_max_in_flight()) base.max_in_flight = in.max_in_flight();
  if (in.has_partitions()) base.partitions = in.partitions();
  return base;
}

void QueueToProto(const broker::QueueInfo& in, v1::Queue* out) {
  const broker::QueueAttributes& a = in.metadata.attributes;
  out->set_name(in.metadata.name);
  out->set_topic(in.metadata.topic);
  out->set_owns_topic(in.metadata.owns_topic);
  out->set_created_timestamp_ms(in.metadata.created_ms);
  out->set_last_modified_timestamp_ms(in.metadata.modified_ms);
  v1::QueueAttributes* attrs = out->mutable_attributes();
  attrs->set_visibility_timeout_seconds(static_cast<std::uint32_t>(a.visibility_timeout_ms / 1000));
  attrs->set_delivery_delay_seconds(static_cast<std::uint32_t>(a.delivery_delay_ms / 1000));
  attrs->set_retention_seconds(a.retention_ms == -1 ? -1 : a.retention_ms / 1000);
  attrs->set_max_message_bytes(static_cast<std::uint32_t>(a.max_message_bytes));
  attrs->set_receive_wait_seconds(static_cast<std::uint32_t>(a.receive_wait_ms / 1000));
  attrs->set_fifo(a.fifo);
  attrs->set_content_based_deduplication(a.content_based_deduplication);
  if (a.redrive_policy) {
    attrs->mutable_redrive_policy()->set_dead_letter_queue(a.redrive_policy->dead_letter_queue);
    attrs->mutable_redrive_policy()->set_max_receive_count(a.redrive_policy->max_receive_count);
  }
  v1::RedriveAllowPolicy* allow = attrs->mutable_redrive_allow_policy();
  switch (a.redrive_allow_policy.permission) {
    case broker::RedrivePermission::kAllowAll:
      allow->set_permission(v1::REDRIVE_PERMISSION_ALLOW_ALL);
      break;
    case broker::RedrivePermission::kDenyAll:
      allow->set_permission(v1::REDRIVE_PERMISSION_DENY_ALL);
      break;
    case broker::RedrivePermission::kByQueue:
      allow->set_permission(v1::REDRIVE_PERMISSION_BY_QUEUE);
      break;
  }
  for (const auto& q : a.redrive_allow_policy.source_queues)
    allow->add_source_queues(q);
  attrs->set_max_in_flight(a.max_in_flight);
  attrs->set_partitions(a.partitions);
  out->mutable_stats()->set_approximate_visible(in.counts.visible);
  out->mutable_stats()->set_approximate_in_flight(in.counts.in_flight);
  out->mutable_stats()->set_approximate_delayed(in.counts.delayed);
}

void MessageToProto(broker::QueueMessage&& in, std::uint32_t topic_id, std::uint32_t subscription,
                    bool fifo, v1::QueueMessage* out) {
  broker::ReceivedMessage& m = in.message;
  storage::Record& r = m.record;
  out->set_message_id(MessageIdOf(r, topic_id, in.partition, m.offset));
  out->set_receipt_handle(EncodeReceipt(subscription, {in.partition, m.offset, m.generation}));
  out->set_body(std::move(r.value));
  std::uint32_t earlier_receives = 0;  // in the source queue, for a dead letter
  std::int64_t sent_ms = r.append_timestamp_ms;
  for (auto& [key, value] : r.headers) {
    if (key == "spool.dlq.source_queue") {
      out->set_dead_letter_source_queue(std::move(value));
      continue;
    }
    if (key == "spool.dlq.receive_count") {
      earlier_receives = static_cast<std::uint32_t>(std::strtoul(value.c_str(), nullptr, 10));
      continue;
    }
    if (key == "spool.dlq.sent_timestamp_ms") {
      sent_ms = std::strtoll(value.c_str(), nullptr, 10);
      continue;
    }
    if (key.rfind("spool.", 0) == 0) continue;
    v1::Header* h = out->add_headers();
    h->set_key(key);
    h->set_value(std::move(value));
  }
  if (r.key) out->set_key(std::move(*r.key));
  out->set_receive_count(earlier_receives + m.receive_count);
  out->set_first_receive_timestamp_ms(m.first_receive_ms);
  out->set_sent_timestamp_ms(sent_ms);
  out->set_producer_timestamp_ms(r.producer_timestamp_ms);
  if (r.message_group_id) out->set_message_group_id(*r.message_group_id);
  if (r.dedup_id) out->set_deduplication_id(*r.dedup_id);
  // Records appended before sequence numbers were stored number by offset.
  if (fifo) out->set_sequence_number(r.sequence.value_or(m.offset));
  out->set_partition(in.partition);
  out->set_offset(m.offset);
  out->set_visibility_deadline_ms(m.visibility_deadline_ms);
}

std::string MessageIdOf(const storage::Record& record, std::uint32_t topic_id,
                        std::uint32_t partition, std::uint64_t offset) {
  for (const auto& [key, value] : record.headers) {
    if (key != broker::kDeadLetterOriginHeader) continue;
    unsigned long long t = 0, p = 0, o = 0;
    char tail = 0;
    if (std::sscanf(value.c_str(), "%llu/%llu/%llu%c", &t, &p, &o, &tail) == 3 && t <= UINT32_MAX &&
        p <= UINT32_MAX) {
      return MessageId(static_cast<std::uint32_t>(t), static_cast<std::uint32_t>(p), o);
    }
  }
  return MessageId(topic_id, partition, offset);
}

std::string TaskId(std::uint64_t id) {
  return fmt::format("{:016x}", id);
}

Result<std::uint64_t> ParseTaskId(const std::string& id) {
  std::uint64_t out = 0;
  if (id.size() != 16 || !ParseHex(id, &out)) {
    return InvalidArgument("task_id '" + id + "' is malformed");
  }
  return out;
}

void RedriveTaskToProto(const broker::RedriveTask& in, v1::RedriveTask* out) {
  out->set_task_id(TaskId(in.id));
  switch (in.status) {
    case broker::RedriveStatus::kRunning:
      out->set_status(v1::REDRIVE_TASK_STATUS_RUNNING);
      break;
    case broker::RedriveStatus::kCompleted:
      out->set_status(v1::REDRIVE_TASK_STATUS_COMPLETED);
      break;
    case broker::RedriveStatus::kCancelling:
      out->set_status(v1::REDRIVE_TASK_STATUS_CANCELLING);
      break;
    case broker::RedriveStatus::kCancelled:
      out->set_status(v1::REDRIVE_TASK_STATUS_CANCELLED);
      break;
    case broker::RedriveStatus::kFailed:
      out->set_status(v1::REDRIVE_TASK_STATUS_FAILED);
      break;
  }
  out->set_source_queue(in.source);
  out->set_destination_queue(in.destination);
  out->set_max_messages_per_second(in.max_per_second);
  out->set_approximate_messages_moved(in.moved);
  out->set_approximate_messages_to_move(in.to_move);
  out->set_failure_reason(in.failure);
  out->set_started_timestamp_ms(in.started_ms);
  out->set_finished_timestamp_ms(in.finished_ms);
}

Result<QueueIds> IdsOf(const broker::Broker& broker, const std::string& queue) {
  if (Status s = broker::ValidateQueueName(queue, queue.ends_with(".fifo")); !s) return s.error();
  auto q = broker.FindQueueMetadata(queue);
  if (!q) return NotFound("queue '" + queue + "' does not exist");
  auto topic = broker.DescribeTopic(q->topic);
  if (!topic) return topic.error();
  return QueueIds{q->subscription, topic->metadata.id, q->attributes.fifo,
                  q->attributes.receive_wait_ms};
}

}  // namespace spool::protocol
