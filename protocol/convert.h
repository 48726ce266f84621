#pragma once

// Conversions between spool.v1 messages and broker/storage types, with the validation that
// belongs to the wire format (reserved headers, id character sets, defaults and limits).
//
// Thread-safety: pure functions.

#include <cstdint>

#include "broker/broker.h"
#include "common/error.h"
#include "spool/v1/admin.pb.h"
#include "spool/v1/common.pb.h"
#include "storage/partition_log.h"

namespace spool::protocol {

// Validates one published record (`index` names it in errors) and converts it. Moves the
// payload out of `in`.
Result<storage::Record> RecordFromProto(v1::Record& in, std::size_t index, std::int64_t now_ms);
// Moves the key, value and headers out of `in`: a fetch copies nothing it has read.
void RecordToProto(storage::StoredRecord&& in, std::uint32_t partition, v1::Record* out);

// CreateTopic: unset fields take the broker's defaults.
broker::TopicConfig TopicConfigFromProto(const v1::TopicConfig& in);
void TopicToProto(const broker::TopicInfo& in, v1::Topic* out);
void TopicConfigToProto(const broker::TopicConfig& in, v1::TopicConfig* out);

}  // namespace spool::protocol
