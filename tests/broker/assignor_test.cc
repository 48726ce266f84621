// The uniform (sticky) and range assignors.

#include "broker/assignor.h"

#include <gtest/gtest.h>

namespace spool::broker {
namespace {

AssignorInput Input(std::vector<std::string> members, std::map<std::string, std::uint32_t> topics) {
  AssignorInput input;
  for (const auto& m : members) {
    for (const auto& [topic, count] : topics)
      input.subscriptions[m].insert(topic);
  }
  input.partitions = std::move(topics);
  return input;
}

std::size_t Total(const Assignment& a) {
  std::size_t n = 0;
  for (const auto& [m, ps] : a)
    n += ps.size();
  return n;
}

// Every partition exactly once, and loads within one of each other.
void ExpectBalancedCover(const Assignment& a, std::size_t partitions) {
  std::set<TopicPartition> all;
  std::size_t lo = SIZE_MAX, hi = 0;
  for (const auto& [m, ps] : a) {
    for (const auto& tp : ps)
      EXPECT_TRUE(all.insert(tp).second) << tp.topic << "/" << tp.partition << " twice";
    lo = std::min(lo, ps.size());
    hi = std::max(hi, ps.size());
  }
  EXPECT_EQ(all.size(), partitions);
  EXPECT_LE(hi - lo, 1u);
}

// Partitions that changed owner between two assignments.
std::size_t Moved(const Assignment& before, const Assignment& after) {
  std::map<TopicPartition, std::string> owner;
  for (const auto& [m, ps] : before)
    for (const auto& tp : ps)
      owner[tp] = m;
  std::size_t moved = 0;
  for (const auto& [m, ps] : after)
    for (const auto& tp : ps)
      if (owner.count(tp) && owner[tp] != m) ++moved;
  return moved;
}

TEST(AssignorTest, UniformSpreadsEvenly) {
  auto a = AssignUniform(Input({"a", "b", "c"}, {{"t", 6}, {"u", 4}}));
  ExpectBalancedCover(a, 10);
  EXPECT_EQ(a.size(), 3u);
}

TEST(AssignorTest, UniformMovesOnlyWhatMustMoveWhenAMemberJoins) {
  auto input = Input({"a", "b", "c"}, {{"t", 6}});
  auto before = AssignUniform(input);
  input = Input({"a", "b", "c", "d"}, {{"t", 6}});
  input.previous = before;
  auto after = AssignUniform(input);
  ExpectBalancedCover(after, 6);
  // 6 partitions over 4 members: d takes one, so exactly one moves.
  EXPECT_EQ(Moved(before, after), 1u);
  EXPECT_EQ(after["d"].size(), 1u);
}

TEST(AssignorTest, UniformMovesOnlyTheLeaversPartitions) {
  auto input = Input({"a", "b", "c"}, {{"t", 6}});
  auto before = AssignUniform(input);
  input = Input({"a", "c"}, {{"t", 6}});
  input.previous = before;
  auto after = AssignUniform(input);
  ExpectBalancedCover(after, 6);
  EXPECT_EQ(Moved(before, after), before["b"].size()) << "only b's partitions move";
  for (const auto& tp : before["a"])
    EXPECT_TRUE(after["a"].count(tp)) << "a kept its partitions";
  EXPECT_EQ(after["a"].size() + after["c"].size(), 6u);
}

TEST(AssignorTest, UniformRespectsSubscriptions) {
  AssignorInput input;
  input.subscriptions = {{"a", {"t"}}, {"b", {"t", "u"}}, {"c", {"u"}}};
  input.partitions = {{"t", 4}, {"u", 2}, {"missing", 3}};
  auto a = AssignUniform(input);
  for (const auto& tp : a["a"])
    EXPECT_EQ(tp.topic, "t");
  for (const auto& tp : a["c"])
    EXPECT_EQ(tp.topic, "u");
  EXPECT_EQ(Total(a), 6u);
  EXPECT_EQ(a["a"].size() + a["b"].size() + a["c"].size(), 6u);
  EXPECT_EQ(a["a"].size(), 2u);
  EXPECT_EQ(a["b"].size(), 2u);
  EXPECT_EQ(a["c"].size(), 2u);
}

TEST(AssignorTest, UniformGivesNewPartitionsOfAGrownTopic) {
  auto input = Input({"a", "b"}, {{"t", 2}});
  auto before = AssignUniform(input);
  input = Input({"a", "b"}, {{"t", 4}});
  input.previous = before;
  auto after = AssignUniform(input);
  ExpectBalancedCover(after, 4);
  EXPECT_EQ(Moved(before, after), 0u);
}

TEST(AssignorTest, RangeGivesContiguousRanges) {
  auto a = AssignRange(Input({"a", "b", "c"}, {{"t", 7}}));
  EXPECT_EQ(a["a"], (PartitionSet{{"t", 0}, {"t", 1}, {"t", 2}}));
  EXPECT_EQ(a["b"], (PartitionSet{{"t", 3}, {"t", 4}}));
  EXPECT_EQ(a["c"], (PartitionSet{{"t", 5}, {"t", 6}}));
}

TEST(AssignorTest, MoreMembersThanPartitionsLeavesSomeIdle) {
  auto u = AssignUniform(Input({"a", "b", "c"}, {{"t", 2}}));
  ExpectBalancedCover(u, 2);
  auto r = AssignRange(Input({"a", "b", "c"}, {{"t", 2}}));
  EXPECT_EQ(Total(r), 2u);
  EXPECT_TRUE(r["c"].empty());
}

}  // namespace
}  // namespace spool::broker
