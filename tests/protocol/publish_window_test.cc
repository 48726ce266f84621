// The rule that decides whether a PublishStream reads its next batch: the window's bounds
// are what keep a producer's unanswered batches (and their memory) in check.

#include <gtest/gtest.h>

#include "protocol/grpc_services.h"

namespace spool::protocol {
namespace {

TEST(PublishStreamWindowTest, ReadsUntilTheBatchCountIsReached) {
  const PublishStreamWindow window{.batches = 3, .bytes = 1000};
  EXPECT_TRUE(window.HasRoom(0, 0));
  EXPECT_TRUE(window.HasRoom(2, 30));
  EXPECT_FALSE(window.HasRoom(3, 30));
  EXPECT_FALSE(window.HasRoom(4, 30));
}

TEST(PublishStreamWindowTest, ReadsUntilTheHeldBytesReachTheBound) {
  const PublishStreamWindow window{.batches = 100, .bytes = 1000};
  EXPECT_TRUE(window.HasRoom(1, 999));
  EXPECT_FALSE(window.HasRoom(1, 1000));
  EXPECT_FALSE(window.HasRoom(2, 5000));
}

TEST(PublishStreamWindowTest, AnEmptyStreamAlwaysReadsOneBatchHoweverLarge) {
  // Otherwise a window smaller than one batch would stall the stream for good.
  const PublishStreamWindow window{.batches = 1, .bytes = 1};
  EXPECT_TRUE(window.HasRoom(0, 0));
  EXPECT_FALSE(window.HasRoom(1, 0));
  EXPECT_FALSE(window.HasRoom(1, 1));
}

TEST(PublishStreamWindowTest, DefaultsHoldAThousandPipelinedSingleRecordBatches) {
  const PublishStreamWindow window;
  EXPECT_TRUE(window.HasRoom(1000, 1000 * 300));
  EXPECT_FALSE(window.HasRoom(window.batches, 0));
}

}  // namespace
}  // namespace spool::protocol
