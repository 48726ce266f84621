// Raw RocksDB with synced writes, the ceiling the storage benchmark is compared with: the
// same record count and value size as BM_AppendBatch, written by one thread as one synced
// WriteBatch per iteration, with no Spool code on the path.

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>

#include <benchmark/benchmark.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

namespace {

void BM_RawRocksDbSyncBatch(benchmark::State& state) {
  const auto batch_records = static_cast<std::uint64_t>(state.range(0));
  const char* base = std::getenv("TMPDIR");
  std::string dir = std::string(base != nullptr ? base : "/tmp") + "/spool-rocks-XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  if (!rocksdb::DB::Open(options, dir, &raw).ok()) {
    state.SkipWithError("open failed");
    return;
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  std::mt19937_64 rng(1);
  std::string value(256, '\0');
  for (char& c : value)
    c = static_cast<char>(rng());
  rocksdb::WriteOptions sync;
  sync.sync = true;
  std::uint64_t key = 0;
  for (auto _ : state) {
    rocksdb::WriteBatch batch;
    for (std::uint64_t i = 0; i < batch_records; ++i, ++key) {
      char k[16] = {};
      for (int b = 0; b < 8; ++b)
        k[8 + b] = static_cast<char>(key >> (56 - 8 * b));
      value[0] = static_cast<char>(key);
      batch.Put(rocksdb::Slice(k, sizeof k), value);
    }
    if (!db->Write(sync, &batch).ok()) {
      state.SkipWithError("write failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(batch_records));
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(batch_records * 256));
  db.reset();
  std::filesystem::remove_all(dir);
}

BENCHMARK(BM_RawRocksDbSyncBatch)->Arg(1)->Arg(100)->Arg(1000)->MinTime(2.0)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
