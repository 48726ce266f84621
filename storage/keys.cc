#include "storage/keys.h"

#include "common/coding.h"

namespace spool::storage {

std::string PartitionPrefix(std::uint32_t topic, std::uint32_t partition) {
  std::string key;
  key.reserve(8);
  PutFixed32BE(key, topic);
  PutFixed32BE(key, partition);
  return key;
}

std::string TopicPrefix(std::uint32_t topic) {
  std::string key;
  PutFixed32BE(key, topic);
  return key;
}

std::string TopicRangeEnd(std::uint32_t topic) {
  // No 4-byte successor exists; 32 bytes of 0xff sort after every key built here (<= 24).
  if (topic == UINT32_MAX) return std::string(32, '\xff');
  return TopicPrefix(topic + 1);
}

std::string PartitionRangeEnd(std::uint32_t topic, std::uint32_t partition) {
  if (partition == UINT32_MAX) return TopicRangeEnd(topic);
  return PartitionPrefix(topic, partition + 1);
}

std::string LogKey(std::uint32_t topic, std::uint32_t partition, std::uint64_t offset) {
  std::string key;
  key.reserve(16);
  PutFixed32BE(key, topic);
  PutFixed32BE(key, partition);
  PutFixed64BE(key, offset);
  return key;
}

bool ParseLogKey(std::string_view key, LogKeyParts* parts) {
  if (key.size() != 16) return false;
  return GetFixed32BE(key, &parts->topic) && GetFixed32BE(key, &parts->partition) &&
         GetFixed64BE(key, &parts->offset);
}

std::string TimeIndexKey(std::uint32_t topic, std::uint32_t partition, std::uint64_t timestamp_ms,
                         std::uint64_t offset) {
  std::string key;
  key.reserve(24);
  PutFixed32BE(key, topic);
  PutFixed32BE(key, partition);
  PutFixed64BE(key, timestamp_ms);
  PutFixed64BE(key, offset);
  return key;
}

bool ParseTimeIndexKey(std::string_view key, TimeIndexKeyParts* parts) {
  if (key.size() != 24) return false;
  return GetFixed32BE(key, &parts->topic) && GetFixed32BE(key, &parts->partition) &&
         GetFixed64BE(key, &parts->timestamp_ms) && GetFixed64BE(key, &parts->offset);
}

std::string MetaKey(MetaTag tag, std::string_view suffix) {
  std::string key(1, static_cast<char>(tag));
  key.append(suffix);
  return key;
}

std::string LogStartKey(std::uint32_t topic, std::uint32_t partition) {
  return MetaKey(MetaTag::kLogStart, PartitionPrefix(topic, partition));
}

std::string SequenceKey(std::uint32_t topic) {
  return MetaKey(MetaTag::kSequence, TopicPrefix(topic));
}

std::string DelayKey(std::uint32_t topic, std::uint32_t partition, std::uint64_t offset) {
  return MetaKey(MetaTag::kDelay, LogKey(topic, partition, offset));
}

bool ParseDelayKey(std::string_view key, LogKeyParts* parts) {
  if (key.empty() || key.front() != static_cast<char>(MetaTag::kDelay)) return false;
  return ParseLogKey(key.substr(1), parts);
}

std::string DelayIndexStartKey(std::uint32_t topic, std::uint32_t partition) {
  return MetaKey(MetaTag::kDelayIndexStart, PartitionPrefix(topic, partition));
}

std::string GroupMetaKey(std::string_view group) {
  std::string key(1, kGroupMetaTag);
  key.append(group);
  key.push_back('\0');
  return key;
}

std::string GroupOffsetsBegin(std::string_view group) {
  std::string key(1, kGroupOffsetTag);
  key.append(group);
  key.push_back('\0');
  return key;
}

std::string GroupOffsetsEnd(std::string_view group) {
  std::string key(1, kGroupOffsetTag);
  key.append(group);
  key.push_back('\1');
  return key;
}

std::string GroupOffsetKey(std::string_view group, std::uint32_t topic, std::uint32_t partition) {
  return GroupOffsetsBegin(group) + PartitionPrefix(topic, partition);
}

std::string DedupKey(std::uint32_t topic, std::string_view id) {
  std::string key = TopicPrefix(topic);
  key.append(id);
  return key;
}

std::string QueueFloorKey(std::uint32_t subscription, std::uint32_t partition) {
  std::string key = PartitionPrefix(subscription, partition);
  key.push_back('\x00');
  return key;
}

namespace {

std::string QueueOffsetKey(std::uint32_t subscription, std::uint32_t partition, char tag,
                           std::uint64_t offset) {
  std::string key = PartitionPrefix(subscription, partition);
  key.push_back(tag);
  PutFixed64BE(key, offset);
  return key;
}

bool ParseQueueOffsetKey(std::string_view key, char tag, std::uint64_t* offset) {
  if (key.size() != 17 || key[8] != tag) return false;
  key.remove_prefix(9);
  return GetFixed64BE(key, offset);
}

}  // namespace

std::string QueueMessageKey(std::uint32_t subscription, std::uint32_t partition,
                            std::uint64_t offset) {
  return QueueOffsetKey(subscription, partition, '\x01', offset);
}

bool ParseQueueMessageKey(std::string_view key, std::uint64_t* offset) {
  return ParseQueueOffsetKey(key, '\x01', offset);
}

std::string QueueLeaseRunKey(std::uint32_t subscription, std::uint32_t partition,
                             std::uint64_t first) {
  return QueueOffsetKey(subscription, partition, '\x02', first);
}

bool ParseQueueLeaseRunKey(std::string_view key, std::uint64_t* first) {
  return ParseQueueOffsetKey(key, '\x02', first);
}

std::string QueueAckedRunKey(std::uint32_t subscription, std::uint32_t partition,
                             std::uint64_t first) {
  return QueueOffsetKey(subscription, partition, '\x03', first);
}

bool ParseQueueAckedRunKey(std::string_view key, std::uint64_t* first) {
  return ParseQueueOffsetKey(key, '\x03', first);
}

std::string QueuePartitionBegin(std::uint32_t subscription, std::uint32_t partition) {
  return PartitionPrefix(subscription, partition);
}

std::string QueuePartitionEnd(std::uint32_t subscription, std::uint32_t partition) {
  return PartitionRangeEnd(subscription, partition);
}

}  // namespace spool::storage
