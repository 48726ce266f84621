// A consumer group member for group_test: consumes with spool::Consumer and prints, one line
// each, flushed, with CLOCK_MONOTONIC nanoseconds (shared by every process on the machine):
//   A <ns> <partition>           assigned (on_assigned)
//   R <ns> <partition>           revoked, before it is released (on_revoked)
//   L <ns> <partition>           lost (fenced) without a commit
//   M <ns> <partition> <offset>  a record Poll returned
//   C <ns> <partition> <offset>  a committed position (after a successful Commit)
//   X <ns>                       closed cleanly (after SIGTERM)
// usage: group_member ADDRESS GROUP TOPIC SESSION_TIMEOUT_MS

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>

#include <signal.h>

#include "spool/consumer.h"

namespace {

std::atomic<bool> g_stop{false};

long long Now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void Print(const char* kind, const std::vector<spool::TopicPartition>& partitions) {
  for (const auto& tp : partitions)
    std::printf("%s %lld %u\n", kind, Now(), tp.partition);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: group_member ADDRESS GROUP TOPIC SESSION_TIMEOUT_MS\n");
    return 2;
  }
  struct sigaction action {};
  action.sa_handler = [](int) { g_stop = true; };
  sigaction(SIGTERM, &action, nullptr);

  spool::ClientOptions client_options;
  client_options.address = argv[1];
  spool::Client client(client_options);
  spool::ConsumerOptions options;
  options.group = argv[2];
  options.topics = {argv[3]};
  options.session_timeout = std::chrono::milliseconds(std::stoll(argv[4]));
  options.client_id = "group_member";
  options.on_assigned = [](const auto& p) { Print("A", p); };
  options.on_revoked = [](const auto& p) { Print("R", p); };
  options.on_lost = [](const auto& p) { Print("L", p); };
  spool::Consumer consumer(client, options);

  std::map<std::uint32_t, std::uint64_t> positions;
  while (!g_stop) {
    auto records = consumer.Poll(std::chrono::milliseconds(200));
    if (!records.ok()) {
      std::fprintf(stderr, "poll: %s\n", records.status.error_message().c_str());
      continue;
    }
    for (const auto& r : *records) {
      std::printf("M %lld %u %llu\n", Now(), r.record.partition(),
                  static_cast<unsigned long long>(r.record.offset()));
      positions[r.record.partition()] = r.record.offset() + 1;
    }
    std::fflush(stdout);
    if (records->empty()) continue;
    if (consumer.Commit().ok()) {
      for (const auto& [partition, offset] : positions)
        std::printf("C %lld %u %llu\n", Now(), partition, static_cast<unsigned long long>(offset));
      std::fflush(stdout);
    }
    positions.clear();
  }
  grpc::Status closed = consumer.Close();
  std::printf("X %lld\n", Now());
  std::fflush(stdout);
  return closed.ok() ? 0 : 1;
}
