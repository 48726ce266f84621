// Message ids and receipt handles are what clients store and send back, so their text form
// is a contract: these tests pin it and the parsing of every malformed variant.

#include "protocol/queue_convert.h"

#include <cstdint>
#include <string>

#include <gtest/gtest.h>

namespace spool::protocol {
namespace {

TEST(MessageIdTest, IsUuidShapedLowercaseHexOfTopicPartitionAndOffset) {
  EXPECT_EQ(MessageId(0x1a2b, 0x00030004, 0x0005000000000abcULL),
            "00001a2b-0003-0004-0005-000000000abc");
  EXPECT_EQ(MessageId(0, 0, 0), "00000000-0000-0000-0000-000000000000");
  EXPECT_EQ(MessageId(UINT32_MAX, UINT32_MAX, UINT64_MAX), "ffffffff-ffff-ffff-ffff-ffffffffffff");
}

TEST(MessageIdTest, DistinctPlacesGiveDistinctIds) {
  EXPECT_NE(MessageId(1, 0, 7), MessageId(0, 1, 7));
  EXPECT_NE(MessageId(1, 2, 3), MessageId(1, 2, 4));
  EXPECT_NE(MessageId(1, 2, 1ULL << 48), MessageId(1, 2, 0));
}

TEST(ReceiptTest, EncodesVersionSubscriptionPartitionOffsetAndGeneration) {
  const std::string handle =
      EncodeReceipt(0xabcdef01, broker::QueueReceipt{7, 0x1122334455667788ULL, 0x300000009});
  EXPECT_EQ(handle,
            "02abcdef01000000071122334455667788"
            "0000000300000009");
}

// Handles given out before the upgrade to 64-bit generations still name their receives.
TEST(ReceiptTest, AcceptsVersionOneHandles) {
  auto decoded = DecodeReceipt(
      "01abcdef01000000071122334455667788"
      "00000009",
      0xabcdef01);
  ASSERT_TRUE(decoded.has_value()) << decoded.error().message;
  EXPECT_EQ(decoded->partition, 7u);
  EXPECT_EQ(decoded->offset, 0x1122334455667788ULL);
  EXPECT_EQ(decoded->generation, 9u);
  // A version-one handle is 42 characters, a version-two handle 50: no other mix is valid.
  EXPECT_FALSE(DecodeReceipt("01abcdef01000000071122334455667788"
                             "0000000000000009",
                             0xabcdef01)
                   .has_value());
  EXPECT_FALSE(DecodeReceipt("02abcdef01000000071122334455667788"
                             "00000009",
                             0xabcdef01)
                   .has_value());
}

TEST(ReceiptTest, RoundTripsExtremeValues) {
  for (const broker::QueueReceipt r :
       {broker::QueueReceipt{0, 0, 0}, broker::QueueReceipt{UINT32_MAX, UINT64_MAX, UINT64_MAX},
        broker::QueueReceipt{3, 1ULL << 63, 1}}) {
    for (std::uint32_t sub : {0u, 5u, UINT32_MAX}) {
      auto decoded = DecodeReceipt(EncodeReceipt(sub, r), sub);
      ASSERT_TRUE(decoded.has_value()) << decoded.error().message;
      EXPECT_EQ(decoded->partition, r.partition);
      EXPECT_EQ(decoded->offset, r.offset);
      EXPECT_EQ(decoded->generation, r.generation);
    }
  }
}

TEST(ReceiptTest, RejectsMalformedHandlesAndOtherQueues) {
  const std::string good = EncodeReceipt(5, broker::QueueReceipt{1, 2, 3});
  ASSERT_TRUE(DecodeReceipt(good, 5).has_value());

  auto rejects = [](const std::string& handle, std::uint32_t sub, const std::string& why) {
    auto decoded = DecodeReceipt(handle, sub);
    ASSERT_FALSE(decoded.has_value()) << handle;
    EXPECT_EQ(decoded.error().code, ErrorCode::kInvalidArgument) << handle;
    EXPECT_NE(decoded.error().message.find(why), std::string::npos) << decoded.error().message;
  };
  rejects("", 5, "malformed");
  rejects(good.substr(1), 5, "malformed");
  rejects(good + "0", 5, "malformed");
  std::string upper = good;
  upper[49] = 'F';
  rejects(upper, 5, "malformed");
  std::string not_hex = good;
  not_hex[20] = 'g';
  rejects(not_hex, 5, "malformed");
  std::string other_version = good;
  other_version[1] = '3';
  rejects(other_version, 5, "malformed");
  rejects(good, 6, "another queue");
}

}  // namespace
}  // namespace spool::protocol
