#include "storage/partition_log.h"

#include <algorithm>
#include <string>

#include "common/coding.h"
#include "storage/keys.h"

namespace spool::storage {
namespace {

std::string EncodeLogStart(const LogPosition& start) {
  std::string value;
  PutFixed64BE(value, start.offset);
  PutFixed64BE(value, start.position);
  return value;
}

std::string EncodeIndexValue(std::uint64_t position) {
  std::string value;
  PutFixed64BE(value, position);
  return value;
}

// Past the last delay index key of a partition.
std::string DelayRangeEnd(std::uint32_t topic, std::uint32_t partition) {
  return MetaKey(MetaTag::kDelay, PartitionRangeEnd(topic, partition));
}

std::string Where(std::uint32_t topic, std::uint32_t partition) {
  return "topic id " + std::to_string(topic) + " partition " + std::to_string(partition);
}

}  // namespace

Result<PartitionLog> PartitionLog::Open(const Store& store, std::uint32_t topic,
                                        std::uint32_t partition) {
  PartitionLog log(store, topic, partition);
  const std::string where = Where(topic, partition);

  auto stored_start = store.Get(ColumnFamily::kMeta, LogStartKey(topic, partition));
  if (!stored_start) return stored_start.error();
  if (*stored_start) {
    std::string_view in(**stored_start);
    if (!GetFixed64BE(in, &log.start_.offset) || !GetFixed64BE(in, &log.start_.position)) {
      return DataLoss("corrupt log start of " + where);
    }
  }

  auto indexed_from = store.Get(ColumnFamily::kMeta, DelayIndexStartKey(topic, partition));
  if (!indexed_from) return indexed_from.error();
  if (*indexed_from) {
    std::string_view in(**indexed_from);
    std::uint64_t from = 0;
    if (!GetFixed64BE(in, &from)) return DataLoss("corrupt delay index start of " + where);
    log.delays_indexed_from_ = from;
  }
  {
    auto it = store.NewIterator(ColumnFamily::kMeta, DelayKey(topic, partition, 0),
                                DelayRangeEnd(topic, partition));
    it->SeekToFirst();
    if (it->Valid()) {
      LogKeyParts first{};
      if (!ParseDelayKey(it->key(), &first)) return DataLoss("corrupt delay key of " + where);
      it->SeekToLast();
      LogKeyParts last{};
      if (!it->Valid() || !ParseDelayKey(it->key(), &last)) {
        return DataLoss("corrupt delay key of " + where);
      }
      log.lowest_delay_ = first.offset;
      log.highest_delay_ = last.offset;
    }
    if (Status s = it->status(); !s) return s.error();
  }

  // The last index entry at or above the start tells where to begin summing record sizes.
  LogPosition scan_from = log.start_;
  {
    auto it = store.NewIterator(ColumnFamily::kTimeIndex, PartitionPrefix(topic, partition),
                                PartitionRangeEnd(topic, partition));
    it->SeekToLast();
    if (it->Valid()) {
      TimeIndexKeyParts parts{};
      std::string_view value = it->value();
      std::uint64_t position = 0;
      if (!ParseTimeIndexKey(it->key(), &parts) || !GetFixed64BE(value, &position)) {
        return DataLoss("corrupt time index entry of " + where);
      }
      log.has_index_entry_ = true;
      if (parts.offset >= log.start_.offset) scan_from = {parts.offset, position};
    }
    if (Status s = it->status(); !s) return s.error();
  }
  log.last_index_position_ = scan_from.position;

  LogPosition end = scan_from;
  {
    auto it = store.NewIterator(ColumnFamily::kLog, LogKey(topic, partition, scan_from.offset),
                                PartitionRangeEnd(topic, partition));
    std::string last_value;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      LogKeyParts parts{};
      if (!ParseLogKey(it->key(), &parts)) return DataLoss("corrupt log key in " + where);
      if (parts.offset != end.offset) {
        return DataLoss("gap in " + where + ": expected offset " + std::to_string(end.offset) +
                        ", found " + std::to_string(parts.offset));
      }
      end.offset = parts.offset + 1;
      end.position += it->value().size();
      last_value.assign(it->value());
    }
    if (Status s = it->status(); !s) return s.error();
    if (!last_value.empty()) {
      auto ts = DecodeAppendTimestamp(last_value);
      if (!ts) return DataLoss(ts.error().message + " (last record of " + where + ")");
      log.last_append_ms_ = *ts;
    }
  }
  log.durable_ = end;
  log.next_ = end;
  return log;
}

Result<PreparedAppend> PartitionLog::PrepareAppend(std::span<Record> records, std::int64_t now_ms,
                                                   WriteBatch& batch) {
  if (failed_) {
    return Unavailable(Where(topic_, partition_) +
                       " stopped taking appends after a storage failure: " + failed_->message);
  }
  PreparedAppend prepared;
  prepared.first_offset = next_.offset;
  last_append_ms_ = std::max(last_append_ms_, now_ms);
  if (!delays_indexed_from_) {
    std::string from;
    PutFixed64BE(from, next_.offset);
    batch.Put(ColumnFamily::kMeta, DelayIndexStartKey(topic_, partition_), std::move(from));
    delays_indexed_from_ = next_.offset;
  }
  for (Record& record : records) {
    record.append_timestamp_ms = last_append_ms_;
    if (record.deliver_after_ms && *record.deliver_after_ms > last_append_ms_) {
      std::string deliver_after;
      PutFixed64BE(deliver_after, static_cast<std::uint64_t>(*record.deliver_after_ms));
      batch.Put(ColumnFamily::kMeta, DelayKey(topic_, partition_, next_.offset),
                std::move(deliver_after));
      if (!lowest_delay_) lowest_delay_ = next_.offset;
      highest_delay_ = next_.offset;
    }
    std::string value = EncodeRecord(record);
    if (!has_index_entry_ || next_.position - last_index_position_ >= kIndexIntervalBytes) {
      batch.Put(ColumnFamily::kTimeIndex,
                TimeIndexKey(topic_, partition_, static_cast<std::uint64_t>(last_append_ms_),
                             next_.offset),
                EncodeIndexValue(next_.position));
      has_index_entry_ = true;
      last_index_position_ = next_.position;
    }
    const std::size_t size = value.size();
    batch.Put(ColumnFamily::kLog, LogKey(topic_, partition_, next_.offset), std::move(value));
    next_.offset += 1;
    next_.position += size;
  }
  prepared.end = next_;
  return prepared;
}

void PartitionLog::MarkDurable(const PreparedAppend& append) {
  if (failed_) return;
  if (append.end.offset > durable_.offset) durable_ = append.end;
}

void PartitionLog::MarkFailed(const Error& error) {
  if (!failed_) failed_ = error;
}

Result<std::vector<StoredRecord>> PartitionLog::Read(std::uint64_t from, std::size_t max_records,
                                                     std::size_t max_bytes) const {
  if (from < start_.offset) {
    return OutOfRange("offset " + std::to_string(from) + " is below the log start " +
                      std::to_string(start_.offset) + " of " + Where(topic_, partition_));
  }
  if (from > durable_.offset) {
    return OutOfRange("offset " + std::to_string(from) + " is beyond the log end " +
                      std::to_string(durable_.offset) + " of " + Where(topic_, partition_));
  }
  std::vector<StoredRecord> out;
  if (from == durable_.offset || max_records == 0) return out;
  auto it = store_->NewIterator(ColumnFamily::kLog, LogKey(topic_, partition_, from),
                                LogKey(topic_, partition_, durable_.offset));
  std::size_t bytes = 0;
  for (it->SeekToFirst(); it->Valid() && out.size() < max_records; it->Next()) {
    const std::string_view value = it->value();
    if (!out.empty() && bytes + value.size() > max_bytes) break;
    LogKeyParts parts{};
    if (!ParseLogKey(it->key(), &parts))
      return DataLoss("corrupt log key in " + Where(topic_, partition_));
    auto record = DecodeRecord(value);
    if (!record) {
      return DataLoss(record.error().message + " at offset " + std::to_string(parts.offset) +
                      " of " + Where(topic_, partition_));
    }
    bytes += value.size();
    out.push_back({parts.offset, std::move(record).value()});
  }
  if (Status s = it->status(); !s) return s.error();
  return out;
}

Result<LogPosition> PartitionLog::ScanForward(LogPosition from, std::int64_t timestamp_ms,
                                              std::uint64_t position, std::uint64_t offset) const {
  if (from.offset < start_.offset) from = start_;
  auto it = store_->NewIterator(ColumnFamily::kLog, LogKey(topic_, partition_, from.offset),
                                LogKey(topic_, partition_, durable_.offset));
  LogPosition at = from;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    LogKeyParts parts{};
    if (!ParseLogKey(it->key(), &parts))
      return DataLoss("corrupt log key in " + Where(topic_, partition_));
    at.offset = parts.offset;
    if (at.position >= position || at.offset >= offset) return at;
    if (timestamp_ms != INT64_MAX) {
      auto ts = DecodeAppendTimestamp(it->value());
      if (!ts) {
        return DataLoss(ts.error().message + " at offset " + std::to_string(parts.offset) + " of " +
                        Where(topic_, partition_));
      }
      if (*ts >= timestamp_ms) return at;
    }
    at.position += it->value().size();
  }
  if (Status s = it->status(); !s) return s.error();
  return durable_;
}

Result<LogPosition> PartitionLog::LocateTimestamp(std::int64_t timestamp_ms) const {
  LogPosition from = start_;
  if (timestamp_ms > 0) {
    auto it = store_->NewIterator(ColumnFamily::kTimeIndex, PartitionPrefix(topic_, partition_),
                                  PartitionRangeEnd(topic_, partition_));
    // The last entry strictly older than the target: every record before it is older too.
    it->SeekForPrev(
        TimeIndexKey(topic_, partition_, static_cast<std::uint64_t>(timestamp_ms) - 1, UINT64_MAX));
    if (it->Valid()) {
      TimeIndexKeyParts parts{};
      std::string_view value = it->value();
      std::uint64_t position = 0;
      if (!ParseTimeIndexKey(it->key(), &parts) || !GetFixed64BE(value, &position)) {
        return DataLoss("corrupt time index entry of " + Where(topic_, partition_));
      }
      if (parts.offset > from.offset) from = {parts.offset, position};
    }
    if (Status s = it->status(); !s) return s.error();
  }
  return ScanForward(from, timestamp_ms, UINT64_MAX);
}

Result<LogPosition> PartitionLog::IndexFloor(LogPosition from, std::uint64_t position,
                                             std::uint64_t offset) const {
  auto it = store_->NewIterator(ColumnFamily::kTimeIndex, PartitionPrefix(topic_, partition_),
                                PartitionRangeEnd(topic_, partition_));
  // Entries below the start are deleted by retention, so this walk is short. Append
  // timestamps never go back, so the entries are in offset and position order too.
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    TimeIndexKeyParts parts{};
    std::string_view value = it->value();
    std::uint64_t entry_position = 0;
    if (!ParseTimeIndexKey(it->key(), &parts) || !GetFixed64BE(value, &entry_position)) {
      return DataLoss("corrupt time index entry of " + Where(topic_, partition_));
    }
    if (entry_position > position || parts.offset > offset) break;
    if (parts.offset > from.offset) from = {parts.offset, entry_position};
  }
  if (Status s = it->status(); !s) return s.error();
  return from;
}

Result<LogPosition> PartitionLog::LocatePosition(std::uint64_t position) const {
  auto from = IndexFloor(start_, position, UINT64_MAX);
  if (!from) return from.error();
  return ScanForward(*from, INT64_MAX, position);
}

Result<LogPosition> PartitionLog::LocateOffset(LogPosition from, std::uint64_t offset) const {
  auto floor = IndexFloor(from, UINT64_MAX, offset);
  if (!floor) return floor.error();
  return ScanForward(*floor, INT64_MAX, UINT64_MAX, offset);
}

Result<std::optional<std::uint64_t>> PartitionLog::OffsetForTimestamp(
    std::int64_t timestamp_ms) const {
  auto at = LocateTimestamp(timestamp_ms);
  if (!at) return at.error();
  if (at->offset >= durable_.offset) return std::optional<std::uint64_t>();
  return std::optional<std::uint64_t>(at->offset);
}

Result<std::uint64_t> PartitionLog::PrepareRetention(const RetentionLimits& limits,
                                                     std::int64_t now_ms, WriteBatch& batch) {
  LogPosition new_start = start_;
  if (limits.retention_ms >= 0) {
    // Records appended at or before the cut-off have expired.
    auto at = LocateTimestamp(now_ms - limits.retention_ms + 1);
    if (!at) return at.error();
    if (at->offset > new_start.offset) new_start = *at;
  }
  if (limits.retention_bytes >= 0 &&
      size_bytes() > static_cast<std::uint64_t>(limits.retention_bytes)) {
    // Keep the newest records whose total size fits; drop whole records before them.
    auto at =
        LocatePosition(durable_.position - static_cast<std::uint64_t>(limits.retention_bytes));
    if (!at) return at.error();
    if (at->offset > new_start.offset) new_start = *at;
  }
  if (limits.drop_below > new_start.offset) {
    // Positions are byte counts: the new start's comes from the nearest index entry below
    // it plus the sizes of at most an index interval of records, not from summing all that
    // is dropped (a queue's retention drops everything acknowledged since the last pass).
    auto at = LocateOffset(new_start, std::min(limits.drop_below, durable_.offset));
    if (!at) return at.error();
    if (at->offset > new_start.offset) new_start = *at;
  }
  if (new_start.offset <= start_.offset) return std::uint64_t{0};

  const std::uint64_t dropped = new_start.offset - start_.offset;
  batch.DeleteRange(ColumnFamily::kLog, LogKey(topic_, partition_, start_.offset),
                    LogKey(topic_, partition_, new_start.offset));
  // Index entries of dropped records sort before the first kept record's timestamp (ties may
  // survive; lookups clamp to the start, so they are harmless).
  std::int64_t kept_ts = last_append_ms_;
  if (new_start.offset < durable_.offset) {
    auto value = store_->Get(ColumnFamily::kLog, LogKey(topic_, partition_, new_start.offset));
    if (!value) return value.error();
    if (*value) {
      auto ts = DecodeAppendTimestamp(**value);
      if (!ts) return ts.error();
      kept_ts = *ts;
    }
  } else {
    kept_ts = last_append_ms_ + 1;
  }
  batch.DeleteRange(ColumnFamily::kTimeIndex, PartitionPrefix(topic_, partition_),
                    TimeIndexKey(topic_, partition_, static_cast<std::uint64_t>(kept_ts), 0));
  batch.Put(ColumnFamily::kMeta, LogStartKey(topic_, partition_), EncodeLogStart(new_start));
  // One range deletion per pass that drops delayed records, none otherwise.
  if (lowest_delay_ && *lowest_delay_ < new_start.offset) {
    batch.DeleteRange(ColumnFamily::kMeta, DelayKey(topic_, partition_, *lowest_delay_),
                      DelayKey(topic_, partition_, new_start.offset));
    // The next entry kept: one written at or past the new start, or one prepared for a
    // record that is not durable yet (its batch may not be written).
    lowest_delay_.reset();
    if (highest_delay_ >= new_start.offset) {
      auto it =
          store_->NewIterator(ColumnFamily::kMeta, DelayKey(topic_, partition_, new_start.offset),
                              DelayRangeEnd(topic_, partition_));
      it->SeekToFirst();
      LogKeyParts next{};
      if (it->Valid() && ParseDelayKey(it->key(), &next)) lowest_delay_ = next.offset;
      if (Status s = it->status(); !s) return s.error();
      if (highest_delay_ >= durable_.offset) {
        lowest_delay_ = std::min(lowest_delay_.value_or(UINT64_MAX), durable_.offset);
      }
    }
  }
  start_ = new_start;
  return dropped;
}

Result<PendingDelays> PartitionLog::ListPendingDelays(std::int64_t now_ms,
                                                      std::int64_t appended_after_ms,
                                                      std::size_t max) const {
  PendingDelays pending;
  pending.from =
      delays_indexed_from_ ? std::max(*delays_indexed_from_, start_.offset) : durable_.offset;
  if (!lowest_delay_) return pending;
  auto recent = LocateTimestamp(appended_after_ms);
  if (!recent) return recent.error();
  const std::uint64_t begin = std::max({recent->offset, start_.offset, *lowest_delay_});
  if (begin >= durable_.offset) return pending;
  auto it = store_->NewIterator(ColumnFamily::kMeta, DelayKey(topic_, partition_, begin),
                                DelayKey(topic_, partition_, durable_.offset));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    LogKeyParts parts{};
    std::string_view value = it->value();
    std::uint64_t deliver_after = 0;
    if (!ParseDelayKey(it->key(), &parts) || !GetFixed64BE(value, &deliver_after)) {
      return DataLoss("corrupt delay index entry of " + Where(topic_, partition_));
    }
    const auto at = static_cast<std::int64_t>(deliver_after);
    if (at <= now_ms) continue;
    if (pending.delays.size() == max) {
      pending.from = durable_.offset;
      break;
    }
    pending.delays.emplace_back(parts.offset, at);
  }
  if (Status s = it->status(); !s) return s.error();
  return pending;
}

void PartitionLog::DeleteTopicData(std::uint32_t topic, WriteBatch& batch) {
  batch.DeleteRange(ColumnFamily::kLog, TopicPrefix(topic), TopicRangeEnd(topic));
  batch.DeleteRange(ColumnFamily::kTimeIndex, TopicPrefix(topic), TopicRangeEnd(topic));
  for (MetaTag tag : {MetaTag::kLogStart, MetaTag::kDelay, MetaTag::kDelayIndexStart}) {
    batch.DeleteRange(ColumnFamily::kMeta, MetaKey(tag, TopicPrefix(topic)),
                      MetaKey(tag, TopicRangeEnd(topic)));
  }
  batch.Delete(ColumnFamily::kMeta, SequenceKey(topic));
}

}  // namespace spool::storage
