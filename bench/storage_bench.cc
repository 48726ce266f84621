// Durable (FsyncMode::kAlways) append and read throughput of one partition.
//
// Everything goes through broker::Broker rather than the Store or RocksDB directly, so the
// numbers include what a real request pays: validation, the strand hops, record encoding,
// offset assignment and group commit. Every benchmark run starts from a fresh data directory
// so that no run inherits another's memtables, SST files or compaction debt.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include "broker/broker.h"
#include "broker/topic.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/logging.h"
#include "storage/record.h"
#include "storage/store.h"

namespace spool {
namespace {

constexpr char kTopic[] = "bench";
constexpr std::uint32_t kPartition = 0;
constexpr std::size_t kValueBytes = 256;

// Enough distinct values that no SST block holds the same value twice.
constexpr std::size_t kDistinctValues = 1024;

// Large enough that draining the pipeline at the end of an iteration, when fewer than
// `depth` appends are left in flight, is a small part of the iteration.
constexpr std::int64_t kConcurrentRecordsPerIteration = 40'000;

// About 50 MiB of values: long enough for a scan to measure steady reading rather than
// its first fetches, short enough to pre-fill in seconds.
constexpr std::int64_t kScanRecords = 200'000;
constexpr std::size_t kScanFillBatch = 1000;
constexpr std::size_t kFetchMaxRecords = 1000;
constexpr std::size_t kFetchMaxBytes = 1u << 20;

// A fresh, empty directory under $TMPDIR (or /tmp); empty if it could not be made.
std::string MakeTempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern =
      std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/spool-bench-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) return {};
  return pattern;
}

// Calls `start` with a broker callback and blocks until that callback has run.
template <class T, class Start>
Result<T> Await(Start&& start) {
  // Shared with the callback: the broker may destroy its copy after this function returned.
  auto promise = std::make_shared<std::promise<Result<T>>>();
  auto future = promise->get_future();
  start(
      broker::Callback<T>([promise](Result<T> result) { promise->set_value(std::move(result)); }));
  return future.get();
}

// Hands out records with random values. Random bytes keep block compression from shrinking
// what is written and read, and cycling through many distinct values keeps it from finding
// repeats between neighbouring records.
class RecordFactory {
 public:
  explicit RecordFactory(std::size_t value_bytes) {
    // A fixed seed, so that every run writes the same bytes.
    std::mt19937 rng(static_cast<std::mt19937::result_type>(value_bytes));
    std::uniform_int_distribution<int> byte(0, 255);
    values_.resize(kDistinctValues);
    for (std::string& value : values_) {
      value.resize(value_bytes);
      for (char& c : value)
        c = static_cast<char>(byte(rng));
    }
  }

  std::vector<storage::Record> Batch(std::size_t count) {
    std::vector<storage::Record> records(count);
    for (storage::Record& record : records) {
      record.value = values_[next_];
      next_ = (next_ + 1) % values_.size();
    }
    return records;
  }

 private:
  std::vector<std::string> values_;
  std::size_t next_ = 0;
};

// A store and broker on a fresh data directory with one single-partition topic. The
// destructor shuts both down before removing the directory, so RocksDB never sees its files
// vanish under it.
class BenchEnv {
 public:
  // Returns nullptr after reporting why through state.SkipWithError().
  static std::unique_ptr<BenchEnv> Open(benchmark::State& state) {
    std::string dir = MakeTempDir();
    if (dir.empty()) {
      state.SkipWithError("cannot create a temporary data directory");
      return nullptr;
    }
    std::unique_ptr<BenchEnv> env(new BenchEnv(std::move(dir)));
    if (Status s = env->Start(); !s) {
      state.SkipWithError(s.error().ToString().c_str());
      return nullptr;
    }
    return env;
  }

  BenchEnv(const BenchEnv&) = delete;
  BenchEnv& operator=(const BenchEnv&) = delete;

  ~BenchEnv() {
    // The broker's strands write into the store, so the broker stops first.
    if (broker_) broker_->Shutdown();
    if (store_) {
      if (Status s = store_->Close(); !s) {
        std::fprintf(stderr, "closing %s: %s\n", dir_.c_str(), s.error().ToString().c_str());
      }
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  broker::Broker& broker() { return *broker_; }
  storage::Store& store() { return *store_; }

 private:
  explicit BenchEnv(std::string dir) : dir_(std::move(dir)) {}

  Status Start() {
    storage::StoreOptions store_options;
    store_options.fsync = storage::FsyncMode::kAlways;
    auto store = storage::Store::Open(dir_, store_options);
    if (!store) return store.error();
    store_ = std::move(*store);

    broker::BrokerOptions broker_options;
    // A retention pass in the middle of a measurement would only add noise.
    broker_options.retention_check_interval = std::chrono::milliseconds::zero();
    auto broker = broker::Broker::Open(*store_, SystemClock::Instance(), broker_options);
    if (!broker) return broker.error();
    broker_ = std::move(*broker);

    broker::TopicConfig config;
    config.name = kTopic;
    config.partitions = 1;
    auto created = Await<broker::TopicInfo>(
        [&](auto done) { broker_->CreateTopic(std::move(config), std::move(done)); });
    if (!created) return created.error();
    return Ok();
  }

  std::string dir_;
  // Declared before broker_, which refers to it, so that it is destroyed after it.
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<broker::Broker> broker_;
};

void SetThroughput(benchmark::State& state, std::int64_t records, std::int64_t bytes) {
  state.SetItemsProcessed(records);
  state.SetBytesProcessed(bytes);
}

// One appender that waits for each batch to be durable before sending the next: the latency
// of a full produce round trip, fsync included, and how well batching amortizes it.
void RunAppendBatch(benchmark::State& state, std::size_t value_bytes) {
  const auto batch_records = static_cast<std::size_t>(state.range(0));
  auto env = BenchEnv::Open(state);
  if (!env) return;
  RecordFactory factory(value_bytes);

  // Building the batch is timed on purpose: a producer pays for it too, and it is small next
  // to the fsync.
  for (auto _ : state) {
    auto produced = Await<std::vector<broker::ProducedRecord>>([&](auto done) {
      env->broker().Produce(kTopic, kPartition, factory.Batch(batch_records), std::move(done));
    });
    if (!produced) {
      state.SkipWithError(produced.error().ToString().c_str());
      break;
    }
  }

  const std::int64_t records = state.iterations() * static_cast<std::int64_t>(batch_records);
  SetThroughput(state, records, records * static_cast<std::int64_t>(value_bytes));
}

void BM_AppendBatch(benchmark::State& state) {
  RunAppendBatch(state, kValueBytes);
}
void BM_AppendBatch1KiB(benchmark::State& state) {
  RunAppendBatch(state, 1024);
}

// Keeps exactly `depth` single-record Produce calls in flight: each completion sends the
// next one until the quota is used up. That is how many independent clients look to the
// store, and it is what lets group commit fold their writes into shared fsyncs.
class AppendPipeline {
 public:
  AppendPipeline(broker::Broker& broker, RecordFactory& factory, std::size_t depth,
                 std::size_t batch_records = 1)
      : broker_(broker), factory_(factory), depth_(depth), batch_records_(batch_records) {}

  // Appends `records` records and returns once every one of them has completed.
  Status Run(std::int64_t records) {
    std::vector<std::vector<storage::Record>> first;
    {
      std::lock_guard lock(mu_);
      unsent_ = records;
      error_.reset();
      // Claiming them all before sending any makes the pipeline full from the start.
      for (std::size_t i = 0; i < depth_; ++i) {
        auto batch = ClaimLocked();
        if (!batch) break;
        first.push_back(std::move(*batch));
      }
    }
    for (auto& batch : first)
      Send(std::move(batch));

    std::unique_lock lock(mu_);
    // A completion gives up its slot and claims its successor under one lock, so nothing is
    // in flight only once the quota is used up or an error stopped the refills.
    idle_.wait(lock, [&] { return in_flight_ == 0; });
    if (error_) return *error_;
    return Ok();
  }

 private:
  // The next batch if the quota allows one; counts it as in flight.
  std::optional<std::vector<storage::Record>> ClaimLocked() {
    if (unsent_ == 0) return std::nullopt;
    const auto n = std::min<std::int64_t>(unsent_, static_cast<std::int64_t>(batch_records_));
    unsent_ -= n;
    ++in_flight_;
    // Built under mu_ because the factory is shared by the caller and the worker threads.
    return factory_.Batch(static_cast<std::size_t>(n));
  }

  void Send(std::vector<storage::Record> batch) {
    broker_.Produce(kTopic, kPartition, std::move(batch),
                    [this](Result<std::vector<broker::ProducedRecord>> result) { OnDone(result); });
  }

  void OnDone(const Result<std::vector<broker::ProducedRecord>>& result) {
    std::optional<std::vector<storage::Record>> next;
    {
      std::lock_guard lock(mu_);
      --in_flight_;
      if (!result && !error_) error_ = result.error();
      if (!error_) next = ClaimLocked();
      // Run() may return, and destroy this pipeline, as soon as mu_ is released; past this
      // block `this` is only used when `next` keeps something in flight.
      if (in_flight_ == 0) idle_.notify_all();
    }
    // The next request goes out from the client's own thread, as it would from a separate
    // client process: the broker answers on its syncer thread, which must not be made to
    // build and send the client's next request.
    if (next) {
      boost::asio::post(client_,
                        [this, batch = std::move(*next)]() mutable { Send(std::move(batch)); });
    }
  }

  broker::Broker& broker_;
  RecordFactory& factory_;
  const std::size_t depth_;
  const std::size_t batch_records_;
  boost::asio::thread_pool client_{1};

  std::mutex mu_;
  std::condition_variable idle_;
  std::int64_t unsent_ = 0;     // guarded by mu_
  std::int64_t in_flight_ = 0;  // guarded by mu_
  std::optional<Error> error_;  // guarded by mu_
};

// Args: batches in flight, records per batch. (64, 1) is 64 independent single-record
// appenders; (4, 100) is a producer that pipelines its batches, as a real client does.
void BM_ConcurrentAppenders(benchmark::State& state) {
  const auto depth = static_cast<std::size_t>(state.range(0));
  const auto batch_records = static_cast<std::size_t>(state.range(1));
  auto env = BenchEnv::Open(state);
  if (!env) return;
  RecordFactory factory(kValueBytes);
  AppendPipeline pipeline(env->broker(), factory, depth, batch_records);

  const storage::StoreStats before = env->store().Stats();
  for (auto _ : state) {
    if (Status s = pipeline.Run(kConcurrentRecordsPerIteration); !s) {
      state.SkipWithError(s.error().ToString().c_str());
      break;
    }
  }
  const storage::StoreStats after = env->store().Stats();

  const std::int64_t records = state.iterations() * kConcurrentRecordsPerIteration;
  SetThroughput(state, records, records * static_cast<std::int64_t>(kValueBytes));
  // The point of group commit: how many acknowledged writes each fsync paid for.
  const std::uint64_t syncs = after.wal_syncs - before.wal_syncs;
  if (syncs > 0) {
    state.counters["batches_per_fsync"] =
        benchmark::Counter(static_cast<double>(after.batches_written - before.batches_written) /
                           static_cast<double>(syncs));
  }
}

// Reads [0, end) of the partition the way a consumer catching up would, adding what it read
// to `records` and `bytes`.
Status ScanPartition(broker::Broker& broker, std::uint64_t end, std::int64_t& records,
                     std::int64_t& bytes) {
  std::uint64_t offset = 0;
  while (offset < end) {
    auto fetched = Await<std::vector<storage::StoredRecord>>([&](auto done) {
      broker.Fetch(kTopic, kPartition, offset, kFetchMaxRecords, kFetchMaxBytes, std::move(done));
    });
    if (!fetched) return fetched.error();
    // Fetch always returns at least one record below the end; without this check a broken
    // one would spin here forever.
    if (fetched->empty()) {
      return Internal("fetch at offset " + std::to_string(offset) + " returned no records");
    }
    for (const storage::StoredRecord& stored : *fetched) {
      bytes += static_cast<std::int64_t>(stored.record.value.size());
    }
    records += static_cast<std::int64_t>(fetched->size());
    offset = fetched->back().offset + 1;
  }
  return Ok();
}

void BM_ScanRead(benchmark::State& state) {
  auto env = BenchEnv::Open(state);
  if (!env) return;
  RecordFactory factory(kValueBytes);

  std::uint64_t end = 0;
  for (std::int64_t filled = 0; filled < kScanRecords;
       filled += static_cast<std::int64_t>(kScanFillBatch)) {
    auto produced = Await<std::vector<broker::ProducedRecord>>([&](auto done) {
      env->broker().Produce(kTopic, kPartition, factory.Batch(kScanFillBatch), std::move(done));
    });
    if (!produced) {
      state.SkipWithError(produced.error().ToString().c_str());
      return;
    }
    end = produced->back().offset + 1;
  }

  std::int64_t records = 0;
  std::int64_t bytes = 0;
  for (auto _ : state) {
    if (Status s = ScanPartition(env->broker(), end, records, bytes); !s) {
      state.SkipWithError(s.error().ToString().c_str());
      break;
    }
  }
  SetThroughput(state, records, bytes);
}

// Times are bounded so that the whole program finishes in about two minutes on two cores.
// Google Benchmark calls a function several times while it settles on an iteration count,
// and every call opens a new data directory and so repeats its setup; the scan, whose
// pre-fill is costly, therefore runs a fixed number of iterations in a single call.
BENCHMARK(BM_AppendBatch)
    ->Arg(1)
    ->Arg(100)
    ->Arg(1000)
    ->MinTime(2.0)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AppendBatch1KiB)->Arg(100)->MinTime(2.0)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ConcurrentAppenders)
    ->Args({64, 1})
    ->Args({4, 100})
    ->Args({4, 1000})
    ->MinTime(2.0)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ScanRead)->Iterations(10)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace spool

int main(int argc, char** argv) {
  // Broker and store info lines go to stdout, where they would break up the results table
  // and corrupt --benchmark_format=json output.
  spool::SetLogLevel("warn");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
