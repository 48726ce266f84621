// The CLI's parsing of durations, sizes, times and start positions, and its printing.

#include <gtest/gtest.h>

#include "client/cli/output.h"
#include "client/cli/parse.h"

namespace spool::cli {
namespace {

TEST(ParseTest, Durations) {
  EXPECT_EQ(ParseDurationMs("250"), 250);
  EXPECT_EQ(ParseDurationMs("250ms"), 250);
  EXPECT_EQ(ParseDurationMs("30s"), 30'000);
  EXPECT_EQ(ParseDurationMs("15m"), 900'000);
  EXPECT_EQ(ParseDurationMs("12h"), 43'200'000);
  EXPECT_EQ(ParseDurationMs("7d"), 604'800'000);
  EXPECT_EQ(ParseDurationMs("2w"), 1'209'600'000);
  EXPECT_EQ(ParseDurationMs("forever"), -1);
  EXPECT_EQ(ParseDurationMs("-1"), -1);
  for (const char* bad :
       {"", "d", "7x", "7 d", "-5s", "1.5h", "99999999999999999999d", "9223372036854775807w"}) {
    EXPECT_EQ(ParseDurationMs(bad), std::nullopt) << bad;
  }
}

TEST(ParseTest, QueueSeconds) {
  EXPECT_EQ(ParseSeconds("0"), 0);
  EXPECT_EQ(ParseSeconds("30"), 30) << "a bare number is seconds";
  EXPECT_EQ(ParseSeconds("90s"), 90);
  EXPECT_EQ(ParseSeconds("15m"), 900);
  EXPECT_EQ(ParseSeconds("12h"), 43'200);
  EXPECT_EQ(ParseSeconds("4d"), 345'600);
  EXPECT_EQ(ParseSeconds("2000ms"), 2);
  EXPECT_EQ(ParseSeconds("forever"), -1);
  EXPECT_EQ(ParseSeconds("-1"), -1);
  for (const char* bad : {"", "s", "1500ms", "1.5", "-5", "soon", "7 d"})
    EXPECT_EQ(ParseSeconds(bad), std::nullopt) << bad;
}

TEST(ParseTest, Sizes) {
  EXPECT_EQ(ParseBytes("512"), 512);
  EXPECT_EQ(ParseBytes("512B"), 512);
  EXPECT_EQ(ParseBytes("64KiB"), 65'536);
  EXPECT_EQ(ParseBytes("1MB"), 1'000'000);
  EXPECT_EQ(ParseBytes("10GiB"), 10LL << 30);
  EXPECT_EQ(ParseBytes("2TiB"), 2LL << 40);
  EXPECT_EQ(ParseBytes("unlimited"), -1);
  for (const char* bad : {"", "GiB", "10gib", "10 GiB", "-3", "1.5GiB", "99999999TiB"})
    EXPECT_EQ(ParseBytes(bad), std::nullopt) << bad;
}

TEST(ParseTest, Timestamps) {
  EXPECT_EQ(ParseTimestampMs("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(ParseTimestampMs("2026-11-28T10:00:00Z"), 1'795'860'000'000);
  EXPECT_EQ(ParseTimestampMs("2026-11-28T10:00:00.25Z"), 1'795'860'000'250);
  EXPECT_EQ(ParseTimestampMs("2026-11-28T11:00:00+01:00"), 1'795'860'000'000);
  EXPECT_EQ(ParseTimestampMs("2026-11-28T09:30:00-00:30"), 1'795'860'000'000);
  EXPECT_EQ(ParseTimestampMs("2026-11-28"), 1'795'824'000'000);
  for (const char* bad :
       {"", "2026-11-28T10:00:00", "2026-02-30", "2026-13-01", "2026-11-28T25:00:00Z",
        "2026-11-28T10:00Z", "28/11/2026", "2026-11-28T10:00:00.Z", "2026-11-28T10:00:00+0100"}) {
    EXPECT_EQ(ParseTimestampMs(bad), std::nullopt) << bad;
  }
}

TEST(ParseTest, StartPositions) {
  const std::int64_t now = 1'795'860'000'000;
  EXPECT_EQ(ParseStartPosition("earliest", now)->kind, StartPosition::Kind::kEarliest);
  EXPECT_EQ(ParseStartPosition("latest", now)->kind, StartPosition::Kind::kLatest);
  auto offset = ParseStartPosition("42", now);
  ASSERT_TRUE(offset);
  EXPECT_EQ(offset->kind, StartPosition::Kind::kOffset);
  EXPECT_EQ(offset->offset, 42u);
  auto ago = ParseStartPosition("-15m", now);
  ASSERT_TRUE(ago);
  EXPECT_EQ(ago->kind, StartPosition::Kind::kTimestamp);
  EXPECT_EQ(ago->timestamp_ms, now - 900'000);
  auto at = ParseStartPosition("2026-11-28T10:00:00Z", now);
  ASSERT_TRUE(at);
  EXPECT_EQ(at->timestamp_ms, now);
  for (const char* bad : {"", "first", "-", "-forever", "42x", "-1y"})
    EXPECT_EQ(ParseStartPosition(bad, now), std::nullopt) << bad;
}

TEST(OutputTest, FormatsDurationsSizesAndTimes) {
  EXPECT_EQ(FormatDurationMs(604'800'000), "7d");
  EXPECT_EQ(FormatDurationMs(86'400'000 * 3), "3d");
  EXPECT_EQ(FormatDurationMs(90'000), "90s");
  EXPECT_EQ(FormatDurationMs(1500), "1500ms");
  EXPECT_EQ(FormatDurationMs(-1), "forever");
  EXPECT_EQ(FormatBytes(10LL << 30), "10GiB");
  EXPECT_EQ(FormatBytes(3 << 19), "1.5MiB");
  EXPECT_EQ(FormatBytes(512), "512B");
  EXPECT_EQ(FormatBytes(-1), "unlimited");
  EXPECT_EQ(FormatTimestampMs(1'795'860'000'250), "2026-11-28T10:00:00.250Z");
  EXPECT_EQ(ParseTimestampMs(FormatTimestampMs(1'795'860'123'456)), 1'795'860'123'456);
}

TEST(OutputTest, TablesAlignColumns) {
  EXPECT_EQ(FormatTable({"NAME", "N"}, {{"a", "10"}, {"longer", "2"}}),
            "NAME    N\n"
            "a       10\n"
            "longer  2\n");
}

TEST(OutputTest, Utf8AndBase64) {
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_TRUE(IsValidUtf8("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("\xc3"));              // truncated
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_EQ(Base64(""), "");
  EXPECT_EQ(Base64("f"), "Zg==");
  EXPECT_EQ(Base64("fo"), "Zm8=");
  EXPECT_EQ(Base64("foo"), "Zm9v");
  EXPECT_EQ(Base64(std::string("\x00\xff\x10\x80", 4)), "AP8QgA==");
}

TEST(OutputTest, RecordsAsJsonKeepBinaryValuesIntact) {
  v1::Record record;
  record.set_partition(2);
  record.set_offset(7);
  record.set_append_timestamp_ms(1000);
  record.set_key("k");
  record.set_value(std::string("\x00\xff", 2));
  record.add_headers()->set_key("h");
  auto json = RecordJson("t", record);
  EXPECT_EQ(json["topic"], "t");
  EXPECT_EQ(json["partition"], 2);
  EXPECT_EQ(json["offset"], 7);
  EXPECT_EQ(json["key"], "k");
  EXPECT_EQ(json["value_base64"], "AP8=");
  EXPECT_FALSE(json.contains("value"));
  EXPECT_EQ(json["headers"][0]["key"], "h");
  EXPECT_EQ(FormatRecordLine(record), "2/7\t1970-01-01T00:00:01.000Z\tk\tbase64:AP8=");
  record.clear_key();
  record.set_value("text");
  EXPECT_EQ(FormatRecordLine(record), "2/7\t1970-01-01T00:00:01.000Z\t-\ttext");
}

TEST(OutputTest, QueuesAndQueueMessages) {
  v1::Queue queue;
  queue.set_name("jobs.fifo");
  queue.set_topic("jobs.fifo");
  queue.set_owns_topic(true);
  v1::QueueAttributes* a = queue.mutable_attributes();
  a->set_fifo(true);
  a->set_visibility_timeout_seconds(90);
  a->set_delivery_delay_seconds(0);
  a->set_retention_seconds(-1);
  a->set_max_message_bytes(256 << 10);
  a->mutable_redrive_policy()->set_dead_letter_queue("dlq.fifo");
  a->mutable_redrive_policy()->set_max_receive_count(5);
  a->mutable_redrive_allow_policy()->set_permission(v1::REDRIVE_PERMISSION_BY_QUEUE);
  a->mutable_redrive_allow_policy()->add_source_queues("a.fifo");
  a->mutable_redrive_allow_policy()->add_source_queues("b.fifo");
  queue.mutable_stats()->set_approximate_visible(3);
  queue.mutable_stats()->set_approximate_in_flight(1);
  const std::string text = FormatQueue(queue);
  EXPECT_NE(text.find("Type:               FIFO\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Topic:              jobs.fifo (its own)\n"), std::string::npos);
  EXPECT_NE(text.find("Visibility timeout: 90s\n"), std::string::npos);
  EXPECT_NE(text.find("Delivery delay:     0s\n"), std::string::npos);
  EXPECT_NE(text.find("Retention:          forever\n"), std::string::npos);
  EXPECT_NE(text.find("Max message bytes:  256KiB\n"), std::string::npos);
  EXPECT_NE(text.find("Dead-letter queue:  dlq.fifo after 5 receives\n"), std::string::npos);
  EXPECT_NE(text.find("Dead letters from:  a.fifo, b.fifo\n"), std::string::npos);
  EXPECT_NE(text.find("Messages:           3 visible, 1 in flight, 0 delayed"), std::string::npos);

  v1::QueueMessage m;
  m.set_message_id("id");
  m.set_receipt_handle("rh");
  m.set_receive_count(2);
  m.set_body(std::string("\x00\xff", 2));
  auto* h = m.add_headers();
  h->set_key("trace");
  h->set_value("abc");
  m.set_offset(7);
  EXPECT_EQ(FormatQueueMessageLine(m), "id\t2\trh\tbase64:AP8=");
  auto json = QueueMessageJson(m);
  EXPECT_EQ(json["message_id"], "id");
  EXPECT_EQ(json["receipt_handle"], "rh");
  EXPECT_EQ(json["receive_count"], 2);
  EXPECT_EQ(json["offset"], "7") << "proto3 JSON: 64-bit numbers are strings";
  EXPECT_EQ(json["body_base64"], "AP8=");
  EXPECT_FALSE(json.contains("body"));
  EXPECT_EQ(json["headers"], nlohmann::json::parse(R"([{"key": "trace", "value": "abc"}])"));
  m.set_body("text");
  EXPECT_EQ(QueueMessageJson(m)["body"], "text");
}

}  // namespace
}  // namespace spool::cli
