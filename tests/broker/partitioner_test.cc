#include "broker/partitioner.h"

#include <gtest/gtest.h>

namespace spool::broker {
namespace {

// Values of org.apache.kafka.common.utils.Utils.murmur2 and of the Java client's default
// partitioner, computed with the published Java algorithm. The first six are the vectors of
// Kafka's own UtilsTest.
TEST(PartitionerTest, Murmur2MatchesKafkasJavaClient) {
  EXPECT_EQ(Murmur2("21"), -973932308);
  EXPECT_EQ(Murmur2("foobar"), -790332482);
  EXPECT_EQ(Murmur2("a-little-bit-long-string"), -985981536);
  EXPECT_EQ(Murmur2("a-little-bit-longer-string"), -1486304829);
  EXPECT_EQ(Murmur2("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58897971);
  EXPECT_EQ(Murmur2("abc"), 479470107);
  EXPECT_EQ(Murmur2(""), 275646681);
  EXPECT_EQ(Murmur2("a"), -1563381124);
  EXPECT_EQ(Murmur2("abcd"), -1323649548);
  EXPECT_EQ(Murmur2("\xc3\xa9t\xc3\xa9"), -2101193575) << "UTF-8 bytes of \"été\"";
}

struct Golden {
  const char* key;
  std::uint32_t partitions;
  std::uint32_t expected;
};

TEST(PartitionerTest, KeysLandWhereTheJavaClientPutsThem) {
  const Golden golden[] = {
      {"a", 3, 1},
      {"a", 1024, 636},
      {"ab", 6, 2},
      {"abcd", 12, 8},
      {"abcde", 100, 41},
      {"key-0", 100, 41},
      {"key-1", 1024, 440},
      {"user-42", 6, 4},
      {"order:12345", 100, 16},
      {"hello world", 12, 7},
      {"Spool", 6, 5},
      {"0123456789abcdef", 1024, 940},
      {"", 6, 3},
      {"abc", 1024, 539},
  };
  for (const Golden& g : golden) {
    EXPECT_EQ(PartitionForKey(g.key, g.partitions), g.expected)
        << g.key << " over " << g.partitions;
  }
}

TEST(PartitionerTest, OnePartitionAlwaysGetsZero) {
  EXPECT_EQ(PartitionForKey("anything", 1), 0u);
}

}  // namespace
}  // namespace spool::broker
