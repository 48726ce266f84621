#include "storage/keys.h"

#include <algorithm>
#include <random>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

namespace spool::storage {
namespace {

TEST(KeysTest, LogKeyRoundTrips) {
  LogKeyParts parts{};

  ASSERT_TRUE(ParseLogKey(LogKey(7, 3, 123456789012ull), &parts));

  EXPECT_EQ(parts.topic, 7u);
  EXPECT_EQ(parts.partition, 3u);
  EXPECT_EQ(parts.offset, 123456789012ull);
  EXPECT_FALSE(ParseLogKey("short", &parts));
}

TEST(KeysTest, TimeIndexKeyRoundTrips) {
  TimeIndexKeyParts parts{};

  ASSERT_TRUE(ParseTimeIndexKey(TimeIndexKey(1, 2, 1767225600000ull, 99), &parts));

  EXPECT_EQ(parts.topic, 1u);
  EXPECT_EQ(parts.partition, 2u);
  EXPECT_EQ(parts.timestamp_ms, 1767225600000ull);
  EXPECT_EQ(parts.offset, 99u);
}

TEST(KeysTest, LogKeysSortLikeTheirFields) {
  std::mt19937 rng(42);
  using Tuple = std::tuple<std::uint32_t, std::uint32_t, std::uint64_t>;
  std::vector<Tuple> tuples;
  for (int i = 0; i < 2000; ++i) {
    tuples.emplace_back(rng() % 4 == 0 ? UINT32_MAX : rng() % 300, rng() % 300,
                        (static_cast<std::uint64_t>(rng()) << 20) ^ rng());
  }
  std::vector<Tuple> by_fields = tuples;
  std::sort(by_fields.begin(), by_fields.end());
  std::vector<Tuple> by_key = tuples;
  std::sort(by_key.begin(), by_key.end(), [](const Tuple& a, const Tuple& b) {
    return LogKey(std::get<0>(a), std::get<1>(a), std::get<2>(a)) <
           LogKey(std::get<0>(b), std::get<1>(b), std::get<2>(b));
  });

  EXPECT_EQ(by_fields, by_key);
}

// The time index is searched by seeking to (topic, partition, timestamp): its keys must sort
// by those fields, then by offset, whatever their magnitudes.
TEST(KeysTest, TimeIndexKeysSortLikeTheirFields) {
  std::mt19937_64 rng(7);
  using Tuple = std::tuple<std::uint32_t, std::uint32_t, std::uint64_t, std::uint64_t>;
  std::vector<Tuple> tuples;
  for (int i = 0; i < 2000; ++i) {
    tuples.emplace_back(
        static_cast<std::uint32_t>(rng() % 3), static_cast<std::uint32_t>(rng() % 3),
        rng() % 2 == 0 ? rng() % 1000 : rng(), rng() % 2 == 0 ? rng() % 1000 : rng());
  }
  std::vector<Tuple> by_fields = tuples;
  std::sort(by_fields.begin(), by_fields.end());
  std::vector<Tuple> by_key = tuples;
  auto key = [](const Tuple& t) {
    return TimeIndexKey(std::get<0>(t), std::get<1>(t), std::get<2>(t), std::get<3>(t));
  };
  std::sort(by_key.begin(), by_key.end(),
            [&](const Tuple& a, const Tuple& b) { return key(a) < key(b); });

  EXPECT_EQ(by_fields, by_key);
}

TEST(KeysTest, RangesEncloseExactlyTheirPartitionAndTopic) {
  const std::string key = LogKey(5, 9, UINT64_MAX);

  EXPECT_GE(key, PartitionPrefix(5, 9));
  EXPECT_LT(key, PartitionRangeEnd(5, 9));
  EXPECT_GE(LogKey(5, 10, 0), PartitionRangeEnd(5, 9));
  EXPECT_GE(key, TopicPrefix(5));
  EXPECT_LT(LogKey(5, UINT32_MAX, UINT64_MAX), TopicRangeEnd(5));
  EXPECT_LT(LogKey(UINT32_MAX, UINT32_MAX, UINT64_MAX), TopicRangeEnd(UINT32_MAX));
  EXPECT_LT(LogKey(UINT32_MAX - 1, 0, 0), TopicPrefix(UINT32_MAX));
}

TEST(KeysTest, MetaKeysOfDifferentTagsDoNotCollide) {
  EXPECT_NE(MetaKey(MetaTag::kTopic, "x"), MetaKey(MetaTag::kCounter, "x"));
  EXPECT_EQ(LogStartKey(1, 2)[0], static_cast<char>(MetaTag::kLogStart));
}

TEST(KeysTest, QueueStateKeysKeepOnePartitionTogetherWithItsFloorFirst) {
  const std::string floor = QueueFloorKey(3, 1);
  const std::string m0 = QueueMessageKey(3, 1, 0);
  const std::string m9 = QueueMessageKey(3, 1, 9);
  const std::string big = QueueMessageKey(3, 1, UINT64_MAX);
  EXPECT_LT(floor, m0);
  EXPECT_LT(m0, m9);
  EXPECT_LT(m9, big);
  for (const auto& k : {floor, m0, big}) {
    EXPECT_GE(k, QueuePartitionBegin(3, 1));
    EXPECT_LT(k, QueuePartitionEnd(3, 1));
  }
  EXPECT_GE(QueueFloorKey(3, 2), QueuePartitionEnd(3, 1));
  EXPECT_LT(QueueMessageKey(3, 0, UINT64_MAX), QueuePartitionBegin(3, 1));
  std::uint64_t offset = 0;
  ASSERT_TRUE(ParseQueueMessageKey(m9, &offset));
  EXPECT_EQ(offset, 9u);
  EXPECT_FALSE(ParseQueueMessageKey(floor, &offset));
  EXPECT_FALSE(ParseQueueMessageKey(m9.substr(0, 16), &offset));
}

TEST(KeysTest, RunKeysFollowEveryMessageKeyOfTheirPartition) {
  const std::string run0 = QueueLeaseRunKey(3, 1, 0);
  const std::string run9 = QueueLeaseRunKey(3, 1, 9);
  // A range deletion over message keys never takes a run with it.
  EXPECT_LT(QueueMessageKey(3, 1, UINT64_MAX), run0);
  EXPECT_LT(run0, run9);
  EXPECT_LT(QueueLeaseRunKey(3, 1, UINT64_MAX), QueueAckedRunKey(3, 1, 0));
  EXPECT_LT(QueueAckedRunKey(3, 1, UINT64_MAX), QueuePartitionEnd(3, 1));
  std::uint64_t first = 0;
  ASSERT_TRUE(ParseQueueLeaseRunKey(run9, &first));
  EXPECT_EQ(first, 9u);
  EXPECT_FALSE(ParseQueueLeaseRunKey(QueueMessageKey(3, 1, 9), &first));
  EXPECT_FALSE(ParseQueueMessageKey(run9, &first));
  EXPECT_FALSE(ParseQueueLeaseRunKey(run9.substr(0, 16), &first));
  ASSERT_TRUE(ParseQueueAckedRunKey(QueueAckedRunKey(3, 1, 7), &first));
  EXPECT_EQ(first, 7u);
  EXPECT_FALSE(ParseQueueAckedRunKey(run9, &first));
}

}  // namespace
}  // namespace spool::storage
