#include "storage/store.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/testing/temp_dir.h"

namespace spool::storage {
namespace {

using spool::testing::TempDir;

std::unique_ptr<Store> OpenStore(const std::string& dir, StoreOptions options = {}) {
  auto store = Store::Open(dir, options);
  if (!store) ADD_FAILURE() << store.error().ToString();
  return store ? std::move(*store) : nullptr;
}

TEST(StoreTest, WrittenValuesAreReadBackAfterReopen) {
  TempDir dir;
  {
    auto store = OpenStore(dir.path());
    WriteBatch batch;
    batch.Put(ColumnFamily::kMeta, "a", "1");
    batch.Put(ColumnFamily::kLog, "a", "2");
    ASSERT_TRUE(store->WriteSync(std::move(batch)));
  }

  auto store = OpenStore(dir.path());

  auto meta = store->Get(ColumnFamily::kMeta, "a");
  auto log = store->Get(ColumnFamily::kLog, "a");
  auto missing = store->Get(ColumnFamily::kDedup, "a");
  ASSERT_TRUE(meta && log && missing);
  EXPECT_EQ(**meta, "1");
  EXPECT_EQ(**log, "2") << "column families are separate key spaces";
  EXPECT_FALSE(missing->has_value());
}

// Bytes of write-ahead log files in `dir`.
std::uintmax_t WalBytes(const std::string& dir) {
  std::uintmax_t total = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".log") total += entry.file_size();
  }
  return total;
}

TEST(StoreTest, AQuietColumnFamilyDoesNotKeepTheWriteAheadLogAlive) {
  TempDir dir;
  StoreOptions options;
  options.max_wal_bytes = 4u << 20;
  auto store = OpenStore(dir.path(), options);
  WriteBatch quiet;
  quiet.Put(ColumnFamily::kMeta, "quiet", "1");  // written once, in the first log file
  ASSERT_TRUE(store->WriteSync(std::move(quiet)));
  const std::string value(10'000, 'v');
  for (int b = 0; b < 40; ++b) {  // 40 MB into the busy log family
    WriteBatch batch;
    for (int i = 0; i < 100; ++i)
      batch.Put(ColumnFamily::kLog, std::to_string(b) + "/" + std::to_string(i), value);
    ASSERT_TRUE(store->WriteSync(std::move(batch)));
  }
  // Old log files go once their flushes finish, in the background: wait up to 10 s.
  std::uintmax_t wal = WalBytes(dir.path());
  for (int i = 0; i < 200 && wal > (12u << 20); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    wal = WalBytes(dir.path());
  }
  EXPECT_LE(wal, 12u << 20) << "the first log file, pinned by the quiet family, was kept";
  store.reset();
  store = OpenStore(dir.path(), options);
  auto back = store->Get(ColumnFamily::kMeta, "quiet");
  ASSERT_TRUE(back);
  EXPECT_EQ(back->value_or(""), "1") << "flushed, not lost";
}

TEST(StoreTest, ConcurrentWritersShareFsyncs) {
  TempDir dir;
  auto store = OpenStore(dir.path());
  constexpr int kThreads = 16;
  constexpr int kWritesPerThread = 50;

  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kWritesPerThread; ++i) {
        WriteBatch batch;
        batch.Put(ColumnFamily::kLog, std::to_string(t) + "/" + std::to_string(i), "v");
        if (!store->WriteSync(std::move(batch))) ++failures;
      }
    });
  }
  for (auto& t : threads)
    t.join();

  const StoreStats stats = store->Stats();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(stats.batches_written, std::uint64_t{kThreads * kWritesPerThread});
  EXPECT_GE(stats.wal_syncs, 1u);
  EXPECT_LE(stats.wal_syncs, stats.write_groups) << "one fsync may cover several groups";
  EXPECT_LT(stats.wal_syncs, stats.batches_written)
      << "16 blocked writers must have shared an fsync at least once";
}

TEST(StoreTest, CallbacksCompleteInSubmissionOrder) {
  TempDir dir;
  auto store = OpenStore(dir.path());
  std::mutex mu;
  std::vector<int> order;
  std::promise<void> all_done;
  constexpr int kWrites = 200;

  for (int i = 0; i < kWrites; ++i) {
    WriteBatch batch;
    batch.Put(ColumnFamily::kLog, std::to_string(i), "v");
    store->Write(std::move(batch), [&, i](Status s) {
      ASSERT_TRUE(s);
      std::lock_guard lock(mu);
      order.push_back(i);
      if (order.size() == kWrites) all_done.set_value();
    });
  }
  ASSERT_EQ(all_done.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);

  for (int i = 0; i < kWrites; ++i)
    EXPECT_EQ(order[i], i);
}

TEST(StoreTest, SecondOpenOfTheSameDirectoryFailsClearly) {
  TempDir dir;
  auto first = OpenStore(dir.path());

  auto second = Store::Open(dir.path(), {});

  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(second.error().message.find("in use"), std::string::npos) << second.error().message;
}

TEST(StoreTest, WritesAfterCloseAreRefused) {
  TempDir dir;
  auto store = OpenStore(dir.path());
  ASSERT_TRUE(store->Close());

  WriteBatch batch;
  batch.Put(ColumnFamily::kLog, "k", "v");
  Status s = store->WriteSync(std::move(batch));

  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ErrorCode::kUnavailable);
  EXPECT_TRUE(store->Close()) << "Close is idempotent";
}

// After a failed write nothing counts as written again until a restart: what reached the
// disk is no longer known.
TEST(StoreTest, AFailedWriteFailsItAndEveryLaterWrite) {
  TempDir dir;
  std::atomic<bool> fail_next{false};
  StoreOptions options;
  options.write_fault = [&fail_next]() -> Status {
    if (fail_next.exchange(false)) return Internal("injected write failure");
    return Ok();
  };
  auto store = OpenStore(dir.path(), options);
  auto put = [&](const std::string& key) {
    WriteBatch batch;
    batch.Put(ColumnFamily::kLog, key, "v");
    return store->WriteSync(std::move(batch));
  };
  ASSERT_TRUE(put("a"));

  fail_next = true;
  Status failed = put("b");
  Status later = put("c");

  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code, ErrorCode::kInternal);
  ASSERT_FALSE(later) << "a write after a failure was acknowledged";
  EXPECT_EQ(later.error().code, ErrorCode::kUnavailable);
  store.reset();
  auto reopened = OpenStore(dir.path());
  EXPECT_TRUE(reopened->Get(ColumnFamily::kLog, "a")->has_value());
  EXPECT_FALSE(reopened->Get(ColumnFamily::kLog, "c")->has_value());
}

// An empty write completes after the writes before it, and never pays an fsync of its own.
TEST(StoreTest, AnEmptyWriteIsABarrierWithoutAnFsync) {
  TempDir dir;
  auto store = OpenStore(dir.path());
  WriteBatch batch;
  batch.Put(ColumnFamily::kLog, "k", "v");
  ASSERT_TRUE(store->WriteSync(std::move(batch)));
  const std::uint64_t syncs = store->Stats().wal_syncs;

  ASSERT_TRUE(store->WriteSync(WriteBatch()));

  EXPECT_EQ(store->Stats().wal_syncs, syncs) << "an empty write was fsynced";
}

TEST(StoreTest, IntervalModeAcknowledgesAndPersistsOnClose) {
  TempDir dir;
  {
    StoreOptions options;
    options.fsync = FsyncMode::kInterval;
    options.fsync_interval = std::chrono::milliseconds(5);
    auto store = OpenStore(dir.path(), options);
    for (int i = 0; i < 20; ++i) {
      WriteBatch batch;
      batch.Put(ColumnFamily::kLog, std::to_string(i), "v");
      ASSERT_TRUE(store->WriteSync(std::move(batch)));
    }
    EXPECT_GE(store->Stats().write_groups, 1u);
  }

  auto store = OpenStore(dir.path());

  auto value = store->Get(ColumnFamily::kLog, "19");
  ASSERT_TRUE(value && value->has_value());
}

// Sync() fsyncs at once when interval mode would wait (the broker relies on it for writes
// that must survive a power loss in either mode), and not again when every write already was.
TEST(StoreTest, SyncFsyncsAtOnceOnlyInIntervalMode) {
  TempDir dir;
  StoreOptions options;
  options.fsync = FsyncMode::kInterval;
  options.fsync_interval = std::chrono::hours(1);
  auto store = OpenStore(dir.path(), options);
  WriteBatch batch;
  batch.Put(ColumnFamily::kMeta, "k", "v");
  ASSERT_TRUE(store->WriteSync(std::move(batch)));
  const std::uint64_t before = store->Stats().wal_syncs;
  ASSERT_TRUE(store->Sync());
  EXPECT_EQ(store->Stats().wal_syncs, before + 1);

  // Under `fsync: always` the write above would already be fsynced: no second fsync.
  TempDir always_dir;
  auto always = OpenStore(always_dir.path());
  WriteBatch again;
  again.Put(ColumnFamily::kMeta, "k", "v");
  ASSERT_TRUE(always->WriteSync(std::move(again)));
  const std::uint64_t synced = always->Stats().wal_syncs;
  ASSERT_TRUE(always->Sync());
  EXPECT_EQ(always->Stats().wal_syncs, synced);
}

TEST(StoreTest, IteratorStaysWithinItsBounds) {
  TempDir dir;
  auto store = OpenStore(dir.path());
  WriteBatch batch;
  for (char c = 'a'; c <= 'f'; ++c)
    batch.Put(ColumnFamily::kLog, std::string(1, c), "v");
  ASSERT_TRUE(store->WriteSync(std::move(batch)));

  auto it = store->NewIterator(ColumnFamily::kLog, "b", "e");
  std::string seen;
  for (it->SeekToFirst(); it->Valid(); it->Next())
    seen += it->key();
  it->SeekToLast();
  const std::string last(it->key());
  it->SeekForPrev("z");
  const std::string prev(it->key());

  EXPECT_EQ(seen, "bcd");
  EXPECT_EQ(last, "d");
  EXPECT_EQ(prev, "d");
  EXPECT_TRUE(it->status());
}

TEST(StoreTest, DeleteRangeRemovesExactlyTheRange) {
  TempDir dir;
  auto store = OpenStore(dir.path());
  WriteBatch fill;
  for (char c = 'a'; c <= 'f'; ++c)
    fill.Put(ColumnFamily::kLog, std::string(1, c), "v");
  ASSERT_TRUE(store->WriteSync(std::move(fill)));

  WriteBatch drop;
  drop.DeleteRange(ColumnFamily::kLog, "b", "e");
  ASSERT_TRUE(store->WriteSync(std::move(drop)));

  auto it = store->NewIterator(ColumnFamily::kLog, "", "z");
  std::string seen;
  for (it->SeekToFirst(); it->Valid(); it->Next())
    seen += it->key();
  EXPECT_EQ(seen, "aef");
}

// Every family reads back in key order with the newest change of each key, however the
// writes were ordered and whichever kinds of change (put, delete, range deletion) one batch
// mixes across families, before and after a restart replays them from the log.
TEST(StoreTest, EveryFamilyReadsSortedNewestValuesWhateverTheWriteOrder) {
  TempDir dir;
  std::vector<int> order(200);
  for (int i = 0; i < 200; ++i)
    order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937(7));
  auto key = [](int i) {
    char k[8];
    std::snprintf(k, sizeof k, "k%03d", i);
    return std::string(k);
  };
  // What each family must hold: every key, rewritten where i % 3 == 0, deleted where
  // i % 5 == 0, and [k100, k120) deleted as a range.
  std::map<std::string, std::string> want;
  for (int i = 0; i < 200; ++i) {
    if (i % 5 == 0 || (i >= 100 && i < 120)) continue;
    want[key(i)] = i % 3 == 0 ? "new" + std::to_string(i) : "old" + std::to_string(i);
  }
  auto check = [&](Store& store, const char* when) {
    for (int f = 0; f < kColumnFamilyCount; ++f) {
      const auto cf = static_cast<ColumnFamily>(f);
      SCOPED_TRACE(std::string(ColumnFamilyName(cf)) + ", " + when);
      std::map<std::string, std::string> seen;
      std::string previous;
      auto it = store.NewIterator(cf, "", "z");
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        EXPECT_LT(previous, it->key()) << "keys out of order";
        previous = std::string(it->key());
        seen[previous] = std::string(it->value());
      }
      EXPECT_TRUE(it->status());
      EXPECT_EQ(seen, want);
      it->SeekForPrev("k150");
      ASSERT_TRUE(it->Valid());
      EXPECT_EQ(it->key(), "k149");
      auto rewritten = store.Get(cf, key(3));
      auto deleted = store.Get(cf, key(5));
      auto ranged = store.Get(cf, key(101));
      ASSERT_TRUE(rewritten && deleted && ranged);
      EXPECT_EQ(rewritten->value_or(""), "new3");
      EXPECT_FALSE(deleted->has_value());
      EXPECT_FALSE(ranged->has_value());
    }
  };
  {
    auto store = OpenStore(dir.path());
    // Several batches, each in the shuffled order, in every family.
    for (int pass = 0; pass < 3; ++pass) {
      WriteBatch batch;
      for (int i : order) {
        for (int f = 0; f < kColumnFamilyCount; ++f) {
          const auto cf = static_cast<ColumnFamily>(f);
          if (pass == 0) batch.Put(cf, key(i), "old" + std::to_string(i));
          if (pass == 1 && i % 3 == 0) batch.Put(cf, key(i), "new" + std::to_string(i));
          if (pass == 2 && i % 5 == 0) batch.Delete(cf, key(i));
        }
      }
      if (pass == 2) {
        for (int f = 0; f < kColumnFamilyCount; ++f)
          batch.DeleteRange(static_cast<ColumnFamily>(f), key(100), key(120));
      }
      ASSERT_TRUE(store->WriteSync(std::move(batch)));
    }
    check(*store, "before a restart");
  }
  auto store = OpenStore(dir.path());
  check(*store, "after a restart");
}

}  // namespace
}  // namespace spool::storage
