#include "broker/topic.h"

#include <gtest/gtest.h>

namespace spool::broker {
namespace {

TopicConfig Valid() {
  TopicConfig config;
  config.name = "orders.v1_eu-west";
  config.partitions = 6;
  return config;
}

void ExpectInvalid(const TopicConfig& config, const std::string& fragment) {
  Status s = ValidateTopicConfig(config);
  ASSERT_FALSE(s) << "accepted: " << config.name;
  EXPECT_EQ(s.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(s.error().message.find(fragment), std::string::npos) << s.error().message;
}

TEST(TopicTest, AcceptsAValidConfig) {
  EXPECT_TRUE(ValidateTopicConfig(Valid()));
}

TEST(TopicTest, NamesAreOneTo249AllowedCharacters) {
  EXPECT_TRUE(ValidateTopicName("a"));
  EXPECT_TRUE(ValidateTopicName(std::string(249, 'x')));
  EXPECT_TRUE(ValidateTopicName("A-Z.a_z-0.9"));

  TopicConfig c = Valid();
  c.name = "";
  ExpectInvalid(c, "empty");
  c.name = std::string(250, 'x');
  ExpectInvalid(c, "250 characters");
  c.name = "has space";
  ExpectInvalid(c, "' ' at position 3");
  c.name = "slash/no";
  ExpectInvalid(c, "'/'");
  c.name = "caf\xc3\xa9";
  ExpectInvalid(c, "byte 0xc3 at position 3");
  c.name = "..";
  ExpectInvalid(c, "cannot be");
  c.name = std::string("nul\0x", 5);
  ExpectInvalid(c, "byte 0x00");
}

TEST(TopicTest, LimitsAreChecked) {
  TopicConfig c = Valid();
  c.partitions = 0;
  ExpectInvalid(c, "partition count 0");
  c.partitions = 1025;
  ExpectInvalid(c, "out of range 1-1024");
  c = Valid();
  c.retention_ms = 0;
  ExpectInvalid(c, "retention_ms 0");
  c = Valid();
  c.retention_bytes = -5;
  ExpectInvalid(c, "retention_bytes -5");
  c = Valid();
  c.max_message_bytes = 0;
  ExpectInvalid(c, "max_message_bytes 0");
  c.max_message_bytes = kMaxMaxMessageBytes + 1;
  ExpectInvalid(c, "max_message_bytes");

  c = Valid();
  c.retention_ms = -1;
  c.retention_bytes = -1;
  c.partitions = 1024;
  EXPECT_TRUE(ValidateTopicConfig(c));
}

TEST(TopicTest, MetadataRoundTripsAndCorruptionIsDetected) {
  TopicMetadata m{42, Valid(), 1767225600000};
  m.config.retention_bytes = 1 << 30;

  auto decoded = DecodeTopicMetadata(EncodeTopicMetadata(m));

  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->id, 42u);
  EXPECT_EQ(decoded->config, m.config);
  EXPECT_EQ(decoded->created_ms, m.created_ms);
  std::string truncated = EncodeTopicMetadata(m);
  truncated.pop_back();
  auto bad = DecodeTopicMetadata(truncated);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kDataLoss);
}

}  // namespace
}  // namespace spool::broker
