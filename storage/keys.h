#pragma once

// Key layouts of every column family (design §2). All integers are fixed-width big-endian so
// that bytewise key order is numeric order: a partition's records sort by offset, its time
// index entries by timestamp, and one topic's keys form one contiguous range (which is what
// lets a topic be dropped with a single DeleteRange).
//
// Thread-safety: pure functions.

#include <cstdint>
#include <string>
#include <string_view>

namespace spool::storage {

// log: topic u32 | partition u32 | offset u64
std::string LogKey(std::uint32_t topic, std::uint32_t partition, std::uint64_t offset);
struct LogKeyParts {
  std::uint32_t topic;
  std::uint32_t partition;
  std::uint64_t offset;
};
bool ParseLogKey(std::string_view key, LogKeyParts* parts);

// time_index: topic u32 | partition u32 | append timestamp u64 (ms) | offset u64
std::string TimeIndexKey(std::uint32_t topic, std::uint32_t partition, std::uint64_t timestamp_ms,
                         std::uint64_t offset);
struct TimeIndexKeyParts {
  std::uint32_t topic;
  std::uint32_t partition;
  std::uint64_t timestamp_ms;
  std::uint64_t offset;
};
bool ParseTimeIndexKey(std::string_view key, TimeIndexKeyParts* parts);

// The first key of a partition's range in `log` and `time_index`: topic | partition.
// [PartitionPrefix(t, p), PartitionPrefix(t, p + 1)) holds exactly that partition.
std::string PartitionPrefix(std::uint32_t topic, std::uint32_t partition);
// [TopicPrefix(t), TopicRangeEnd(t)) holds exactly one topic. For t == UINT32_MAX the end
// is a run of 0xff bytes longer than any key built here.
std::string TopicPrefix(std::uint32_t topic);
std::string TopicRangeEnd(std::uint32_t topic);
std::string PartitionRangeEnd(std::uint32_t topic, std::uint32_t partition);

// meta: a one-byte type tag, then type-specific fields. Every tag in use is listed here so
// that two owners never collide.
enum class MetaTag : char {
  kTopic = 'T',        // 'T' | name                      -> topic config (broker)
  kLogStart = 'S',     // 'S' | topic u32 | partition u32 -> start offset u64 | position u64
  kCounter = 'C',      // 'C' | name                      -> u64 (e.g. the next topic id)
  kQueue = 'Q',        // 'Q' | name                      -> queue metadata (broker)
  kRedriveTask = 'R',  // 'R' | id u64                  -> redrive task (broker)
  kSequence = 'N',     // 'N' | topic u32               -> sequence block end u64 (broker)
  // The delay index (PartitionLog): a record appended with its delivery time still ahead,
  // and the offset from which the index holds every such record of the partition.
  kDelay = 'D',            // 'D' | topic u32 | partition u32 | offset u64 -> deliver-after ms u64
  kDelayIndexStart = 'd',  // 'd' | topic u32 | partition u32 -> offset u64
};
std::string MetaKey(MetaTag tag, std::string_view suffix);
std::string LogStartKey(std::uint32_t topic, std::uint32_t partition);
std::string SequenceKey(std::uint32_t topic);
std::string DelayKey(std::uint32_t topic, std::uint32_t partition, std::uint64_t offset);
bool ParseDelayKey(std::string_view key, LogKeyParts* parts);
std::string DelayIndexStartKey(std::uint32_t topic, std::uint32_t partition);

// offsets: consumer groups. Group ids are [A-Za-z0-9._-], so the 0x00 after the id ends it:
// one group's keys are one contiguous range that no other group's id can enter.
//   'G' | group | 0x00                          -> group settings (broker)
//   'O' | group | 0x00 | topic u32 | partition u32 -> committed offset (broker)
// Offsets are keyed by topic id, so a topic deleted and created again starts without them.
std::string GroupMetaKey(std::string_view group);
std::string GroupOffsetKey(std::string_view group, std::uint32_t topic, std::uint32_t partition);
// Bounds of every committed offset of `group`, and of every group's settings.
std::string GroupOffsetsBegin(std::string_view group);
std::string GroupOffsetsEnd(std::string_view group);
inline constexpr char kGroupMetaTag = 'G';
inline constexpr char kGroupOffsetTag = 'O';

// dedup: topic u32 | deduplication id -> where the record went and when the id expires.
// [TopicPrefix(t), TopicRangeEnd(t)) holds one topic's ids.
std::string DedupKey(std::uint32_t topic, std::string_view id);

// queue_state: one queue subscription's progress on one partition.
//   subscription u32 | partition u32 | 0x00                -> ack floor u64 (all below: done)
//   subscription u32 | partition u32 | 0x01 | offset u64   -> that message's state
//   subscription u32 | partition u32 | 0x02 | first u64    -> a lease run: messages
//       [first, first + n) first received by one receive, sharing one state (n, state)
//   subscription u32 | partition u32 | 0x03 | first u64    -> an acknowledged run: messages
//       [first, first + n) deleted out of order by one delete call (n)
// [QueuePartitionBegin(s, p), QueuePartitionEnd(s, p)) holds exactly one partition's keys.
std::string QueueFloorKey(std::uint32_t subscription, std::uint32_t partition);
std::string QueueMessageKey(std::uint32_t subscription, std::uint32_t partition,
                            std::uint64_t offset);
bool ParseQueueMessageKey(std::string_view key, std::uint64_t* offset);
std::string QueueLeaseRunKey(std::uint32_t subscription, std::uint32_t partition,
                             std::uint64_t first);
bool ParseQueueLeaseRunKey(std::string_view key, std::uint64_t* first);
std::string QueueAckedRunKey(std::uint32_t subscription, std::uint32_t partition,
                             std::uint64_t first);
bool ParseQueueAckedRunKey(std::string_view key, std::uint64_t* first);
std::string QueuePartitionBegin(std::uint32_t subscription, std::uint32_t partition);
std::string QueuePartitionEnd(std::uint32_t subscription, std::uint32_t partition);

}  // namespace spool::storage
