#pragma once

// One partition of a topic: an append-only sequence of records stored in the `log` column
// family under (topic, partition, offset), with a sparse time index beside it.
//
// Offsets are dense: each append takes the next ones. Besides offsets every record has a
// byte position, the total encoded size of all records before it since the partition was
// created; positions drive retention by size and are what the time index stores.
//
// Bounds:  start (log start offset) <= durable end <= next offset.
// - The next offset is derived at Open() from the last key (never stored twice); the log
//   start is stored in `meta` because after retention deleted everything there is no key
//   left to derive it from.
// - Appends are prepared here (offsets assigned, entries added to a WriteBatch) and become
//   readable only when MarkDurable() reports that their batch reached the disk, so a reader
//   can never see a record that a crash could take back.
// - The delay index in `meta` lists each record appended with its delivery time still ahead,
//   so that after a restart queues can count delayed messages without reading the log
//   (PendingDelays). It covers the partition from its first append by a spoold that keeps it
//   (DelayIndexStartKey); retention drops its entries with their records.
//
// Thread-safety: not thread-safe. A PartitionLog is only touched from its owner's strand
// (see broker::Broker); the Store it uses is thread-safe.

#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "common/error.h"
#include "storage/record.h"
#include "storage/store.h"

namespace spool::storage {

struct StoredRecord {
  std::uint64_t offset = 0;
  Record record;
};

// What the delay index says about a partition's durable records (PartitionLog::PendingDelays).
struct PendingDelays {
  // Every record from this offset to the log end whose delivery time is still ahead is in
  // `delays`. Below it the index may lack records (appended by a spoold without it).
  std::uint64_t from = 0;
  std::vector<std::pair<std::uint64_t, std::int64_t>> delays;  // offset, deliver-after ms
};

// Where a record starts: its offset and its byte position.
struct LogPosition {
  std::uint64_t offset = 0;
  std::uint64_t position = 0;
  bool operator==(const LogPosition&) const = default;
};

// What an append reserved; pass it back to MarkDurable() once the batch is written.
struct PreparedAppend {
  std::uint64_t first_offset = 0;
  LogPosition end;  // the offset and position just past the appended records
};

struct RetentionLimits {
  std::int64_t retention_ms = -1;     // -1: keep forever
  std::int64_t retention_bytes = -1;  // -1: no size limit
  // Also drop every record below this offset (what the topic's queues have all acknowledged).
  std::uint64_t drop_below = 0;
};

class PartitionLog {
 public:
  // A time index entry is written at least every this many bytes of records.
  static constexpr std::uint64_t kIndexIntervalBytes = 64 * 1024;

  static Result<PartitionLog> Open(const Store& store, std::uint32_t topic,
                                   std::uint32_t partition);

  // Stamps each record with an append timestamp (never lower than the previous record's, so
  // time order is offset order even if the wall clock steps back), assigns offsets and adds
  // the records and index entries to `batch`.
  Result<PreparedAppend> PrepareAppend(std::span<Record> records, std::int64_t now_ms,
                                       WriteBatch& batch);
  // Makes records up to `end` readable. Called in prepare order.
  void MarkDurable(const PreparedAppend& append);
  // The batch of a prepared append failed: the partition refuses further appends (offsets it
  // handed out may now have a hole) until the store is reopened.
  void MarkFailed(const Error& error);

  // Reads [from, durable end) up to `max_records` records and `max_bytes` encoded bytes; the
  // first record is returned even if it alone exceeds `max_bytes`, so a reader always makes
  // progress. `from` outside [start, durable end] is OutOfRange.
  Result<std::vector<StoredRecord>> Read(std::uint64_t from, std::size_t max_records,
                                         std::size_t max_bytes) const;

  // The first offset whose append timestamp is >= `timestamp_ms`, or nullopt if no durable
  // record is that recent.
  Result<std::optional<std::uint64_t>> OffsetForTimestamp(std::int64_t timestamp_ms) const;

  // Computes the new log start that `limits` demand at `now_ms` and, if it moved, adds the
  // deletions to `batch` and moves the start at once (reads below it fail from now on).
  // Returns the number of records dropped.
  Result<std::uint64_t> PrepareRetention(const RetentionLimits& limits, std::int64_t now_ms,
                                         WriteBatch& batch);

  // The durable records whose delivery time is after `now_ms`, in offset order, from the
  // delay index. Only records appended at or after `appended_after_ms` are looked at (the
  // caller knows how far ahead a delivery time can be), so a long log of delayed records
  // long since due costs nothing. Past `max` of them the rest are not listed and `from` is
  // the log end.
  Result<PendingDelays> ListPendingDelays(std::int64_t now_ms, std::int64_t appended_after_ms,
                                          std::size_t max) const;

  // Adds to `batch` the deletion of every record, index entry and log start of a topic, of
  // its delay index, and of its sequence number block (SequenceKey).
  static void DeleteTopicData(std::uint32_t topic, WriteBatch& batch);

  std::uint32_t topic() const { return topic_; }
  std::uint32_t partition() const { return partition_; }
  std::uint64_t start_offset() const { return start_.offset; }
  std::uint64_t end_offset() const { return durable_.offset; }
  std::uint64_t next_offset() const { return next_.offset; }
  // Encoded bytes of the durable records at or above the log start.
  std::uint64_t size_bytes() const { return durable_.position - start_.position; }
  // Byte position of the log start (see LogPosition).
  std::uint64_t start_position() const { return start_.position; }

 private:
  PartitionLog(const Store& store, std::uint32_t topic, std::uint32_t partition)
      : store_(&store), topic_(topic), partition_(partition) {}

  // First durable record at or after `from` whose append timestamp is >= `timestamp_ms`
  // (or whose position is >= `position`, or whose offset is >= `offset`); the durable end if
  // there is none. INT64_MAX as `timestamp_ms` turns the time condition off, and then no
  // record body is read.
  Result<LogPosition> ScanForward(LogPosition from, std::int64_t timestamp_ms,
                                  std::uint64_t position, std::uint64_t offset = UINT64_MAX) const;
  Result<LogPosition> LocateTimestamp(std::int64_t timestamp_ms) const;
  // The last time index entry at or below both `position` and `offset`, or `from` when
  // none is past it.
  Result<LogPosition> IndexFloor(LogPosition from, std::uint64_t position,
                                 std::uint64_t offset) const;
  Result<LogPosition> LocatePosition(std::uint64_t position) const;
  // The position of `offset` (at most the durable end), scanning the log only from the last
  // time index entry at or below it, and from no lower than `from`.
  Result<LogPosition> LocateOffset(LogPosition from, std::uint64_t offset) const;

  const Store* store_;
  std::uint32_t topic_;
  std::uint32_t partition_;
  LogPosition start_;
  LogPosition durable_;
  LogPosition next_;
  std::int64_t last_append_ms_ = 0;
  std::uint64_t last_index_position_ = 0;
  bool has_index_entry_ = false;
  // Where the delay index starts; none until the first append that writes the start.
  std::optional<std::uint64_t> delays_indexed_from_;
  // The lowest offset with a delay index entry, written or prepared, if there is one;
  // retention deletes the entries below the new start only when there are some.
  std::optional<std::uint64_t> lowest_delay_;
  std::uint64_t highest_delay_ = 0;
  std::optional<Error> failed_;
};

}  // namespace spool::storage
