#include "common/coding.h"

#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

namespace spool {
namespace {

TEST(CodingTest, Fixed64RoundTripsAndIsBigEndian) {
  std::string out;
  PutFixed64BE(out, 0x0102030405060708ull);

  ASSERT_EQ(out.size(), 8u);
  EXPECT_EQ(out[0], 0x01);
  EXPECT_EQ(out[7], 0x08);
  std::string_view in(out);
  std::uint64_t v = 0;
  ASSERT_TRUE(GetFixed64BE(in, &v));
  EXPECT_EQ(v, 0x0102030405060708ull);
  EXPECT_TRUE(in.empty());
}

TEST(CodingTest, FixedWidthEncodingPreservesNumericOrder) {
  std::mt19937_64 rng(7);
  std::vector<std::uint64_t> values = {0,         1, 255, 256, 65535, 1ull << 32, UINT64_MAX - 1,
                                       UINT64_MAX};
  for (int i = 0; i < 1000; ++i)
    values.push_back(rng());
  for (std::size_t i = 0; i + 1 < values.size(); ++i) {
    std::string a;
    std::string b;
    PutFixed64BE(a, values[i]);
    PutFixed64BE(b, values[i + 1]);
    EXPECT_EQ(values[i] < values[i + 1], a < b) << values[i] << " vs " << values[i + 1];
  }
}

TEST(CodingTest, VarintsRoundTripAtEveryWidth) {
  for (int shift = 0; shift < 64; ++shift) {
    for (std::uint64_t v : {(1ull << shift) - 1, 1ull << shift, (1ull << shift) + 1}) {
      std::string out;
      PutVarint64(out, v);
      std::string_view in(out);
      std::uint64_t decoded = 0;
      ASSERT_TRUE(GetVarint64(in, &decoded)) << v;
      EXPECT_EQ(decoded, v);
      EXPECT_TRUE(in.empty());
    }
  }
}

TEST(CodingTest, SignedVarintsRoundTrip) {
  for (std::int64_t v : {std::int64_t{0}, std::int64_t{-1}, std::int64_t{1},
                         std::numeric_limits<std::int64_t>::min(),
                         std::numeric_limits<std::int64_t>::max(), std::int64_t{-123456789}}) {
    std::string out;
    PutVarsint64(out, v);
    std::string_view in(out);
    std::int64_t decoded = 0;
    ASSERT_TRUE(GetVarsint64(in, &decoded));
    EXPECT_EQ(decoded, v);
  }
}

TEST(CodingTest, DecodersRejectTruncatedInput) {
  std::string out;
  PutVarint64(out, UINT64_MAX);
  std::string_view truncated(out.data(), out.size() - 1);
  std::uint64_t v = 0;
  EXPECT_FALSE(GetVarint64(truncated, &v));

  std::string_view short_fixed("abc");
  EXPECT_FALSE(GetFixed32BE(short_fixed, reinterpret_cast<std::uint32_t*>(&v)));

  std::string prefixed;
  PutVarint64(prefixed, 10);
  prefixed += "abc";
  std::string_view in(prefixed);
  std::string_view bytes;
  EXPECT_FALSE(GetLengthPrefixed(in, &bytes));
}

TEST(CodingTest, VarintRejectsOverlongEncodings) {
  std::string eleven_bytes(10, '\xff');
  eleven_bytes.push_back('\x01');
  std::string_view in(eleven_bytes);
  std::uint64_t v = 0;
  EXPECT_FALSE(GetVarint64(in, &v));
}

}  // namespace
}  // namespace spool
