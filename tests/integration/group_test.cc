// Consumer groups end to end: a real spoold, a producer, and group members in child
// processes (group_member) that are added, stopped, and killed with SIGKILL while records
// flow. The checker reads every member's log and verifies that every acknowledged record was
// consumed, that a partition never had two owners at once, that each owner read its
// partition in order, and that the only records read twice are ones a killed member had read
// but not committed. Also: a restarted spoold keeps committed offsets, and bad group
// requests get their distinct errors without changing anything.

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include "spool/client.h"
#include "spool/consumer.h"
#include "spool/producer.h"
#include "tests/testing/spoold_process.h"
#include "tests/testing/temp_dir.h"

extern char** environ;

namespace spool {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;
using testing::SpooldProcess;
using testing::TempDir;

constexpr int kPartitions = 6;
constexpr const char* kSessionTimeoutMs = "4000";

// A group_member child writing its log to a file.
class Member {
 public:
  Member(const std::string& address, const std::string& log_path) : log_path_(log_path) {
    std::vector<std::string> args = {GROUP_MEMBER, address, "workers", "jobs", kSessionTimeoutMs};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, GROUP_MEMBER, &actions, nullptr, argv.data(), environ) != 0) pid_ = 0;
    posix_spawn_file_actions_destroy(&actions);
  }
  ~Member() { Kill(); }

  bool running() const { return pid_ > 0; }
  // SIGTERM: the member commits, leaves and exits.
  int Stop() {
    if (pid_ <= 0) return -1;
    kill(pid_, SIGTERM);
    return Wait(seconds(30));
  }
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    Wait(seconds(30));
    killed_ = true;
  }
  bool killed() const { return killed_; }
  const std::string& log_path() const { return log_path_; }

 private:
  int Wait(std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = 0;
    return -1;
  }

  std::string log_path_;
  pid_t pid_ = 0;
  bool killed_ = false;
};

struct Event {
  char kind;
  long long ns;
  std::uint32_t partition;
  std::uint64_t offset;
};

std::vector<Event> ReadLog(const std::string& path) {
  std::vector<Event> events;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    Event e{};
    fields >> e.kind >> e.ns;
    if (e.kind != 'X') fields >> e.partition;
    if (e.kind == 'M' || e.kind == 'C') fields >> e.offset;
    if (fields) events.push_back(e);
  }
  return events;
}

class GroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(daemon_.Start(SPOOLD_BINARY, dir_.Sub("data"))) << daemon_.output();
    Connect();
  }
  void Connect() {
    ClientOptions options;
    options.address = daemon_.address();
    client_ = std::make_unique<Client>(options);
    groups_ = v1::GroupService::NewStub(client_->channel());
  }

  v1::DescribeGroupResponse Describe(const std::string& group) {
    v1::DescribeGroupRequest request;
    request.set_group_id(group);
    v1::DescribeGroupResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + seconds(10));
    groups_->DescribeGroup(&context, request, &response);
    return response;
  }

  // Waits until the group is stable with `members` members that own every partition.
  bool WaitStable(std::size_t members, seconds timeout = seconds(60)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto d = Describe("workers");
      std::size_t owned = 0;
      for (const auto& m : d.members())
        for (const auto& tps : m.assignment())
          owned += static_cast<std::size_t>(tps.partitions_size());
      if (d.state() == v1::GROUP_STATE_STABLE &&
          static_cast<std::size_t>(d.members_size()) == members &&
          owned == static_cast<std::size_t>(kPartitions)) {
        return true;
      }
      std::this_thread::sleep_for(milliseconds(100));
    }
    return false;
  }

  TempDir dir_;
  SpooldProcess daemon_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<v1::GroupService::Stub> groups_;
};

TEST_F(GroupTest, MembersJoinLeaveAndDieWhileRecordsFlowAndEveryRecordIsConsumed) {
  Admin admin(*client_);
  ASSERT_TRUE(
      admin.CreateTopic({"jobs", kPartitions, std::nullopt, std::nullopt, std::nullopt}).ok());

  // The producer runs through the whole test.
  std::mutex acked_mu;
  std::set<std::pair<std::uint32_t, std::uint64_t>> acked;
  std::atomic<bool> producing{true};
  std::atomic<int> failures{0};
  std::thread producer_thread([&] {
    ProducerOptions options;
    options.linger = milliseconds(2);
    Producer producer(*client_, options);
    for (int i = 0; producing && i < 1'000'000; ++i) {
      ProducerRecord record;
      record.topic = "jobs";
      record.partition = static_cast<std::uint32_t>(i % kPartitions);
      record.value = std::to_string(i);
      producer.Send(std::move(record), [&](const Delivery& d) {
        if (!d.ok()) {
          ++failures;
          return;
        }
        std::lock_guard lock(acked_mu);
        acked.insert({d.partition, d.offset});
      });
      if (i % 50 == 49) std::this_thread::sleep_for(milliseconds(5));
    }
    producer.Flush(seconds(60));
  });

  std::vector<std::unique_ptr<Member>> members;
  auto add = [&] {
    members.push_back(std::make_unique<Member>(
        daemon_.address(), dir_.Sub("member" + std::to_string(members.size()) + ".log")));
    ASSERT_TRUE(members.back()->running());
  };
  for (int i = 0; i < 3; ++i)
    add();
  ASSERT_TRUE(WaitStable(3)) << "3 members never owned all partitions";
  std::this_thread::sleep_for(milliseconds(500));
  add();
  ASSERT_TRUE(WaitStable(4)) << "the 4th member was not given partitions";
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_EQ(members[1]->Stop(), 0) << "a member leaving cleanly";
  ASSERT_TRUE(WaitStable(3)) << "the leaver's partitions were not reassigned";
  std::this_thread::sleep_for(milliseconds(500));
  members[2]->Kill();
  ASSERT_TRUE(WaitStable(2, seconds(60))) << "the killed member's session did not expire";
  std::this_thread::sleep_for(milliseconds(500));
  producing = false;
  producer_thread.join();
  EXPECT_EQ(failures.load(), 0);

  // Let the survivors catch up: the group's lag reaches zero.
  const auto deadline = std::chrono::steady_clock::now() + seconds(60);
  bool caught_up = false;
  while (!caught_up && std::chrono::steady_clock::now() < deadline) {
    auto d = Describe("workers");
    caught_up = d.offsets_size() == kPartitions;
    for (const auto& o : d.offsets())
      caught_up = caught_up && o.has_lag() && o.lag() == 0;
    if (!caught_up) std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_TRUE(caught_up) << "the group never caught up";
  for (auto& m : members) {
    if (m->running()) {
      EXPECT_EQ(m->Stop(), 0);
    }
  }

  // ---- The checker ----
  struct Span {
    long long from, to;
    std::size_t member;
  };
  std::map<std::uint32_t, std::vector<Span>> spans;  // ownership intervals per partition
  // Who read each record, and when (the members' logs are read one after another, so the
  // readers are put in time order below).
  std::map<std::pair<std::uint32_t, std::uint64_t>, std::vector<std::pair<long long, std::size_t>>>
      readers;
  std::map<std::pair<std::size_t, std::uint32_t>, std::uint64_t> last_commit;
  for (std::size_t m = 0; m < members.size(); ++m) {
    std::map<std::uint32_t, long long> open;
    std::map<std::uint32_t, std::uint64_t> next_offset;  // order within one ownership
    long long last_ns = 0;
    for (const Event& e : ReadLog(members[m]->log_path())) {
      last_ns = e.ns;
      switch (e.kind) {
        case 'A':
          open[e.partition] = e.ns;
          next_offset.erase(e.partition);
          break;
        case 'R':
        case 'L':
          if (open.count(e.partition)) {
            spans[e.partition].push_back({open[e.partition], e.ns, m});
            open.erase(e.partition);
          }
          break;
        case 'M': {
          EXPECT_TRUE(open.count(e.partition))
              << "member " << m << " read partition " << e.partition << " without owning it";
          auto it = next_offset.find(e.partition);
          if (it != next_offset.end()) {
            EXPECT_GT(e.offset, it->second - 1)
                << "member " << m << " went back in partition " << e.partition;
          }
          next_offset[e.partition] = e.offset + 1;
          readers[{e.partition, e.offset}].push_back({e.ns, m});
          break;
        }
        case 'C':
          last_commit[{m, e.partition}] = std::max(last_commit[{m, e.partition}], e.offset);
          break;
        default:
          break;
      }
    }
    for (const auto& [partition, from] : open)  // still owned when it stopped or died
      spans[partition].push_back({from, last_ns, m});
  }
  // No two owners at once.
  for (auto& [partition, list] : spans) {
    std::sort(list.begin(), list.end(),
              [](const Span& a, const Span& b) { return a.from < b.from; });
    for (std::size_t i = 1; i < list.size(); ++i) {
      EXPECT_LE(list[i - 1].to, list[i].from)
          << "partition " << partition << " owned by members " << list[i - 1].member << " and "
          << list[i].member << " at once";
    }
  }
  // Every acknowledged record consumed; duplicates only from a killed member's uncommitted
  // reads.
  std::size_t duplicates = 0;
  for (const auto& key : acked) {
    auto it = readers.find(key);
    ASSERT_NE(it, readers.end()) << "record " << key.first << "/" << key.second
                                 << " never consumed";
    if (it->second.size() == 1) continue;
    ++duplicates;
    std::sort(it->second.begin(), it->second.end());
    const std::size_t first = it->second.front().second;
    EXPECT_TRUE(members[first]->killed())
        << "record " << key.first << "/" << key.second << " read twice, first by member " << first
        << " which did not die";
    const std::uint64_t committed = last_commit[{first, key.first}];
    EXPECT_GE(key.second, committed)
        << "record " << key.first << "/" << key.second << " read again although committed";
  }
  std::printf("acked %zu records, %zu read twice (after the killed member's last commit)\n",
              acked.size(), duplicates);
  EXPECT_GT(acked.size(), 1000u);
}

TEST_F(GroupTest, CommittedOffsetsSurviveARestartAndTheGroupResumesThere) {
  Admin admin(*client_);
  ASSERT_TRUE(admin.CreateTopic({"jobs", 2, std::nullopt, std::nullopt, std::nullopt}).ok());
  {
    Producer producer(*client_);
    for (int i = 0; i < 100; ++i) {
      ProducerRecord r;
      r.topic = "jobs";
      r.partition = static_cast<std::uint32_t>(i % 2);
      r.value = std::to_string(i);
      producer.Send(std::move(r), [](const Delivery&) {});
    }
    ASSERT_TRUE(producer.Flush(seconds(30)));
  }
  ConsumerOptions options;
  options.group = "resume";
  options.topics = {"jobs"};
  options.auto_commit = false;
  // The broker holds a restarted group's partitions for one session timeout (groups.proto).
  options.session_timeout = seconds(6);
  options.max_poll_records = 10;  // stop part-way through the 100
  std::size_t consumed = 0;
  {
    Consumer consumer(*client_, options);
    const auto deadline = std::chrono::steady_clock::now() + seconds(30);
    while (consumed < 60 && std::chrono::steady_clock::now() < deadline) {
      auto records = consumer.Poll(milliseconds(200));
      ASSERT_TRUE(records.ok()) << records.status.error_message();
      consumed += records->size();
    }
    ASSERT_GE(consumed, 60u);
    ASSERT_LT(consumed, 100u) << "the first member should stop part-way";
    ASSERT_TRUE(consumer.Commit().ok());
  }
  ASSERT_EQ(daemon_.Stop(), 0);
  ASSERT_TRUE(daemon_.Start(SPOOLD_BINARY, dir_.Sub("data"))) << daemon_.output();
  Connect();
  auto info = Admin(*client_).GetBrokerInfo();
  ASSERT_TRUE(info.ok()) << info.status.error_message();
  EXPECT_EQ(info->group_count(), 1u) << "a group with committed offsets and no members counts";
  // The committed offsets are back, and a new member starts from them.
  std::size_t rest = 0;
  Consumer consumer(*client_, options);
  const auto deadline = std::chrono::steady_clock::now() + seconds(60);
  while (consumed + rest < 100 && std::chrono::steady_clock::now() < deadline) {
    auto records = consumer.Poll(milliseconds(200));
    ASSERT_TRUE(records.ok());
    rest += records->size();
  }
  EXPECT_EQ(rest, 100u - consumed) << "records were skipped or read again";
  auto more = consumer.Poll(milliseconds(300));
  EXPECT_TRUE(more->empty()) << "records read again after the restart";
}

TEST_F(GroupTest, ACommittedOffsetBelowTheLogStartResetsByPolicyAndSaysSo) {
  daemon_.Stop();
  ASSERT_TRUE(
      daemon_.Start(SPOOLD_BINARY, dir_.Sub("data"), {"--retention-check-interval-ms", "100"}))
      << daemon_.output();
  Connect();
  Admin admin(*client_);
  ASSERT_TRUE(admin.CreateTopic({"small", 1, std::nullopt, 4096, std::nullopt}).ok());
  // The group commits offset 0 while the log is empty, then retention passes it.
  v1::CommitOffsetsRequest commit;
  commit.set_group_id("slow");
  auto* o = commit.add_offsets();
  o->set_topic("small");
  o->set_partition(0);
  o->set_offset(0);
  v1::CommitOffsetsResponse committed;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(groups_->CommitOffsets(&context, commit, &committed).ok());
  }
  {
    ProducerOptions options;
    options.max_batch_records = 50;
    Producer producer(*client_, options);
    for (int i = 0; i < 2000; ++i) {
      ProducerRecord r;
      r.topic = "small";
      r.value = std::string(100, 'x');
      producer.Send(std::move(r), [](const Delivery&) {});
    }
    ASSERT_TRUE(producer.Flush(seconds(60)));
  }
  std::uint64_t start = 0;
  for (int i = 0; i < 200 && start == 0; ++i) {
    std::this_thread::sleep_for(milliseconds(50));
    start = admin.GetTopic("small")->partitions(0).start_offset();
  }
  ASSERT_GT(start, 0u) << "retention did not run";
  v1::FetchOffsetsRequest fetch;
  fetch.set_group_id("slow");
  fetch.add_partitions()->set_topic("small");
  v1::FetchOffsetsResponse offsets;
  grpc::ClientContext context;
  ASSERT_TRUE(groups_->FetchOffsets(&context, fetch, &offsets).ok());
  ASSERT_EQ(offsets.offsets_size(), 1);
  const auto& p = offsets.offsets(0);
  EXPECT_EQ(p.committed_offset(), 0u);
  EXPECT_GE(p.start_offset(), start) << "the default policy (earliest) starts at the log start";
  EXPECT_THAT(p.reset_reason(), HasSubstr("below the log start"));
  EXPECT_THAT(p.reset_reason(), HasSubstr("earliest"));
}

TEST_F(GroupTest, BadGroupRequestsGetDistinctErrorsAndChangeNothing) {
  Admin admin(*client_);
  ASSERT_TRUE(admin.CreateTopic({"jobs", 2, std::nullopt, std::nullopt, std::nullopt}).ok());
  auto heartbeat = [&](const std::string& member, std::uint32_t epoch,
                       std::vector<std::uint32_t> owned, v1::HeartbeatResponse* out) {
    v1::HeartbeatRequest request;
    request.set_group_id("g");
    request.set_member_id(member);
    request.set_member_epoch(epoch);
    request.add_subscribed_topics("jobs");
    if (!owned.empty()) {
      auto* tps = request.add_owned_partitions();
      tps->set_topic("jobs");
      for (auto p : owned)
        tps->add_partitions(p);
    }
    grpc::ClientContext context;
    return groups_->Heartbeat(&context, request, out);
  };
  auto commit = [&](const std::string& member, std::uint32_t epoch, const std::string& topic,
                    std::uint32_t partition, std::uint64_t offset) {
    v1::CommitOffsetsRequest request;
    request.set_group_id("g");
    request.set_member_id(member);
    request.set_member_epoch(epoch);
    auto* o = request.add_offsets();
    o->set_topic(topic);
    o->set_partition(partition);
    o->set_offset(offset);
    v1::CommitOffsetsResponse response;
    grpc::ClientContext context;
    return groups_->CommitOffsets(&context, request, &response);
  };
  v1::HeartbeatResponse a, b;
  ASSERT_TRUE(heartbeat("a", 0, {}, &a).ok());
  ASSERT_EQ(a.assignment_size(), 1);
  ASSERT_EQ(a.assignment(0).partitions_size(), 2);
  ASSERT_TRUE(heartbeat("b", 0, {}, &b).ok());
  ASSERT_TRUE(heartbeat("a", a.member_epoch(), {0, 1}, &a).ok());  // told to give one up
  ASSERT_EQ(a.assignment_size(), 1);
  ASSERT_EQ(a.assignment(0).partitions_size(), 1);
  const std::uint32_t mine = a.assignment(0).partitions(0);
  const std::uint32_t other = 1 - mine;
  ASSERT_TRUE(heartbeat("a", a.member_epoch(), {mine}, &a).ok());  // released `other`

  auto code = [](const grpc::Status& s) { return s.error_code(); };
  v1::HeartbeatResponse ignored;
  EXPECT_EQ(code(heartbeat("ghost", 3, {}, &ignored)), grpc::StatusCode::NOT_FOUND);
  grpc::Status stale = heartbeat("a", a.member_epoch() + 7, {mine}, &ignored);
  EXPECT_EQ(code(stale), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(stale.error_message(), HasSubstr("STALE_MEMBER_EPOCH"));
  EXPECT_EQ(code(heartbeat("bad id", 0, {}, &ignored)), grpc::StatusCode::INVALID_ARGUMENT);

  EXPECT_EQ(code(commit("a", a.member_epoch(), "nope", 0, 1)), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(code(commit("a", a.member_epoch(), "jobs", 9, 1)), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(code(commit("ghost", 1, "jobs", mine, 0)), grpc::StatusCode::NOT_FOUND);
  grpc::Status unowned = commit("a", a.member_epoch(), "jobs", other, 0);
  EXPECT_EQ(code(unowned), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(unowned.error_message(), HasSubstr("PARTITION_NOT_OWNED"));
  grpc::Status stale_commit = commit("a", a.member_epoch() + 7, "jobs", mine, 0);
  EXPECT_THAT(stale_commit.error_message(), HasSubstr("STALE_MEMBER_EPOCH"));
  EXPECT_EQ(code(commit("a", a.member_epoch(), "jobs", mine, 5)), grpc::StatusCode::OUT_OF_RANGE)
      << "offset beyond the (empty) log end";
  EXPECT_EQ(code(commit("a", a.member_epoch(), "bad topic", mine, 0)),
            grpc::StatusCode::INVALID_ARGUMENT);

  // Nothing was committed by any of them.
  v1::FetchOffsetsRequest fetch;
  fetch.set_group_id("g");
  fetch.add_partitions()->set_topic("jobs");
  v1::FetchOffsetsResponse offsets;
  grpc::ClientContext context;
  ASSERT_TRUE(groups_->FetchOffsets(&context, fetch, &offsets).ok());
  ASSERT_EQ(offsets.offsets_size(), 2);
  for (const auto& o : offsets.offsets()) {
    EXPECT_FALSE(o.has_committed_offset());
    EXPECT_EQ(o.start_offset(), 0u);
    EXPECT_THAT(o.reset_reason(), HasSubstr("no committed offset"));
  }
  // Deleting a group with members is refused; describing an unknown one is NOT_FOUND.
  v1::DeleteGroupRequest del;
  del.set_group_id("g");
  v1::DeleteGroupResponse deleted;
  grpc::ClientContext del_context;
  EXPECT_EQ(groups_->DeleteGroup(&del_context, del, &deleted).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  v1::DescribeGroupRequest describe;
  describe.set_group_id("unknown");
  v1::DescribeGroupResponse described;
  grpc::ClientContext describe_context;
  EXPECT_EQ(groups_->DescribeGroup(&describe_context, describe, &described).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace spool
