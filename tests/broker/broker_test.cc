#include "broker/broker.h"

#include <algorithm>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "broker/broker_internal.h"
#include "broker/partitioner.h"
#include "tests/testing/manual_clock.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/wait.h"

namespace spool::broker {
namespace {

using spool::testing::ManualClock;
using spool::testing::StatusWaiter;
using spool::testing::TempDir;
using spool::testing::Waiter;
using storage::Record;
using storage::StoredRecord;

Record Value(std::string value, std::optional<std::string> key = std::nullopt) {
  Record r;
  r.key = std::move(key);
  r.value = std::move(value);
  return r;
}

class BrokerTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void TearDown() override { Close(); }

  void Open() {
    auto store = storage::Store::Open(dir_.path(), {});
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
    BrokerOptions options;
    options.worker_threads = 4;
    options.retention_check_interval = std::chrono::milliseconds(0);
    auto broker = Broker::Open(*store_, clock_, options);
    ASSERT_TRUE(broker) << broker.error().ToString();
    broker_ = std::move(*broker);
  }

  void Close() {
    if (broker_) broker_->Shutdown();
    broker_.reset();
    store_.reset();
  }

  void Reopen() {
    Close();
    Open();
  }

  Result<TopicInfo> Create(const std::string& name, std::uint32_t partitions,
                           std::int64_t retention_ms = kDefaultRetentionMs) {
    TopicConfig config;
    config.name = name;
    config.partitions = partitions;
    config.retention_ms = retention_ms;
    Waiter<TopicInfo> w;
    broker_->CreateTopic(config, w.Callback());
    return w.Get();
  }

  Result<std::vector<ProducedRecord>> Produce(const std::string& topic,
                                              std::optional<std::uint32_t> partition,
                                              std::vector<Record> records) {
    Waiter<std::vector<ProducedRecord>> w;
    broker_->Produce(topic, partition, std::move(records), w.Callback());
    return w.Get();
  }

  Result<std::vector<StoredRecord>> Fetch(const std::string& topic, std::uint32_t partition,
                                          std::uint64_t offset, std::size_t max = 1000) {
    Waiter<std::vector<StoredRecord>> w;
    broker_->Fetch(topic, partition, offset, max, 64 << 20, w.Callback());
    return w.Get();
  }

  Result<std::optional<std::uint64_t>> ListOffset(const std::string& topic, OffsetQuery query,
                                                  std::int64_t ts = 0) {
    Waiter<std::optional<std::uint64_t>> w;
    broker_->ListOffset(topic, 0, query, ts, w.Callback());
    return w.Get();
  }

  std::uint64_t EndOffset(const std::string& topic, std::uint32_t partition) {
    auto info = broker_->DescribeTopic(topic);
    return info ? info->partitions.at(partition).end_offset : UINT64_MAX;
  }

  TempDir dir_;
  ManualClock clock_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<Broker> broker_;
};

TEST_F(BrokerTest, CreatedTopicIsDescribedAndListed) {
  auto info = Create("orders", 3);

  ASSERT_TRUE(info) << info.error().ToString();
  EXPECT_EQ(info->metadata.config.name, "orders");
  EXPECT_EQ(info->partitions.size(), 3u);
  EXPECT_EQ(info->metadata.created_ms, ManualClock::kStartMillis);
  auto listed = broker_->ListTopics();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].config.name, "orders");
}

TEST_F(BrokerTest, CreatingAnExistingTopicFails) {
  ASSERT_TRUE(Create("orders", 3));

  auto again = Create("orders", 3);

  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists);
}

TEST_F(BrokerTest, InvalidTopicIsRejectedAndNothingIsCreated) {
  auto bad_name = Create("no spaces", 1);
  auto bad_count = Create("fine", 0);

  ASSERT_FALSE(bad_name);
  EXPECT_EQ(bad_name.error().code, ErrorCode::kInvalidArgument);
  ASSERT_FALSE(bad_count);
  EXPECT_EQ(bad_count.error().code, ErrorCode::kInvalidArgument);
  EXPECT_TRUE(broker_->ListTopics().empty());
  Reopen();
  EXPECT_TRUE(broker_->ListTopics().empty());
}

TEST_F(BrokerTest, ProducedRecordsAreFetchedBackInOrder) {
  ASSERT_TRUE(Create("t", 2));

  auto produced = Produce("t", 1, {Value("a"), Value("b"), Value("c")});
  auto fetched = Fetch("t", 1, 0);

  ASSERT_TRUE(produced);
  EXPECT_EQ(*produced,
            (std::vector<ProducedRecord>{{1, 0, false, {}}, {1, 1, false, {}}, {1, 2, false, {}}}));
  ASSERT_TRUE(fetched);
  ASSERT_EQ(fetched->size(), 3u);
  EXPECT_EQ((*fetched)[2].record.value, "c");
  EXPECT_EQ((*fetched)[2].record.append_timestamp_ms, ManualClock::kStartMillis);
  EXPECT_EQ(EndOffset("t", 1), 3u);
  EXPECT_EQ(EndOffset("t", 0), 0u);
}

TEST_F(BrokerTest, DescribeAfterAnAcknowledgedProduceShowsTheRecords) {
  ASSERT_TRUE(Create("t", 1));

  for (int i = 0; i < 300; ++i) {
    auto produced = Produce("t", 0, {Value("v")});
    ASSERT_TRUE(produced);
    auto info = broker_->DescribeTopic("t");
    ASSERT_TRUE(info);
    ASSERT_EQ(info->partitions[0].end_offset, (*produced)[0].offset + 1) << "round " << i;
    ASSERT_GT(info->partitions[0].size_bytes, 0u);
  }
}

TEST_F(BrokerTest, KeyedRecordsFollowTheKafkaPartitioner) {
  ASSERT_TRUE(Create("t", 6));
  std::vector<Record> records;
  for (int i = 0; i < 20; ++i)
    records.push_back(Value("v", "key-" + std::to_string(i)));

  auto produced = Produce("t", std::nullopt, records);

  ASSERT_TRUE(produced);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ((*produced)[i].partition, PartitionForKey("key-" + std::to_string(i), 6));
  }
  // Records of one key keep their order within the partition.
  auto again = Produce("t", std::nullopt, {Value("second", "key-0")});
  ASSERT_TRUE(again);
  EXPECT_EQ((*again)[0].partition, (*produced)[0].partition);
  EXPECT_GT((*again)[0].offset, (*produced)[0].offset);
}

TEST_F(BrokerTest, MessageGroupIdWinsOverTheKeyForPlacement) {
  ASSERT_TRUE(Create("t", 6));
  std::vector<Record> records;
  for (int i = 0; i < 10; ++i) {
    Record r = Value("v", "key-" + std::to_string(i));
    r.message_group_id = "group-7";
    records.push_back(std::move(r));
  }

  auto produced = Produce("t", std::nullopt, records);

  ASSERT_TRUE(produced);
  for (const auto& p : *produced)
    EXPECT_EQ(p.partition, PartitionForKey("group-7", 6));
}

TEST_F(BrokerTest, UnkeyedBatchesStickToOnePartitionAndRotate) {
  ASSERT_TRUE(Create("t", 3));
  std::set<std::uint32_t> used;

  for (int call = 0; call < 3; ++call) {
    auto produced = Produce("t", std::nullopt, {Value("a"), Value("b"), Value("c")});
    ASSERT_TRUE(produced);
    const std::uint32_t p = (*produced)[0].partition;
    for (const auto& r : *produced)
      EXPECT_EQ(r.partition, p) << "one partition per batch";
    used.insert(p);
  }

  EXPECT_EQ(used.size(), 3u) << "successive batches rotate over the partitions";
}

TEST_F(BrokerTest, BadProducesAreRejectedAndWriteNothing) {
  TopicConfig small;
  small.name = "small";
  small.partitions = 2;
  small.max_message_bytes = 100;
  Waiter<TopicInfo> created;
  broker_->CreateTopic(small, created.Callback());
  ASSERT_TRUE(created.Get());

  auto unknown = Produce("nope", std::nullopt, {Value("a")});
  auto empty = Produce("small", std::nullopt, {});
  auto bad_partition = Produce("small", 2, {Value("a")});
  auto too_big = Produce("small", 0, {Value("ok"), Value(std::string(200, 'x'))});

  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
  EXPECT_NE(unknown.error().message.find("topic 'nope' does not exist"), std::string::npos);
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, ErrorCode::kInvalidArgument);
  ASSERT_FALSE(bad_partition);
  EXPECT_EQ(bad_partition.error().code, ErrorCode::kNotFound);
  EXPECT_NE(bad_partition.error().message.find("no partition 2 (it has 2)"), std::string::npos);
  ASSERT_FALSE(too_big);
  EXPECT_EQ(too_big.error().code, ErrorCode::kResourceExhausted);
  EXPECT_NE(too_big.error().message.find("record 1 is"), std::string::npos);
  EXPECT_EQ(EndOffset("small", 0), 0u) << "the valid record of the bad batch was not written";
  EXPECT_EQ(EndOffset("small", 1), 0u);
}

TEST_F(BrokerTest, BadFetchesAreRejected) {
  ASSERT_TRUE(Create("t", 1));
  ASSERT_TRUE(Produce("t", 0, {Value("a")}));

  auto unknown = Fetch("nope", 0, 0);
  auto bad_partition = Fetch("t", 5, 0);
  auto beyond = Fetch("t", 0, 2);
  Waiter<std::vector<StoredRecord>> zero;
  broker_->Fetch("t", 0, 0, 0, 100, zero.Callback());
  auto zero_result = zero.Get();

  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(bad_partition.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(beyond.error().code, ErrorCode::kOutOfRange);
  ASSERT_FALSE(zero_result);
  EXPECT_EQ(zero_result.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(BrokerTest, ListOffsetsFindsEarliestLatestAndByTime) {
  ASSERT_TRUE(Create("t", 1));
  ASSERT_TRUE(Produce("t", 0, {Value("a"), Value("b")}));
  clock_.Advance(std::chrono::seconds(10));
  ASSERT_TRUE(Produce("t", 0, {Value("c")}));

  auto earliest = ListOffset("t", OffsetQuery::kEarliest);
  auto latest = ListOffset("t", OffsetQuery::kLatest);
  auto by_time = ListOffset("t", OffsetQuery::kTimestamp, ManualClock::kStartMillis + 1);
  auto future = ListOffset("t", OffsetQuery::kTimestamp, ManualClock::kStartMillis + 60'000);

  ASSERT_TRUE(earliest && latest && by_time && future);
  EXPECT_EQ(**earliest, 0u);
  EXPECT_EQ(**latest, 3u);
  EXPECT_EQ(**by_time, 2u);
  EXPECT_FALSE(future->has_value());
}

TEST_F(BrokerTest, TopicsAndRecordsSurviveARestart) {
  ASSERT_TRUE(Create("a", 2));
  ASSERT_TRUE(Create("b", 1));
  ASSERT_TRUE(Produce("a", 1, {Value("x"), Value("y")}));

  Reopen();
  auto produced = Produce("a", 1, {Value("z")});
  auto fetched = Fetch("a", 1, 0);

  EXPECT_EQ(broker_->ListTopics().size(), 2u);
  ASSERT_TRUE(produced);
  EXPECT_EQ((*produced)[0].offset, 2u);
  ASSERT_TRUE(fetched);
  ASSERT_EQ(fetched->size(), 3u);
  EXPECT_EQ((*fetched)[0].record.value, "x");
}

TEST_F(BrokerTest, PartitionsCanGrowButNotShrink) {
  ASSERT_TRUE(Create("t", 2));
  ASSERT_TRUE(Produce("t", 1, {Value("kept")}));

  Waiter<TopicInfo> grow;
  TopicUpdate grow_update;
  grow_update.partitions = 4;
  grow_update.retention_ms = 1000;
  broker_->UpdateTopic("t", grow_update, grow.Callback());
  auto grown = grow.Get();
  Waiter<TopicInfo> shrink;
  TopicUpdate shrink_update;
  shrink_update.partitions = 3;
  broker_->UpdateTopic("t", shrink_update, shrink.Callback());
  auto shrunk = shrink.Get();

  ASSERT_TRUE(grown) << grown.error().ToString();
  EXPECT_EQ(grown->partitions.size(), 4u);
  EXPECT_EQ(grown->metadata.config.retention_ms, 1000);
  EXPECT_EQ(grown->partitions[1].end_offset, 1u) << "existing partitions keep their data";
  ASSERT_FALSE(shrunk);
  EXPECT_EQ(shrunk.error().code, ErrorCode::kInvalidArgument);
  ASSERT_TRUE(Produce("t", 3, {Value("new")}));
  Reopen();
  auto info = broker_->DescribeTopic("t");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->partitions.size(), 4u);
  EXPECT_EQ(info->partitions[3].end_offset, 1u);
}

TEST_F(BrokerTest, DeletedTopicIsGoneAndItsNameCanBeReused) {
  ASSERT_TRUE(Create("t", 2));
  ASSERT_TRUE(Produce("t", 0, {Value("old")}));

  StatusWaiter deleted;
  broker_->DeleteTopic("t", deleted.Callback());
  ASSERT_TRUE(deleted.Get());
  auto produce_after = Produce("t", 0, {Value("x")});
  StatusWaiter again;
  broker_->DeleteTopic("t", again.Callback());
  auto delete_again = again.Get();
  auto recreated = Create("t", 1);
  auto fetched = Fetch("t", 0, 0);

  ASSERT_FALSE(produce_after);
  EXPECT_EQ(produce_after.error().code, ErrorCode::kNotFound);
  ASSERT_FALSE(delete_again);
  EXPECT_EQ(delete_again.error().code, ErrorCode::kNotFound);
  ASSERT_TRUE(recreated);
  ASSERT_TRUE(fetched);
  EXPECT_TRUE(fetched->empty()) << "the new topic does not see the old one's records";
  Reopen();
  ASSERT_EQ(broker_->ListTopics().size(), 1u);
  EXPECT_EQ(EndOffset("t", 0), 0u);
}

TEST_F(BrokerTest, DataOfAnInterruptedDeletionIsDroppedAtOpen) {
  ASSERT_TRUE(Create("kept", 1));
  ASSERT_TRUE(Produce("kept", 0, {Value("stays")}));
  Close();
  {
    // Records under a topic id that no topic has, as a crash mid-deletion leaves them.
    auto store = storage::Store::Open(dir_.path(), {});
    ASSERT_TRUE(store);
    auto orphan = storage::PartitionLog::Open(**store, 4000, 0);
    ASSERT_TRUE(orphan);
    std::vector<Record> records = {Value("orphan")};
    storage::WriteBatch batch;
    ASSERT_TRUE(orphan->PrepareAppend(records, ManualClock::kStartMillis, batch));
    ASSERT_TRUE((*store)->WriteSync(std::move(batch)));
  }

  Open();
  auto orphan = storage::PartitionLog::Open(*store_, 4000, 0);

  ASSERT_TRUE(orphan);
  EXPECT_EQ(orphan->end_offset(), 0u) << "the orphaned records were dropped";
  auto kept = Fetch("kept", 0, 0);
  ASSERT_TRUE(kept);
  ASSERT_EQ(kept->size(), 1u);
  EXPECT_EQ((*kept)[0].record.value, "stays");
}

TEST_F(BrokerTest, RetentionDropsExpiredRecordsOnTheManualClock) {
  ASSERT_TRUE(Create("t", 1, /*retention_ms=*/60'000));
  ASSERT_TRUE(Produce("t", 0, {Value("old1"), Value("old2")}));
  clock_.Advance(std::chrono::seconds(50));
  ASSERT_TRUE(Produce("t", 0, {Value("new")}));

  Waiter<std::uint64_t> none;
  broker_->EnforceRetention(none.Callback());
  ASSERT_EQ(*none.Get(), 0u);
  clock_.Advance(std::chrono::seconds(15));
  Waiter<std::uint64_t> some;
  broker_->EnforceRetention(some.Callback());
  auto dropped = some.Get();

  ASSERT_TRUE(dropped);
  EXPECT_EQ(*dropped, 2u);
  auto info = broker_->DescribeTopic("t");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->partitions[0].start_offset, 2u);
  auto below = Fetch("t", 0, 0);
  ASSERT_FALSE(below);
  EXPECT_EQ(below.error().code, ErrorCode::kOutOfRange);
  auto earliest = ListOffset("t", OffsetQuery::kEarliest);
  ASSERT_TRUE(earliest);
  EXPECT_EQ(**earliest, 2u);
}

TEST_F(BrokerTest, ConcurrentProducersGetUniqueContiguousOffsets) {
  ASSERT_TRUE(Create("t", 1));
  constexpr int kProducers = 8;
  constexpr int kBatches = 40;
  constexpr int kPerBatch = 5;
  std::vector<std::vector<std::uint64_t>> offsets(kProducers);

  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      for (int b = 0; b < kBatches; ++b) {
        std::vector<Record> batch;
        for (int i = 0; i < kPerBatch; ++i) {
          batch.push_back(Value(std::to_string(p) + "/" + std::to_string(b * kPerBatch + i)));
        }
        Waiter<std::vector<ProducedRecord>> w;
        broker_->Produce("t", 0, std::move(batch), w.Callback());
        auto produced = w.Get();
        if (!produced) continue;
        for (const auto& r : *produced)
          offsets[p].push_back(r.offset);
      }
    });
  }
  for (auto& t : threads)
    t.join();

  std::vector<std::uint64_t> all;
  for (const auto& v : offsets) {
    EXPECT_TRUE(std::is_sorted(v.begin(), v.end())) << "one producer's records stay in order";
    all.insert(all.end(), v.begin(), v.end());
  }
  std::sort(all.begin(), all.end());
  const std::size_t total = kProducers * kBatches * kPerBatch;
  ASSERT_EQ(all.size(), total);
  for (std::size_t i = 0; i < total; ++i)
    ASSERT_EQ(all[i], i) << "offsets are 0..n-1, each once";
  auto fetched = Fetch("t", 0, 0, total);
  ASSERT_TRUE(fetched);
  ASSERT_EQ(fetched->size(), total);
  // Each record is where its producer was told it is.
  for (int p = 0; p < kProducers; ++p) {
    for (std::size_t i = 0; i < offsets[p].size(); ++i) {
      EXPECT_EQ((*fetched)[offsets[p][i]].record.value,
                std::to_string(p) + "/" + std::to_string(i));
    }
  }
}

Record WithId(std::string value, std::string dedup_id) {
  Record r = Value(std::move(value));
  r.dedup_id = std::move(dedup_id);
  return r;
}

TEST_F(BrokerTest, ARecordWhoseIdWasAppendedWithinFiveMinutesIsNotAppendedAgain) {
  ASSERT_TRUE(Create("d", 2));
  auto first = Produce("d", 1, {WithId("a", "id-1"), WithId("b", "id-2")});
  ASSERT_TRUE(first) << first.error().ToString();
  EXPECT_FALSE(first->at(0).duplicate);
  // A retry, to another partition even: the original's place comes back.
  auto retry =
      Produce("d", 0, {WithId("a again", "id-1"), WithId("c", "id-3"), WithId("c twice", "id-3")});
  ASSERT_TRUE(retry);
  EXPECT_EQ(retry->at(0), (ProducedRecord{1, 0, true, {}}));
  EXPECT_EQ(retry->at(1), (ProducedRecord{0, 0, false, {}}));
  EXPECT_EQ(retry->at(2), (ProducedRecord{0, 0, true, {}})) << "repeated in one batch";
  EXPECT_EQ(broker_->DescribeTopic("d")->partitions[0].end_offset, 1u);
  EXPECT_EQ(broker_->DescribeTopic("d")->partitions[1].end_offset, 2u);
  // The ids survive a restart; the window is five minutes of the broker's clock.
  Reopen();
  EXPECT_TRUE(Produce("d", 0, {WithId("x", "id-2")})->at(0).duplicate);
  clock_.Advance(std::chrono::minutes(5));
  auto later = Produce("d", 0, {WithId("x", "id-2")});
  ASSERT_TRUE(later);
  EXPECT_FALSE(later->at(0).duplicate) << "the id outlived its window";
  EXPECT_EQ(later->at(0).offset, 1u);
}

TEST_F(BrokerTest, RacingPublishesOfOneIdAppendItOnce) {
  ASSERT_TRUE(Create("race", 4));
  constexpr int kThreads = 8;
  std::vector<std::thread> threads;
  std::vector<Result<std::vector<ProducedRecord>>> results(kThreads, Error{});
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      results[t] = Produce("race", std::nullopt, {WithId("v" + std::to_string(t), "the-id")});
    });
  }
  for (auto& th : threads)
    th.join();
  int appended = 0;
  std::set<std::pair<std::uint32_t, std::uint64_t>> places;
  for (const auto& r : results) {
    ASSERT_TRUE(r) << r.error().ToString();
    if (!r->at(0).duplicate) ++appended;
    places.insert({r->at(0).partition, r->at(0).offset});
  }
  EXPECT_EQ(appended, 1);
  EXPECT_EQ(places.size(), 1u) << "duplicates reported different originals";
  std::uint64_t total = 0;
  auto described = broker_->DescribeTopic("race");
  ASSERT_TRUE(described);
  for (const auto& p : described->partitions)
    total += p.end_offset;
  EXPECT_EQ(total, 1u);
}

TEST_F(BrokerTest, CallsAfterShutdownAreUnavailable) {
  ASSERT_TRUE(Create("t", 1));
  broker_->Shutdown();

  auto produced = Produce("t", 0, {Value("a")});
  auto created = Create("u", 1);

  ASSERT_FALSE(produced);
  EXPECT_EQ(produced.error().code, ErrorCode::kUnavailable);
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code, ErrorCode::kUnavailable);
}

TEST_F(BrokerTest, LongPollFetchWakesWhenARecordArrives) {
  ASSERT_TRUE(Create("t", 1));
  Waiter<std::vector<StoredRecord>> parked;
  const auto start = std::chrono::steady_clock::now();
  broker_->Fetch("t", 0, 0, 10, 1 << 20, std::chrono::seconds(20), parked.Callback());

  ASSERT_TRUE(Produce("t", 0, {Value("wake up")}));
  auto fetched = parked.Get();

  ASSERT_TRUE(fetched) << fetched.error().ToString();
  ASSERT_EQ(fetched->size(), 1u);
  EXPECT_EQ((*fetched)[0].record.value, "wake up");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10))
      << "answered by the append, not by the 20 s deadline";
}

TEST_F(BrokerTest, LongPollFetchAnswersEmptyAtItsDeadline) {
  ASSERT_TRUE(Create("t", 2));
  Waiter<std::vector<StoredRecord>> parked;
  const auto start = std::chrono::steady_clock::now();

  broker_->Fetch("t", 0, 0, 10, 1 << 20, std::chrono::milliseconds(100), parked.Callback());
  ASSERT_TRUE(Produce("t", 1, {Value("other partition")}));
  auto fetched = parked.Get();

  ASSERT_TRUE(fetched);
  EXPECT_TRUE(fetched->empty());
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(100));
}

TEST_F(BrokerTest, LongPollWithDataAvailableAnswersAtOnce) {
  ASSERT_TRUE(Create("t", 1));
  ASSERT_TRUE(Produce("t", 0, {Value("a"), Value("b")}));
  Waiter<std::vector<StoredRecord>> w;

  broker_->Fetch("t", 0, 1, 10, 1 << 20, std::chrono::seconds(20), w.Callback());
  auto fetched = w.Get(std::chrono::seconds(10));

  ASSERT_TRUE(fetched);
  ASSERT_EQ(fetched->size(), 1u);
  EXPECT_EQ((*fetched)[0].record.value, "b");
}

TEST_F(BrokerTest, ShutdownAndDeletionAnswerParkedFetches) {
  ASSERT_TRUE(Create("gone", 1));
  ASSERT_TRUE(Create("kept", 1));
  Waiter<std::vector<StoredRecord>> on_deleted;
  Waiter<std::vector<StoredRecord>> on_shutdown;
  broker_->Fetch("gone", 0, 0, 10, 1 << 20, std::chrono::seconds(60), on_deleted.Callback());
  broker_->Fetch("kept", 0, 0, 10, 1 << 20, std::chrono::seconds(60), on_shutdown.Callback());

  StatusWaiter deleted;
  broker_->DeleteTopic("gone", deleted.Callback());
  ASSERT_TRUE(deleted.Get());
  auto deleted_result = on_deleted.Get(std::chrono::seconds(10));
  const auto start = std::chrono::steady_clock::now();
  broker_->Shutdown();
  auto shutdown_result = on_shutdown.Get(std::chrono::seconds(10));

  ASSERT_FALSE(deleted_result);
  EXPECT_EQ(deleted_result.error().code, ErrorCode::kNotFound);
  ASSERT_TRUE(shutdown_result);
  EXPECT_TRUE(shutdown_result->empty());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10))
      << "shutdown does not wait for the 60 s deadline";
}

TEST_F(BrokerTest, NegativeMaxWaitIsRejected) {
  ASSERT_TRUE(Create("t", 1));
  Waiter<std::vector<StoredRecord>> w;

  broker_->Fetch("t", 0, 0, 10, 100, std::chrono::milliseconds(-1), w.Callback());
  auto result = w.Get();

  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kInvalidArgument);
}

Record Grouped(std::string value, std::string group) {
  Record r = Value(std::move(value));
  r.message_group_id = std::move(group);
  return r;
}

TEST_F(BrokerTest, GroupedRecordsAreNumberedAcrossPartitionsAndRestarts) {
  ASSERT_TRUE(Create("seq", 4));
  std::uint64_t last = 0;
  std::vector<std::pair<ProducedRecord, std::string>> sent;
  auto send = [&](std::uint32_t partition, const std::string& value) {
    auto produced = Produce("seq", partition, {Grouped(value, "g" + value)});
    ASSERT_TRUE(produced) << produced.error().ToString();
    const ProducedRecord& r = produced->at(0);
    ASSERT_TRUE(r.sequence) << value;
    EXPECT_GT(*r.sequence, last) << value << " in partition " << partition;
    last = *r.sequence;
    sent.emplace_back(r, value);
  };
  // One partition after another, so that offsets alone would go back.
  for (std::uint32_t round = 0; round < 3; ++round) {
    for (std::uint32_t p = 0; p < 4; ++p)
      send(p, std::to_string(round) + "-" + std::to_string(p));
  }
  auto ungrouped = Produce("seq", 0, {Value("plain")});
  ASSERT_TRUE(ungrouped);
  EXPECT_FALSE(ungrouped->at(0).sequence) << "only grouped records are numbered";
  // Each stored record carries its number.
  for (const auto& [r, value] : sent) {
    auto fetched = Fetch("seq", r.partition, r.offset, 1);
    ASSERT_TRUE(fetched);
    ASSERT_EQ(fetched->size(), 1u);
    EXPECT_EQ(fetched->front().record.value, value);
    EXPECT_EQ(fetched->front().record.sequence, r.sequence);
  }
  // Twelve numbers over four partitions of three records each: a restart that resumed from
  // the offsets would hand out numbers already given.
  for (int restart = 0; restart < 2; ++restart) {
    Reopen();
    send(restart == 0 ? 3 : 1, "after restart " + std::to_string(restart));
  }
}

TEST_F(BrokerTest, ADuplicateAnswersWithTheOriginalsSequenceNumber) {
  ASSERT_TRUE(Create("dup", 2));
  Record r = Grouped("a", "g");
  r.dedup_id = "id-1";
  auto first = Produce("dup", std::nullopt, {r});
  ASSERT_TRUE(first);
  ASSERT_TRUE(first->at(0).sequence);
  ASSERT_TRUE(Produce("dup", std::nullopt, {Grouped("b", "h")}));
  auto again = Produce("dup", std::nullopt, {r});
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->at(0).duplicate);
  EXPECT_EQ(again->at(0).sequence, first->at(0).sequence);
  Reopen();  // the stored deduplication entry keeps the number too
  auto after = Produce("dup", std::nullopt, {r});
  ASSERT_TRUE(after);
  EXPECT_TRUE(after->at(0).duplicate);
  EXPECT_EQ(after->at(0).sequence, first->at(0).sequence);
}

TEST(TopicSequenceTest, ABlockEndIsStoredWhenPassedAndAgainIfItsBatchWasNeverQueued) {
  internal::TopicSequence sequence(7, 5);
  std::vector<Record> two = {Grouped("a", "g"), Value("b"), Grouped("c", "g")};
  storage::WriteBatch first;
  {
    auto lock = sequence.Lock();
    sequence.Assign(two, first);
    sequence.Queued();
  }
  EXPECT_EQ(two[0].sequence, std::optional<std::uint64_t>(5));
  EXPECT_FALSE(two[1].sequence);
  EXPECT_EQ(two[2].sequence, std::optional<std::uint64_t>(6));
  EXPECT_EQ(first.size(), 1u) << "the first number past the stored end writes a block end";

  // The rest of the block needs no write; the first number past it does.
  // Numbers 7 on: the block stored above ends at 7 + kBlock.
  std::vector<Record> block(internal::TopicSequence::kBlock + 1, Grouped("x", "g"));
  storage::WriteBatch within;
  storage::WriteBatch past;
  {
    auto lock = sequence.Lock();
    sequence.Assign(std::span(block).first(block.size() - 3), within);
    sequence.Queued();
    sequence.Assign(std::span(block).last(3), past);
    // Not queued: as if its append had failed.
  }
  EXPECT_EQ(within.size(), 0u);
  EXPECT_EQ(past.size(), 1u);
  EXPECT_EQ(block.back().sequence, std::optional<std::uint64_t>(7 + block.size() - 1));
  std::vector<Record> next = {Grouped("y", "g")};
  storage::WriteBatch retry;
  {
    auto lock = sequence.Lock();
    sequence.Assign(next, retry);
    sequence.Queued();
  }
  EXPECT_EQ(retry.size(), 1u) << "the end that never reached the store is written again";
  EXPECT_GT(*next[0].sequence, *block.back().sequence);
}

}  // namespace
}  // namespace spool::broker
