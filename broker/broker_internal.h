#pragma once

// Broker internals shared by its source files: broker.cc (topics and records),
// broker_groups.cc and broker_queues.cc. Not for use outside broker/.

#include <algorithm>
#include <atomic>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "broker/broker.h"
#include "broker/queue_partition.h"
#include "broker/topic.h"
#include "common/coding.h"
#include "common/logging.h"
#include "storage/keys.h"

namespace spool::broker {
namespace internal {

inline spdlog::logger& Log() {
  static spdlog::logger& logger = ModuleLogger("broker");
  return logger;
}

inline Error UnknownTopic(const std::string& name) {
  // A name no topic could have is a bad argument, not a missing topic.
  if (Status valid = ValidateTopicName(name); !valid) return valid.error();
  return NotFound("topic '" + name + "' does not exist");
}

// Sequence numbers of a topic's grouped records (FIFO queues report them): each such record
// appended to any partition of the topic gets a higher number than every one before it.
// Numbers come from blocks; a block's end is stored in `meta` (storage::SequenceKey) in the
// same batch as the first records numbered past the previous end. Those batches are queued
// to the store under the lock, in the order their numbers were handed out, and the store
// writes in queue order, so a durable number is always below a durable block end. A restart
// resumes at the stored end: numbers skip, and never repeat or go back.
class TopicSequence {
 public:
  static constexpr std::uint64_t kBlock = 1 << 16;

  TopicSequence(std::uint32_t topic, std::uint64_t next)
      : topic_(topic), next_(next), stored_end_(next) {}

  // Held from Assign until the batch is queued to the store.
  std::unique_lock<std::mutex> Lock() { return std::unique_lock(mu_); }

  // With the lock held: numbers the records that have a message group id, adding a new block
  // end to `batch` when they pass the stored one.
  void Assign(std::span<storage::Record> records, storage::WriteBatch& batch) {
    pending_end_ = 0;  // an end from an earlier Assign whose batch was never queued is void
    for (storage::Record& r : records) {
      if (r.message_group_id) r.sequence = next_++;
    }
    if (next_ > stored_end_) {
      pending_end_ = next_ + kBlock;
      std::string value;
      PutFixed64BE(value, pending_end_);
      batch.Put(storage::ColumnFamily::kMeta, storage::SequenceKey(topic_), std::move(value));
    }
  }

  // With the lock held: the batch of the last Assign is queued. A batch that never is (its
  // append failed) leaves the stored end as it was, so the next one writes a new end.
  void Queued() { stored_end_ = std::max(stored_end_, pending_end_); }

  // Where a topic's numbering resumes: past the stored block end, and past every offset (a
  // FIFO queue's sequence number before numbers were stored).
  static Result<std::uint64_t> Resume(const storage::Store& store, std::uint32_t topic,
                                      std::uint64_t end_offsets) {
    auto stored = store.Get(storage::ColumnFamily::kMeta, storage::SequenceKey(topic));
    if (!stored) return stored.error();
    std::uint64_t end = 0;
    if (stored->has_value()) {
      std::string_view in = **stored;
      if (!GetFixed64BE(in, &end) || !in.empty()) {
        return DataLoss("corrupt sequence block of topic " + std::to_string(topic));
      }
    }
    return std::max({end, end_offsets, std::uint64_t{1}});
  }

 private:
  const std::uint32_t topic_;
  std::mutex mu_;
  std::uint64_t next_;             // guarded by mu_
  std::uint64_t stored_end_;       // guarded by mu_: the end queued to the store
  std::uint64_t pending_end_ = 0;  // guarded by mu_
};

inline Error UnknownPartition(const std::string& topic, std::uint32_t partition,
                              std::size_t count) {
  return NotFound("topic '" + topic + "' has no partition " + std::to_string(partition) +
                  " (it has " + std::to_string(count) + ")");
}

inline Error ShuttingDown() {
  return Unavailable("the broker is shutting down");
}

// Completes one callback after `count` parts have finished, with the first error if any.
template <class T>
class Gather {
 public:
  Gather(std::size_t count, T value, Callback<T> done, std::function<void()> after)
      : remaining_(count),
        value_(std::move(value)),
        done_(std::move(done)),
        after_(std::move(after)) {}

  // For parts that write disjoint elements; the last Finish() publishes them.
  T& value() { return value_; }
  // For parts that combine into one value.
  void Update(const std::function<void(T&)>& fn) {
    std::lock_guard lock(mu_);
    fn(value_);
  }

  void Fail(Error error) {
    {
      std::lock_guard lock(mu_);
      if (!error_) error_ = std::move(error);
    }
    Finish();
  }

  void Finish() {
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    std::optional<Error> error;
    {
      std::lock_guard lock(mu_);  // also orders every Update() before the read below
      error = std::move(error_);
    }
    if (error) {
      done_(std::move(*error));
    } else {
      done_(std::move(value_));
    }
    if (after_) after_();
  }

 private:
  std::atomic<std::size_t> remaining_;
  T value_;
  Callback<T> done_;
  std::function<void()> after_;
  std::mutex mu_;
  std::optional<Error> error_;
};

// Reads an id counter from `meta` ('C' | name): the next id to hand out, or `fallback`.
inline Result<std::uint32_t> LoadCounter(const storage::Store& store, const std::string& name,
                                         std::uint32_t fallback) {
  auto counter =
      store.Get(storage::ColumnFamily::kMeta, storage::MetaKey(storage::MetaTag::kCounter, name));
  if (!counter) return counter.error();
  if (!*counter) return fallback;
  std::string_view in(**counter);
  std::uint64_t next = 0;
  if (!GetFixed64BE(in, &next)) return DataLoss("corrupt id counter '" + name + "'");
  return static_cast<std::uint32_t>(next);
}

// Every `meta` entry of one tag, in key order.
inline std::unique_ptr<storage::Iterator> MetaEntries(const storage::Store& store,
                                                      storage::MetaTag tag) {
  const std::string prefix = storage::MetaKey(tag, "");
  std::string end = prefix;
  end.back() = static_cast<char>(end.back() + 1);
  return store.NewIterator(storage::ColumnFamily::kMeta, prefix, end);
}

}  // namespace internal

// A long-poll Fetch parked at the end of a partition. Strand only.
struct Broker::FetchWaiter {
  FetchWaiter(const Strand& strand, std::uint64_t o, std::size_t records, std::size_t bytes,
              Callback<std::vector<storage::StoredRecord>> d)
      : offset(o), max_records(records), max_bytes(bytes), done(std::move(d)), timer(strand) {}

  std::uint64_t offset;
  std::size_t max_records;
  std::size_t max_bytes;
  Callback<std::vector<storage::StoredRecord>> done;  // also leaves the in-flight count
  boost::asio::steady_timer timer;
};

// Long-poll receives parked on the queues of one topic, woken whenever something there may
// have become receivable (an append, a release, a delete that unlocks a FIFO group).
struct ReceiveWaitList {
  struct Entry {
    std::weak_ptr<void> alive;  // expired once the receive went on without this entry
    std::function<void()> wake;
  };

  void Wake() {
    std::list<Entry> taken;
    {
      std::lock_guard lock(mu);
      ++wakes;
      taken.swap(waiters);
    }
    for (auto& entry : taken)
      entry.wake();
  }
  // Parks `entry` unless a wake came after `seen` (then the caller tries again at once).
  // Entries of receives that went on (their wait ended) are dropped here.
  bool Park(std::uint64_t seen, Entry entry) {
    std::lock_guard lock(mu);
    if (wakes != seen) return false;
    waiters.remove_if([](const Entry& e) { return e.alive.expired(); });
    waiters.push_back(std::move(entry));
    return true;
  }
  std::uint64_t Seen() {
    std::lock_guard lock(mu);
    return wakes;
  }

  std::mutex mu;
  std::uint64_t wakes = 0;   // guarded by mu
  std::list<Entry> waiters;  // guarded by mu
};

struct Broker::PartitionSlot {
  PartitionSlot(Strand s, storage::PartitionLog l, std::shared_ptr<ReceiveWaitList> r,
                std::shared_ptr<DedupTable> d, std::shared_ptr<internal::TopicSequence> q)
      : strand(std::move(s)),
        log(std::move(l)),
        delays(log.end_offset()),
        receivers(std::move(r)),
        dedup(std::move(d)),
        sequence(std::move(q)) {
    Publish();
  }

  // Copies the log's bounds where DescribeTopic can read them without a strand hop.
  void Publish() {
    start.store(log.start_offset(), std::memory_order_relaxed);
    start_position.store(log.start_position(), std::memory_order_relaxed);
    AdvanceEnd({log.end_offset(), log.start_position() + log.size_bytes()});
  }

  // Counts what a fetch returns, for metrics.
  Result<std::vector<storage::StoredRecord>> CountFetched(
      Result<std::vector<storage::StoredRecord>> read) {
    if (read) {
      std::uint64_t bytes = 0;
      for (const auto& r : *read) {
        bytes += r.record.value.size() + (r.record.key ? r.record.key->size() : 0);
      }
      fetched_records.Add(read->size());
      fetched_bytes.Add(bytes);
    }
    return read;
  }

  // Raises the published end before the producer is answered (from the syncer thread), so
  // that a DescribeTopic sent after the answer shows the records; the strand catches up.
  void AdvanceEnd(const storage::LogPosition& to) {
    AtomicMax(end, to.offset);
    AtomicMax(end_position, to.position);
  }

  static void AtomicMax(std::atomic<std::uint64_t>& a, std::uint64_t v) {
    std::uint64_t seen = a.load(std::memory_order_relaxed);
    while (seen < v && !a.compare_exchange_weak(seen, v, std::memory_order_relaxed)) {
    }
  }

  // Answers parked fetches: those with data now, or all of them (shutdown, deletion).
  void ServeWaiters(bool all) {
    for (auto it = waiters.begin(); it != waiters.end();) {
      if (!all && !deleted && (*it)->offset >= log.end_offset()) {
        ++it;
        continue;
      }
      std::shared_ptr<FetchWaiter> waiter = std::move(*it);
      it = waiters.erase(it);
      waiter->timer.cancel();
      if (deleted) {
        waiter->done(NotFound("the topic was deleted"));
      } else if (waiter->offset < log.end_offset()) {
        waiter->done(
            CountFetched(log.Read(waiter->offset, waiter->max_records, waiter->max_bytes)));
      } else {
        waiter->done(std::vector<storage::StoredRecord>());
      }
    }
  }

  // The state of queue subscription `subscription` here, loaded on first use.
  Result<QueuePartition*> Queue(const storage::Store& store, std::uint32_t subscription) {
    auto it = queues.find(subscription);
    if (it != queues.end()) return it->second.get();
    if (deleted_queues.count(subscription)) return NotFound("the queue was deleted");
    auto loaded = QueuePartition::Load(store, subscription, log, &delays);
    if (!loaded) return loaded.error();
    auto state = std::make_unique<QueuePartition>(std::move(*loaded));
    return queues.emplace(subscription, std::move(state)).first->second.get();
  }

  Strand strand;
  storage::PartitionLog log;                          // strand only
  AppendedDelays delays;                              // strand only
  std::shared_ptr<ReceiveWaitList> receivers;         // the topic's
  std::shared_ptr<DedupTable> dedup;                  // the topic's
  std::shared_ptr<internal::TopicSequence> sequence;  // the topic's
  // Queue subscriptions reading this partition, by id; they point into `log`.
  std::map<std::uint32_t, std::unique_ptr<QueuePartition>> queues;  // strand only
  std::set<std::uint32_t> deleted_queues;                           // strand only
  bool deleted = false;                                             // strand only
  std::list<std::shared_ptr<FetchWaiter>> waiters;                  // strand only
  std::atomic<std::uint64_t> start{0};
  std::atomic<std::uint64_t> end{0};
  std::atomic<std::uint64_t> start_position{0};
  std::atomic<std::uint64_t> end_position{0};
  Counter published_records;
  Counter published_bytes;
  Counter fetched_records;
  Counter fetched_bytes;
};

struct Broker::Topic {
  TopicMetadata metadata;
  std::vector<std::shared_ptr<PartitionSlot>> partitions;
  // Shared by every snapshot of the topic, for round-robin placement of unkeyed batches.
  std::shared_ptr<std::atomic<std::uint32_t>> next_sticky;
  // Shared likewise: receives parked on the topic's queues, and deduplication ids.
  std::shared_ptr<ReceiveWaitList> receivers;
  std::shared_ptr<DedupTable> dedup;
  std::shared_ptr<internal::TopicSequence> sequence;
};

struct Broker::ProduceOp : internal::Gather<std::vector<ProducedRecord>> {
  using Gather::Gather;
};

struct Broker::QueueCounters {
  std::atomic<std::uint64_t> sent{0};
  std::atomic<std::uint64_t> received{0};
  std::atomic<std::uint64_t> redelivered{0};
  std::atomic<std::uint64_t> deleted{0};
  std::atomic<std::uint64_t> dead_lettered{0};
  std::atomic<std::uint64_t> redriven{0};

  // The queue's in-flight limit holds across partitions: each partition's count as last
  // seen by its strand (after a receive, delete or visibility change there).
  std::size_t OthersInFlight(std::uint32_t partition) {
    std::lock_guard lock(in_flight_mu);
    std::size_t sum = 0;
    for (const auto& [p, n] : in_flight)
      if (p != partition) sum += n;
    return sum;
  }
  void SetInFlight(std::uint32_t partition, std::size_t n) {
    std::lock_guard lock(in_flight_mu);
    in_flight[partition] = n;
  }
  std::mutex in_flight_mu;
  std::map<std::uint32_t, std::size_t> in_flight;  // guarded by in_flight_mu

  QueueActivity Snapshot() const {
    return {
        sent.load(std::memory_order_relaxed),          received.load(std::memory_order_relaxed),
        redelivered.load(std::memory_order_relaxed),   deleted.load(std::memory_order_relaxed),
        dead_lettered.load(std::memory_order_relaxed), redriven.load(std::memory_order_relaxed)};
  }
};

// A redrive task and what runs it.
struct Broker::RedriveRun {
  RedriveRun(Strand strand, RedriveTask t) : timer(std::move(strand)), task(std::move(t)) {}
  boost::asio::steady_timer timer;  // admin strand
  RedriveTask task;                 // guarded by redrive_mu_
  bool stepping = false;            // admin strand
  std::size_t next_partition = 0;   // admin strand
};

// A message past its queue's max receive count, on its way to the dead-letter queue.
struct Broker::DeadLetter {
  std::uint32_t partition = 0;  // in the source topic
  ReceivedMessage message;
  storage::WriteBatch source_delete;  // its deletion from the source, prepared on its strand
};

}  // namespace spool::broker
