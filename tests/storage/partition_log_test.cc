#include "storage/partition_log.h"

#include <gtest/gtest.h>

#include "storage/keys.h"
#include "tests/testing/manual_clock.h"
#include "tests/testing/temp_dir.h"

namespace spool::storage {
namespace {

using spool::testing::ManualClock;
using spool::testing::TempDir;

constexpr std::int64_t kT0 = ManualClock::kStartMillis;

class PartitionLogTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen() {
    log_.reset();
    store_.reset();
    auto store = Store::Open(dir_.path(), {});
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
    auto log = PartitionLog::Open(*store_, kTopic, kPartition);
    ASSERT_TRUE(log) << log.error().ToString();
    log_ = std::make_unique<PartitionLog>(std::move(*log));
  }

  static std::vector<Record> MakeRecords(int n, std::size_t value_size, int first_id = 0) {
    std::vector<Record> records;
    for (int i = 0; i < n; ++i) {
      Record r;
      r.key = "k" + std::to_string(first_id + i);
      r.value = std::string(value_size, static_cast<char>('a' + (first_id + i) % 26));
      records.push_back(std::move(r));
    }
    return records;
  }

  // Appends and waits until durable, as the broker does.
  PreparedAppend Append(std::vector<Record> records, std::int64_t now_ms) {
    WriteBatch batch;
    auto prepared = log_->PrepareAppend(records, now_ms, batch);
    EXPECT_TRUE(prepared);
    EXPECT_TRUE(store_->WriteSync(std::move(batch)));
    log_->MarkDurable(*prepared);
    return *prepared;
  }

  std::uint64_t Retain(RetentionLimits limits, std::int64_t now_ms) {
    WriteBatch batch;
    auto dropped = log_->PrepareRetention(limits, now_ms, batch);
    EXPECT_TRUE(dropped) << dropped.error().ToString();
    if (!batch.empty()) {
      EXPECT_TRUE(store_->WriteSync(std::move(batch)));
    }
    return dropped ? *dropped : 0;
  }

  // Records of `n` bytes each delivered after `deliver_after_ms`.
  static std::vector<Record> Delayed(int n, std::int64_t deliver_after_ms) {
    auto records = MakeRecords(n, 10);
    for (Record& r : records)
      r.deliver_after_ms = deliver_after_ms;
    return records;
  }

  std::vector<std::pair<std::uint64_t, std::int64_t>> Pending(std::int64_t now_ms,
                                                              std::size_t max = 100,
                                                              std::int64_t appended_after_ms = 0) {
    auto pending = log_->ListPendingDelays(now_ms, appended_after_ms, max);
    EXPECT_TRUE(pending) << pending.error().ToString();
    return pending ? pending->delays : decltype(pending->delays){};
  }

  std::uint64_t PendingFrom(std::int64_t now_ms, std::size_t max = 100) {
    auto pending = log_->ListPendingDelays(now_ms, 0, max);
    EXPECT_TRUE(pending) << pending.error().ToString();
    return pending ? pending->from : UINT64_MAX;
  }

  // Offsets of the stored delay index entries of `topic` (every partition).
  std::vector<std::uint64_t> StoredDelays(std::uint32_t topic = kTopic) {
    std::vector<std::uint64_t> out;
    auto it = store_->NewIterator(ColumnFamily::kMeta, MetaKey(MetaTag::kDelay, TopicPrefix(topic)),
                                  MetaKey(MetaTag::kDelay, TopicRangeEnd(topic)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      LogKeyParts parts{};
      EXPECT_TRUE(ParseDelayKey(it->key(), &parts));
      out.push_back(parts.offset);
    }
    EXPECT_TRUE(it->status());
    return out;
  }

  static constexpr std::uint32_t kTopic = 3;
  static constexpr std::uint32_t kPartition = 1;
  TempDir dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<PartitionLog> log_;
};

TEST_F(PartitionLogTest, AppendsGetContiguousOffsetsAndReadBackIdentical) {
  auto first = MakeRecords(3, 10, 0);
  auto second = MakeRecords(2, 10, 3);

  PreparedAppend a = Append(first, kT0);
  PreparedAppend b = Append(second, kT0 + 5);
  auto read = log_->Read(0, 100, 1 << 20);

  EXPECT_EQ(a.first_offset, 0u);
  EXPECT_EQ(b.first_offset, 3u);
  ASSERT_TRUE(read);
  ASSERT_EQ(read->size(), 5u);
  for (std::size_t i = 0; i < 5; ++i) {
    EXPECT_EQ((*read)[i].offset, i);
    EXPECT_EQ((*read)[i].record.key, "k" + std::to_string(i));
  }
  EXPECT_EQ((*read)[0].record.append_timestamp_ms, kT0);
  EXPECT_EQ((*read)[4].record.append_timestamp_ms, kT0 + 5);
  EXPECT_EQ(log_->start_offset(), 0u);
  EXPECT_EQ(log_->end_offset(), 5u);
}

TEST_F(PartitionLogTest, RecordsAreInvisibleUntilDurable) {
  auto records = MakeRecords(2, 10);
  WriteBatch batch;
  auto prepared = log_->PrepareAppend(records, kT0, batch);
  ASSERT_TRUE(prepared);
  ASSERT_TRUE(store_->WriteSync(std::move(batch)));

  auto before = log_->Read(0, 10, 1 << 20);
  log_->MarkDurable(*prepared);
  auto after = log_->Read(0, 10, 1 << 20);

  ASSERT_TRUE(before && after);
  EXPECT_TRUE(before->empty());
  EXPECT_EQ(log_->next_offset(), 2u);
  EXPECT_EQ(after->size(), 2u);
}

TEST_F(PartitionLogTest, ReadsAreBoundedByCountAndBytesButAlwaysMakeProgress) {
  Append(MakeRecords(10, 100), kT0);
  Record sized = MakeRecords(1, 100)[0];
  sized.append_timestamp_ms = kT0;
  const std::size_t record_bytes = EncodedRecordSize(sized);

  auto by_count = log_->Read(2, 3, 1 << 20);
  auto by_bytes = log_->Read(0, 100, 3 * record_bytes + record_bytes / 2);
  auto tiny = log_->Read(5, 100, 1);

  ASSERT_TRUE(by_count && by_bytes && tiny);
  ASSERT_EQ(by_count->size(), 3u);
  EXPECT_EQ(by_count->front().offset, 2u);
  EXPECT_EQ(by_bytes->size(), 3u);
  ASSERT_EQ(tiny->size(), 1u) << "the first record is returned even if it alone is too big";
  EXPECT_EQ(tiny->front().offset, 5u);
}

TEST_F(PartitionLogTest, ReadsOutsideTheLogAreOutOfRange) {
  Append(MakeRecords(3, 10), kT0);

  auto beyond = log_->Read(4, 10, 1 << 20);
  auto at_end = log_->Read(3, 10, 1 << 20);

  ASSERT_FALSE(beyond);
  EXPECT_EQ(beyond.error().code, ErrorCode::kOutOfRange);
  EXPECT_NE(beyond.error().message.find("beyond the log end 3"), std::string::npos);
  ASSERT_TRUE(at_end);
  EXPECT_TRUE(at_end->empty());
}

TEST_F(PartitionLogTest, ReopenDerivesTheNextOffsetAndSizeFromTheLog) {
  Append(MakeRecords(100, 2000), kT0);
  Append(MakeRecords(50, 2000, 100), kT0 + 10);
  const std::uint64_t size = log_->size_bytes();

  Reopen();
  PreparedAppend next = Append(MakeRecords(1, 10, 150), kT0 + 20);

  EXPECT_EQ(next.first_offset, 150u);
  EXPECT_GT(log_->size_bytes(), size);
  auto all = log_->Read(0, 1000, 64 << 20);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 151u);
  EXPECT_EQ(all->back().record.key, "k150");
}

TEST_F(PartitionLogTest, AppendTimestampsNeverGoBackwards) {
  Append(MakeRecords(1, 10), kT0 + 1000);

  Append(MakeRecords(1, 10, 1), kT0);  // the wall clock stepped back
  auto read = log_->Read(0, 10, 1 << 20);

  ASSERT_TRUE(read);
  EXPECT_EQ((*read)[1].record.append_timestamp_ms, kT0 + 1000);
}

TEST_F(PartitionLogTest, AppendTimestampsStayMonotonicAcrossReopen) {
  Append(MakeRecords(1, 10), kT0 + 1000);
  Reopen();

  Append(MakeRecords(1, 10, 1), kT0);
  auto read = log_->Read(1, 10, 1 << 20);

  ASSERT_TRUE(read);
  EXPECT_EQ((*read)[0].record.append_timestamp_ms, kT0 + 1000);
}

TEST_F(PartitionLogTest, OffsetForTimestampMatchesABruteForceScan) {
  // 1 KiB records put a sparse index entry about every 64 records; timestamps repeat.
  std::vector<std::int64_t> times;
  for (int batch = 0; batch < 40; ++batch) {
    const std::int64_t t = kT0 + batch * 100;
    Append(MakeRecords(10, 1024, batch * 10), t);
    for (int i = 0; i < 10; ++i)
      times.push_back(t);
  }

  for (std::int64_t target = kT0 - 50; target <= kT0 + 4100; target += 37) {
    std::optional<std::uint64_t> expected;
    for (std::size_t o = 0; o < times.size(); ++o) {
      if (times[o] >= target) {
        expected = o;
        break;
      }
    }
    auto found = log_->OffsetForTimestamp(target);
    ASSERT_TRUE(found);
    EXPECT_EQ(*found, expected) << "target " << target - kT0;
  }
}

TEST_F(PartitionLogTest, TimeRetentionDropsExpiredRecordsAndPersistsTheStart) {
  Append(MakeRecords(10, 100), kT0);
  Append(MakeRecords(10, 100, 10), kT0 + 60'000);

  const std::uint64_t dropped = Retain({.retention_ms = 30'000}, kT0 + 70'000);

  EXPECT_EQ(dropped, 10u);
  EXPECT_EQ(log_->start_offset(), 10u);
  auto below = log_->Read(9, 10, 1 << 20);
  ASSERT_FALSE(below);
  EXPECT_EQ(below.error().code, ErrorCode::kOutOfRange);
  EXPECT_NE(below.error().message.find("below the log start 10"), std::string::npos);
  auto gone = store_->Get(ColumnFamily::kLog, LogKey(kTopic, kPartition, 5));
  ASSERT_TRUE(gone);
  EXPECT_FALSE(gone->has_value()) << "the records are deleted, not just hidden";

  Reopen();
  EXPECT_EQ(log_->start_offset(), 10u);
  EXPECT_EQ(log_->end_offset(), 20u);
  auto kept = log_->Read(10, 100, 1 << 20);
  ASSERT_TRUE(kept);
  EXPECT_EQ(kept->size(), 10u);
}

TEST_F(PartitionLogTest, TimeRetentionKeepsRecordsExactlyAtTheLimit) {
  Append(MakeRecords(1, 10), kT0);
  Append(MakeRecords(1, 10, 1), kT0 + 1);

  EXPECT_EQ(Retain({.retention_ms = 1000}, kT0 + 1000), 1u)
      << "a record exactly retention_ms old has expired";
  EXPECT_EQ(log_->start_offset(), 1u);
  EXPECT_EQ(Retain({.retention_ms = 1000}, kT0 + 1000), 0u);
}

TEST_F(PartitionLogTest, SizeRetentionKeepsTheNewestRecordsThatFit) {
  for (int i = 0; i < 30; ++i)
    Append(MakeRecords(10, 1000, i * 10), kT0 + i);
  const std::uint64_t limit = 50'000;

  Retain({.retention_bytes = static_cast<std::int64_t>(limit)}, kT0 + 100);

  EXPECT_LE(log_->size_bytes(), limit);
  const std::uint64_t record_size = EncodedRecordSize(MakeRecords(1, 1000, 100)[0]);
  EXPECT_GT(log_->size_bytes() + record_size + 2, limit)
      << "no more than one record beyond the limit was dropped";
  EXPECT_EQ(log_->end_offset(), 300u);
  auto first = log_->Read(log_->start_offset(), 1, 1 << 20);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->front().offset, log_->start_offset());

  Reopen();
  EXPECT_LE(log_->size_bytes(), limit);
}

TEST_F(PartitionLogTest, RecordsBelowAnAcknowledgedOffsetAreDropped) {
  Append(MakeRecords(10, 100), kT0);
  const std::uint64_t size = log_->size_bytes();
  EXPECT_EQ(Retain({.drop_below = 4}, kT0), 4u);
  EXPECT_EQ(log_->start_offset(), 4u);
  // The ten records are stored alike, so six of them take six tenths of the bytes.
  EXPECT_EQ(log_->size_bytes() * 10, size * 6) << "the start position moved with it";
  EXPECT_EQ(log_->Read(3, 1, 1 << 20).error().code, ErrorCode::kOutOfRange);
  EXPECT_EQ(Retain({.drop_below = 2}, kT0), 0u) << "never backwards";
  EXPECT_EQ(Retain({.drop_below = 1000}, kT0), 6u) << "at most up to the end";
  EXPECT_EQ(log_->start_offset(), 10u);
  Reopen();
  EXPECT_EQ(log_->start_offset(), 10u);
  EXPECT_EQ(log_->size_bytes(), 0u);
}

TEST_F(PartitionLogTest, DroppingBelowAnOffsetFindsItsPositionThroughTheIndex) {
  // 2,000 records of about 1 KiB over 20 appends: some 30 time index entries (one per
  // 64 KiB), so the new start is found from an entry, not from the log's start.
  for (int b = 0; b < 20; ++b)
    Append(MakeRecords(100, 1000, b * 100), kT0 + b);
  auto stored = log_->Read(0, 2000, 64 << 20);
  ASSERT_TRUE(stored);
  ASSERT_EQ(stored->size(), 2000u);
  std::vector<std::uint64_t> size_from(2001, 0);  // bytes of the records from offset i on
  for (std::size_t i = 2000; i-- > 0;)
    size_from[i] = size_from[i + 1] + EncodedRecordSize((*stored)[i].record);
  ASSERT_EQ(log_->size_bytes(), size_from[0]);
  for (std::uint64_t below : {1u, 64u, 65u, 777u, 1500u, 1999u}) {
    const std::uint64_t start = log_->start_offset();
    EXPECT_EQ(Retain({.drop_below = below}, kT0 + 100), below - start);
    EXPECT_EQ(log_->start_offset(), below);
    EXPECT_EQ(log_->size_bytes(), size_from[below]) << "dropping below " << below;
  }
  Reopen();
  EXPECT_EQ(log_->start_offset(), 1999u);
  EXPECT_EQ(log_->size_bytes(), size_from[1999]);
  // Time and size retention still meet the log where the drop left it.
  EXPECT_EQ(Retain({.retention_bytes = 0}, kT0 + 100), 1u);
  EXPECT_EQ(log_->size_bytes(), 0u);
}

TEST_F(PartitionLogTest, ExpiringEverythingKeepsOffsetsGoingAfterReopen) {
  Append(MakeRecords(5, 10), kT0);

  EXPECT_EQ(Retain({.retention_ms = 10}, kT0 + 1000), 5u);
  EXPECT_EQ(log_->size_bytes(), 0u);
  Reopen();
  PreparedAppend next = Append(MakeRecords(1, 10, 5), kT0 + 2000);

  EXPECT_EQ(log_->start_offset(), 5u);
  EXPECT_EQ(next.first_offset, 5u) << "offsets are never reused";
  auto found = log_->OffsetForTimestamp(kT0);
  ASSERT_TRUE(found);
  EXPECT_EQ(*found, 5u);
}

TEST_F(PartitionLogTest, CorruptRecordGivesDataLossWithItsOffset) {
  Append(MakeRecords(3, 10), kT0);
  WriteBatch batch;
  batch.Put(ColumnFamily::kLog, LogKey(kTopic, kPartition, 1), "garbage bytes");
  ASSERT_TRUE(store_->WriteSync(std::move(batch)));

  auto read = log_->Read(0, 10, 1 << 20);

  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().code, ErrorCode::kDataLoss);
  EXPECT_NE(read.error().message.find("offset 1"), std::string::npos) << read.error().message;
}

TEST_F(PartitionLogTest, AFailedWriteStopsFurtherAppends) {
  log_->MarkFailed(Internal("disk on fire"));
  auto records = MakeRecords(1, 10);
  WriteBatch batch;

  auto prepared = log_->PrepareAppend(records, kT0, batch);

  ASSERT_FALSE(prepared);
  EXPECT_EQ(prepared.error().code, ErrorCode::kUnavailable);
  EXPECT_TRUE(batch.empty());
}

TEST_F(PartitionLogTest, TheDelayIndexListsRecordsWhoseDeliveryIsAhead) {
  using Delays = std::vector<std::pair<std::uint64_t, std::int64_t>>;
  Append(MakeRecords(2, 10), kT0);
  Append(Delayed(2, kT0 + 1'000), kT0);
  Append(Delayed(1, kT0), kT0);              // due when appended: not delayed
  Append(Delayed(1, kT0 + 500), kT0 + 600);  // nor this
  Append(Delayed(1, kT0 + 2'000), kT0 + 600);
  const Delays all{{2, kT0 + 1'000}, {3, kT0 + 1'000}, {6, kT0 + 2'000}};
  EXPECT_EQ(Pending(kT0), all);
  EXPECT_EQ(PendingFrom(kT0), 0u) << "the index covers the log from its first append";
  EXPECT_EQ(Pending(kT0 + 1'000), (Delays{{6, kT0 + 2'000}})) << "only what is still ahead";
  EXPECT_TRUE(Pending(kT0 + 2'000).empty());
  EXPECT_EQ(Pending(kT0, 2), (Delays{{2, kT0 + 1'000}, {3, kT0 + 1'000}}));
  EXPECT_EQ(PendingFrom(kT0, 2), 7u) << "cut short: nothing is said below the end";
  EXPECT_EQ(PendingFrom(kT0, 3), 0u);
  Reopen();
  EXPECT_EQ(Pending(kT0), all);
  EXPECT_EQ(PendingFrom(kT0), 0u);
}

TEST_F(PartitionLogTest, TheDelayIndexIsReadOnlyFromRecentAppends) {
  Append(Delayed(2, kT0 + 60'000), kT0);
  Append(Delayed(2, kT0 + 60'000), kT0 + 1'000);
  EXPECT_EQ(Pending(kT0, 100, kT0 + 1'000), (std::vector<std::pair<std::uint64_t, std::int64_t>>{
                                                {2, kT0 + 60'000}, {3, kT0 + 60'000}}))
      << "records appended before kT0 + 1 s are not looked at";
  EXPECT_EQ(Pending(kT0, 100, kT0 + 2'000).size(), 0u);
  EXPECT_EQ(Pending(kT0, 100, kT0).size(), 4u);
}

TEST_F(PartitionLogTest, RetentionKeepsTheDelayEntryOfARecordNotYetDurable) {
  Append(Delayed(2, kT0 + 60'000), kT0);
  auto records = Delayed(1, kT0 + 60'000);
  WriteBatch pending;
  auto prepared = log_->PrepareAppend(records, kT0, pending);
  ASSERT_TRUE(prepared);
  EXPECT_EQ(Retain({.drop_below = 1000}, kT0), 2u) << "only the durable records";
  EXPECT_EQ(StoredDelays(), std::vector<std::uint64_t>{});
  ASSERT_TRUE(store_->WriteSync(std::move(pending)));
  log_->MarkDurable(*prepared);
  EXPECT_EQ(StoredDelays(), (std::vector<std::uint64_t>{2}));
  EXPECT_EQ(Retain({.drop_below = 1000}, kT0), 1u);
  EXPECT_TRUE(StoredDelays().empty()) << "the entry written after the last pass went with it";
}

TEST_F(PartitionLogTest, TheDelayIndexOfALogWrittenWithoutItStartsAtTheNextAppend) {
  Append(Delayed(3, kT0 + 1'000), kT0);
  // As a data directory of a spoold from before the delay index.
  WriteBatch old;
  old.Delete(ColumnFamily::kMeta, DelayIndexStartKey(kTopic, kPartition));
  for (std::uint64_t offset = 0; offset < 3; ++offset)
    old.Delete(ColumnFamily::kMeta, DelayKey(kTopic, kPartition, offset));
  ASSERT_TRUE(store_->WriteSync(std::move(old)));
  Reopen();
  EXPECT_EQ(PendingFrom(kT0), 3u) << "it knows nothing of what is there";
  EXPECT_TRUE(Pending(kT0).empty());
  Append(Delayed(1, kT0 + 1'000), kT0);
  Reopen();
  EXPECT_EQ(PendingFrom(kT0), 3u);
  EXPECT_EQ(Pending(kT0), (std::vector<std::pair<std::uint64_t, std::int64_t>>{{3, kT0 + 1'000}}));
}

TEST_F(PartitionLogTest, RetentionDropsTheDelayIndexWithItsRecords) {
  Append(Delayed(3, kT0 + 60'000), kT0);
  Append(MakeRecords(3, 10), kT0);
  Append(Delayed(2, kT0 + 60'000), kT0);
  EXPECT_EQ(StoredDelays(), (std::vector<std::uint64_t>{0, 1, 2, 6, 7}));
  EXPECT_EQ(Retain({.drop_below = 2}, kT0), 2u);
  EXPECT_EQ(StoredDelays(), (std::vector<std::uint64_t>{2, 6, 7}));
  EXPECT_EQ(PendingFrom(kT0), 2u);
  EXPECT_EQ(Pending(kT0).size(), 3u);
  EXPECT_EQ(Retain({.drop_below = 7}, kT0), 5u);
  EXPECT_EQ(StoredDelays(), (std::vector<std::uint64_t>{7}));
  Reopen();
  EXPECT_EQ(Pending(kT0), (std::vector<std::pair<std::uint64_t, std::int64_t>>{{7, kT0 + 60'000}}));
  EXPECT_EQ(Retain({.drop_below = 8}, kT0), 1u);
  EXPECT_TRUE(StoredDelays().empty());
  Append(Delayed(1, kT0 + 60'000), kT0);
  EXPECT_EQ(StoredDelays(), (std::vector<std::uint64_t>{8}));
}

TEST_F(PartitionLogTest, DeleteTopicDataLeavesOtherTopicsAlone) {
  Append(MakeRecords(3, 10), kT0);
  auto other = PartitionLog::Open(*store_, kTopic + 1, 0);
  ASSERT_TRUE(other);
  auto other_records = Delayed(2, kT0 + 1'000);
  Append(Delayed(1, kT0 + 1'000), kT0);
  WriteBatch other_batch;
  auto prepared = other->PrepareAppend(other_records, kT0, other_batch);
  ASSERT_TRUE(prepared && store_->WriteSync(std::move(other_batch)));

  WriteBatch drop;
  PartitionLog::DeleteTopicData(kTopic, drop);
  ASSERT_TRUE(store_->WriteSync(std::move(drop)));
  Reopen();
  auto reopened_other = PartitionLog::Open(*store_, kTopic + 1, 0);

  EXPECT_EQ(log_->end_offset(), 0u);
  EXPECT_TRUE(StoredDelays().empty());
  EXPECT_FALSE(*store_->Get(ColumnFamily::kMeta, DelayIndexStartKey(kTopic, kPartition)));
  ASSERT_TRUE(reopened_other);
  EXPECT_EQ(reopened_other->end_offset(), 2u);
  EXPECT_EQ(StoredDelays(kTopic + 1), (std::vector<std::uint64_t>{0, 1}));
  EXPECT_TRUE(*store_->Get(ColumnFamily::kMeta, DelayIndexStartKey(kTopic + 1, 0)));
}

}  // namespace
}  // namespace spool::storage
