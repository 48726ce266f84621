// Queue names, attribute ranges and combinations, redrive allow policies, and the stored
// form of a queue.

#include "broker/queue_config.h"

#include <gtest/gtest.h>

namespace spool::broker {
namespace {

TEST(QueueConfigTest, NamesFollowTheSqsRules) {
  EXPECT_TRUE(ValidateQueueName("orders", false));
  EXPECT_TRUE(ValidateQueueName("Orders_2-x", false));
  EXPECT_TRUE(ValidateQueueName("orders.fifo", true));
  EXPECT_TRUE(ValidateQueueName(std::string(80, 'q'), false));
  EXPECT_TRUE(ValidateQueueName(std::string(75, 'q') + ".fifo", true)) << "the suffix counts";
  for (const auto& [name, fifo] :
       std::vector<std::pair<std::string, bool>>{{"", false},
                                                 {std::string(81, 'q'), false},
                                                 {std::string(76, 'q') + ".fifo", true},
                                                 {"orders.fifo", false},
                                                 {"orders", true},
                                                 {".fifo", true},
                                                 {"a.b", false},
                                                 {"with space", false},
                                                 {"caf\xc3\xa9", false}}) {
    Status s = ValidateQueueName(name, fifo);
    ASSERT_FALSE(s) << "'" << name << "' was accepted";
    EXPECT_EQ(s.error().code, ErrorCode::kInvalidArgument);
    EXPECT_FALSE(s.error().message.empty());
  }
}

TEST(QueueConfigTest, DefaultsAreValidAndEveryRangeIsChecked) {
  EXPECT_TRUE(ValidateQueueAttributes("q", {}));
  auto rejects = [](auto change, const std::string& words) {
    QueueAttributes a;
    change(a);
    Status s = ValidateQueueAttributes("q", a);
    ASSERT_FALSE(s) << words;
    EXPECT_EQ(s.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(s.error().message.find(words), std::string::npos) << s.error().message;
  };
  rejects([](QueueAttributes& a) { a.visibility_timeout_ms = 12LL * 3600 * 1000 + 1; },
          "visibility_timeout_ms");
  rejects([](QueueAttributes& a) { a.visibility_timeout_ms = -1; }, "visibility_timeout_ms");
  rejects([](QueueAttributes& a) { a.delivery_delay_ms = 900'001; }, "delivery_delay_ms");
  rejects([](QueueAttributes& a) { a.retention_ms = 59'999; }, "retention_ms");
  rejects([](QueueAttributes& a) { a.retention_ms = 14LL * 24 * 3600 * 1000 + 1; }, "retention_ms");
  rejects([](QueueAttributes& a) { a.max_message_bytes = 0; }, "max_message_bytes");
  rejects([](QueueAttributes& a) { a.max_message_bytes = (1 << 20) + 1; }, "max_message_bytes");
  rejects([](QueueAttributes& a) { a.receive_wait_ms = 20'001; }, "receive_wait_ms");
  rejects([](QueueAttributes& a) { a.max_in_flight = 0; }, "max_in_flight");
  rejects([](QueueAttributes& a) { a.max_in_flight = 120'001; }, "max_in_flight");
  rejects([](QueueAttributes& a) { a.partitions = 0; }, "partitions");
  rejects([](QueueAttributes& a) { a.content_based_deduplication = true; }, "FIFO");
  rejects([](QueueAttributes& a) { a.redrive_policy = RedrivePolicy{"q", 3}; }, "own");
  rejects(
      [](QueueAttributes& a) {
        a.redrive_policy = RedrivePolicy{"dlq", 0};
      },
      "max_receive_count");
  rejects(
      [](QueueAttributes& a) {
        a.redrive_policy = RedrivePolicy{"dlq", 1001};
      },
      "max_receive_count");
  rejects(
      [](QueueAttributes& a) {
        a.redrive_policy = RedrivePolicy{"bad name", 3};
      },
      "dead-letter queue");
  rejects(
      [](QueueAttributes& a) { a.redrive_allow_policy.permission = RedrivePermission::kByQueue; },
      "1-10");
  rejects([](QueueAttributes& a) { a.redrive_allow_policy.source_queues = {"a"}; },
          "only for a redrive allow policy by queue");
  QueueAttributes retained_forever;
  retained_forever.retention_ms = -1;
  EXPECT_TRUE(ValidateQueueAttributes("q", retained_forever));
}

TEST(QueueConfigTest, RedriveAllowPoliciesAdmitWhomTheySay) {
  EXPECT_TRUE(RedriveAllows({}, "anyone"));
  EXPECT_FALSE(RedriveAllows({RedrivePermission::kDenyAll, {}}, "anyone"));
  RedriveAllowPolicy by_queue{RedrivePermission::kByQueue, {"a", "b"}};
  EXPECT_TRUE(RedriveAllows(by_queue, "b"));
  EXPECT_FALSE(RedriveAllows(by_queue, "c"));
}

TEST(QueueConfigTest, MetadataRoundTripsAndCorruptionIsDataLoss) {
  QueueMetadata q;
  q.name = "jobs.fifo";
  q.subscription = 42;
  q.topic = "jobs.fifo";
  q.owns_topic = false;
  q.created_ms = 1'800'000'000'000;
  q.modified_ms = q.created_ms + 5;
  q.attributes.fifo = true;
  q.attributes.content_based_deduplication = true;
  q.attributes.visibility_timeout_ms = 5'000;
  q.attributes.retention_ms = -1;
  q.attributes.redrive_policy = RedrivePolicy{"dead.fifo", 7};
  q.attributes.redrive_allow_policy = {RedrivePermission::kByQueue, {"x", "y.fifo"}};
  q.attributes.max_in_flight = 10;
  q.attributes.partitions = 3;
  const std::string stored = EncodeQueueMetadata(q);
  auto back = DecodeQueueMetadata(stored);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(*back, q);
  EXPECT_EQ(*DecodeQueueMetadata(EncodeQueueMetadata(QueueMetadata{})), QueueMetadata{});
  for (std::size_t cut = 0; cut < stored.size(); ++cut) {
    auto truncated = DecodeQueueMetadata(stored.substr(0, cut));
    ASSERT_FALSE(truncated) << "accepted a record cut at " << cut;
    EXPECT_EQ(truncated.error().code, ErrorCode::kDataLoss);
  }
  EXPECT_EQ(DecodeQueueMetadata(stored + "x").error().code, ErrorCode::kDataLoss);
  std::string future = stored;
  future[0] = 9;
  EXPECT_EQ(DecodeQueueMetadata(future).error().code, ErrorCode::kDataLoss);

  // Tags and extra attributes follow; metadata stored without them (above) still decodes.
  q.tags = {{"team", "a"}, {"empty", ""}};
  q.attributes.extra = {{"Policy", "{}"}, {"KmsMasterKeyId", "alias/x"}};
  const std::string with_tags = EncodeQueueMetadata(q);
  EXPECT_EQ(with_tags.substr(0, stored.size()), stored);
  EXPECT_EQ(*DecodeQueueMetadata(with_tags), q);
  for (std::size_t cut = stored.size() + 1; cut < with_tags.size(); ++cut) {
    EXPECT_FALSE(DecodeQueueMetadata(with_tags.substr(0, cut))) << "cut at " << cut;
  }
}

TEST(QueueConfigTest, TagsAndExtraAttributesAreBounded) {
  EXPECT_TRUE(ValidateQueueTags({{"k", ""}, {std::string(128, 'k'), std::string(256, 'v')}}));
  EXPECT_FALSE(ValidateQueueTags({{"", "v"}}));
  EXPECT_FALSE(ValidateQueueTags({{std::string(129, 'k'), "v"}}));
  EXPECT_FALSE(ValidateQueueTags({{"k", std::string(257, 'v')}}));
  QueueTags many;
  for (int i = 0; i < 51; ++i)
    many["k" + std::to_string(i)] = "v";
  EXPECT_FALSE(ValidateQueueTags(many));
  QueueAttributes a;
  a.extra["Policy"] = std::string(kMaxExtraAttributeBytes + 1, 'x');
  EXPECT_FALSE(ValidateQueueAttributes("q", a));
}

}  // namespace
}  // namespace spool::broker
