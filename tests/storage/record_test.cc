#include "storage/record.h"

#include <random>

#include <gtest/gtest.h>

namespace spool::storage {
namespace {

Record FullRecord() {
  Record r;
  r.key = "user-42";
  r.value = std::string(300, 'v');
  r.headers = {{"content-type", "text/plain"}, {"trace", std::string("\0\1\2", 3)}};
  r.producer_timestamp_ms = 1767225600123;
  r.append_timestamp_ms = 1767225600456;
  r.message_group_id = "group-a";
  r.dedup_id = "dedup-1";
  r.deliver_after_ms = 1767225700000;
  r.sequence = std::uint64_t{1} << 40;
  return r;
}

TEST(RecordTest, FullRecordRoundTrips) {
  const Record original = FullRecord();
  const std::string bytes = EncodeRecord(original);

  auto decoded = DecodeRecord(bytes);

  ASSERT_TRUE(decoded) << decoded.error().ToString();
  EXPECT_EQ(*decoded, original);
  EXPECT_EQ(bytes.size(), EncodedRecordSize(original));
}

TEST(RecordTest, MinimalRecordRoundTripsAndIsCompact) {
  Record original;
  original.value = "x";
  const std::string bytes = EncodeRecord(original);

  auto decoded = DecodeRecord(bytes);

  ASSERT_TRUE(decoded);
  EXPECT_EQ(*decoded, original);
  EXPECT_FALSE(decoded->key.has_value());
  EXPECT_FALSE(decoded->message_group_id.has_value());
  EXPECT_LE(bytes.size(), 12u) << "version, flags, two timestamps, value, headers, crc";
  EXPECT_EQ(bytes.size(), EncodedRecordSize(original));
}

TEST(RecordTest, EmptyKeyIsDistinctFromNoKey) {
  Record r;
  r.key = "";

  auto decoded = DecodeRecord(EncodeRecord(r));

  ASSERT_TRUE(decoded);
  ASSERT_TRUE(decoded->key.has_value());
  EXPECT_EQ(*decoded->key, "");
}

TEST(RecordTest, AppendTimestampIsReadWithoutAFullDecode) {
  auto ts = DecodeAppendTimestamp(EncodeRecord(FullRecord()));

  ASSERT_TRUE(ts);
  EXPECT_EQ(*ts, 1767225600456);
}

TEST(RecordTest, EveryFlippedBitIsDetected) {
  const std::string bytes = EncodeRecord(FullRecord());
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string corrupt = bytes;
      corrupt[i] = static_cast<char>(corrupt[i] ^ (1 << bit));

      auto decoded = DecodeRecord(corrupt);

      ASSERT_FALSE(decoded) << "byte " << i << " bit " << bit;
      EXPECT_EQ(decoded.error().code, ErrorCode::kDataLoss);
    }
  }
}

TEST(RecordTest, TruncationAndGarbageGiveDataLossNotACrash) {
  const std::string bytes = EncodeRecord(FullRecord());
  for (std::size_t len = 0; len < bytes.size(); ++len) {
    auto decoded = DecodeRecord(std::string_view(bytes).substr(0, len));
    ASSERT_FALSE(decoded) << len;
    EXPECT_EQ(decoded.error().code, ErrorCode::kDataLoss);
  }
  std::mt19937 rng(1);
  for (int i = 0; i < 2000; ++i) {
    std::string garbage(rng() % 64, '\0');
    for (char& c : garbage)
      c = static_cast<char>(rng());
    EXPECT_FALSE(DecodeRecord(garbage));
  }
}

TEST(RecordTest, UnknownVersionIsNamedInTheError) {
  std::string bytes = EncodeRecord(FullRecord());
  bytes[0] = 9;

  auto decoded = DecodeRecord(bytes);

  ASSERT_FALSE(decoded);
  EXPECT_NE(decoded.error().message.find("version 9"), std::string::npos);
}

TEST(RecordTest, Crc32cMatchesTheStandardCheckValue) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32cPortableForTest("123456789"), 0xE3069283u);
}

TEST(RecordTest, FastAndPortableCrc32cAgreeOnEveryLength) {
  std::mt19937 rng(3);
  std::string data(300, '\0');
  for (char& c : data)
    c = static_cast<char>(rng());
  for (std::size_t len = 0; len <= data.size(); ++len) {
    const std::string_view slice = std::string_view(data).substr(data.size() - len);
    ASSERT_EQ(Crc32c(slice), Crc32cPortableForTest(slice)) << len;
  }
}

}  // namespace
}  // namespace spool::storage
