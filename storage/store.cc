#include "storage/store.h"

#include <algorithm>
#include <array>
#include <deque>
#include <future>
#include <utility>

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/statistics.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include "common/coding.h"
#include "storage/logger.h"
#include "storage/rocks_status.h"

namespace spool::storage {

namespace {
constexpr std::array<std::string_view, kColumnFamilyCount> kCfNames = {
    "log", "time_index", "meta", "offsets", "queue_state", "dedup"};
}  // namespace

std::string_view ColumnFamilyName(ColumnFamily cf) {
  return kCfNames[static_cast<int>(cf)];
}

// ---- WriteBatch -------------------------------------------------------------------------

void WriteBatch::Add(OpType type, ColumnFamily cf, std::string_view a, std::string_view b) {
  rep_.push_back(static_cast<char>(type));
  rep_.push_back(static_cast<char>(cf));
  PutLengthPrefixed(rep_, a);
  if (type != OpType::kDelete) PutLengthPrefixed(rep_, b);
  ++count_;
  bytes_ += a.size() + b.size();
}

void WriteBatch::Put(ColumnFamily cf, std::string_view key, std::string_view value) {
  Add(OpType::kPut, cf, key, value);
}

void WriteBatch::Delete(ColumnFamily cf, std::string_view key) {
  Add(OpType::kDelete, cf, key, {});
}

void WriteBatch::DeleteRange(ColumnFamily cf, std::string_view begin, std::string_view end) {
  Add(OpType::kDeleteRange, cf, begin, end);
  ++range_deletions_;
}

void WriteBatch::Append(WriteBatch&& other) {
  rep_.append(other.rep_);
  count_ += other.count_;
  bytes_ += other.bytes_;
  range_deletions_ += other.range_deletions_;
  other.rep_.clear();
  other.count_ = 0;
  other.bytes_ = 0;
  other.range_deletions_ = 0;
}

// ---- Db ---------------------------------------------------------------------------------

struct Store::Db {
  std::unique_ptr<rocksdb::DB> db;
  std::array<rocksdb::ColumnFamilyHandle*, kColumnFamilyCount> cfs{};
  std::shared_ptr<rocksdb::Statistics> statistics;

  rocksdb::ColumnFamilyHandle* cf(ColumnFamily c) const { return cfs[static_cast<int>(c)]; }

  Status Close() {
    if (!db) return Ok();
    Status result;
    for (auto*& handle : cfs) {
      if (handle == nullptr) continue;
      if (Status s = FromRocks(db->DestroyColumnFamilyHandle(handle)); !s && result) result = s;
      handle = nullptr;
    }
    if (Status s = FromRocks(db->Close()); !s && result) result = s;
    db.reset();
    return result;
  }
};

// ---- Iterator ---------------------------------------------------------------------------

struct Iterator::Impl {
  // The bounds must outlive the RocksDB iterator that points at them.
  std::string lower;
  std::string upper;
  rocksdb::Slice lower_slice;
  rocksdb::Slice upper_slice;
  std::unique_ptr<rocksdb::Iterator> it;
};

Iterator::Iterator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Iterator::~Iterator() = default;
void Iterator::SeekToFirst() {
  impl_->it->SeekToFirst();
}
void Iterator::SeekToLast() {
  impl_->it->SeekToLast();
}
void Iterator::Seek(std::string_view target) {
  impl_->it->Seek(ToSlice(target));
}
void Iterator::SeekForPrev(std::string_view target) {
  impl_->it->SeekForPrev(ToSlice(target));
}
void Iterator::Next() {
  impl_->it->Next();
}
void Iterator::Prev() {
  impl_->it->Prev();
}
bool Iterator::Valid() const {
  return impl_->it->Valid();
}
std::string_view Iterator::key() const {
  return ToStringView(impl_->it->key());
}
std::string_view Iterator::value() const {
  return ToStringView(impl_->it->value());
}
Status Iterator::status() const {
  return FromRocks(impl_->it->status());
}

// Chosen by measurement: the batch-100 queue cycle in bench/README.md went from a median of
// about 59k to about 70k msgs/s with 4 MiB instead of RocksDB's default 64 MiB; 1 MiB and
// 16 MiB gained less.
constexpr std::size_t kQueueStateMemtableBytes = 4u << 20;
constexpr std::size_t kLogBlockBytes = 16u << 10;  // RocksDB's default is 4 KiB

// ---- Store ------------------------------------------------------------------------------

Result<std::unique_ptr<Store>> Store::Open(const std::string& dir, const StoreOptions& options) {
  rocksdb::Options db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  db_options.bytes_per_sync = 1u << 20;
  db_options.max_total_wal_size = options.max_wal_bytes;
  db_options.statistics = rocksdb::CreateDBStatistics();
  db_options.statistics->set_stats_level(rocksdb::StatsLevel::kExceptHistogramOrTimers);

  rocksdb::BlockBasedTableOptions table_options;
  table_options.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  rocksdb::ColumnFamilyOptions cf_options;
  cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table_options));

  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName, cf_options);
  for (std::string_view name : kCfNames) {
    rocksdb::ColumnFamilyOptions family = cf_options;
    // Queue states are written twice per message (the lease, then its deletion) in an order
    // that defeats the skip list's sequential-insert shortcut, so every insert searches the
    // whole memtable. A small memtable keeps that search short and cache-resident; the
    // states live briefly, so the extra flushes carry little.
    if (name == ColumnFamilyName(ColumnFamily::kQueueState)) {
      family.write_buffer_size = kQueueStateMemtableBytes;
    }
    // The log is read in offset order, many records per iterator: fewer, larger blocks mean
    // fewer block-cache lookups, reads and checksums per record. Chosen by measurement
    // (bench/README.md, Queues, "Pooled tree nodes, 16 KiB log blocks"): 16 KiB did as well
    // as 64 KiB, which would cost a point read of one record more.
    if (name == ColumnFamilyName(ColumnFamily::kLog)) {
      rocksdb::BlockBasedTableOptions log_table = table_options;
      log_table.block_size = kLogBlockBytes;
      family.table_factory.reset(rocksdb::NewBlockBasedTableFactory(log_table));
    }
    descriptors.emplace_back(std::string(name), family);
  }

  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, dir, descriptors, &handles, &raw);
  if (!s.ok()) {
    if (s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
      return FailedPrecondition("data directory " + dir + " is in use by another process (" +
                                s.ToString() + ")");
    }
    return FromRocks(s, "opening " + dir).error();
  }
  auto db = std::make_unique<Db>();
  db->db.reset(raw);
  db->statistics = db_options.statistics;
  // handles[0] is the default family, which Spool does not use.
  if (Status ds = FromRocks(raw->DestroyColumnFamilyHandle(handles[0])); !ds) return ds.error();
  for (int i = 0; i < kColumnFamilyCount; ++i)
    db->cfs[i] = handles[i + 1];

  StoreLog().info("opened {} (fsync: {})", dir,
                  options.fsync == FsyncMode::kAlways
                      ? "always"
                      : "interval " + std::to_string(options.fsync_interval.count()) + "ms");
  return std::unique_ptr<Store>(new Store(dir, options, std::move(db)));
}

Store::Store(std::string dir, StoreOptions options, std::unique_ptr<Db> db)
    : dir_(std::move(dir)), options_(options), db_(std::move(db)) {
  writer_ = std::thread([this] { WriteLoop(); });
  syncer_ = std::thread([this] { SyncLoop(); });
}

Store::~Store() {
  if (Status s = Close(); !s) StoreLog().error("closing {}: {}", dir_, s.error().ToString());
}

Status Store::Close() {
  {
    std::lock_guard lock(mu_);
    if (closed_) return close_status_;
    closing_ = true;
  }
  cv_.notify_all();
  // The writer drains every pending batch, then tells the syncer, which completes them.
  if (writer_.joinable()) writer_.join();
  if (syncer_.joinable()) syncer_.join();
  Status result = db_->Close();
  std::lock_guard lock(mu_);
  closed_ = true;
  close_status_ = result;
  return result;
}

void Store::Write(WriteBatch batch, WriteCallback done) {
  {
    std::lock_guard lock(mu_);
    if (!closing_) {
      pending_.push_back({std::move(batch), std::move(done)});
      if (pending_.size() == 1) cv_.notify_one();
      return;
    }
  }
  done(Unavailable("store " + dir_ + " is closing"));
}

Status Store::WriteSync(WriteBatch batch) {
  std::promise<Status> promise;
  auto future = promise.get_future();
  Write(std::move(batch), [&promise](Status s) { promise.set_value(std::move(s)); });
  return future.get();
}

Status Store::Sync() {
  if (Status s = Failure(); !s || options_.fsync == FsyncMode::kAlways) return s;
  Status synced = SyncWal();
  if (!synced) Fail(synced.error());
  return synced;
}

Status Store::Failure() {
  std::lock_guard lock(sync_mu_);
  if (failure_) return *failure_;
  return Ok();
}

void Store::Fail(const Error& error) {
  std::lock_guard lock(sync_mu_);
  if (failure_) return;
  StoreLog().error("{}; refusing every write from now on (restart to recover from the WAL)",
                   error.ToString());
  failure_ = Unavailable("the store stopped taking writes after a failure: " + error.message);
}

Status Store::SyncWal() {
  wal_syncs_.fetch_add(1, std::memory_order_relaxed);
  return FromRocks(db_->db->SyncWAL(), "syncing the WAL");
}

Status Store::WriteGroup(const std::vector<Pending>& group) {
  std::size_t bytes = 0;
  for (const Pending& p : group)
    bytes += p.batch.ByteSize() + 24 * p.batch.size();
  rocksdb::WriteBatch wb(bytes);
  for (const Pending& p : group) {
    std::string_view in = p.batch.rep_;
    while (!in.empty()) {
      // Written by WriteBatch::Add in this process: a malformed buffer is a bug.
      if (in.size() < 2) return Internal("write batch: truncated change");
      const auto type = static_cast<WriteBatch::OpType>(in[0]);
      const auto cf = static_cast<ColumnFamily>(in[1]);
      in.remove_prefix(2);
      std::string_view a, b;
      if (!GetLengthPrefixed(in, &a) ||
          (type != WriteBatch::OpType::kDelete && !GetLengthPrefixed(in, &b))) {
        return Internal("write batch: truncated change");
      }
      rocksdb::Status s;
      switch (type) {
        case WriteBatch::OpType::kPut:
          s = wb.Put(db_->cf(cf), ToSlice(a), ToSlice(b));
          break;
        case WriteBatch::OpType::kDelete:
          s = wb.Delete(db_->cf(cf), ToSlice(a));
          break;
        case WriteBatch::OpType::kDeleteRange:
          s = wb.DeleteRange(db_->cf(cf), ToSlice(a), ToSlice(b));
          break;
      }
      if (!s.ok()) return FromRocks(s, "building a write batch");
    }
  }
  if (wb.Count() == 0) return Ok();  // only barriers (see Write)
  write_groups_.fetch_add(1, std::memory_order_relaxed);
  return FromRocks(db_->db->Write(rocksdb::WriteOptions(), &wb), "writing to the log");
}

void Store::WriteLoop() {
  const bool sync_each = options_.fsync == FsyncMode::kAlways;
  std::vector<Pending> group;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return closing_ || !pending_.empty(); });
      if (pending_.empty() && closing_) break;
      group.swap(pending_);
    }
    Status status = Failure();
    if (status && options_.write_fault) status = options_.write_fault();
    if (status) status = WriteGroup(group);
    if (!status) Fail(status.error());
    batches_written_.fetch_add(group.size(), std::memory_order_relaxed);
    if (sync_each) {
      // Hand the group to the syncer and go on writing the next one while it fsyncs.
      Written written{
          {}, std::move(status), std::all_of(group.begin(), group.end(), [](const Pending& p) {
            return p.batch.empty();
          })};
      written.callbacks.reserve(group.size());
      for (Pending& p : group)
        written.callbacks.push_back(std::move(p.done));
      {
        std::lock_guard lock(sync_mu_);
        written_.push_back(std::move(written));
      }
      sync_cv_.notify_one();
    } else {
      unsynced_.store(true, std::memory_order_release);
      for (Pending& p : group) {
        std::exchange(p.done, nullptr)(status);
      }
    }
    group.clear();
  }
  {
    std::lock_guard lock(sync_mu_);
    writer_done_ = true;
  }
  sync_cv_.notify_one();
}

void Store::SyncLoop() {
  const bool sync_each = options_.fsync == FsyncMode::kAlways;
  std::deque<Written> taken;
  for (;;) {
    bool done = false;
    {
      std::unique_lock lock(sync_mu_);
      if (sync_each) {
        sync_cv_.wait(lock, [&] { return writer_done_ || !written_.empty(); });
      } else {
        sync_cv_.wait_for(lock, options_.fsync_interval, [&] { return writer_done_; });
      }
      taken.swap(written_);
      done = writer_done_;
    }
    if (sync_each) {
      if (!taken.empty()) {
        // Everything taken was written before this sync started, so one fsync covers it.
        // After a failure nothing counts as synced again: Linux reports a failed fsync
        // once, so a later "successful" one proves nothing about the earlier data. Empty
        // writes (barriers that only wait for the writes before them) need no fsync of
        // their own: everything written before them was taken, and synced, before them.
        Status synced = Failure();
        const bool wrote =
            std::any_of(taken.begin(), taken.end(), [](const Written& w) { return !w.empty; });
        if (synced && wrote) synced = SyncWal();
        if (!synced) Fail(synced.error());
        for (Written& w : taken) {
          const Status& status = w.status ? synced : w.status;
          // Each callback is destroyed right after it ran, so that what it captured does not
          // outlive the moment its owner was told the write is done.
          for (WriteCallback& cb : w.callbacks) {
            std::exchange(cb, nullptr)(status);
          }
        }
        taken.clear();
      }
    } else if (unsynced_.exchange(false, std::memory_order_acq_rel)) {
      if (Status s = SyncWal(); !s) Fail(s.error());
    }
    if (done && taken.empty()) {
      std::lock_guard lock(sync_mu_);
      if (written_.empty()) return;
    }
  }
}

Result<std::optional<std::string>> Store::Get(ColumnFamily cf, std::string_view key) const {
  std::string value;
  rocksdb::Status s = db_->db->Get(rocksdb::ReadOptions(), db_->cf(cf), ToSlice(key), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s, "reading").error();
  return std::optional<std::string>(std::move(value));
}

std::unique_ptr<Iterator> Store::NewIterator(ColumnFamily cf, std::string lower,
                                             std::string upper) const {
  auto impl = std::make_unique<Iterator::Impl>();
  impl->lower = std::move(lower);
  impl->upper = std::move(upper);
  impl->lower_slice = rocksdb::Slice(impl->lower);
  impl->upper_slice = rocksdb::Slice(impl->upper);
  rocksdb::ReadOptions read_options;
  read_options.iterate_lower_bound = &impl->lower_slice;
  read_options.iterate_upper_bound = &impl->upper_slice;
  impl->it.reset(db_->db->NewIterator(read_options, db_->cf(cf)));
  return std::unique_ptr<Iterator>(new Iterator(std::move(impl)));
}

StoreStats Store::Stats() const {
  StoreStats stats;
  stats.write_groups = write_groups_.load(std::memory_order_relaxed);
  stats.batches_written = batches_written_.load(std::memory_order_relaxed);
  stats.wal_syncs = wal_syncs_.load(std::memory_order_relaxed);
  std::uint64_t value = 0;
  for (auto* handle : db_->cfs) {
    if (handle != nullptr &&
        db_->db->GetIntProperty(handle, "rocksdb.estimate-pending-compaction-bytes", &value)) {
      stats.pending_compaction_bytes += value;
    }
  }
  if (db_->db->GetIntProperty("rocksdb.is-write-stopped", &value)) stats.write_stopped = value;
  stats.write_stall_micros = db_->statistics->getTickerCount(rocksdb::STALL_MICROS);
  return stats;
}

}  // namespace spool::storage
