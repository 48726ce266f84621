// The deduplication table: claims, duplicates, waiting on an append in flight, failures,
// the five-minute window and the stored form.

#include "broker/dedup.h"

#include <gtest/gtest.h>

namespace spool::broker {
namespace {

using Kind = DedupTable::Claim::Kind;

TEST(DedupTableTest, AnIdIsNewThenPendingThenADuplicateUntilItExpires) {
  DedupTable table;
  EXPECT_EQ(table.Take("a", 1'000).kind, Kind::kNew);
  auto pending = table.Take("a", 1'001);
  ASSERT_EQ(pending.kind, Kind::kPending);
  std::optional<Result<DedupHit>> seen;
  pending.pending->Then([&](Result<DedupHit> r) { seen = std::move(r); });
  EXPECT_FALSE(seen) << "answered before the append finished";
  table.Complete("a", {2, 40, {}}, 1'000 + kDedupWindowMs);
  ASSERT_TRUE(seen && *seen);
  EXPECT_EQ((*seen)->offset, 40u);
  auto dup = table.Take("a", 2'000);
  ASSERT_EQ(dup.kind, Kind::kDuplicate);
  EXPECT_EQ(dup.hit.partition, 2u);
  // A waiter that comes after the outcome gets it at once.
  bool late = false;
  pending.pending->Then([&](Result<DedupHit> r) { late = r && r->offset == 40; });
  EXPECT_TRUE(late);
  EXPECT_TRUE(table.TakeExpired(1'000 + kDedupWindowMs - 1).empty());
  EXPECT_EQ(table.TakeExpired(1'000 + kDedupWindowMs), (std::vector<std::string>{"a"}));
  EXPECT_EQ(table.Take("a", 1'000 + kDedupWindowMs).kind, Kind::kNew);
}

TEST(DedupTableTest, AFailedAppendFailsItsWaitersAndFreesTheId) {
  DedupTable table;
  ASSERT_EQ(table.Take("b", 0).kind, Kind::kNew);
  auto waiting = table.Take("b", 0);
  std::optional<Result<DedupHit>> seen;
  waiting.pending->Then([&](Result<DedupHit> r) { seen = std::move(r); });
  table.Abandon("b", Unavailable("disk gone"));
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(table.Take("b", 0).kind, Kind::kNew) << "a retry may append";
}

TEST(DedupTableTest, RestoredIdsCountAndClearKeepsAppendsInFlight) {
  DedupTable table;
  table.Restore("r", {0, 7, {}}, 10'000);
  EXPECT_EQ(table.Take("r", 9'999).kind, Kind::kDuplicate);
  ASSERT_EQ(table.Take("in-flight", 0).kind, Kind::kNew);
  table.Clear();
  EXPECT_EQ(table.Take("r", 0).kind, Kind::kNew);
  EXPECT_EQ(table.Take("in-flight", 0).kind, Kind::kPending);
}

TEST(DedupTableTest, StoredValuesRoundTripAndCorruptionIsDataLoss) {
  const std::string v = DedupTable::EncodeValue({3, 1ull << 40, {}}, 123'456);
  auto back = DedupTable::DecodeValue(v);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->first.partition, 3u);
  EXPECT_EQ(back->first.offset, 1ull << 40);
  EXPECT_EQ(back->second, 123'456);
  EXPECT_FALSE(back->first.sequence) << "an entry written before sequence numbers has none";
  EXPECT_EQ(DedupTable::DecodeValue(v.substr(0, 5)).error().code, ErrorCode::kDataLoss);
  EXPECT_EQ(DedupTable::DecodeValue(v + "\x80").error().code, ErrorCode::kDataLoss)
      << "a truncated sequence number";

  const std::string numbered = DedupTable::EncodeValue({3, 7, 1ull << 50}, 9);
  auto with_sequence = DedupTable::DecodeValue(numbered);
  ASSERT_TRUE(with_sequence);
  EXPECT_EQ(with_sequence->first.sequence, std::optional<std::uint64_t>(1ull << 50));
  EXPECT_EQ(with_sequence->first.offset, 7u);
  EXPECT_EQ(with_sequence->second, 9);
  EXPECT_EQ(DedupTable::DecodeValue(numbered + "x").error().code, ErrorCode::kDataLoss);
}

}  // namespace
}  // namespace spool::broker
