#include "protocol/convert.h"

namespace spool::protocol {
namespace {

constexpr std::size_t kMaxIdLength = 128;
constexpr std::int64_t kMaxDeliveryDelayMs = 15 * 60 * 1000;

// Message group and deduplication ids: 1-128 of [A-Za-z0-9] and ASCII punctuation, as SQS.
Status ValidateId(const std::string& id, const char* what, std::size_t index) {
  const std::string where = "record " + std::to_string(index) + ": " + what;
  if (id.empty() || id.size() > kMaxIdLength) {
    return InvalidArgument(where + " must be 1-128 characters long");
  }
  for (char c : id) {
    if (c < '!' || c > '~') {
      return InvalidArgument(where + " may only hold letters, digits and ASCII punctuation");
    }
  }
  return Ok();
}

}  // namespace

Result<storage::Record> RecordFromProto(v1::Record& in, std::size_t index, std::int64_t now_ms) {
  storage::Record out;
  if (in.has_key()) out.key = std::move(*in.mutable_key());
  out.value = std::move(*in.mutable_value());
  out.headers.reserve(in.headers_size());
  for (auto& header : *in.mutable_headers()) {
    if (header.key().rfind("spool.", 0) == 0) {
      return InvalidArgument("record " + std::to_string(index) + ": header '" + header.key() +
                             "' is reserved (the prefix 'spool.' belongs to the broker)");
    }
    out.headers.emplace_back(std::move(*header.mutable_key()), std::move(*header.mutable_value()));
  }
  out.producer_timestamp_ms = in.producer_timestamp_ms();
  if (in.has_message_group_id()) {
    if (Status s = ValidateId(in.message_group_id(), "message_group_id", index); !s)
      return s.error();
    out.message_group_id = in.message_group_id();
  }
  if (in.has_deduplication_id()) {
    if (Status s = ValidateId(in.deduplication_id(), "deduplication_id", index); !s) {
      return s.error();
    }
    out.dedup_id = in.deduplication_id();
  }
  if (in.has_deliver_after_ms()) {
    if (in.deliver_after_ms() > now_ms + kMaxDeliveryDelayMs) {
      return InvalidArgument("record " + std::to_string(index) +
                             ": deliver_after_ms is more than 15 minutes ahead of the broker's "
                             "clock");
    }
    out.deliver_after_ms = in.deliver_after_ms();
  }
  return out;
}

void RecordToProto(storage::StoredRecord&& in, std::uint32_t partition, v1::Record* out) {
  storage::Record& r = in.record;
  if (r.key) out->set_key(std::move(*r.key));
  out->set_value(std::move(r.value));
  for (auto& [key, value] : r.headers) {
    v1::Header* h = out->add_headers();
    h->set_key(std::move(key));
    h->set_value(std::move(value));
  }
  out->set_producer_timestamp_ms(r.producer_timestamp_ms);
  if (r.message_group_id) out->set_message_group_id(*r.message_group_id);
  if (r.dedup_id) out->set_deduplication_id(*r.dedup_id);
  if (r.deliver_after_ms) out->set_deliver_after_ms(*r.deliver_after_ms);
  out->set_offset(in.offset);
  out->set_partition(partition);
  out->set_append_timestamp_ms(r.append_timestamp_ms);
}

broker::TopicConfig TopicConfigFromProto(const v1::TopicConfig& in) {
  broker::TopicConfig out;
  out.name = in.name();
  if (in.has_partitions()) out.partitions = in.partitions();
  if (in.has_retention_ms()) out.retention_ms = in.retention_ms();
  if (in.has_retention_bytes()) out.retention_bytes = in.retention_bytes();
  if (in.has_max_message_bytes()) out.max_message_bytes = in.max_message_bytes();
  return out;
}

void TopicConfigToProto(const broker::TopicConfig& in, v1::TopicConfig* out) {
  out->set_name(in.name);
  out->set_partitions(in.partitions);
  out->set_retention_ms(in.retention_ms);
  out->set_retention_bytes(in.retention_bytes);
  out->set_max_message_bytes(in.max_message_bytes);
}

void TopicToProto(const broker::TopicInfo& in, v1::Topic* out) {
  TopicConfigToProto(in.metadata.config, out->mutable_config());
  out->set_created_ms(in.metadata.created_ms);
  std::uint64_t total = 0;
  for (const broker::PartitionInfo& p : in.partitions) {
    v1::PartitionInfo* info = out->add_partitions();
    info->set_partition(p.partition);
    info->set_start_offset(p.start_offset);
    info->set_end_offset(p.end_offset);
    info->set_size_bytes(p.size_bytes);
    total += p.size_bytes;
  }
  out->set_size_bytes(total);
  for (const std::string& queue : in.queues)
    out->add_queues(queue);
  out->set_owner_queue(in.owner_queue);
}

}  // namespace spool::protocol
