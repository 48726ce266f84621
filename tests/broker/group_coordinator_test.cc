// The consumer group coordinator with a manual clock and a real store: joins, incremental
// handover without double ownership, leaving, session and rebalance timeouts, fencing,
// commits and their validation, restarts, deletion and expiry.

#include "broker/group_coordinator.h"

#include <future>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/manual_clock.h"
#include "tests/testing/temp_dir.h"

namespace spool::broker {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

class FakeTopics final : public TopicDirectory {
 public:
  void Add(const std::string& name, std::uint32_t id, std::uint32_t partitions,
           std::uint64_t end = 100) {
    topics_[name] = {id, partitions};
    ends_[name] = end;
  }
  std::optional<Topic> FindTopic(const std::string& name) const override {
    auto it = topics_.find(name);
    if (it == topics_.end()) return std::nullopt;
    return it->second;
  }
  std::optional<std::string> TopicName(std::uint32_t id) const override {
    for (const auto& [name, t] : topics_)
      if (t.id == id) return name;
    return std::nullopt;
  }
  std::optional<Bounds> PartitionBounds(const std::string& topic,
                                        std::uint32_t partition) const override {
    auto t = FindTopic(topic);
    if (!t || partition >= t->partitions) return std::nullopt;
    return Bounds{0, ends_.at(topic)};
  }

 private:
  std::map<std::string, Topic> topics_;
  std::map<std::string, std::uint64_t> ends_;
};

class GroupCoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = storage::Store::Open(dir_.path(), {});
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
    topics_.Add("t", 1, 6);
    coordinator_ = std::make_unique<GroupCoordinator>(*store_, clock_, topics_);
  }

  // A heartbeat; `owned` defaults to what the member was last told to own.
  Result<HeartbeatAnswer> Beat(const std::string& member, std::optional<std::uint32_t> epoch = {},
                               std::optional<std::vector<TopicPartition>> owned = {},
                               std::vector<std::string> topics = {"t"}) {
    MemberHeartbeat hb;
    hb.group = "g";
    hb.member_id = member;
    hb.member_epoch = epoch.value_or(epochs_[member]);
    hb.subscriptions = std::move(topics);
    hb.owned = owned.value_or(owned_[member]);
    hb.settings = settings_;
    auto answer = coordinator_->Heartbeat(hb);
    if (answer) {
      epochs_[member] = answer->member_epoch;
      owned_[member] = answer->assignment;  // the member reconciles at once
    }
    return answer;
  }

  Status Commit(const std::string& member, std::vector<OffsetCommit> offsets,
                std::optional<std::uint32_t> epoch = {}) {
    std::promise<Status> done;
    coordinator_->Commit("g", member, epoch.value_or(member.empty() ? 0 : epochs_[member]),
                         std::move(offsets), [&](Status s) { done.set_value(std::move(s)); });
    return done.get_future().get();
  }

  // A new coordinator on the same store, as after a restart.
  void Restart() {
    coordinator_ = std::make_unique<GroupCoordinator>(*store_, clock_, topics_);
    ASSERT_TRUE(coordinator_->Load());
  }

  // No partition is owned by two members (as the coordinator records ownership).
  void ExpectExclusive() {
    auto d = coordinator_->Describe("g");
    ASSERT_TRUE(d);
    std::set<TopicPartition> seen;
    for (const auto& m : d->members)
      for (const auto& tp : m.owned)
        EXPECT_TRUE(seen.insert(tp).second) << tp.partition << " owned twice";
  }

  // Heartbeats every member in turn until nothing changes (bounded).
  void Settle(const std::vector<std::string>& members) {
    for (int round = 0; round < 10; ++round) {
      for (const auto& m : members) {
        ASSERT_TRUE(Beat(m));
        ExpectExclusive();
      }
    }
  }

  testing::TempDir dir_;
  testing::ManualClock clock_;
  FakeTopics topics_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<GroupCoordinator> coordinator_;
  GroupSettings settings_;
  std::map<std::string, std::uint32_t> epochs_;
  std::map<std::string, std::vector<TopicPartition>> owned_;
};

TEST_F(GroupCoordinatorTest, FirstMemberGetsEveryPartition) {
  auto a = Beat("a", 0);
  ASSERT_TRUE(a) << a.error().ToString();
  EXPECT_EQ(a->assignment.size(), 6u);
  EXPECT_GT(a->member_epoch, 0u);
  EXPECT_EQ(a->session_timeout_ms, 45'000);
  EXPECT_EQ(a->heartbeat_interval_ms, 3'000);
  auto d = coordinator_->Describe("g");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->state, GroupState::kStable);
}

TEST_F(GroupCoordinatorTest, HandoverWaitsForTheReleaseAndNeverDoublesOwnership) {
  ASSERT_TRUE(Beat("a", 0));
  auto b = Beat("b", 0);
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->assignment.empty()) << "a still owns everything";
  ExpectExclusive();
  EXPECT_EQ(coordinator_->Describe("g")->state, GroupState::kReconciling);
  auto a = Beat("a");  // a is told to keep 3; it releases the rest
  ASSERT_TRUE(a);
  EXPECT_EQ(a->assignment.size(), 3u);
  ASSERT_TRUE(Beat("a"));  // reports the release
  b = Beat("b");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->assignment.size(), 3u);
  ExpectExclusive();
  EXPECT_EQ(coordinator_->Describe("g")->state, GroupState::kStable);
  // A third member: only what must move moves.
  Settle({"a", "b", "c"});
  auto d = coordinator_->Describe("g");
  for (const auto& m : d->members)
    EXPECT_EQ(m.owned.size(), 2u) << m.member_id;
}

TEST_F(GroupCoordinatorTest, LeaveReleasesAtOnce) {
  ASSERT_TRUE(Beat("a", 0));
  ASSERT_TRUE(Beat("b", 0));
  Settle({"a", "b"});
  ASSERT_TRUE(coordinator_->Leave("g", "a"));
  auto b = Beat("b");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->assignment.size(), 6u);
  EXPECT_TRUE(coordinator_->Leave("g", "a")) << "leaving twice is fine";
  EXPECT_TRUE(coordinator_->Leave("nope", "x"));
}

TEST_F(GroupCoordinatorTest, MissedSessionRemovesTheMemberAndFreesItsPartitions) {
  ASSERT_TRUE(Beat("a", 0));
  ASSERT_TRUE(Beat("b", 0));
  Settle({"a", "b"});
  for (int i = 0; i < 16; ++i) {  // b keeps beating, a goes silent
    clock_.Advance(milliseconds(3'000));
    ASSERT_TRUE(Beat("b"));
    coordinator_->Expire();
  }
  auto b = Beat("b");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->assignment.size(), 6u);
  auto a = Beat("a");
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().code, ErrorCode::kNotFound);
  // It rejoins with epoch 0 and gets its share back after b releases.
  owned_["a"].clear();
  ASSERT_TRUE(Beat("a", 0));
  Settle({"a", "b"});
  EXPECT_EQ(owned_["a"].size(), 3u);
}

TEST_F(GroupCoordinatorTest, AMemberThatKeepsRevokedPartitionsPastItsTimeoutIsRemoved) {
  ASSERT_TRUE(Beat("a", 0));
  const auto all = owned_["a"];
  ASSERT_TRUE(Beat("b", 0));
  // a keeps reporting all six although its assignment dropped three.
  for (int i = 0; i < 120; ++i) {
    clock_.Advance(milliseconds(3'000));
    if (!Beat("a", {}, all)) break;
    ASSERT_TRUE(Beat("b"));
    coordinator_->Expire();
  }
  EXPECT_EQ(Beat("a", {}, all).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(Beat("b")->assignment.size(), 6u);
}

TEST_F(GroupCoordinatorTest, StaleEpochsAreFenced) {
  ASSERT_TRUE(Beat("a", 0));
  const std::uint32_t first = epochs_["a"];
  ASSERT_TRUE(Beat("b", 0));
  Settle({"a", "b"});
  ASSERT_GT(epochs_["a"], first);
  auto stale = Beat("a", first - 1 == 0 ? 999 : first - 1);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(stale.error().message, HasSubstr(kStaleEpochReason));
  auto unknown = Beat("z", 5);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
}

TEST_F(GroupCoordinatorTest, TheBrokerChoosesAnIdForAMemberThatJoinsWithoutOne) {
  MemberHeartbeat hb;
  hb.group = "g";
  hb.subscriptions = {"t"};
  auto first = coordinator_->Heartbeat(hb);
  ASSERT_TRUE(first) << first.error().ToString();
  EXPECT_EQ(first->member_id.size(), 36u);
  auto second = coordinator_->Heartbeat(hb);
  ASSERT_TRUE(second);
  EXPECT_NE(first->member_id, second->member_id);
  EXPECT_EQ(coordinator_->Describe("g")->members.size(), 2u);
  hb.member_epoch = 3;  // an empty id is only for joining
  EXPECT_EQ(coordinator_->Heartbeat(hb).error().code, ErrorCode::kInvalidArgument);
}

TEST_F(GroupCoordinatorTest, BadHeartbeatsAreRefused) {
  EXPECT_EQ(Beat("has space", 0).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(Beat("a", 0, {}, std::vector<std::string>{}).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(Beat("a", 0, {}, std::vector<std::string>{"bad topic"}).error().code,
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(Beat("a", 0, std::vector<TopicPartition>{{"t", 1}, {"t", 1}}).error().code,
            ErrorCode::kInvalidArgument);
  settings_.session_timeout_ms = 10;
  EXPECT_EQ(Beat("a", 0).error().code, ErrorCode::kInvalidArgument);
  EXPECT_FALSE(coordinator_->Describe("g")) << "nothing was created";
}

TEST_F(GroupCoordinatorTest, CommitsAreValidatedAndDurable) {
  ASSERT_TRUE(Beat("a", 0));
  ASSERT_TRUE(Beat("b", 0));
  Settle({"a", "b"});
  const TopicPartition mine = owned_["a"].front();
  const TopicPartition theirs = owned_["b"].front();
  ASSERT_TRUE(Commit("a", {{"t", mine.partition, 42, "meta"}}));
  auto c = coordinator_->Committed("g", "t", mine.partition);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->offset, 42u);
  EXPECT_EQ(c->metadata, "meta");

  auto expect = [&](Status s, ErrorCode code, const char* text) {
    ASSERT_FALSE(s) << text;
    EXPECT_EQ(s.error().code, code) << text << ": " << s.error().message;
    EXPECT_THAT(s.error().message, HasSubstr(text));
  };
  expect(Commit("a", {{"t", theirs.partition, 1, ""}}), ErrorCode::kFailedPrecondition,
         kNotOwnedReason);
  expect(Commit("a", {{"t", mine.partition, 1, ""}}, 999), ErrorCode::kFailedPrecondition,
         kStaleEpochReason);
  expect(Commit("zz", {{"t", mine.partition, 1, ""}}), ErrorCode::kNotFound, "not in group");
  expect(Commit("a", {{"t", mine.partition, 101, ""}}), ErrorCode::kOutOfRange, "log end");
  expect(Commit("a", {{"nope", 0, 1, ""}}), ErrorCode::kNotFound, "does not exist");
  expect(Commit("a", {{"t", 9, 1, ""}}), ErrorCode::kNotFound, "no partition 9");
  expect(Commit("a", {{"t", mine.partition, 1, ""}, {"t", mine.partition, 2, ""}}),
         ErrorCode::kInvalidArgument, "twice");
  expect(Commit("a", {}), ErrorCode::kInvalidArgument, "no offsets");
  expect(Commit("", {{"t", mine.partition, 1, ""}}), ErrorCode::kFailedPrecondition, "has members");
  expect(Commit("a", {{"t", mine.partition, 1, std::string(5000, 'm')}}),
         ErrorCode::kResourceExhausted, "4096");
  // None of them changed anything; a mixed batch writes nothing either.
  expect(Commit("a", {{"t", mine.partition, 7, ""}, {"t", theirs.partition, 7, ""}}),
         ErrorCode::kFailedPrecondition, kNotOwnedReason);
  EXPECT_EQ(coordinator_->Committed("g", "t", mine.partition)->offset, 42u);
  EXPECT_FALSE(coordinator_->Committed("g", "t", theirs.partition));
}

TEST_F(GroupCoordinatorTest, OffsetsSurviveARestartAndMembersKeepWhatTheyOwned) {
  ASSERT_TRUE(Beat("a", 0));
  ASSERT_TRUE(Beat("b", 0));
  Settle({"a", "b"});
  ASSERT_EQ(owned_["a"].size(), 3u);
  ASSERT_TRUE(Commit("a", {{"t", owned_["a"][0].partition, 10, "x"}}));
  Restart();
  EXPECT_EQ(coordinator_->Committed("g", "t", owned_["a"][0].partition)->offset, 10u);
  EXPECT_EQ(coordinator_->Committed("g", "t", owned_["a"][0].partition)->metadata, "x");
  // Membership is not stored: a member of the previous incarnation that comes back within
  // the session timeout is taken at its word and keeps its partitions.
  const auto a_owned = owned_["a"];
  auto again = Beat("a");
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_EQ(again->assignment, a_owned);
  // A newcomer gets nothing while b (not heard from yet) may still be reading its share.
  auto early = Beat("c", 0);
  ASSERT_TRUE(early);
  EXPECT_TRUE(early->assignment.empty()) << "granted while an old member may own it";
  EXPECT_LE(early->heartbeat_interval_ms, 500);
  const auto b_owned = owned_["b"];
  ASSERT_TRUE(Beat("b"));
  EXPECT_FALSE(owned_["b"].empty());
  for (const auto& tp : owned_["b"])
    EXPECT_TRUE(std::count(b_owned.begin(), b_owned.end(), tp)) << "b was given something new";
  ExpectExclusive();
  // Once the old session could have run out, the group rebalances as usual.
  clock_.Advance(milliseconds(settings_.session_timeout_ms + 1));
  Settle({"a", "b", "c"});
  EXPECT_EQ(owned_["a"].size() + owned_["b"].size() + owned_["c"].size(), 6u);
  EXPECT_EQ(owned_["c"].size(), 2u);
}

TEST_F(GroupCoordinatorTest, AfterARestartPartitionsOfAMemberThatNeverReturnsWaitItsSession) {
  ASSERT_TRUE(Beat("a", 0));
  ASSERT_TRUE(Beat("b", 0));
  Settle({"a", "b"});
  ASSERT_TRUE(Commit("a", {{"t", owned_["a"][0].partition, 1, ""}}));  // the group is stored
  Restart();
  ASSERT_TRUE(Beat("a"));
  clock_.Advance(milliseconds(settings_.session_timeout_ms - 1));
  auto late = Beat("a");
  ASSERT_TRUE(late) << late.error().ToString();
  EXPECT_EQ(owned_["a"].size(), 3u) << "b's partitions handed out before its session ran out";
  clock_.Advance(milliseconds(2));
  ASSERT_TRUE(Beat("a"));
  EXPECT_EQ(owned_["a"].size(), 6u);
  // The hold is over: b is unknown now and must rejoin.
  EXPECT_EQ(Beat("b").error().code, ErrorCode::kNotFound);
}

TEST_F(GroupCoordinatorTest, AGroupFoundAfterARestartIsNotExpiredAtOnce) {
  // A long-lived group that committed long ago and never emptied.
  ASSERT_TRUE(Beat("a", 0));
  ASSERT_TRUE(Commit("a", {{"t", 0, 10, ""}}));
  clock_.Advance(std::chrono::hours(24 * 8));
  ASSERT_TRUE(Beat("a"));
  Restart();
  coordinator_->Expire();
  ASSERT_TRUE(coordinator_->Committed("g", "t", 0)) << "offsets of a live group expired";
  ASSERT_TRUE(Beat("a"));
  EXPECT_EQ(coordinator_->Committed("g", "t", 0)->offset, 10u);
}

TEST_F(GroupCoordinatorTest, AnAcknowledgedCommitIsNotLostToExpiry) {
  clock_.Advance(std::chrono::hours(24 * 8));
  // The commit creates the group; expiry runs while it is being written.
  std::promise<Status> done;
  coordinator_->Commit("g", "", 0, {{"t", 0, 5, ""}}, [&](Status s) { done.set_value(s); });
  coordinator_->Expire();
  ASSERT_TRUE(done.get_future().get());
  coordinator_->Expire();
  EXPECT_TRUE(coordinator_->Committed("g", "t", 0));
  Restart();
  EXPECT_TRUE(coordinator_->Committed("g", "t", 0)) << "an acknowledged commit was deleted";
}

TEST_F(GroupCoordinatorTest, DeleteOnlyWhenEmptyAndListPages) {
  ASSERT_TRUE(Beat("a", 0));
  ASSERT_TRUE(Commit("a", {{"t", 0, 1, ""}}));
  std::promise<Status> refused;
  coordinator_->Delete("g", [&](Status s) { refused.set_value(std::move(s)); });
  EXPECT_EQ(refused.get_future().get().error().code, ErrorCode::kFailedPrecondition);
  ASSERT_TRUE(coordinator_->Leave("g", "a"));
  auto listed = coordinator_->List("", "", 10);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].state, GroupState::kEmpty);
  std::promise<Status> deleted;
  coordinator_->Delete("g", [&](Status s) { deleted.set_value(std::move(s)); });
  ASSERT_TRUE(deleted.get_future().get());
  EXPECT_FALSE(coordinator_->Describe("g"));
  EXPECT_FALSE(coordinator_->Committed("g", "t", 0));
  coordinator_ = std::make_unique<GroupCoordinator>(*store_, clock_, topics_);
  ASSERT_TRUE(coordinator_->Load());
  EXPECT_FALSE(coordinator_->Committed("g", "t", 0)) << "the deletion was stored";
}

TEST_F(GroupCoordinatorTest, OffsetsOfAGroupEmptyForTheRetentionPeriodExpire) {
  ASSERT_TRUE(Commit("", {{"t", 0, 5, ""}}));
  clock_.Advance(std::chrono::hours(24 * 6));
  coordinator_->Expire();
  EXPECT_TRUE(coordinator_->Committed("g", "t", 0));
  clock_.Advance(std::chrono::hours(24 * 2));
  coordinator_->Expire();
  EXPECT_FALSE(coordinator_->Committed("g", "t", 0));
}

TEST_F(GroupCoordinatorTest, ResetNeedsForceWithMembersAndFencesThem) {
  ASSERT_TRUE(Beat("a", 0));
  std::promise<Status> refused;
  coordinator_->StoreReset("g", "t", {{0, 3}}, false, [&](Status s) { refused.set_value(s); });
  EXPECT_EQ(refused.get_future().get().error().code, ErrorCode::kFailedPrecondition);
  std::promise<Status> forced;
  coordinator_->StoreReset("g", "t", {{0, 3}}, true, [&](Status s) { forced.set_value(s); });
  ASSERT_TRUE(forced.get_future().get());
  EXPECT_EQ(coordinator_->Committed("g", "t", 0)->offset, 3u);
  // a may still be reading: a newcomer gets nothing until a has heard it was fenced.
  EXPECT_TRUE(Beat("b", 0)->assignment.empty());
  EXPECT_EQ(Beat("a").error().code, ErrorCode::kNotFound) << "a was fenced";
  EXPECT_EQ(Beat("b")->assignment.size(), 6u);
}

TEST_F(GroupCoordinatorTest, AfterAForcedResetASilentMemberIsWaitedForOneSession) {
  ASSERT_TRUE(Beat("a", 0));
  std::promise<Status> forced;
  coordinator_->StoreReset("g", "t", {{0, 3}}, true, [&](Status s) { forced.set_value(s); });
  ASSERT_TRUE(forced.get_future().get());
  EXPECT_TRUE(Beat("b", 0)->assignment.empty());
  clock_.Advance(milliseconds(settings_.session_timeout_ms + 1));
  EXPECT_EQ(Beat("b")->assignment.size(), 6u);
  EXPECT_EQ(Beat("a").error().code, ErrorCode::kNotFound) << "fenced members are not taken back";
}

TEST_F(GroupCoordinatorTest, RangeAssignorIsChosenByTheFirstMember) {
  settings_.assignor = GroupAssignor::kRange;
  ASSERT_TRUE(Beat("a", 0));
  ASSERT_TRUE(Beat("b", 0));
  Settle({"a", "b"});
  EXPECT_EQ(owned_["a"], (std::vector<TopicPartition>{{"t", 0}, {"t", 1}, {"t", 2}}));
  EXPECT_EQ(coordinator_->Describe("g")->settings.assignor, GroupAssignor::kRange);
}

TEST_F(GroupCoordinatorTest, TopicsCreatedLaterAreAssignedOnTheNextHeartbeat) {
  ASSERT_TRUE(Beat("a", 0, {}, std::vector<std::string>{"t", "later"}));
  EXPECT_EQ(owned_["a"].size(), 6u);
  topics_.Add("later", 2, 2);
  auto a = Beat("a", {}, {}, std::vector<std::string>{"t", "later"});
  ASSERT_TRUE(a);
  EXPECT_EQ(a->assignment.size(), 8u);
}

}  // namespace
}  // namespace spool::broker
