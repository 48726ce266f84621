// The in-memory cost of one queue subscription's state on one partition (broker::QueuePartition):
// how fast receives and deletes go when many leases have ended at once, as after a consumer
// fleet stopped, against messages never received; and the memory a delayed message costs once
// a receive has read past it.
//
// The records are appended and made durable once, before timing; the timed receives and
// deletes build their WriteBatches but do not write them, so the figures are the strand's
// CPU per message, not the disk's.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <benchmark/benchmark.h>
#include <unistd.h>

#include "broker/queue_partition.h"
#include "storage/partition_log.h"
#include "storage/record.h"
#include "storage/store.h"

namespace spool {
namespace {

constexpr std::int64_t kT0 = 1'800'000'000'000;  // ms
constexpr std::uint32_t kTopic = 1;
constexpr std::uint32_t kSubscription = 1;
constexpr std::size_t kReceiveBatch = 10;  // the SQS API's largest receive

// A fresh store with one partition holding `n` records of 256 bytes, and the queue state.
class Fixture {
 public:
  explicit Fixture(std::int64_t n, std::optional<std::int64_t> deliver_after_ms = {}) {
    std::error_code ec;
    dir_ = std::filesystem::temp_directory_path(ec) /
           ("spool-queue-bench-" + std::to_string(::getpid()) + "-" + std::to_string(n));
    std::filesystem::remove_all(dir_, ec);
    auto store = storage::Store::Open(dir_.string(), {});
    if (!store) std::abort();
    store_ = std::move(*store);
    auto log = storage::PartitionLog::Open(*store_, kTopic, 0);
    if (!log) std::abort();
    log_ = std::make_unique<storage::PartitionLog>(std::move(*log));
    for (std::int64_t sent = 0; sent < n;) {
      std::vector<storage::Record> records(
          static_cast<std::size_t>(std::min<std::int64_t>(1000, n - sent)));
      for (auto& r : records) {
        r.value.assign(256, 'x');
        r.deliver_after_ms = deliver_after_ms;
      }
      storage::WriteBatch batch;
      auto prepared = log_->PrepareAppend(records, kT0, batch);
      if (!prepared || !store_->WriteSync(std::move(batch))) std::abort();
      log_->MarkDurable(*prepared);
      sent += static_cast<std::int64_t>(records.size());
    }
    auto queue = broker::QueuePartition::Load(*store_, kSubscription, *log_);
    if (!queue) std::abort();
    queue_ = std::make_unique<broker::QueuePartition>(std::move(*queue));
  }
  ~Fixture() {
    queue_.reset();
    log_.reset();
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Receives up to `max` messages at `now`; the batch is dropped (not written).
  std::vector<broker::ReceivedMessage> Receive(std::int64_t now, std::size_t max,
                                               std::int64_t visibility_ms) {
    broker::QueueReceiveOptions o;
    o.max_messages = max;
    o.visibility_ms = visibility_ms;
    o.max_in_flight = SIZE_MAX;
    storage::WriteBatch batch;
    auto got = queue_->Receive(now, o, batch);
    if (!got) std::abort();
    return std::move(got->messages);
  }

  broker::QueuePartition& queue() { return *queue_; }

  void Delete(const broker::ReceivedMessage& m) {
    storage::WriteBatch batch;
    if (!queue_->Delete(m.offset, m.generation, batch)) std::abort();
  }

 private:
  std::filesystem::path dir_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<storage::PartitionLog> log_;
  std::unique_ptr<broker::QueuePartition> queue_;
};

// Receives and deletes every message in batches of 10; with `leases_ended`, every message was
// received once before and its lease has ended, so each receive takes redeliveries.
void Drain(benchmark::State& state, bool leases_ended) {
  const std::int64_t n = state.range(0);
  for (auto _ : state) {
    state.PauseTiming();
    auto fixture = std::make_unique<Fixture>(n);
    std::int64_t now = kT0;
    if (leases_ended) {
      while (!fixture->Receive(now, 1000, 1'000).empty()) {
      }
      now += 1'000;
    }
    state.ResumeTiming();
    std::int64_t drained = 0;
    for (;;) {
      auto got = fixture->Receive(now, kReceiveBatch, 30'000);
      if (got.empty()) break;
      for (const auto& m : got)
        fixture->Delete(m);
      drained += static_cast<std::int64_t>(got.size());
    }
    if (drained != n) state.SkipWithError("not every message was received");
    state.PauseTiming();
    fixture.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * n);
}

// Resident memory of this process, in bytes.
std::int64_t ResidentBytes() {
  long pages = 0;
  long resident = 0;
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  std::fclose(f);
  return static_cast<std::int64_t>(resident) * ::sysconf(_SC_PAGESIZE);
}

// N messages delayed by 15 minutes; receives of 10 read past all of them (10,000 records a
// call) and find none receivable. `bytes_per_message` is the growth of resident memory over
// the number of messages: the state each examined message keeps until it is delivered, and
// RocksDB's block cache (64 MiB) filling as the log is read.
void BM_ExamineDelayed(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  double per_message = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto fixture = std::make_unique<Fixture>(n, kT0 + 900'000);
    const std::int64_t before = ResidentBytes();
    state.ResumeTiming();
    std::int64_t calls = 0;
    while (calls++ < n) {
      broker::QueueReceiveOptions o;
      o.max_messages = kReceiveBatch;
      storage::WriteBatch batch;
      auto got = fixture->queue().Receive(kT0, o, batch);
      if (!got || !got->messages.empty()) state.SkipWithError("a delayed message was received");
      if (!got || !got->more_to_scan) break;
    }
    state.PauseTiming();
    per_message = static_cast<double>(ResidentBytes() - before) / static_cast<double>(n);
    if (fixture->queue().Counts(kT0).delayed != static_cast<std::uint64_t>(n)) {
      state.SkipWithError("not every message counts as delayed");
    }
    fixture.reset();
    state.ResumeTiming();
  }
  state.counters["bytes_per_message"] = per_message;
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_DrainFresh(benchmark::State& state) {
  Drain(state, false);
}
void BM_DrainEndedLeases(benchmark::State& state) {
  Drain(state, true);
}

BENCHMARK(BM_DrainFresh)->Arg(10'000)->Arg(100'000)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ExamineDelayed)->Arg(1'000'000)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DrainEndedLeases)
    ->Arg(10'000)
    ->Arg(100'000)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace spool

BENCHMARK_MAIN();
