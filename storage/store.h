#pragma once

// The one RocksDB database behind Spool and its durability pipeline.
//
// Every change goes through Write(). A writer thread takes all batches that are pending,
// writes them to RocksDB as one WriteBatch and hands the group to a syncer thread; in
// FsyncMode::kAlways the syncer fsyncs the WAL once for every group written before that
// fsync started and only then completes their callbacks, in submission order (group commit).
// The writer goes on writing the next group while the syncer waits for the disk, so the
// fsync of one group overlaps the work of the next. In FsyncMode::kInterval a batch is
// acknowledged once it is in the WAL (the OS page cache) and the syncer fsyncs the WAL every
// `fsync_interval`: a power loss can lose that much.
//
// Visibility: RocksDB serves a write to Get() and iterators as soon as it is written, which
// can be before its fsync. Owners of state therefore publish a change only from its callback
// (PartitionLog hides records until MarkDurable), so nothing a crash could undo is served.
// The one exception is opt-in: with BrokerOptions::defer_receive_fsync a queue receive
// answers before its leases are durable (see broker::QueuePartition).
//
// Failure: once a write or an fsync fails, every later write fails too (Unavailable), because
// what reached the disk is no longer known; a restart recovers from the WAL.
//
// Thread-safety: every method but Close() may be called from any thread. Write callbacks run
// on the syncer thread (the writer thread in interval mode); they must be short and must not
// call WriteSync().

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/error.h"

namespace spool::storage {

enum class ColumnFamily : int { kLog = 0, kTimeIndex, kMeta, kOffsets, kQueueState, kDedup };
inline constexpr int kColumnFamilyCount = 6;
std::string_view ColumnFamilyName(ColumnFamily cf);

enum class FsyncMode { kAlways, kInterval };

struct StoreOptions {
  FsyncMode fsync = FsyncMode::kAlways;
  // Only for FsyncMode::kInterval: the longest a written change waits for its fsync.
  std::chrono::milliseconds fsync_interval{50};
  // RocksDB block cache shared by all column families.
  std::size_t block_cache_bytes = 64u << 20;
  // Past this many bytes of write-ahead log, the column families that keep its oldest file
  // alive are flushed so that it can go. RocksDB's own bound is four times all memtables
  // (~3.8 GB here): the quiet families (meta, offsets, dedup) kept gigabytes of log alive,
  // a restart replayed all of it, and deleting it at once stalled writes for a second.
  std::uint64_t max_wal_bytes = 256u << 20;
  // For tests: called before each group is written; an error fails that group as a failed
  // RocksDB write would (and so every later write). Unset outside tests.
  std::function<Status()> write_fault;
};

// An ordered list of changes applied atomically. Copies keys and values into one buffer:
// a batch is built on a partition strand and freed on the store's threads, and one
// allocation instead of two per change keeps that hand-over cheap.
class WriteBatch {
 public:
  void Put(ColumnFamily cf, std::string_view key, std::string_view value);
  void Delete(ColumnFamily cf, std::string_view key);
  // Removes [begin, end).
  void DeleteRange(ColumnFamily cf, std::string_view begin, std::string_view end);
  // Adds `other`'s changes after this batch's own.
  void Append(WriteBatch&& other);

  bool empty() const { return count_ == 0; }
  std::size_t size() const { return count_; }
  // Bytes of keys and values.
  std::size_t ByteSize() const { return bytes_; }
  std::size_t RangeDeletions() const { return range_deletions_; }

 private:
  friend class Store;
  enum class OpType : std::uint8_t { kPut, kDelete, kDeleteRange };
  void Add(OpType type, ColumnFamily cf, std::string_view a, std::string_view b);

  // Per change: type, column family, length-prefixed key (or range begin), and for a put or
  // range deletion the length-prefixed value (or range end).
  std::string rep_;
  std::size_t count_ = 0;
  std::size_t bytes_ = 0;
  std::size_t range_deletions_ = 0;
};

// A forward/backward cursor over one column family, always bounded to [lower, upper).
// Not thread-safe; use from one thread at a time. Must not outlive its Store.
class Iterator {
 public:
  Iterator(const Iterator&) = delete;
  Iterator& operator=(const Iterator&) = delete;
  ~Iterator();

  void SeekToFirst();
  void SeekToLast();
  void Seek(std::string_view target);         // first key >= target
  void SeekForPrev(std::string_view target);  // last key <= target
  void Next();
  void Prev();
  bool Valid() const;
  std::string_view key() const;
  std::string_view value() const;
  // An error met while iterating (an invalid iterator with an OK status is just the end).
  Status status() const;

 private:
  friend class Store;
  struct Impl;
  explicit Iterator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct StoreStats {
  std::uint64_t write_groups = 0;     // RocksDB writes issued by the writer thread
  std::uint64_t batches_written = 0;  // WriteBatches written (>= write_groups), before fsync
  std::uint64_t wal_syncs = 0;        // fsyncs of the WAL
  std::uint64_t pending_compaction_bytes = 0;
  std::uint64_t write_stall_micros = 0;
  bool write_stopped = false;
};

class Store {
 public:
  using WriteCallback = std::function<void(Status)>;

  // Opens (creating if missing) the database in `dir` with every column family.
  // Fails if another process holds the directory.
  static Result<std::unique_ptr<Store>> Open(const std::string& dir, const StoreOptions& options);

  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  // Completes every pending write, syncs the WAL and closes the database.
  ~Store();

  // Queues `batch`; `done` runs once the batch is durable per the fsync mode (or failed).
  // After Close() began, `done` gets Unavailable at once. An empty batch is a barrier: its
  // `done` runs once every write queued before it is durable, and it costs no fsync of its
  // own.
  void Write(WriteBatch batch, WriteCallback done);
  // Write() and wait. Never call it from a write callback.
  Status WriteSync(WriteBatch batch);
  // Makes every completed write durable now, in either mode: for a write that must survive
  // a power loss even under FsyncMode::kInterval (call it after WriteSync()). Under
  // kAlways a completed write is already fsynced, so this only reports a latched failure.
  Status Sync();

  Result<std::optional<std::string>> Get(ColumnFamily cf, std::string_view key) const;
  std::unique_ptr<Iterator> NewIterator(ColumnFamily cf, std::string lower,
                                        std::string upper) const;

  // Stops accepting writes, completes pending ones and closes the database. Idempotent;
  // call it from one thread (the owner's), as the destructor does.
  Status Close();

  StoreStats Stats() const;

 private:
  struct Db;
  struct Pending {
    WriteBatch batch;
    WriteCallback done;
  };
  // A group the writer has written, waiting for the fsync that makes it durable.
  struct Written {
    std::vector<WriteCallback> callbacks;
    Status status;       // of the write itself
    bool empty = false;  // no batch of the group changed anything
  };

  Store(std::string dir, StoreOptions options, std::unique_ptr<Db> db);
  void WriteLoop();
  void SyncLoop();
  Status WriteGroup(const std::vector<Pending>& group);
  Status SyncWal();
  // The latched failure, if a write or an fsync ever failed.
  Status Failure();
  void Fail(const Error& error);

  const std::string dir_;
  const StoreOptions options_;
  std::unique_ptr<Db> db_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Pending> pending_;  // guarded by mu_
  bool closing_ = false;          // guarded by mu_
  bool closed_ = false;           // guarded by mu_
  Status close_status_;           // guarded by mu_
  std::thread writer_;

  std::mutex sync_mu_;
  std::condition_variable sync_cv_;
  std::deque<Written> written_;   // guarded by sync_mu_
  bool writer_done_ = false;      // guarded by sync_mu_
  std::optional<Error> failure_;  // guarded by sync_mu_
  std::atomic<bool> unsynced_{false};
  std::thread syncer_;

  std::atomic<std::uint64_t> write_groups_{0};
  std::atomic<std::uint64_t> batches_written_{0};
  std::atomic<std::uint64_t> wal_syncs_{0};
};

}  // namespace spool::storage
