// A queue subscription's state on one partition, against a real store and partition log,
// with explicit times: leases and their expiry, delete and stale receipts, visibility
// changes, delays, FIFO group locking, dead letters, the in-flight limit, the ack floor,
// purge, retention, and rebuilding the state after a restart.

#include "broker/queue_partition.h"

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "common/coding.h"
#include "storage/keys.h"
#include "tests/testing/temp_dir.h"

namespace spool::broker {
namespace {

constexpr std::uint32_t kTopic = 7;
constexpr std::uint32_t kSubscription = 3;
constexpr std::int64_t kT0 = 1'800'000'000'000;  // ms

class QueuePartitionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = storage::Store::Open(dir_.path(), {});
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
    OpenLog();
    Reload();
  }

  void OpenLog() {
    auto log = storage::PartitionLog::Open(*store_, kTopic, 0);
    ASSERT_TRUE(log) << log.error().ToString();
    log_ = std::make_unique<storage::PartitionLog>(std::move(*log));
  }

  // A fresh QueuePartition from what is stored, as after a restart.
  void Reload() {
    auto q = QueuePartition::Load(*store_, kSubscription, *log_);
    ASSERT_TRUE(q) << q.error().ToString();
    queue_ = std::make_unique<QueuePartition>(std::move(*q));
  }

  // Sends messages "<prefix>0".."<prefix>n-1"; FIFO ones carry `group`.
  void Send(int n, const std::string& prefix = "m", std::optional<std::string> group = {},
            std::optional<std::int64_t> deliver_after = {}) {
    std::vector<storage::Record> records;
    for (int i = 0; i < n; ++i) {
      storage::Record r;
      r.value = prefix + std::to_string(i);
      r.message_group_id = group;
      r.deliver_after_ms = deliver_after;
      records.push_back(std::move(r));
    }
    storage::WriteBatch batch;
    auto prepared = log_->PrepareAppend(records, kT0, batch);
    ASSERT_TRUE(prepared);
    ASSERT_TRUE(store_->WriteSync(std::move(batch)));
    log_->MarkDurable(*prepared);
  }

  QueueReceiveResult Receive(std::int64_t now, std::size_t max, QueueReceiveOptions o = {}) {
    o.max_messages = max;
    storage::WriteBatch batch;
    auto r = queue_->Receive(now, o, batch);
    EXPECT_TRUE(r) << r.error().ToString();
    if (!batch.empty()) {
      EXPECT_TRUE(store_->WriteSync(std::move(batch)));
    }
    return r ? std::move(*r) : QueueReceiveResult{};
  }

  Status Delete(const ReceivedMessage& m) { return Delete(m.offset, m.generation); }
  Status Delete(std::uint64_t offset, std::uint64_t generation) {
    storage::WriteBatch batch;
    Status s = queue_->Delete(offset, generation, batch);
    if (!batch.empty()) {
      EXPECT_TRUE(store_->WriteSync(std::move(batch)));
    }
    return s;
  }

  Status ChangeVisibility(const ReceivedMessage& m, std::int64_t now, std::int64_t in_ms) {
    storage::WriteBatch batch;
    Status s = queue_->ChangeVisibility(m.offset, m.generation, now, in_ms, 12 * 3'600'000, batch);
    if (!batch.empty()) {
      EXPECT_TRUE(store_->WriteSync(std::move(batch)));
    }
    return s;
  }

  std::vector<Status> DeleteMany(const std::vector<ReceivedMessage>& messages) {
    std::vector<QueuePartition::Deletion> deletions;
    for (const auto& m : messages)
      deletions.push_back({m.offset, m.generation});
    storage::WriteBatch batch;
    auto statuses = queue_->DeleteMany(deletions, batch);
    if (!batch.empty()) {
      EXPECT_TRUE(store_->WriteSync(std::move(batch)));
    }
    return statuses;
  }

  enum class Kind { kState, kLeaseRun, kAckedRun };
  // Offsets with a stored message state of their own.
  std::vector<std::uint64_t> StoredStates() const { return StoredKeys(Kind::kState); }
  // First offsets of the stored lease runs, and of the acknowledged runs.
  std::vector<std::uint64_t> StoredRuns() const { return StoredKeys(Kind::kLeaseRun); }
  std::vector<std::uint64_t> StoredAckedRuns() const { return StoredKeys(Kind::kAckedRun); }
  std::vector<std::uint64_t> StoredKeys(Kind kind) const {
    std::vector<std::uint64_t> out;
    auto it = store_->NewIterator(storage::ColumnFamily::kQueueState,
                                  storage::QueueMessageKey(kSubscription, 0, 0),
                                  storage::QueuePartitionEnd(kSubscription, 0));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::uint64_t offset = 0;
      Kind found = Kind::kState;
      if (storage::ParseQueueLeaseRunKey(it->key(), &offset)) {
        found = Kind::kLeaseRun;
      } else if (storage::ParseQueueAckedRunKey(it->key(), &offset)) {
        found = Kind::kAckedRun;
      } else {
        EXPECT_TRUE(storage::ParseQueueMessageKey(it->key(), &offset));
      }
      if (found == kind) out.push_back(offset);
    }
    EXPECT_TRUE(it->status());
    return out;
  }

  static std::vector<std::string> Values(const std::vector<ReceivedMessage>& messages) {
    std::vector<std::string> out;
    for (const auto& m : messages)
      out.push_back(m.record.value);
    return out;
  }

  testing::TempDir dir_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<storage::PartitionLog> log_;
  std::unique_ptr<QueuePartition> queue_;
};

TEST_F(QueuePartitionTest, ReceiveLeasesUntilTheVisibilityTimeoutEnds) {
  Send(3);
  auto first = Receive(kT0, 2);
  ASSERT_EQ(Values(first.messages), (std::vector<std::string>{"m0", "m1"}));
  EXPECT_EQ(first.messages[0].receive_count, 1u);
  EXPECT_EQ(first.messages[0].first_receive_ms, kT0);
  EXPECT_EQ(Values(Receive(kT0 + 1, 10).messages), (std::vector<std::string>{"m2"}));
  EXPECT_TRUE(Receive(kT0 + 2, 10).messages.empty()) << "leased messages were received again";
  auto counts = queue_->Counts(kT0 + 2);
  EXPECT_EQ(counts.in_flight, 3u);
  EXPECT_EQ(counts.visible, 0u);
  // The leases of m0, m1 end at kT0 + 30 s; m2's a moment later.
  auto empty = Receive(kT0 + 29'999, 10);
  EXPECT_TRUE(empty.messages.empty());
  EXPECT_EQ(empty.next_visible_ms, kT0 + 30'000);
  auto again = Receive(kT0 + 30'000, 10);
  ASSERT_EQ(Values(again.messages), (std::vector<std::string>{"m0", "m1"}));
  EXPECT_EQ(again.messages[0].receive_count, 2u);
  EXPECT_EQ(again.messages[0].first_receive_ms, kT0) << "first receive is kept";
}

TEST_F(QueuePartitionTest, DeleteNeedsTheLatestReceiptAndIsIdempotent) {
  Send(2);
  auto first = Receive(kT0, 1).messages.at(0);
  auto second = Receive(kT0 + 30'000, 1).messages.at(0);  // m0 again, its lease ended
  ASSERT_EQ(second.offset, first.offset);
  Status stale = Delete(first);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_TRUE(queue_->State(first.offset)->acked == false) << "a stale receipt deleted it";
  ASSERT_TRUE(Delete(second));
  EXPECT_TRUE(Delete(second)) << "deleting twice is fine";
  EXPECT_TRUE(Delete(first)) << "any receipt of a deleted message is fine";
  EXPECT_EQ(queue_->floor(), 1u) << "the floor moves over the deleted head";
  EXPECT_EQ(Delete(1, 1).error().code, ErrorCode::kFailedPrecondition)
      << "a message never received cannot be deleted";
  // A receipt whose lease ended still deletes while nobody received the message again.
  auto m1 = Receive(kT0 + 30'000, 1).messages.at(0);
  EXPECT_TRUE(Delete(m1.offset, m1.generation));
  EXPECT_EQ(queue_->floor(), 2u);
}

TEST_F(QueuePartitionTest, OutOfOrderDeletesHoldTheFloorUntilTheGapCloses) {
  Send(3);
  auto got = Receive(kT0, 3).messages;
  ASSERT_TRUE(Delete(got[2]));
  ASSERT_TRUE(Delete(got[1]));
  EXPECT_EQ(queue_->floor(), 0u);
  ASSERT_TRUE(Delete(got[0]));
  EXPECT_EQ(queue_->floor(), 3u);
  auto counts = queue_->Counts(kT0);
  EXPECT_EQ(counts.visible + counts.in_flight + counts.delayed, 0u);
}

// A floor move deletes the states it passes one by one: a range tombstone per delete call
// would make every flush and compaction of queue_state re-fragment thousands of them.
TEST_F(QueuePartitionTest, FloorMovesDeleteStatesByKeyNotByRange) {
  Send(4);
  std::vector<ReceivedMessage> got;  // one at a time: a state each, not a lease run
  for (int i = 0; i < 4; ++i) {
    auto one = Receive(kT0, 1).messages;
    ASSERT_EQ(one.size(), 1u);
    got.push_back(std::move(one[0]));
  }
  EXPECT_EQ(StoredStates(), (std::vector<std::uint64_t>{0, 1, 2, 3}));
  EXPECT_TRUE(StoredRuns().empty());

  storage::WriteBatch out_of_order;  // holds the floor: the state stays, marked acknowledged
  ASSERT_TRUE(queue_->Delete(got[2].offset, got[2].generation, out_of_order));
  EXPECT_EQ(out_of_order.size(), 1u);
  ASSERT_TRUE(store_->WriteSync(std::move(out_of_order)));

  storage::WriteBatch in_order;  // the floor passes 0: its state is deleted, not rewritten
  ASSERT_TRUE(queue_->Delete(got[0].offset, got[0].generation, in_order));
  EXPECT_EQ(in_order.size(), 2u) << "the floor and one state deletion";
  EXPECT_EQ(in_order.RangeDeletions(), 0u);
  ASSERT_TRUE(store_->WriteSync(std::move(in_order)));
  EXPECT_EQ(StoredStates(), (std::vector<std::uint64_t>{1, 2, 3}));

  storage::WriteBatch gap;  // closes the gap: 1 and the acknowledged 2 go together
  ASSERT_TRUE(queue_->Delete(got[1].offset, got[1].generation, gap));
  EXPECT_EQ(gap.RangeDeletions(), 0u);
  ASSERT_TRUE(store_->WriteSync(std::move(gap)));
  EXPECT_EQ(queue_->floor(), 3u);
  EXPECT_EQ(StoredStates(), (std::vector<std::uint64_t>{3}));

  Reload();
  EXPECT_EQ(queue_->floor(), 3u);
  EXPECT_TRUE(Receive(kT0, 10).messages.empty()) << "3 is still leased";
  auto again = Receive(kT0 + 30'000, 10).messages;
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].offset, 3u);
  EXPECT_EQ(again[0].receive_count, 2u);
}

// A receive stores the messages it takes for the first time as one lease run (one key, not
// one each); a restart gives them their leases back from it.
TEST_F(QueuePartitionTest, TheMessagesOneReceiveTakesFirstShareOneStoredLeaseRun) {
  Send(10);
  auto got = Receive(kT0, 10).messages;
  ASSERT_EQ(got.size(), 10u);
  EXPECT_TRUE(StoredStates().empty());
  EXPECT_EQ(StoredRuns(), std::vector<std::uint64_t>{0});

  Reload();
  EXPECT_EQ(queue_->Counts(kT0).in_flight, 10u);
  EXPECT_TRUE(Receive(kT0 + 29'999, 10).messages.empty()) << "leased until kT0 + 30 s";
  ASSERT_TRUE(Delete(got[4])) << "a receipt from before the restart";
  EXPECT_EQ(StoredStates(), std::vector<std::uint64_t>{4}) << "acknowledged out of order";
  auto again = Receive(kT0 + 30'000, 10).messages;
  ASSERT_EQ(again.size(), 9u);
  for (const auto& m : again) {
    EXPECT_NE(m.offset, 4u);
    EXPECT_EQ(m.receive_count, 2u) << m.offset;
    EXPECT_EQ(m.first_receive_ms, kT0) << m.offset;
  }
  EXPECT_TRUE(StoredRuns().empty()) << "every message of the run has a state of its own now";
  for (const auto& m : again)
    ASSERT_TRUE(Delete(m));
  EXPECT_EQ(queue_->floor(), 10u);
  EXPECT_TRUE(StoredStates().empty());
}

// Deleting a lease run's messages in order writes the floor only, and the run's deletion with
// the last one: no state is written or deleted per message.
TEST_F(QueuePartitionTest, InOrderDeletesOfALeaseRunWriteTheFloorAndFinallyTheRunsDeletion) {
  Send(3);
  auto got = Receive(kT0, 3).messages;
  ASSERT_EQ(got.size(), 3u);
  for (std::size_t i = 0; i < got.size(); ++i) {
    storage::WriteBatch batch;
    ASSERT_TRUE(queue_->Delete(got[i].offset, got[i].generation, batch));
    EXPECT_EQ(batch.size(), i + 1 < got.size() ? 1u : 2u) << i;
    ASSERT_TRUE(store_->WriteSync(std::move(batch)));
  }
  EXPECT_EQ(queue_->floor(), 3u);
  EXPECT_TRUE(StoredRuns().empty());
  EXPECT_TRUE(StoredStates().empty());
  EXPECT_EQ(queue_->HeldInMemory(), 0u);
}

// The containers' pool gives its memory back once a large backlog has drained, also while a
// message held at the floor keeps the partition from being empty; a small pool it keeps for
// the next messages.
TEST_F(QueuePartitionTest, ADrainedBacklogGivesItsPooledMemoryBack) {
  constexpr std::size_t kMessages = 50'000;
  constexpr std::size_t kHeld = 100;
  QueueReceiveOptions o;
  o.max_in_flight = 2 * kMessages;
  auto receive_all = [&] {
    std::vector<ReceivedMessage> got;
    for (int round = 0; round < 200 && got.size() < kMessages; ++round) {
      for (auto& m : Receive(kT0, kMessages, o).messages)
        got.push_back(std::move(m));
    }
    return got;
  };
  Send(static_cast<int>(kMessages));
  std::vector<ReceivedMessage> got = receive_all();
  ASSERT_EQ(got.size(), kMessages);
  const std::size_t peak = queue_->PooledBytes();
  EXPECT_GT(peak, std::size_t{4} << 20) << "a state and a lease each";
  const auto held_state = queue_->State(got[kHeld / 2].offset);
  ASSERT_TRUE(held_state);

  // The first kHeld stay in flight at the floor; everything above them is deleted.
  std::vector<ReceivedMessage> rest(got.begin() + kHeld, got.end());
  for (std::size_t i = 0; i < rest.size(); i += 1'000) {
    std::vector<ReceivedMessage> chunk(rest.begin() + i,
                                       rest.begin() + std::min(i + 1'000, rest.size()));
    for (const Status& s : DeleteMany(chunk))
      ASSERT_TRUE(s);
  }
  EXPECT_EQ(queue_->floor(), 0u);
  EXPECT_LT(queue_->PooledBytes(), peak / 4) << "moved to a pool the size of what is left";
  EXPECT_EQ(queue_->State(got[kHeld / 2].offset), held_state) << "states survive the move";
  std::vector<ReceivedMessage> held(got.begin(), got.begin() + kHeld);
  for (const Status& s : DeleteMany(held))
    ASSERT_TRUE(s) << "every held message kept its lease";
  EXPECT_EQ(queue_->floor(), kMessages);
  EXPECT_EQ(queue_->HeldInMemory(), 0u);
  EXPECT_LE(queue_->PooledBytes(), std::size_t{1} << 20);

  // A purge of a whole backlog in flight empties the pool at once.
  Send(static_cast<int>(kMessages));
  ASSERT_EQ(receive_all().size(), kMessages);
  EXPECT_GT(queue_->PooledBytes(), std::size_t{4} << 20);
  storage::WriteBatch purge;
  queue_->AckBelow(2 * kMessages, purge);
  ASSERT_TRUE(store_->WriteSync(std::move(purge)));
  EXPECT_EQ(queue_->HeldInMemory(), 0u);
  EXPECT_LT(queue_->PooledBytes(), 4'096u) << "the pool's own bookkeeping at most";

  // A few messages later: their nodes stay pooled once they are done.
  Send(10);
  auto few = Receive(kT0, 10).messages;
  ASSERT_EQ(few.size(), 10u);
  for (const Status& s : DeleteMany(few))
    ASSERT_TRUE(s);
  EXPECT_EQ(queue_->HeldInMemory(), 0u);
  EXPECT_GT(queue_->PooledBytes(), 4'096u);

  // And a reload starts with a pool of its own.
  Reload();
  EXPECT_LT(queue_->PooledBytes(), 4'096u);
  Send(3);
  EXPECT_EQ(Receive(kT0, 3).messages.size(), 3u);
  EXPECT_GT(queue_->PooledBytes(), 4'096u);
}

// A change of one message of a lease run (visibility, delete, another receive) is stored as
// its own state, which wins over the run's after a restart.
TEST_F(QueuePartitionTest, AChangeToAMessageOfALeaseRunWinsOverTheRunAfterARestart) {
  Send(5);
  auto got = Receive(kT0, 5).messages;
  ASSERT_EQ(got.size(), 5u);
  ASSERT_TRUE(ChangeVisibility(got[1], kT0, 0));
  ASSERT_TRUE(Delete(got[3]));
  EXPECT_EQ(StoredRuns(), std::vector<std::uint64_t>{0});
  EXPECT_EQ(StoredStates(), (std::vector<std::uint64_t>{1, 3}));

  Reload();
  auto counts = queue_->Counts(kT0);
  EXPECT_EQ(counts.in_flight, 3u) << "0, 2 and 4, from the run";
  EXPECT_EQ(counts.visible, 1u) << "1, released";
  auto released = Receive(kT0 + 1, 10).messages;
  ASSERT_EQ(released.size(), 1u);
  EXPECT_EQ(released[0].offset, 1u);
  EXPECT_EQ(released[0].receive_count, 2u);
  std::set<std::uint64_t> ended;
  for (const auto& m : Receive(kT0 + 30'000, 10).messages)
    ended.insert(m.offset);
  EXPECT_EQ(ended, (std::set<std::uint64_t>{0, 2, 4})) << "3 was deleted, 1 is leased again";
  EXPECT_TRUE(StoredRuns().empty());
}

// The floor can stop inside a lease run; a restart then loads only the run's messages above
// it, and the run goes once the floor has passed them too.
TEST_F(QueuePartitionTest, ALeaseRunTheFloorStopsInsideLoadsOnlyItsMessagesAboveTheFloor) {
  Send(4);
  auto got = Receive(kT0, 4).messages;
  ASSERT_EQ(got.size(), 4u);
  ASSERT_TRUE(Delete(got[0]));
  ASSERT_TRUE(Delete(got[1]));
  EXPECT_EQ(queue_->floor(), 2u);
  Reload();
  EXPECT_EQ(queue_->Counts(kT0).in_flight, 2u);
  ASSERT_TRUE(Delete(got[2]));
  ASSERT_TRUE(Delete(got[3]));
  EXPECT_EQ(queue_->floor(), 4u);
  EXPECT_TRUE(StoredRuns().empty());
  Reload();
  EXPECT_EQ(queue_->Counts(kT0 + 60'000).in_flight + queue_->Counts(kT0 + 60'000).visible, 0u);
}

// One delete call stores the messages it acknowledges out of order as one acknowledged run;
// a restart skips them, and the floor takes the run with it when it passes.
TEST_F(QueuePartitionTest, ADeleteCallStoresWhatItAcknowledgesOutOfOrderAsOneRun) {
  Send(6);
  auto held = Receive(kT0, 2).messages;  // 0 and 1 keep the floor
  auto got = Receive(kT0, 4).messages;   // 2 to 5
  ASSERT_EQ(held.size(), 2u);
  ASSERT_EQ(got.size(), 4u);
  std::reverse(got.begin(), got.end());  // any order within the call
  for (const Status& s : DeleteMany(got))
    EXPECT_TRUE(s);
  EXPECT_EQ(queue_->floor(), 0u);
  EXPECT_EQ(StoredAckedRuns(), std::vector<std::uint64_t>{2});
  EXPECT_EQ(StoredRuns(), std::vector<std::uint64_t>{0}) << "2-5's lease run went";
  EXPECT_TRUE(StoredStates().empty());

  Reload();
  auto counts = queue_->Counts(kT0 + 30'000);
  EXPECT_EQ(counts.visible, 2u);
  EXPECT_EQ(counts.in_flight, 0u);
  auto again = Receive(kT0 + 30'000, 10).messages;
  ASSERT_EQ(again.size(), 2u) << "a deleted message came back";
  EXPECT_EQ(again[0].offset, 0u);
  EXPECT_EQ(again[1].offset, 1u);
  EXPECT_TRUE(Delete(got[0].offset, 999)) << "deleted already, whatever the receipt";
  for (const Status& s : DeleteMany(again))
    EXPECT_TRUE(s);
  EXPECT_EQ(queue_->floor(), 6u);
  EXPECT_TRUE(StoredAckedRuns().empty());
  EXPECT_TRUE(StoredRuns().empty());
  EXPECT_TRUE(StoredStates().empty());
  EXPECT_EQ(queue_->HeldInMemory(), 0u);
}

// Messages with stored states of their own (received one at a time, or again) are
// acknowledged in those states, not in a run beside them, which would leave them stored as
// leased: a restart would deliver them again.
TEST_F(QueuePartitionTest, DeleteManyAcknowledgesMessagesWithTheirOwnStatesInThem) {
  Send(3);
  std::vector<ReceivedMessage> got;
  for (int i = 0; i < 3; ++i) {
    auto one = Receive(kT0, 1).messages;
    ASSERT_EQ(one.size(), 1u);
    got.push_back(std::move(one[0]));
  }
  for (const Status& s : DeleteMany({got[1], got[2]}))
    EXPECT_TRUE(s);
  EXPECT_TRUE(StoredAckedRuns().empty());
  EXPECT_EQ(StoredStates(), (std::vector<std::uint64_t>{0, 1, 2}));
  Reload();
  EXPECT_EQ(Values(Receive(kT0 + 30'000, 10).messages), std::vector<std::string>{"m0"})
      << "a deleted message came back";
  ASSERT_TRUE(Delete(0, Receive(kT0 + 60'000, 1).messages.at(0).generation));
  EXPECT_EQ(queue_->floor(), 3u);
  EXPECT_TRUE(StoredStates().empty());
}

// A batch delete of messages in order stores the floor once, not once per message.
TEST_F(QueuePartitionTest, DeleteManyInOrderStoresTheFloorOnce) {
  Send(5);
  auto got = Receive(kT0, 5).messages;
  ASSERT_EQ(got.size(), 5u);
  std::vector<QueuePartition::Deletion> deletions;
  for (const auto& m : got)
    deletions.push_back({m.offset, m.generation});
  storage::WriteBatch batch;
  for (const Status& s : queue_->DeleteMany(deletions, batch))
    EXPECT_TRUE(s);
  EXPECT_EQ(batch.size(), 2u) << "the floor and the lease run's deletion";
  ASSERT_TRUE(store_->WriteSync(std::move(batch)));
  Reload();
  EXPECT_EQ(queue_->floor(), 5u);
  EXPECT_TRUE(StoredRuns().empty());
}

// Within one call, a message deleted out of order that a later deletion of the call passes
// with the floor stores nothing; a stale receipt fails alone.
TEST_F(QueuePartitionTest, DeleteManyStoresNothingForWhatTheFloorPassedInTheSameCall) {
  Send(4);
  auto got = Receive(kT0, 4).messages;
  ASSERT_EQ(got.size(), 4u);
  ReceivedMessage stale = got[3];
  stale.generation += 100;
  auto statuses = DeleteMany({got[2], got[1], stale, got[0]});
  ASSERT_EQ(statuses.size(), 4u);
  EXPECT_TRUE(statuses[0]);
  EXPECT_TRUE(statuses[1]);
  EXPECT_EQ(statuses[2].error().code, ErrorCode::kFailedPrecondition);
  EXPECT_TRUE(statuses[3]);
  EXPECT_EQ(queue_->floor(), 3u);
  EXPECT_TRUE(StoredAckedRuns().empty());
  EXPECT_TRUE(StoredStates().empty());
  EXPECT_EQ(StoredRuns(), std::vector<std::uint64_t>{0}) << "3 is still leased by the run";
  Reload();
  EXPECT_EQ(queue_->Counts(kT0).in_flight, 1u);
}

// Behind a message held at the floor, acknowledged runs stop at a bound and deletions are
// stored a state each past it: memory does not grow with every delete call.
TEST_F(QueuePartitionTest, AcknowledgedRunsBehindAHeldMessageAreBounded) {
  constexpr std::size_t kCalls = 10'050;
  Send(1 + 2 * kCalls);
  ASSERT_EQ(Receive(kT0, 1).messages.size(), 1u);
  QueueReceiveOptions options;
  options.max_messages = 2;
  options.max_in_flight = 3 * kCalls;
  storage::WriteBatch batch;  // a write per thousand calls, not two fsyncs per call
  for (std::size_t call = 0; call < kCalls; ++call) {
    auto pair = queue_->Receive(kT0, options, batch);
    ASSERT_TRUE(pair);
    ASSERT_EQ(pair->messages.size(), 2u);
    std::vector<QueuePartition::Deletion> deletions;
    for (const auto& m : pair->messages)
      deletions.push_back({m.offset, m.generation});
    for (const Status& s : queue_->DeleteMany(deletions, batch))
      ASSERT_TRUE(s);
    if (call % 1000 == 999 || call + 1 == kCalls) {
      ASSERT_TRUE(store_->WriteSync(std::exchange(batch, storage::WriteBatch())));
    }
  }
  EXPECT_EQ(queue_->floor(), 0u);
  EXPECT_LE(queue_->HeldInMemory(), 10'000u + 2u) << "the held message, one range, the runs";
  EXPECT_EQ(StoredAckedRuns().size(), 10'000u);
  EXPECT_EQ(StoredStates().size(), 1 + 2 * (kCalls - 10'000)) << "the held one's, the rest";
  Reload();
  EXPECT_EQ(queue_->Counts(kT0 + 30'000).visible, 1u) << "only the held message";
}

// A stored run that claims messages past the log's end is corrupt, and loading it says so
// instead of creating states for them; one that ends at the log's end is fine.
TEST_F(QueuePartitionTest, ARunPastTheLogEndIsDataLoss) {
  Send(2);
  QueueMessageState state;
  state.receive_count = 1;
  state.generation = 1;
  state.visible_at_ms = kT0 + 1;
  auto put_run = [&](std::uint64_t length) {
    std::string value;
    PutVarint64(value, length);
    value += EncodeQueueMessageState(state);
    storage::WriteBatch batch;
    batch.Put(storage::ColumnFamily::kQueueState, storage::QueueLeaseRunKey(kSubscription, 0, 0),
              value);
    ASSERT_TRUE(store_->WriteSync(std::move(batch)));
  };
  put_run(2);  // messages 0 and 1: the whole log
  Reload();
  EXPECT_EQ(queue_->Counts(kT0).in_flight, 2u);
  put_run(3);  // messages 0, 1 and 2; the log ends at 2
  auto q = QueuePartition::Load(*store_, kSubscription, *log_);
  ASSERT_FALSE(q);
  EXPECT_EQ(q.error().code, ErrorCode::kDataLoss);

  storage::WriteBatch acked;  // the same for an acknowledged run
  acked.Delete(storage::ColumnFamily::kQueueState, storage::QueueLeaseRunKey(kSubscription, 0, 0));
  std::string length;
  PutVarint64(length, 3);
  acked.Put(storage::ColumnFamily::kQueueState, storage::QueueAckedRunKey(kSubscription, 0, 0),
            length);
  ASSERT_TRUE(store_->WriteSync(std::move(acked)));
  q = QueuePartition::Load(*store_, kSubscription, *log_);
  ASSERT_FALSE(q);
  EXPECT_EQ(q.error().code, ErrorCode::kDataLoss);
}

// Past a few hundred stored states (a purge of many leased messages) one range deletion
// replaces the point deletions.
TEST_F(QueuePartitionTest, AFloorMoveOverManyStatesDeletesThemAsARange) {
  Send(600);
  QueueReceiveOptions options;
  options.max_in_flight = 1000;
  ASSERT_EQ(Receive(kT0, 600, options).messages.size(), 600u);
  // Received again, each has a state of its own (the first receive's lease run is gone).
  ASSERT_EQ(Receive(kT0 + 30'000, 600, options).messages.size(), 600u);
  EXPECT_EQ(StoredStates().size(), 600u);
  EXPECT_TRUE(StoredRuns().empty());
  storage::WriteBatch purge;
  queue_->AckBelow(log_->end_offset(), purge);
  EXPECT_EQ(purge.RangeDeletions(), 1u);
  EXPECT_EQ(purge.size(), 2u);
  ASSERT_TRUE(store_->WriteSync(std::move(purge)));
  EXPECT_TRUE(StoredStates().empty());
  Reload();
  EXPECT_EQ(queue_->floor(), 600u);
}

TEST_F(QueuePartitionTest, ChangeVisibilityExtendsOrReleasesOneReceive) {
  Send(1);
  auto m = Receive(kT0, 1).messages.at(0);
  ASSERT_TRUE(ChangeVisibility(m, kT0 + 10'000, 60'000));
  EXPECT_TRUE(Receive(kT0 + 30'000, 1).messages.empty()) << "the extension did not hold";
  ASSERT_TRUE(ChangeVisibility(m, kT0 + 31'000, 0));
  auto again = Receive(kT0 + 31'000, 1).messages;
  ASSERT_EQ(again.size(), 1u) << "visibility 0 did not release it";
  EXPECT_EQ(ChangeVisibility(m, kT0 + 31'000, 5'000).error().code, ErrorCode::kFailedPrecondition)
      << "an old receipt changed a newer receive";
  EXPECT_EQ(ChangeVisibility(again[0], kT0 + 31'000, 12 * 3'600'000 + 1).error().code,
            ErrorCode::kInvalidArgument)
      << "a lease may not end more than 12 h after its receive";
  ASSERT_TRUE(Delete(again[0]));
  EXPECT_EQ(ChangeVisibility(again[0], kT0 + 31'000, 5'000).error().code,
            ErrorCode::kFailedPrecondition);
}

TEST_F(QueuePartitionTest, DelayedMessagesWaitForTheirTime) {
  Send(1, "late", std::nullopt, kT0 + 5'000);
  Send(1, "now");
  auto first = Receive(kT0, 10);
  EXPECT_EQ(Values(first.messages), (std::vector<std::string>{"now0"}));
  EXPECT_EQ(first.next_visible_ms, kT0 + 5'000);
  EXPECT_EQ(queue_->Counts(kT0).delayed, 1u);
  EXPECT_EQ(Values(Receive(kT0 + 5'000, 10).messages), (std::vector<std::string>{"late0"}));
}

TEST_F(QueuePartitionTest, FifoDeliversAGroupInOrderOneLeaseAtATime) {
  Send(3, "a", "A");
  Send(2, "b", "B");
  QueueReceiveOptions fifo;
  fifo.fifo = true;
  auto first = Receive(kT0, 2, fifo);
  ASSERT_EQ(Values(first.messages), (std::vector<std::string>{"a0", "a1"}));
  // Group A is locked while a0/a1 are in flight; B is free.
  auto second = Receive(kT0 + 1, 10, fifo);
  EXPECT_EQ(Values(second.messages), (std::vector<std::string>{"b0", "b1"}));
  ASSERT_TRUE(Delete(first.messages[0]));
  EXPECT_TRUE(Receive(kT0 + 2, 10, fifo).messages.empty()) << "a2 overtook the in-flight a1";
  // a1's lease ends: a1 comes again before a2.
  auto third = Receive(kT0 + 30'000, 1, fifo);
  EXPECT_EQ(Values(third.messages), (std::vector<std::string>{"a1"}));
  ASSERT_TRUE(Delete(third.messages[0]));
  // b0 and b1 stay leased until kT0 + 30'001.
  EXPECT_EQ(Values(Receive(kT0 + 30'000, 10, fifo).messages), (std::vector<std::string>{"a2"}));
}

TEST_F(QueuePartitionTest, FifoHoldsAGroupWhileAnyOfItIsInFlight) {
  Send(2, "a", "A");
  QueueReceiveOptions fifo;
  fifo.fifo = true;
  auto both = Receive(kT0, 2, fifo).messages;
  ASSERT_EQ(Values(both), (std::vector<std::string>{"a0", "a1"}));
  // a0 is released while a1 is still being worked on: a0 must wait for a1.
  ASSERT_TRUE(ChangeVisibility(both[0], kT0 + 1, 0));
  EXPECT_TRUE(Receive(kT0 + 2, 10, fifo).messages.empty()) << "a0 went out beside in-flight a1";
  ASSERT_TRUE(Delete(both[1]));
  EXPECT_EQ(Values(Receive(kT0 + 3, 10, fifo).messages), (std::vector<std::string>{"a0"}));
}

TEST_F(QueuePartitionTest, FifoFillsAReceiveFromOneGroupFirst) {
  Send(1, "a", "A");
  Send(1, "b", "B");
  Send(1, "a", "A");  // a0 again as the body, a later message of A
  Send(1, "b", "B");
  QueueReceiveOptions fifo;
  fifo.fifo = true;
  auto got = Receive(kT0, 2, fifo).messages;
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].record.message_group_id, "A");
  EXPECT_EQ(got[1].record.message_group_id, "A");
  EXPECT_LT(got[0].offset, got[1].offset);
}

TEST_F(QueuePartitionTest, AFifoGroupLongerThanOneReadIsReceivedAtOnce) {
  // The first receive reads ahead (the answer's size plus 3 per message) and meets more of
  // the group than it can take: it still answers with the group's first messages.
  Send(20, "a", "A");
  QueueReceiveOptions fifo;
  fifo.fifo = true;
  EXPECT_EQ(Values(Receive(kT0, 1, fifo).messages), (std::vector<std::string>{"a0"}));
  Send(20, "b", "B");
  EXPECT_EQ(Values(Receive(kT0, 2, fifo).messages), (std::vector<std::string>{"b0", "b1"}));
}

TEST_F(QueuePartitionTest, AFifoGroupsBacklogDoesNotHoldBackOtherGroups) {
  Send(3'000, "a", "A");
  Send(1, "b", "B");
  Send(2, "c");  // no group: never held in order
  QueueReceiveOptions fifo;
  fifo.fifo = true;
  auto a = Receive(kT0, 1, fifo).messages;
  ASSERT_EQ(Values(a), (std::vector<std::string>{"a0"}));
  // A is locked: the receive reads past its backlog to B and to the messages without a group.
  std::vector<std::string> others;
  for (int i = 0; i < 5 && others.size() < 3; ++i) {
    for (const auto& m : Receive(kT0 + 1, 10, fifo).messages)
      others.push_back(m.record.value);
  }
  EXPECT_EQ(others, (std::vector<std::string>{"b0", "c0", "c1"}));
  ASSERT_TRUE(Delete(a[0]));
  EXPECT_EQ(Values(Receive(kT0 + 2, 2, fifo).messages), (std::vector<std::string>{"a1", "a2"}));
}

TEST_F(QueuePartitionTest, AFifoBacklogIsExaminedOnlySoFarAhead) {
  Send(3'000, "a", "A");
  Send(1, "b", "B");
  QueueReceiveOptions fifo;
  fifo.fifo = true;
  fifo.max_fifo_examined = 500;
  auto a = Receive(kT0, 1, fifo).messages;
  ASSERT_EQ(Values(a), (std::vector<std::string>{"a0"}));
  for (int i = 0; i < 10; ++i)
    EXPECT_TRUE(Receive(kT0 + 1, 10, fifo).messages.empty());
  // One in flight and 500 more examined: nothing beyond, however often it is asked.
  EXPECT_TRUE(queue_->State(500).has_value());
  EXPECT_FALSE(queue_->State(501).has_value()) << "read further ahead than allowed";
  // The window moves with the front, and the group keeps its order.
  std::vector<std::string> got;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Delete(a[0]));
    a = Receive(kT0 + 2 + i, 1, fifo).messages;
    ASSERT_EQ(a.size(), 1u);
    got.push_back(a[0].record.value);
  }
  EXPECT_EQ(got, (std::vector<std::string>{"a1", "a2", "a3"}));
}

TEST_F(QueuePartitionTest, DoneMessagesDoNotCountAgainstTheFifoReadAhead) {
  // One message held for long at the front; 600 other groups received and deleted behind
  // it. Their done states wait for the floor, and must not stop the partition reading on.
  Send(1, "slow", "S");
  for (int i = 0; i < 601; ++i)
    Send(1, "g" + std::to_string(i) + "-", "G" + std::to_string(i));
  QueueReceiveOptions fifo;
  fifo.fifo = true;
  fifo.max_fifo_examined = 500;
  QueueReceiveOptions held = fifo;
  held.visibility_ms = 3'600'000;
  ASSERT_EQ(Values(Receive(kT0, 1, held).messages), (std::vector<std::string>{"slow0"}));
  std::set<std::string> done;
  for (int round = 0; round < 200 && done.size() < 601; ++round) {
    auto got = Receive(kT0 + 1, 10, fifo).messages;
    if (got.empty()) break;
    for (const auto& m : got) {
      ASSERT_TRUE(Delete(m));
      done.insert(m.record.value);
    }
  }
  EXPECT_EQ(done.size(), 601u) << "stopped behind the held message";
  EXPECT_EQ(queue_->floor(), 0u) << "the held message keeps the floor";
  // The same after a restart, which loads every stored state, done ones too.
  Send(1, "after", "H");
  Reload();
  EXPECT_EQ(Values(Receive(kT0 + 2, 10, fifo).messages), (std::vector<std::string>{"after0"}));
}

TEST_F(QueuePartitionTest, ARestartReadsAgainEveryMessageItLoaded) {
  // More ended leases than the read-ahead allows are loaded at startup; they count against
  // it, and must be read again anyway, or nothing could ever be received.
  for (int i = 0; i < 600; ++i)
    Send(1, "g" + std::to_string(i) + "-", "G" + std::to_string(i));
  QueueReceiveOptions fifo;
  fifo.fifo = true;
  QueueReceiveOptions short_lease = fifo;
  short_lease.visibility_ms = 1'000;
  std::size_t leased = 0;
  for (int i = 0; i < 100 && leased < 600; ++i)
    leased += Receive(kT0, 10, short_lease).messages.size();
  ASSERT_EQ(leased, 600u);
  Reload();
  fifo.max_fifo_examined = 500;
  EXPECT_EQ(Receive(kT0 + 2'000, 10, fifo).messages.size(), 10u);
}

TEST_F(QueuePartitionTest, AFifoGroupDeliversWhatIsDueBeforeItsDelayedMessages) {
  Send(1, "a", "A", kT0);
  Send(1, "late", "A", kT0 + 10'000);
  Send(1, "b", "A", kT0);  // after the delayed one: waits for it
  QueueReceiveOptions fifo;
  fifo.fifo = true;
  auto first = Receive(kT0 + 1, 10, fifo).messages;  // read from the log
  ASSERT_EQ(Values(first), (std::vector<std::string>{"a0"}));
  ASSERT_TRUE(ChangeVisibility(first[0], kT0 + 2, 0));
  auto again = Receive(kT0 + 3, 10, fifo).messages;  // examined before
  EXPECT_EQ(Values(again), (std::vector<std::string>{"a0"}));
  ASSERT_EQ(again.size(), 1u);
  ASSERT_TRUE(Delete(again[0]));
  EXPECT_TRUE(Receive(kT0 + 4, 10, fifo).messages.empty()) << "went out before the delayed one";
  EXPECT_EQ(Values(Receive(kT0 + 10'000, 10, fifo).messages),
            (std::vector<std::string>{"late0", "b0"}));
}

TEST_F(QueuePartitionTest, FifoGroupsInFlightStayHeldAfterARestart) {
  Send(3, "a", "A");
  QueueReceiveOptions fifo;
  fifo.fifo = true;
  auto got = Receive(kT0, 1, fifo).messages;
  ASSERT_EQ(Values(got), (std::vector<std::string>{"a0"}));
  Reload();
  EXPECT_TRUE(Receive(kT0 + 1, 10, fifo).messages.empty()) << "a1 overtook a0 after a restart";
  ASSERT_TRUE(Delete(got[0]));
  EXPECT_EQ(Values(Receive(kT0 + 2, 1, fifo).messages), (std::vector<std::string>{"a1"}));
}

TEST_F(QueuePartitionTest, ManyMessagesAreEachReceivedOnce) {
  for (int i = 0; i < 6; ++i)
    Send(100, "m" + std::to_string(i) + "-");
  std::set<std::uint64_t> offsets;
  for (int i = 0; i < 10; ++i) {
    for (const auto& m : Receive(kT0, 100).messages)
      EXPECT_TRUE(offsets.insert(m.offset).second) << "offset " << m.offset << " twice";
  }
  EXPECT_EQ(offsets.size(), 600u);
  EXPECT_EQ(queue_->Counts(kT0).in_flight, 600u);
}

TEST_F(QueuePartitionTest, AStandardReceiveExaminesOnlyWhatItTakes) {
  // A record examined and not taken is read again by the receive that takes it, so a
  // standard queue reads no further than it needs.
  Send(50);
  auto got = Receive(kT0, 3);
  ASSERT_EQ(got.messages.size(), 3u);
  EXPECT_TRUE(queue_->State(2).has_value());
  EXPECT_FALSE(queue_->State(3).has_value()) << "offset 3 was examined without being taken";
  EXPECT_EQ(queue_->Counts(kT0).visible, 47u);
  // A delayed message is examined and passed over; the receive reads on to fill itself.
  Send(1, "late", std::nullopt, kT0 + 5'000);
  Send(2, "now");
  std::set<std::uint64_t> offsets;
  for (int i = 0; i < 10 && offsets.size() < 49; ++i) {
    for (const auto& m : Receive(kT0, 10).messages)
      EXPECT_TRUE(offsets.insert(m.offset).second) << "offset " << m.offset << " twice";
  }
  EXPECT_EQ(offsets.size(), 49u);
  EXPECT_EQ(offsets.count(50), 0u) << "the delayed message was received early";
  EXPECT_EQ(queue_->Counts(kT0).delayed, 1u);
}

TEST_F(QueuePartitionTest, AZeroVisibilityReceiveLeavesTheMessageVisible) {
  Send(1);
  QueueReceiveOptions peek;
  peek.visibility_ms = 0;
  auto first = Receive(kT0, 1, peek).messages;
  ASSERT_EQ(first.size(), 1u);
  auto second = Receive(kT0, 1, peek).messages;
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].receive_count, 2u);
  EXPECT_EQ(second[0].first_receive_ms, kT0);
}

TEST_F(QueuePartitionTest, ALeaseThatEndedCanBeExtendedWhileNobodyReceivedAgain) {
  Send(1);
  auto m = Receive(kT0, 1).messages.at(0);
  ASSERT_TRUE(ChangeVisibility(m, kT0 + 40'000, 30'000)) << "the proto allows it";
  EXPECT_TRUE(Receive(kT0 + 40'001, 1).messages.empty()) << "it was not leased again";
}

TEST_F(QueuePartitionTest, AFifoDeadLetterHoldsItsGroupUntilItIsMoved) {
  Send(2, "a", "A");
  QueueReceiveOptions o;
  o.fifo = true;
  o.max_receive_count = 1;
  auto first = Receive(kT0, 1, o).messages;
  ASSERT_EQ(Values(first), (std::vector<std::string>{"a0"}));
  auto second = Receive(kT0 + 30'000, 10, o);
  ASSERT_EQ(second.dead_letters.size(), 1u);
  EXPECT_TRUE(second.messages.empty()) << "a1 went out before a0 was moved away";
  ASSERT_TRUE(Delete(second.dead_letters[0]));
  EXPECT_EQ(Values(Receive(kT0 + 30'001, 10, o).messages), (std::vector<std::string>{"a1"}));
}

TEST_F(QueuePartitionTest, AMessagePastItsMaxReceiveCountIsHandedOverAsADeadLetter) {
  Send(2);
  QueueReceiveOptions o;
  o.max_receive_count = 2;
  std::int64_t now = kT0;
  for (int i = 0; i < 2; ++i, now += 30'000) {
    auto got = Receive(now, 1, o);
    ASSERT_EQ(Values(got.messages), (std::vector<std::string>{"m0"}));
    ASSERT_TRUE(got.dead_letters.empty());
  }
  auto third = Receive(now, 1, o);
  ASSERT_EQ(third.dead_letters.size(), 1u);
  EXPECT_EQ(third.dead_letters[0].record.value, "m0");
  EXPECT_EQ(third.dead_letters[0].receive_count, 2u);
  EXPECT_EQ(Values(third.messages), (std::vector<std::string>{"m1"}))
      << "the dead letter took room";
  // Locked until the caller deletes it (with the move).
  EXPECT_TRUE(Receive(now + 60'000, 10, o).dead_letters.empty());
  ASSERT_TRUE(Delete(third.dead_letters[0]));
  EXPECT_EQ(queue_->floor(), 1u);
}

// A dead letter moved at the floor leaves no stored state, also when it was never received
// (a redrive's) or its lease was in a run: the move stores it as acknowledged, and the floor
// deletes that.
TEST_F(QueuePartitionTest, ADeadLetterMovedAtTheFloorLeavesNoStoredState) {
  Send(2);
  ASSERT_EQ(Receive(kT0, 2).messages.size(), 2u);  // 0 and 1 leased in one run
  QueueReceiveOptions o;
  o.max_receive_count = 1;
  o.max_in_flight = 10;
  auto got = Receive(kT0 + 30'000, 2, o);  // past their count: dead letters
  ASSERT_EQ(got.dead_letters.size(), 2u);
  EXPECT_TRUE(got.messages.empty());
  Send(1);
  QueueReceiveOptions redrive;
  redrive.max_receive_count = 0;
  redrive.redrive = true;
  redrive.max_in_flight = 10;
  auto never = Receive(kT0 + 30'000, 10, redrive);  // 2, never received
  ASSERT_EQ(never.dead_letters.size(), 1u);
  std::vector<ReceivedMessage> dead = got.dead_letters;
  dead.push_back(never.dead_letters[0]);
  for (const auto& d : dead) {
    storage::WriteBatch move;
    ASSERT_TRUE(queue_->PrepareDeadLetterDelete(d.offset, d.generation, move));
    ASSERT_TRUE(store_->WriteSync(std::move(move)));
    ASSERT_TRUE(Delete(d));
  }
  EXPECT_EQ(queue_->floor(), 3u);
  EXPECT_TRUE(StoredStates().empty());
  EXPECT_TRUE(StoredRuns().empty());
}

// A purge that passes a dead letter while its move is being written: the move's write (with
// the acknowledged state) lands after the purge's, below the floor, where no floor move
// deletes anything. The next floor move after a restart removes what was left there.
TEST_F(QueuePartitionTest, AStateLeftBelowTheFloorIsRemovedAfterARestart) {
  Send(3);
  QueueReceiveOptions o;
  o.max_receive_count = 0;
  o.max_dead_letters = 1;
  auto got = Receive(kT0, 1, o);
  ASSERT_EQ(got.dead_letters.size(), 1u);
  const ReceivedMessage& dead = got.dead_letters[0];
  storage::WriteBatch move;
  ASSERT_TRUE(queue_->PrepareDeadLetterDelete(dead.offset, dead.generation, move));
  storage::WriteBatch purge;
  queue_->AckBelow(2, purge);
  ASSERT_TRUE(store_->WriteSync(std::move(purge)));
  ASSERT_TRUE(store_->WriteSync(std::move(move)));
  ASSERT_TRUE(Delete(dead)) << "done already";
  EXPECT_EQ(StoredStates(), std::vector<std::uint64_t>{0}) << "the move's state, below the floor";
  Reload();
  EXPECT_EQ(queue_->floor(), 2u);
  auto last = Receive(kT0, 1).messages;
  ASSERT_EQ(Values(last), std::vector<std::string>{"m2"});
  ASSERT_TRUE(Delete(last[0]));
  EXPECT_EQ(queue_->floor(), 3u);
  EXPECT_TRUE(StoredStates().empty());
}

TEST_F(QueuePartitionTest, AZeroVisibilityReceiveTakesEachMessageOnceAroundADeadLetter) {
  // The dead letter sends the receive round again to fill its answer; with a zero
  // visibility timeout, what the first round took is receivable in the second.
  Send(2);
  QueueReceiveOptions o;
  o.max_receive_count = 1;
  o.visibility_ms = 0;
  ASSERT_EQ(Values(Receive(kT0, 1, o).messages), (std::vector<std::string>{"m0"}));
  auto got = Receive(kT0 + 1, 10, o);
  ASSERT_EQ(got.dead_letters.size(), 1u);
  EXPECT_EQ(Values(got.messages), (std::vector<std::string>{"m1"}));
}

TEST_F(QueuePartitionTest, TheInFlightLimitStopsReceives) {
  Send(5);
  QueueReceiveOptions o;
  o.max_in_flight = 3;
  EXPECT_EQ(Receive(kT0, 10, o).messages.size(), 3u);
  auto limited = Receive(kT0 + 1, 10, o);
  EXPECT_TRUE(limited.messages.empty());
  EXPECT_TRUE(limited.in_flight_limit);
  EXPECT_EQ(limited.next_visible_ms, kT0 + 30'000);
}

TEST_F(QueuePartitionTest, PurgeAndRetentionMoveTheFloor) {
  Send(4);
  auto got = Receive(kT0, 1).messages;
  storage::WriteBatch batch;
  queue_->AckBelow(log_->end_offset(), batch);
  ASSERT_TRUE(store_->WriteSync(std::move(batch)));
  EXPECT_EQ(queue_->floor(), 4u);
  EXPECT_TRUE(Receive(kT0 + 60'000, 10).messages.empty()) << "purged messages came back";
  EXPECT_TRUE(Delete(got[0])) << "deleting a purged message is fine";
  // Retention drops records below the floor's reach: the floor follows the log start.
  Send(3, "r");
  storage::WriteBatch retention;
  ASSERT_TRUE(log_->PrepareRetention({.retention_ms = 1}, kT0 + 10, retention));
  ASSERT_TRUE(store_->WriteSync(std::move(retention)));
  EXPECT_TRUE(Receive(kT0 + 60'000, 10).messages.empty());
  EXPECT_EQ(queue_->floor(), 7u);
}

TEST_F(QueuePartitionTest, CountsFindTheOldestVisibleMessage) {
  EXPECT_FALSE(queue_->Counts(kT0).oldest_visible);
  Send(4);
  EXPECT_EQ(queue_->Counts(kT0).oldest_visible, 0u) << "unexamined messages are visible";
  auto got = Receive(kT0, 2).messages;  // m0, m1 leased until kT0 + 30 s
  auto counts = queue_->Counts(kT0);
  EXPECT_EQ(counts.oldest_visible, 2u);
  EXPECT_EQ(counts.in_flight, 2u);
  EXPECT_EQ(counts.visible, 2u);
  ASSERT_TRUE(ChangeVisibility(got[1], kT0, 0));  // m1 visible again
  EXPECT_EQ(queue_->Counts(kT0).oldest_visible, 1u);
  // After a restart the loaded leases are skipped over in the unexamined part.
  Reload();
  counts = queue_->Counts(kT0);
  EXPECT_EQ(counts.oldest_visible, 1u);
  EXPECT_EQ(counts.visible, 3u);
  EXPECT_EQ(queue_->Counts(kT0 + 30'000).oldest_visible, 0u) << "m0's lease ended";
  EXPECT_EQ(Receive(kT0 + 30'000, 10).messages.size(), 4u);
  EXPECT_FALSE(queue_->Counts(kT0 + 30'000).oldest_visible) << "everything is in flight";
}

TEST_F(QueuePartitionTest, ARedriveTakesVisibleMessagesBelowItsEndAsDeadLetters) {
  Send(3, "g", std::string("A"));
  Send(2, "late");
  auto leased = Receive(kT0, 1).messages;  // g0 in flight: skipped by the redrive
  ASSERT_EQ(leased.size(), 1u);
  QueueReceiveOptions o;
  o.max_receive_count = 0;
  o.redrive = true;
  o.max_in_flight = SIZE_MAX;
  o.end_offset = 3;  // what was there when the redrive started
  auto took = Receive(kT0, 10, o);
  EXPECT_TRUE(took.messages.empty());
  ASSERT_EQ(Values(took.dead_letters), (std::vector<std::string>{"g1", "g2"}));
  // Being moved: in flight, like a lease, not delayed (they were never received).
  QueueCounts counts = queue_->Counts(kT0);
  EXPECT_EQ(counts.in_flight, 3u);
  EXPECT_EQ(counts.delayed, 0u);
  EXPECT_EQ(counts.visible, 2u);
  EXPECT_EQ(queue_->InFlight(kT0), 3u);
  // Locked: neither a receive nor the redrive takes them again.
  EXPECT_TRUE(Receive(kT0, 10, o).dead_letters.empty());
  EXPECT_EQ(Values(Receive(kT0, 10).messages), (std::vector<std::string>{"late0", "late1"}));
  // One is given back (its move failed): receivable at once, and by the redrive again.
  const ReceivedMessage& g2 = took.dead_letters[1];
  EXPECT_FALSE(queue_->UnlockDeadLetter(g2.offset, g2.generation + 1, kT0)) << "stale";
  ASSERT_TRUE(queue_->UnlockDeadLetter(g2.offset, g2.generation, kT0));
  counts = queue_->Counts(kT0);
  EXPECT_EQ(counts.visible, 1u) << "g2 is receivable again";
  EXPECT_EQ(counts.delayed, 0u);
  EXPECT_EQ(Values(Receive(kT0, 10, o).dead_letters), std::vector<std::string>{"g2"});
}

TEST_F(QueuePartitionTest, FifoRedrivesTakeAGroupInOrderButNotOneInFlight) {
  Send(2, "a", std::string("A"));
  Send(2, "b", std::string("B"));
  QueueReceiveOptions fifo;
  fifo.fifo = true;
  ASSERT_EQ(Values(Receive(kT0, 1, fifo).messages), std::vector<std::string>{"a0"});
  QueueReceiveOptions o = fifo;
  o.max_receive_count = 0;
  o.redrive = true;
  o.max_in_flight = SIZE_MAX;
  EXPECT_EQ(Values(Receive(kT0, 10, o).dead_letters), (std::vector<std::string>{"b0", "b1"}))
      << "group A is in flight; group B moves whole, in order";
}

// As in SQS, where a visibility change keeps a message in flight: a nack with a delay ends the
// receive's lease (a stream's window frees its place) but the message stays in flight, held in
// memory, until the delay ends. So it counts as in flight before and after a restart, and
// against the in-flight limit: nacking cannot grow the held state past it.
// Leases that ended in another order than their offsets are redelivered oldest first, and
// counted, whether a count or a receive first finds that they ended.
TEST_F(QueuePartitionTest, EndedLeasesAreRedeliveredOldestFirst) {
  Send(300);
  std::vector<ReceivedMessage> got;
  for (int i = 0; i < 3; ++i) {
    QueueReceiveOptions o;
    o.visibility_ms = 3'000 - i * 1'000;  // the newest messages' leases end first
    for (auto& m : Receive(kT0, 100, o).messages)
      got.push_back(std::move(m));
  }
  ASSERT_EQ(got.size(), 300u);
  auto counts = queue_->Counts(kT0 + 1'000);
  EXPECT_EQ(counts.visible, 100u);
  EXPECT_EQ(counts.in_flight, 200u);
  EXPECT_EQ(counts.oldest_visible, 200u);
  EXPECT_EQ(queue_->InFlight(kT0 + 3'000), 0u);
  auto again = Receive(kT0 + 3'000, 10).messages;
  ASSERT_EQ(again.size(), 10u);
  for (std::size_t i = 0; i < again.size(); ++i) {
    EXPECT_EQ(again[i].offset, i);
    EXPECT_EQ(again[i].receive_count, 2u);
  }
  ASSERT_TRUE(Delete(again[0]));
  counts = queue_->Counts(kT0 + 3'000);
  EXPECT_EQ(counts.visible, 290u);
  EXPECT_EQ(counts.in_flight, 9u);
  EXPECT_EQ(counts.oldest_visible, 10u);
  ASSERT_TRUE(ChangeVisibility(again[1], kT0 + 3'000, 0));
  EXPECT_EQ(Receive(kT0 + 3'000, 1).messages.at(0).offset, 1u) << "released: oldest again";
}

// A message held in flight at the floor keeps every later deleted one above it until it is
// deleted too; in memory that costs an acknowledged range per run of them, not a state each.
TEST_F(QueuePartitionTest, DeletesBehindAHeldMessageCostARangeNotAStateEach) {
  Send(1'001);
  auto held = Receive(kT0, 1).messages;
  ASSERT_EQ(held.size(), 1u);
  for (int round = 0; round < 10; ++round) {
    auto got = Receive(kT0, 100).messages;
    ASSERT_EQ(got.size(), 100u);
    // Out of order within each batch, too.
    for (std::size_t i = 0; i < got.size(); i += 2)
      ASSERT_TRUE(Delete(got[i]));
    for (std::size_t i = 1; i < got.size(); i += 2)
      ASSERT_TRUE(Delete(got[i]));
  }
  EXPECT_EQ(queue_->floor(), 0u) << "the held message keeps the floor";
  EXPECT_LE(queue_->HeldInMemory(), 2u) << "the held state and one range";
  EXPECT_TRUE(queue_->State(500)->acked);
  EXPECT_EQ(queue_->Counts(kT0).in_flight, 1u);
  EXPECT_EQ(queue_->Counts(kT0).visible, 0u);
  EXPECT_TRUE(Delete(500, 12345)) << "deleting again is fine, whatever the receipt";
  storage::WriteBatch batch;
  EXPECT_EQ(queue_->ChangeVisibility(500, 1, kT0, 0, 12 * 3'600'000, batch).error().message,
            "message 500 was deleted");

  // After a restart the stored acknowledgements come back as one range too, and are skipped.
  Reload();
  EXPECT_LE(queue_->HeldInMemory(), 2u);
  EXPECT_EQ(queue_->Counts(kT0).in_flight, 1u);
  EXPECT_EQ(queue_->Counts(kT0).visible, 0u);
  EXPECT_TRUE(Receive(kT0, 10).messages.empty()) << "a deleted message came back";
  EXPECT_EQ(StoredStates().size(), 1'001u);
  ASSERT_TRUE(Delete(held[0]));
  EXPECT_EQ(queue_->floor(), 1'001u) << "the floor passes the whole run at once";
  EXPECT_TRUE(StoredStates().empty());
  EXPECT_EQ(queue_->HeldInMemory(), 0u);
}

TEST_F(QueuePartitionTest, ANackedMessageStaysInFlightUntilItsDelayEnds) {
  Send(2);
  auto got = Receive(kT0, 2).messages;
  ASSERT_EQ(got.size(), 2u);
  storage::WriteBatch batch;
  ASSERT_TRUE(queue_->ChangeVisibility(got[0].offset, got[0].generation, kT0, 5'000, 12 * 3'600'000,
                                       batch, /*release=*/true));
  ASSERT_TRUE(store_->WriteSync(std::move(batch)));
  EXPECT_TRUE(queue_->LeaseEnded(got[0].offset, got[0].generation, kT0))
      << "a nack ends the receive's lease";
  EXPECT_FALSE(queue_->LeaseEnded(got[1].offset, got[1].generation, kT0));
  auto counts = queue_->Counts(kT0);
  EXPECT_EQ(counts.delayed, 0u);
  EXPECT_EQ(counts.in_flight, 2u);
  EXPECT_EQ(queue_->InFlight(kT0), 2u);
  EXPECT_TRUE(Receive(kT0 + 4'999, 10).messages.empty());
  Reload();
  EXPECT_EQ(queue_->Counts(kT0).in_flight, 2u) << "a restart counts it the same";
  EXPECT_EQ(queue_->Counts(kT0).delayed, 0u);
  auto again = Receive(kT0 + 5'000, 10).messages;
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].receive_count, 2u);
  EXPECT_EQ(queue_->Counts(kT0 + 5'000).in_flight, 2u);
  EXPECT_EQ(queue_->Counts(kT0 + 5'000).delayed, 0u);
}

TEST_F(QueuePartitionTest, NackedMessagesCountAgainstTheInFlightLimit) {
  Send(4);
  QueueReceiveOptions limit;
  limit.max_in_flight = 2;
  auto got = Receive(kT0, 10, limit).messages;
  ASSERT_EQ(got.size(), 2u);
  for (const auto& m : got) {
    storage::WriteBatch batch;
    ASSERT_TRUE(queue_->ChangeVisibility(m.offset, m.generation, kT0, 60'000, 12 * 3'600'000, batch,
                                         /*release=*/true));
    ASSERT_TRUE(store_->WriteSync(std::move(batch)));
  }
  auto held = Receive(kT0 + 1, 10, limit);
  EXPECT_TRUE(held.messages.empty()) << "two nacked messages are held: no room for more";
  EXPECT_TRUE(held.in_flight_limit);
  EXPECT_EQ(held.next_visible_ms, kT0 + 60'000) << "a long poll wakes when a nack's delay ends";
  auto later = Receive(kT0 + 60'000, 10, limit).messages;
  EXPECT_EQ(Values(later), (std::vector<std::string>{"m0", "m1"})) << "redelivered first";
}

TEST_F(QueuePartitionTest, ExamineFindsDelayedMessagesInAShortTail) {
  Send(2, "later", std::nullopt, kT0 + 60'000);
  EXPECT_EQ(queue_->Counts(kT0).visible, 2u) << "unexamined messages count as visible";
  ASSERT_TRUE(queue_->Examine(1));
  EXPECT_EQ(queue_->Counts(kT0).visible, 2u) << "a tail longer than the limit stays unexamined";
  ASSERT_TRUE(queue_->Examine(10));
  EXPECT_EQ(queue_->Counts(kT0).delayed, 2u);
  EXPECT_EQ(queue_->Counts(kT0).visible, 0u);
}

TEST_F(QueuePartitionTest, StateSurvivesARestart) {
  Send(4);
  auto got = Receive(kT0, 3).messages;  // m0, m1, m2 leased until kT0 + 30 s
  ASSERT_TRUE(Delete(got[0]));
  ASSERT_TRUE(Delete(got[2]));  // out of order
  Reload();
  EXPECT_EQ(queue_->floor(), 1u);
  // m1 is still leased; m2 is done; m3 was never received.
  EXPECT_EQ(Values(Receive(kT0 + 1, 10).messages), (std::vector<std::string>{"m3"}));
  auto later = Receive(kT0 + 30'000, 10).messages;
  ASSERT_EQ(Values(later), (std::vector<std::string>{"m1"}));
  EXPECT_EQ(later[0].receive_count, 2u) << "the receive count was not kept";
  EXPECT_FALSE(Delete(got[1])) << "the receipt from before the restart is stale now";
  ASSERT_TRUE(Delete(later[0]));
  Reload();
  EXPECT_EQ(queue_->floor(), 3u);
}

TEST_F(QueuePartitionTest, StateEncodingRoundTripsAndRejectsCorruption) {
  QueueMessageState s;
  s.receive_count = 3;
  s.generation = 9;
  s.visible_at_ms = kT0;
  s.first_receive_ms = kT0 - 5;
  s.last_receive_ms = kT0 - 1;
  s.acked = true;
  auto back = DecodeQueueMessageState(EncodeQueueMessageState(s));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, s);
  std::string bad = EncodeQueueMessageState(s);
  bad.pop_back();
  EXPECT_EQ(DecodeQueueMessageState(bad).error().code, ErrorCode::kDataLoss);
  EXPECT_EQ(DecodeQueueMessageState("\x09").error().code, ErrorCode::kDataLoss);

  s.generation = (std::uint64_t{7} << 32) + 5;  // a run number above 0 (generation_floor)
  back = DecodeQueueMessageState(EncodeQueueMessageState(s));
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->generation, s.generation);
  std::string v1 = EncodeQueueMessageState(s);
  v1[0] = 1;  // written by a spoold with 32-bit generations: the same layout
  back = DecodeQueueMessageState(v1);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(*back, s);
  std::string future = EncodeQueueMessageState(s);
  future[0] = 3;
  EXPECT_EQ(DecodeQueueMessageState(future).error().message,
            "queue message state: unknown version");
}

// Generations start at the floor and go on from there, whatever the stored state held.
TEST_F(QueuePartitionTest, GenerationsStartAtTheFloorAndNeverRepeat) {
  Send(2);
  QueueReceiveOptions run1;
  run1.generation_floor = std::uint64_t{1} << 32;
  run1.visibility_ms = 0;  // receivable again at once
  auto first = Receive(kT0, 1, run1).messages;
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].generation, run1.generation_floor);
  auto second = Receive(kT0, 1, run1).messages;
  ASSERT_EQ(second.size(), 1u);
  ASSERT_EQ(second[0].offset, first[0].offset);
  EXPECT_EQ(second[0].generation, run1.generation_floor + 1);
  Reload();
  QueueReceiveOptions run2 = run1;
  run2.generation_floor = std::uint64_t{2} << 32;
  auto third = Receive(kT0, 1, run2).messages;
  ASSERT_EQ(third.size(), 1u);
  ASSERT_EQ(third[0].offset, first[0].offset);
  EXPECT_EQ(third[0].generation, run2.generation_floor);
  EXPECT_EQ(third[0].receive_count, 3u);
  EXPECT_FALSE(Delete(second[0])) << "the previous run's receipt is stale";
  EXPECT_TRUE(Delete(third[0]));
}

TEST(AppendedDelaysTest, CountsOnlyWhatIsStillDelayedAndForgetsTheRest) {
  AppendedDelays delays(100);
  EXPECT_EQ(delays.from(), 100u);
  for (std::uint64_t o = 100; o < 110; ++o)
    delays.Note(o, o < 105 ? 1'000 : 2'000);  // 100-104 due at 1 s, 105-109 at 2 s
  EXPECT_EQ(delays.CountDelayed(100, 110, 500), 10u);
  EXPECT_EQ(delays.CountDelayed(103, 108, 500), 5u) << "only [begin, end)";
  EXPECT_EQ(delays.FirstNotDelayed(100, 120, 500, 100), 110u);
  EXPECT_EQ(delays.FirstNotDelayed(100, 110, 500, 100), std::nullopt) << "all delayed";
  EXPECT_EQ(delays.FirstNotDelayed(100, 120, 500, 3), std::nullopt) << "the walk is bounded";
  EXPECT_EQ(delays.FirstNotDelayed(100, 120, 1'000, 100), 100u) << "due at 1 s";
  EXPECT_EQ(delays.CountDelayed(100, 110, 1'000), 5u);
  EXPECT_EQ(delays.FirstNotDelayed(100, 120, 500, 100), 100u)
      << "the records whose time had come were forgotten";
  EXPECT_EQ(delays.CountDelayed(100, 110, 2'000), 0u);
}

// Counts by rank in the offset tree must agree with walking every record, whatever the order
// in which delivery times come and go.
TEST(AppendedDelaysTest, CountsAgreeWithAWalkOfEveryRecord) {
  std::mt19937_64 rng(42);
  AppendedDelays delays(0);
  std::map<std::uint64_t, std::int64_t> all;  // every record noted, due or not
  std::int64_t now = 0;
  std::uint64_t end = 0;
  for (int round = 0; round < 2'000; ++round) {
    const int appended = static_cast<int>(rng() % 20);
    for (int i = 0; i < appended; ++i, ++end) {
      if (rng() % 3 == 0) continue;  // not delayed
      const std::int64_t at = now + 1 + static_cast<std::int64_t>(rng() % 5'000);
      delays.Note(end, at);
      all.emplace(end, at);
    }
    now += static_cast<std::int64_t>(rng() % 40);
    const std::uint64_t begin = end == 0 ? 0 : rng() % (end + 1);
    std::uint64_t expected = 0;
    for (auto it = all.lower_bound(begin); it != all.end(); ++it)
      expected += it->second > now ? 1 : 0;
    ASSERT_EQ(delays.CountDelayed(begin, end, now), expected)
        << "round " << round << ", [" << begin << ", " << end << ") at " << now;
    std::optional<std::uint64_t> first;
    for (std::uint64_t o = begin; o < end; ++o) {
      auto it = all.find(o);
      if (it == all.end() || it->second <= now) {
        first = o;
        break;
      }
    }
    ASSERT_EQ(delays.FirstNotDelayed(begin, end, now, SIZE_MAX), first) << "round " << round;
  }
  EXPECT_GT(end, 10'000u);
}

}  // namespace
}  // namespace spool::broker
