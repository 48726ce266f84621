// Child process of crash_test: appends batches through the broker forever and writes one
// line "A <partition> <offset> <seq>" to stdout for every record once its batch is
// acknowledged (durable). The parent kills it with SIGKILL at a random moment.
//
// usage: crash_appender DATA_DIR FIRST_SEQ

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include <unistd.h>

#include "broker/broker.h"
#include "common/clock.h"
#include "storage/store.h"
#include "tests/integration/crash_workload.h"

namespace {

void WriteAll(const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(STDOUT_FILENO, text.data() + done, text.size() - done);
    if (n <= 0) std::_Exit(3);  // the parent is gone
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: crash_appender DATA_DIR FIRST_SEQ\n");
    return 2;
  }
  using spool::testing::kCrashTopic;
  auto store = spool::storage::Store::Open(argv[1], {});
  if (!store) {
    std::fprintf(stderr, "%s\n", store.error().ToString().c_str());
    return 1;
  }
  spool::broker::BrokerOptions options;
  options.worker_threads = 2;
  auto broker = spool::broker::Broker::Open(**store, spool::SystemClock::Instance(), options);
  if (!broker) {
    std::fprintf(stderr, "%s\n", broker.error().ToString().c_str());
    return 1;
  }
  {
    std::mutex mu;
    std::condition_variable cv;
    bool created = false;
    spool::broker::TopicConfig config;
    config.name = kCrashTopic;
    config.partitions = spool::testing::kCrashPartitions;
    config.retention_ms = -1;
    (*broker)->CreateTopic(config, [&](spool::Result<spool::broker::TopicInfo> r) {
      if (!r && r.error().code != spool::ErrorCode::kAlreadyExists) {
        std::fprintf(stderr, "%s\n", r.error().ToString().c_str());
        std::_Exit(1);
      }
      std::lock_guard lock(mu);
      created = true;
      cv.notify_all();
    });
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return created; });
  }
  WriteAll("READY\n");

  // Keep a window of batches in flight so that group commit and concurrency are exercised.
  constexpr int kWindow = 16;
  std::atomic<std::uint64_t> next_seq{std::strtoull(argv[2], nullptr, 10)};
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  for (;;) {
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return in_flight < kWindow; });
      ++in_flight;
    }
    const std::uint64_t first = next_seq.load();
    const std::uint64_t count = 1 + first % 17;
    next_seq += count;
    std::vector<spool::storage::Record> records;
    for (std::uint64_t seq = first; seq < first + count; ++seq) {
      spool::storage::Record r;
      r.key = spool::testing::CrashKey(seq);
      r.value = spool::testing::CrashValue(seq);
      records.push_back(std::move(r));
    }
    (*broker)->Produce(
        kCrashTopic, std::nullopt, std::move(records),
        [&, first](spool::Result<std::vector<spool::broker::ProducedRecord>> produced) {
          if (produced) {
            std::string lines;
            for (std::size_t i = 0; i < produced->size(); ++i) {
              lines += "A " + std::to_string((*produced)[i].partition) + " " +
                       std::to_string((*produced)[i].offset) + " " + std::to_string(first + i) +
                       "\n";
            }
            WriteAll(lines);
          }
          std::lock_guard lock(mu);
          --in_flight;
          cv.notify_all();
        });
  }
}
