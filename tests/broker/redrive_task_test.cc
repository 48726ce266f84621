// The stored form of a redrive task: round trips, and every damage is a DataLoss error.

#include "broker/redrive_task.h"

#include <gtest/gtest.h>

namespace spool::broker {
namespace {

RedriveTask Sample() {
  RedriveTask t;
  t.id = 0x0102030405060708ULL;
  t.status = RedriveStatus::kFailed;
  t.source = "orders-dlq";
  t.source_subscription = 42;
  t.destination = "orders";
  t.max_per_second = 250;
  t.moved = 1'000'000;
  t.to_move = 2'000'000;
  t.failure = "queue 'orders' was deleted";
  t.started_ms = 1'700'000'000'000;
  t.finished_ms = 1'700'000'360'000;
  t.ends = {0, 17, 1ULL << 40};
  return t;
}

TEST(RedriveTaskTest, TheStoredFormRoundTrips) {
  const RedriveTask t = Sample();
  auto back = DecodeRedriveTask(EncodeRedriveTask(t));
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(*back, t);
  RedriveTask bare;
  bare.max_per_second = kDefaultRedriveRate;
  EXPECT_EQ(*DecodeRedriveTask(EncodeRedriveTask(bare)), bare);
  EXPECT_TRUE(t.status == RedriveStatus::kFailed && !t.active());
  bare.status = RedriveStatus::kCancelling;
  EXPECT_TRUE(bare.active()) << "a cancelling task still runs its step";
}

TEST(RedriveTaskTest, DamageIsDataLossNeverACrash) {
  const std::string stored = EncodeRedriveTask(Sample());
  for (std::size_t cut = 0; cut < stored.size(); ++cut) {
    auto truncated = DecodeRedriveTask(stored.substr(0, cut));
    ASSERT_FALSE(truncated) << "cut at " << cut;
    EXPECT_EQ(truncated.error().code, ErrorCode::kDataLoss);
  }
  EXPECT_EQ(DecodeRedriveTask(stored + "x").error().code, ErrorCode::kDataLoss);
  std::string future = stored;
  future[0] = 9;
  EXPECT_EQ(DecodeRedriveTask(future).error().code, ErrorCode::kDataLoss);
  std::string bad_status = stored;
  bad_status[9] = 0;  // after the version byte and the 8-byte id
  EXPECT_EQ(DecodeRedriveTask(bad_status).error().code, ErrorCode::kDataLoss);
  RedriveTask zero_rate = Sample();
  zero_rate.max_per_second = 0;
  EXPECT_EQ(DecodeRedriveTask(EncodeRedriveTask(zero_rate)).error().code, ErrorCode::kDataLoss);
}

TEST(RedriveTaskTest, StatusNamesMatchTheApi) {
  EXPECT_EQ(RedriveStatusName(RedriveStatus::kRunning), "RUNNING");
  EXPECT_EQ(RedriveStatusName(RedriveStatus::kCompleted), "COMPLETED");
  EXPECT_EQ(RedriveStatusName(RedriveStatus::kCancelling), "CANCELLING");
  EXPECT_EQ(RedriveStatusName(RedriveStatus::kCancelled), "CANCELLED");
  EXPECT_EQ(RedriveStatusName(RedriveStatus::kFailed), "FAILED");
}

}  // namespace
}  // namespace spool::broker
