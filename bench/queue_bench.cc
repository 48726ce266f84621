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
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <benchmark/benchmark.h>
#include <malloc.h>
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
constexpr std::size_t kSmallValueBytes = 8;

// A fresh store with one partition holding `n` records of 256 bytes, and the queue state.
class Fixture {
 public:
  explicit Fixture(std::int64_t n, std::optional<std::int64_t> deliver_after_ms = {},
                   std::size_t value_bytes = 256) {
    std::error_code ec;
    dir_ = std::filesystem::temp_directory_path(ec) /
           ("spool-queue-bench-" + std::to_string(::getpid()) + "-" + std::to_string(n));
    std::filesystem::remove_all(dir_, ec);
    // A small block cache, so that reading the log barely moves the memory figures.
    storage::StoreOptions options;
    options.block_cache_bytes = 1u << 20;
    auto store = storage::Store::Open(dir_.string(), options);
    if (!store) std::abort();
    store_ = std::move(*store);
    auto log = storage::PartitionLog::Open(*store_, kTopic, 0);
    if (!log) std::abort();
    log_ = std::make_unique<storage::PartitionLog>(std::move(*log));
    for (std::int64_t sent = 0; sent < n;) {
      std::vector<storage::Record> records(
          static_cast<std::size_t>(std::min<std::int64_t>(1000, n - sent)));
      for (auto& r : records) {
        r.value.assign(value_bytes, 'x');
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
    state.PauseTiming();
    fixture.reset();
    state.ResumeTiming();
    if (drained != n) {
      state.SkipWithError("not every message was received");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * n);
}

// Heap bytes in use (glibc's count, mmapped chunks included): unlike resident memory, it
// does not move with pages the kernel maps lazily or with RocksDB's page cache use.
std::int64_t HeapBytes() {
  const struct mallinfo2 info = ::mallinfo2();
  return static_cast<std::int64_t>(info.uordblks + info.hblkhd);
}

// Growth of the heap per message while `work` runs (timed), as the counter
// `bytes_per_message`; `work` returns an error message or an empty string. The records are
// small, so that the log stays in one memtable and no flush frees memory meanwhile.
void MemoryPerMessage(benchmark::State& state, std::optional<std::int64_t> deliver_after_ms,
                      const std::function<std::string(Fixture&)>& work) {
  const std::int64_t n = state.range(0);
  double per_message = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto fixture = std::make_unique<Fixture>(n, deliver_after_ms, kSmallValueBytes);
    const std::int64_t before = HeapBytes();
    state.ResumeTiming();
    std::string error = work(*fixture);
    state.PauseTiming();
    const std::int64_t after = HeapBytes();
    fixture.reset();
    state.ResumeTiming();
    if (!error.empty()) {
      state.SkipWithError(error.c_str());
      break;
    }
    per_message = static_cast<double>(after - before) / static_cast<double>(n);
  }
  state.counters["bytes_per_message"] = per_message;
  state.SetItemsProcessed(state.iterations() * n);
}

// N messages delayed by 15 minutes; receives of 10 read past all of them (10,000 records a
// call) and find none receivable. The memory is the state each examined message keeps until
// it is delivered.
void BM_ExamineDelayed(benchmark::State& state) {
  MemoryPerMessage(state, kT0 + 900'000, [&](Fixture& fixture) -> std::string {
    for (std::int64_t calls = 0; calls < state.range(0); ++calls) {
      broker::QueueReceiveOptions o;
      o.max_messages = kReceiveBatch;
      storage::WriteBatch batch;
      auto got = fixture.queue().Receive(kT0, o, batch);
      if (!got) return got.error().ToString();
      if (!got->messages.empty()) return "a delayed message was received";
      if (!got->more_to_scan) break;
    }
    if (fixture.queue().Counts(kT0).delayed != static_cast<std::uint64_t>(state.range(0))) {
      return "not every message counts as delayed";
    }
    return {};
  });
}

// One message received and held (its lease not ended) at the front; the N - 1 after it are
// received and deleted in batches of 100, each batch deleted out of order. The floor stays at
// the held message; the memory is what the deleted messages above it keep.
void BM_DeleteBehindAHeldMessage(benchmark::State& state) {
  MemoryPerMessage(state, std::nullopt, [&](Fixture& fixture) -> std::string {
    if (fixture.Receive(kT0, 1, 3'600'000).size() != 1) return "the first receive got nothing";
    for (;;) {
      auto got = fixture.Receive(kT0, 100, 3'600'000);
      if (got.empty()) break;
      for (std::size_t i = got.size(); i-- > 0;)
        fixture.Delete(got[i]);
    }
    if (fixture.queue().floor() != 0) return "the floor passed the held message";
    return {};
  });
}

void BM_DrainFresh(benchmark::State& state) {
  Drain(state, false);
}
void BM_DrainEndedLeases(benchmark::State& state) {
  Drain(state, true);
}

BENCHMARK(BM_DrainFresh)->Arg(10'000)->Arg(100'000)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ExamineDelayed)->Arg(200'000)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DeleteBehindAHeldMessage)->Arg(200'000)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DrainEndedLeases)
    ->Arg(10'000)
    ->Arg(100'000)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace spool

BENCHMARK_MAIN();
