// Kills a real appending process with SIGKILL at random moments and checks that every
// record it was told is durable survives, byte for byte, with no gaps and no duplicates.

#include <chrono>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker/broker.h"
#include "tests/integration/crash_workload.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/wait.h"

extern char** environ;

namespace spool {
namespace {

using testing::kCrashPartitions;
using testing::kCrashTopic;

struct Ack {
  std::uint32_t partition;
  std::uint64_t offset;
  std::uint64_t seq;
};

// Runs the appender until it has acknowledged something and `run_for` has passed, kills it
// and returns every complete acknowledgement line it wrote.
std::vector<Ack> RunAndKill(const std::string& dir, std::uint64_t first_seq,
                            std::chrono::milliseconds run_for) {
  int fds[2];
  if (pipe(fds) != 0) {
    ADD_FAILURE() << "pipe failed";
    return {};
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  std::string seq = std::to_string(first_seq);
  std::string program = SPOOL_CRASH_APPENDER;
  char* argv[] = {program.data(), const_cast<char*>(dir.c_str()), seq.data(), nullptr};
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    ADD_FAILURE() << "posix_spawn failed: " << rc;
    close(fds[0]);
    return {};
  }

  std::string output;
  auto read_some = [&](int timeout_ms) {
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return true;
    char buf[65536];
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) return false;
    output.append(buf, static_cast<std::size_t>(n));
    return true;
  };
  const auto start = std::chrono::steady_clock::now();
  const auto hard_limit = start + std::chrono::seconds(30);
  bool alive = true;
  while (alive && std::chrono::steady_clock::now() < hard_limit) {
    alive = read_some(20);
    const bool acked = output.find("\nA ") != std::string::npos;
    if (acked && std::chrono::steady_clock::now() - start >= run_for) break;
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  while (read_some(1000)) {
  }
  close(fds[0]);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the appender exited on its own; output: " << output.substr(0, 500);

  std::vector<Ack> acks;
  std::istringstream lines(output);
  std::string line;
  while (std::getline(lines, line)) {
    if (lines.eof()) break;  // an incomplete last line was cut by the kill
    if (line.rfind("A ", 0) != 0) continue;
    Ack ack{};
    std::istringstream fields(line.substr(2));
    fields >> ack.partition >> ack.offset >> ack.seq;
    acks.push_back(ack);
  }
  return acks;
}

TEST(CrashTest, AcknowledgedRecordsSurviveSigkill) {
  testing::TempDir dir;
  std::mt19937 rng(std::random_device{}());
  std::vector<Ack> all_acks;
  constexpr int kRounds = 5;

  for (int round = 0; round < kRounds; ++round) {
    const auto run_for = std::chrono::milliseconds(100 + rng() % 700);
    std::vector<Ack> acks = RunAndKill(dir.path(), (round + 1) * 1'000'000'000ull, run_for);
    ASSERT_FALSE(acks.empty()) << "round " << round << " acknowledged nothing";
    all_acks.insert(all_acks.end(), acks.begin(), acks.end());

    auto store = storage::Store::Open(dir.path(), {});
    ASSERT_TRUE(store) << store.error().ToString();
    broker::BrokerOptions options;
    options.retention_check_interval = std::chrono::milliseconds(0);
    auto broker = broker::Broker::Open(**store, SystemClock::Instance(), options);
    ASSERT_TRUE(broker) << broker.error().ToString();

    std::map<std::pair<std::uint32_t, std::uint64_t>, storage::Record> stored;
    std::set<std::uint64_t> seqs;
    for (std::uint32_t p = 0; p < kCrashPartitions; ++p) {
      std::uint64_t expected_offset = 0;
      for (;;) {
        testing::Waiter<std::vector<storage::StoredRecord>> w;
        (*broker)->Fetch(kCrashTopic, p, expected_offset, 5000, 16 << 20, w.Callback());
        auto batch = w.Get();
        ASSERT_TRUE(batch) << batch.error().ToString();
        if (batch->empty()) break;
        for (auto& r : *batch) {
          ASSERT_EQ(r.offset, expected_offset) << "gap in partition " << p;
          ++expected_offset;
          const std::string& value = r.record.value;
          const std::uint64_t seq = std::stoull(value.substr(4, value.find('|') - 4));
          ASSERT_TRUE(seqs.insert(seq).second) << "sequence " << seq << " stored twice";
          stored.emplace(std::make_pair(p, r.offset), std::move(r.record));
        }
      }
    }
    for (const Ack& ack : all_acks) {
      auto it = stored.find({ack.partition, ack.offset});
      ASSERT_NE(it, stored.end()) << "acknowledged record " << ack.partition << "/" << ack.offset
                                  << " (seq " << ack.seq << ") is lost after round " << round;
      EXPECT_EQ(it->second.value, testing::CrashValue(ack.seq));
      EXPECT_EQ(it->second.key, testing::CrashKey(ack.seq));
    }
    (*broker)->Shutdown();
    broker->reset();
    ASSERT_TRUE((*store)->Close());
  }
  std::cout << "verified " << all_acks.size() << " acknowledged records over " << kRounds
            << " kills\n";
}

}  // namespace
}  // namespace spool
