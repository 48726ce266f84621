#include "broker/broker.h"

#include <algorithm>
#include <list>
#include <map>
#include <set>
#include <thread>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>

#include "broker/broker_internal.h"
#include "broker/partitioner.h"
#include "common/coding.h"
#include "common/logging.h"
#include "storage/keys.h"

namespace spool::broker {
using namespace internal;  // NOLINT(google-build-using-namespace)
namespace {

using storage::ColumnFamily;
using storage::MetaKey;
using storage::MetaTag;

const std::string kNextTopicIdCounter = "next_topic_id";
// How many times the broker was opened on this store.
const std::string kRunsCounter = "broker_runs";

}  // namespace

// The broker's topics as the group coordinator sees them.
class Broker::Directory final : public TopicDirectory {
 public:
  explicit Directory(const Broker& broker) : broker_(broker) {}
  std::optional<Topic> FindTopic(const std::string& name) const override {
    auto topic = broker_.FindTopic(name);
    if (!topic) return std::nullopt;
    return Topic{topic->metadata.id, static_cast<std::uint32_t>(topic->partitions.size())};
  }
  std::optional<std::string> TopicName(std::uint32_t id) const override {
    std::shared_lock lock(broker_.topics_mu_);
    for (const auto& [name, topic] : broker_.topics_) {
      if (topic->metadata.id == id) return name;
    }
    return std::nullopt;
  }
  std::optional<Bounds> PartitionBounds(const std::string& name,
                                        std::uint32_t partition) const override {
    auto topic = broker_.FindTopic(name);
    if (!topic || partition >= topic->partitions.size()) return std::nullopt;
    const PartitionSlot& slot = *topic->partitions[partition];
    return Bounds{slot.start.load(std::memory_order_relaxed),
                  slot.end.load(std::memory_order_relaxed)};
  }

 private:
  const Broker& broker_;
};

Result<std::unique_ptr<Broker>> Broker::Open(storage::Store& store, const Clock& clock,
                                             BrokerOptions options) {
  std::unique_ptr<Broker> broker(new Broker(store, clock, options));
  if (Status s = broker->Load(); !s) {
    broker->Shutdown();
    return s.error();
  }
  broker->ScheduleRetention();
  broker->ScheduleGroupChecks();
  broker->ResumeRedriveTasks();
  return broker;
}

Broker::Broker(storage::Store& store, const Clock& clock, BrokerOptions options)
    : store_(store),
      clock_(clock),
      options_(options),
      pool_(options.worker_threads != 0 ? options.worker_threads
                                        : std::max(1u, std::thread::hardware_concurrency())),
      admin_strand_(boost::asio::make_strand(pool_.get_executor())),
      retention_timer_(admin_strand_),
      group_timer_(admin_strand_),
      directory_(std::make_unique<Directory>(*this)),
      groups_(std::make_unique<GroupCoordinator>(store, clock, *directory_, options.groups)) {}

Broker::~Broker() {
  Shutdown();
}

Status Broker::Load() {
  // Durable before any receive of this run: its generations must start above every earlier
  // run's, including receives whose lease writes a crash lost.
  auto runs = LoadCounter(store_, kRunsCounter, 0);
  if (!runs) return runs.error();
  if (*runs == UINT32_MAX) return DataLoss("the broker run counter is exhausted");
  {
    storage::WriteBatch batch;
    std::string counter;
    PutFixed64BE(counter, *runs + 1);
    batch.Put(ColumnFamily::kMeta, MetaKey(MetaTag::kCounter, kRunsCounter), std::move(counter));
    if (Status s = store_.WriteSync(std::move(batch)); !s) return s;
    // Under `fsync: interval` too: a power loss that undid the count would let this run
    // repeat the last one's generations.
    if (Status s = store_.Sync(); !s) return s;
  }
  generation_floor_ = std::uint64_t{*runs + 1} << 32;
  auto next_id = LoadCounter(store_, kNextTopicIdCounter, next_topic_id_);
  if (!next_id) return next_id.error();
  next_topic_id_ = *next_id;
  auto it = MetaEntries(store_, MetaTag::kTopic);
  std::map<std::string, std::shared_ptr<const Topic>> loaded;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto metadata = DecodeTopicMetadata(it->value());
    if (!metadata) return metadata.error();
    auto topic = std::make_shared<Topic>();
    topic->metadata = std::move(*metadata);
    topic->next_sticky = std::make_shared<std::atomic<std::uint32_t>>(0);
    topic->receivers = std::make_shared<ReceiveWaitList>();
    topic->dedup = std::make_shared<DedupTable>();
    std::vector<storage::PartitionLog> logs;
    std::vector<storage::PendingDelays> delays;
    std::uint64_t end_offsets = 0;
    for (std::uint32_t p = 0; p < topic->metadata.config.partitions; ++p) {
      auto log = storage::PartitionLog::Open(store_, topic->metadata.id, p);
      if (!log) return log.error();
      // A delivery time is at most kMaxDeliveryDelayMs after its append.
      const std::int64_t now = clock_.WallMillis();
      auto pending =
          log->ListPendingDelays(now, now - kMaxDeliveryDelayMs, AppendedDelays::kMaxNoted);
      if (!pending) return pending.error();
      end_offsets = std::max(end_offsets, log->end_offset());
      logs.push_back(std::move(*log));
      delays.push_back(std::move(*pending));
    }
    auto next_sequence = TopicSequence::Resume(store_, topic->metadata.id, end_offsets);
    if (!next_sequence) return next_sequence.error();
    topic->sequence = std::make_shared<TopicSequence>(topic->metadata.id, *next_sequence);
    for (std::size_t p = 0; p < logs.size(); ++p) {
      topic->partitions.push_back(NewSlot(*topic, std::move(logs[p])));
      // Delayed messages sent before the restart count as delayed, without a log read.
      topic->partitions.back()->delays.Reset(delays[p]);
    }
    next_topic_id_ = std::max(next_topic_id_, topic->metadata.id + 1);
    loaded.emplace(topic->metadata.config.name, std::move(topic));
  }
  if (Status s = it->status(); !s) return s;
  Log().info("loaded {} topics", loaded.size());
  if (Status s = DropOrphanedData(loaded); !s) return s;
  if (Status s = LoadDedup(loaded); !s) return s;
  {
    std::unique_lock lock(topics_mu_);
    topics_ = std::move(loaded);
  }
  if (Status s = LoadQueues(); !s) return s;
  if (Status s = LoadRedriveTasks(); !s) return s;
  return groups_->Load();
}

Status Broker::DropOrphanedData(const std::map<std::string, std::shared_ptr<const Topic>>& topics) {
  std::set<std::uint32_t> known;
  for (const auto& [name, topic] : topics)
    known.insert(topic->metadata.id);
  // A crash between a topic's deletion and its final sweep can leave records under its id.
  // Ids are never reused, so nothing would ever read them; free the space. One seek per
  // topic id present, so this is cheap however large the log.
  storage::WriteBatch batch;
  std::vector<std::uint32_t> orphans;
  for (auto cf : {ColumnFamily::kLog, ColumnFamily::kTimeIndex}) {
    auto it = store_.NewIterator(cf, std::string(), storage::TopicRangeEnd(UINT32_MAX));
    for (it->SeekToFirst(); it->Valid();) {
      std::string_view key = it->key();
      std::uint32_t id = 0;
      if (!GetFixed32BE(key, &id)) return DataLoss("corrupt key in the log");
      if (!known.contains(id) && std::find(orphans.begin(), orphans.end(), id) == orphans.end()) {
        orphans.push_back(id);
        storage::PartitionLog::DeleteTopicData(id, batch);
      }
      it->Seek(storage::TopicRangeEnd(id));
    }
    if (Status s = it->status(); !s) return s;
  }
  if (batch.empty()) return Ok();
  Log().warn("dropping the data of {} deleted topic(s) left behind by an interrupted deletion",
             orphans.size());
  return store_.WriteSync(std::move(batch));
}

Status Broker::LoadDedup(const std::map<std::string, std::shared_ptr<const Topic>>& topics) {
  std::map<std::uint32_t, std::shared_ptr<const Topic>> by_id;
  for (const auto& [name, topic] : topics)
    by_id[topic->metadata.id] = topic;
  const std::int64_t now = clock_.WallMillis();
  storage::WriteBatch stale;
  std::size_t restored = 0;
  auto it =
      store_.NewIterator(ColumnFamily::kDedup, std::string(), storage::TopicRangeEnd(UINT32_MAX));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view key = it->key();
    std::uint32_t id = 0;
    if (!GetFixed32BE(key, &id)) return DataLoss("corrupt deduplication key");
    auto value = DedupTable::DecodeValue(it->value());
    if (!value) return value.error();
    auto topic = by_id.find(id);
    if (topic == by_id.end() || value->second <= now) {
      stale.Delete(ColumnFamily::kDedup, std::string(it->key()));
      continue;
    }
    topic->second->dedup->Restore(std::string(key), value->first, value->second);
    ++restored;
  }
  if (Status s = it->status(); !s) return s;
  if (restored > 0) Log().info("restored {} deduplication ids", restored);
  if (stale.empty()) return Ok();
  return store_.WriteSync(std::move(stale));
}

void Broker::Shutdown() {
  {
    std::lock_guard lock(inflight_mu_);
    if (stopped_) return;
    stopping_ = true;
  }
  // Parked long polls would hold shutdown up to their deadline: answer them now.
  ReleaseWaiters();
  {
    std::unique_lock lock(inflight_mu_);
    inflight_cv_.wait(lock, [&] { return inflight_ == 0; });
    stopped_ = true;
  }
  boost::asio::post(admin_strand_, [this] {
    retention_timer_.cancel();
    group_timer_.cancel();
    std::lock_guard lock(redrive_mu_);
    for (const auto& [id, run] : redrive_runs_)
      run->timer.cancel();
  });
  pool_.join();
}

void Broker::ReleaseWaiters() {
  // Set before the strands are visited: a fetch that parks after its strand was visited
  // sees the flag (it is checked on the strand), so none is left behind.
  no_parking_.store(true);
  std::vector<std::shared_ptr<ReceiveWaitList>> receivers;
  {
    std::shared_lock lock(topics_mu_);
    for (const auto& [name, topic] : topics_) {
      for (const auto& slot : topic->partitions) {
        boost::asio::post(slot->strand, [slot] { slot->ServeWaiters(true); });
      }
      receivers.push_back(topic->receivers);
    }
  }
  // Parked receives try once more and answer (they do not park again from now on).
  for (const auto& r : receivers)
    r->Wake();
}

bool Broker::Enter() {
  std::lock_guard lock(inflight_mu_);
  if (stopping_) return false;
  ++inflight_;
  return true;
}

void Broker::Leave() {
  std::lock_guard lock(inflight_mu_);
  if (--inflight_ == 0) inflight_cv_.notify_all();
}

void Broker::ScheduleRetention() {
  if (options_.retention_check_interval.count() <= 0) return;
  boost::asio::post(admin_strand_, [this] {
    {
      // Shutdown() cancels the timer on this strand after setting stopping_, so checking
      // here means no timer is armed after that cancel.
      std::lock_guard lock(inflight_mu_);
      if (stopping_) return;
    }
    retention_timer_.expires_after(options_.retention_check_interval);
    retention_timer_.async_wait(
        boost::asio::bind_executor(admin_strand_, [this](boost::system::error_code ec) {
          if (ec) return;
          EnforceRetention([this](Result<std::uint64_t> dropped) {
            if (!dropped && dropped.error().code != ErrorCode::kUnavailable) {
              Log().warn("retention: {}", dropped.error().ToString());
            } else if (dropped && *dropped > 0) {
              Log().debug("retention dropped {} records", *dropped);
            }
            ScheduleRetention();
          });
        }));
  });
}

std::shared_ptr<const Broker::Topic> Broker::FindTopic(const std::string& name) const {
  std::shared_lock lock(topics_mu_);
  auto it = topics_.find(name);
  return it == topics_.end() ? nullptr : it->second;
}

Result<std::shared_ptr<Broker::PartitionSlot>> Broker::FindPartition(
    const std::string& topic, std::uint32_t partition) const {
  auto t = FindTopic(topic);
  if (!t) return UnknownTopic(topic);
  if (partition >= t->partitions.size()) {
    return UnknownPartition(topic, partition, t->partitions.size());
  }
  return t->partitions[partition];
}

namespace {
// The two positions are read separately; retention may move the start in between.
template <class Slot>
std::uint64_t SizeOf(const Slot& slot) {
  const std::uint64_t end = slot.end_position.load(std::memory_order_relaxed);
  const std::uint64_t start = slot.start_position.load(std::memory_order_relaxed);
  return end > start ? end - start : 0;
}
}  // namespace

TopicInfo Broker::Describe(const Topic& topic) const {
  TopicInfo info;
  info.metadata = topic.metadata;
  for (std::uint32_t p = 0; p < topic.partitions.size(); ++p) {
    const PartitionSlot& slot = *topic.partitions[p];
    info.partitions.push_back({p, slot.start.load(std::memory_order_relaxed),
                               slot.end.load(std::memory_order_relaxed), SizeOf(slot),
                               slot.published_records.value(), slot.published_bytes.value(),
                               slot.fetched_records.value(), slot.fetched_bytes.value()});
  }
  std::shared_lock lock(topics_mu_);
  // By the topic's own index: a metrics scrape describes every topic.
  if (auto names = queues_by_topic_.find(topic.metadata.config.name);
      names != queues_by_topic_.end()) {
    for (const std::string& name : names->second) {  // sorted by name
      info.queues.push_back(name);
      if (queues_.at(name)->owns_topic) info.owner_queue = name;
    }
  }
  return info;
}

Result<TopicInfo> Broker::DescribeTopic(const std::string& name) const {
  auto topic = FindTopic(name);
  if (!topic) return UnknownTopic(name);
  return Describe(*topic);
}

std::vector<TopicMetadata> Broker::ListTopics() const {
  std::shared_lock lock(topics_mu_);
  std::vector<TopicMetadata> out;
  out.reserve(topics_.size());
  for (const auto& [name, topic] : topics_)
    out.push_back(topic->metadata);
  return out;
}

// ---- admin ------------------------------------------------------------------------------

void Broker::CreateTopic(TopicConfig config, Callback<TopicInfo> done) {
  if (Status s = ValidateTopicConfig(config); !s) return done(s.error());
  if (!Enter()) return done(ShuttingDown());
  boost::asio::post(admin_strand_, [this, config = std::move(config), done = std::move(done)] {
    CreateOnAdminStrand(config, done);
    Leave();
  });
}

void Broker::CreateOnAdminStrand(TopicConfig config, Callback<TopicInfo> done) {
  storage::WriteBatch batch;
  auto topic = NewTopic(std::move(config), batch);
  if (!topic) return done(topic.error());
  if (Status s = store_.WriteSync(std::move(batch)); !s) return done(s.error());
  AddTopic(*topic);
  done(Describe(**topic));
}

std::shared_ptr<Broker::PartitionSlot> Broker::NewSlot(const Topic& topic,
                                                       storage::PartitionLog log) {
  return std::make_shared<PartitionSlot>(boost::asio::make_strand(pool_.get_executor()),
                                         std::move(log), topic.receivers, topic.dedup,
                                         topic.sequence);
}

Result<std::shared_ptr<Broker::Topic>> Broker::NewTopic(TopicConfig config,
                                                        storage::WriteBatch& batch) {
  if (FindTopic(config.name)) return AlreadyExists("topic '" + config.name + "' already exists");
  if (next_topic_id_ == UINT32_MAX) return ResourceExhausted("topic ids are exhausted");
  auto topic = std::make_shared<Topic>();
  topic->metadata = {next_topic_id_, std::move(config), clock_.WallMillis()};
  topic->next_sticky = std::make_shared<std::atomic<std::uint32_t>>(0);
  topic->receivers = std::make_shared<ReceiveWaitList>();
  topic->dedup = std::make_shared<DedupTable>();
  topic->sequence = std::make_shared<TopicSequence>(topic->metadata.id, 1);
  std::string counter;
  PutFixed64BE(counter, next_topic_id_ + 1);
  batch.Put(ColumnFamily::kMeta, MetaKey(MetaTag::kTopic, topic->metadata.config.name),
            EncodeTopicMetadata(topic->metadata));
  batch.Put(ColumnFamily::kMeta, MetaKey(MetaTag::kCounter, kNextTopicIdCounter),
            std::move(counter));
  // A new topic has no records yet: its logs open empty, before the batch is written.
  for (std::uint32_t p = 0; p < topic->metadata.config.partitions; ++p) {
    auto log = storage::PartitionLog::Open(store_, topic->metadata.id, p);
    if (!log) return log.error();
    topic->partitions.push_back(NewSlot(*topic, std::move(*log)));
  }
  return topic;
}

void Broker::AddTopic(std::shared_ptr<Topic> topic) {
  next_topic_id_ = std::max(next_topic_id_, topic->metadata.id + 1);
  {
    std::unique_lock lock(topics_mu_);
    topics_[topic->metadata.config.name] = topic;
  }
  Log().info("created topic '{}' (id {}, {} partitions)", topic->metadata.config.name,
             topic->metadata.id, topic->metadata.config.partitions);
}

void Broker::UpdateTopic(std::string name, TopicUpdate update, Callback<TopicInfo> done) {
  if (!Enter()) return done(ShuttingDown());
  boost::asio::post(admin_strand_, [this, name = std::move(name), update = std::move(update),
                                    done = std::move(done)] {
    UpdateOnAdminStrand(name, update, done);
    Leave();
  });
}

void Broker::UpdateOnAdminStrand(const std::string& name, const TopicUpdate& update,
                                 Callback<TopicInfo> done, storage::WriteBatch extra) {
  auto old = FindTopic(name);
  if (!old) return done(UnknownTopic(name));
  auto topic = std::make_shared<Topic>(*old);
  TopicConfig& config = topic->metadata.config;
  if (update.partitions) {
    if (*update.partitions < config.partitions) {
      return done(InvalidArgument("topic '" + name + "' has " + std::to_string(config.partitions) +
                                  " partitions; the count can grow but not shrink to " +
                                  std::to_string(*update.partitions)));
    }
    if (*update.partitions > config.partitions) {
      // A message group's partition follows the partition count: more partitions would
      // split a group and break its order.
      std::shared_lock lock(topics_mu_);
      for (const auto& [queue_name, queue] : queues_) {
        if (queue->topic == name && queue->attributes.fifo) {
          return done(FailedPrecondition("FIFO queue '" + queue_name + "' reads topic '" + name +
                                         "'; its partition count cannot change"));
        }
      }
    }
    config.partitions = *update.partitions;
  }
  if (update.retention_ms) config.retention_ms = *update.retention_ms;
  if (update.retention_bytes) config.retention_bytes = *update.retention_bytes;
  if (update.max_message_bytes) config.max_message_bytes = *update.max_message_bytes;
  if (Status s = ValidateTopicConfig(config); !s) return done(s.error());

  storage::WriteBatch batch = std::move(extra);
  batch.Put(ColumnFamily::kMeta, MetaKey(MetaTag::kTopic, name),
            EncodeTopicMetadata(topic->metadata));
  if (Status s = store_.WriteSync(std::move(batch)); !s) return done(s.error());
  for (auto p = static_cast<std::uint32_t>(topic->partitions.size()); p < config.partitions; ++p) {
    auto log = storage::PartitionLog::Open(store_, topic->metadata.id, p);
    if (!log) return done(log.error());
    topic->partitions.push_back(NewSlot(*topic, std::move(*log)));
  }
  {
    std::unique_lock lock(topics_mu_);
    topics_[name] = topic;
  }
  done(Describe(*topic));
}

void Broker::DeleteTopic(std::string name, bool force, StatusCallback done) {
  if (!Enter()) return done(ShuttingDown());
  boost::asio::post(admin_strand_, [this, name = std::move(name), force, done = std::move(done)] {
    DeleteOnAdminStrand(name, force, done);
  });
}

void Broker::DeleteOnAdminStrand(const std::string& name, bool force, StatusCallback done) {
  auto topic = FindTopic(name);
  if (!topic) {
    done(UnknownTopic(name));
    return Leave();
  }
  const std::uint32_t id = topic->metadata.id;
  std::vector<std::shared_ptr<const QueueMetadata>> readers;
  {
    std::shared_lock lock(topics_mu_);
    for (const auto& [queue_name, queue] : queues_) {
      if (queue->topic == name) readers.push_back(queue);
    }
  }
  if (!readers.empty() && !force) {
    std::string names;
    for (const auto& q : readers)
      names += (names.empty() ? "" : ", ") + q->name;
    done(FailedPrecondition("queues read topic '" + name + "': " + names +
                            "; delete them first, or delete the topic with force"));
    return Leave();
  }
  {
    std::unique_lock lock(topics_mu_);
    topics_.erase(name);
    for (const auto& q : readers)
      queues_.erase(q->name);
    queues_by_topic_.erase(name);
  }
  topic->receivers->Wake();  // receives parked on its queues answer NotFound now
  // The name is free (and durable) as soon as this batch lands; the topic's data goes with it,
  // and so do the queues that read it.
  storage::WriteBatch batch;
  batch.Delete(ColumnFamily::kMeta, MetaKey(MetaTag::kTopic, name));
  batch.DeleteRange(ColumnFamily::kDedup, storage::TopicPrefix(id), storage::TopicRangeEnd(id));
  for (const auto& q : readers) {
    batch.Delete(ColumnFamily::kMeta, MetaKey(MetaTag::kQueue, q->name));
    batch.DeleteRange(ColumnFamily::kQueueState, storage::TopicPrefix(q->subscription),
                      storage::TopicRangeEnd(q->subscription));
  }
  storage::PartitionLog::DeleteTopicData(id, batch);
  if (Status s = store_.WriteSync(std::move(batch)); !s) {
    done(s);
    return Leave();
  }
  Log().info("deleted topic '{}' (id {})", name, id);
  // Appends already queued on a partition strand may still land after that batch. Once every
  // strand has seen the deletion no more can, and a second sweep removes what slipped in.
  auto gather = std::make_shared<Gather<bool>>(
      topic->partitions.size(), true,
      [this, id, done](Result<bool>) {
        storage::WriteBatch sweep;
        storage::PartitionLog::DeleteTopicData(id, sweep);
        store_.Write(std::move(sweep), [this, done](Status s) {
          done(std::move(s));
          Leave();
        });
      },
      nullptr);
  for (const auto& slot : topic->partitions) {
    boost::asio::post(slot->strand, [slot, gather] {
      slot->deleted = true;
      slot->ServeWaiters(true);
      gather->Finish();
    });
  }
}

// ---- records ----------------------------------------------------------------------------

void Broker::Produce(const std::string& topic_name, std::optional<std::uint32_t> partition,
                     std::vector<storage::Record> records,
                     Callback<std::vector<ProducedRecord>> done) {
  auto topic = FindTopic(topic_name);
  if (!topic) return done(UnknownTopic(topic_name));
  const auto partitions = static_cast<std::uint32_t>(topic->partitions.size());
  if (records.empty()) return done(InvalidArgument("the batch has no records"));
  if (records.size() > options_.max_batch_records) {
    return done(ResourceExhausted("the batch has " + std::to_string(records.size()) +
                                  " records; the limit is " +
                                  std::to_string(options_.max_batch_records)));
  }
  if (partition && *partition >= partitions) {
    return done(UnknownPartition(topic_name, *partition, partitions));
  }
  const auto max_message = static_cast<std::size_t>(topic->metadata.config.max_message_bytes);
  std::size_t total = 0;
  for (std::size_t i = 0; i < records.size(); ++i) {
    const std::size_t size = storage::MessageBytes(records[i]);
    if (size > max_message) {
      return done(ResourceExhausted("record " + std::to_string(i) + " is " + std::to_string(size) +
                                    " bytes; topic '" + topic_name + "' allows at most " +
                                    std::to_string(max_message)));
    }
    total += storage::EncodedRecordSize(records[i]);
  }
  if (total > options_.max_batch_bytes) {
    return done(ResourceExhausted("the batch is " + std::to_string(total) +
                                  " bytes; the limit is " +
                                  std::to_string(options_.max_batch_bytes)));
  }
  if (!Enter()) return done(ShuttingDown());

  // Route each record; unkeyed records of one call stick to one partition.
  std::vector<std::uint32_t> target(records.size());
  const std::uint32_t sticky =
      partition ? *partition
                : topic->next_sticky->fetch_add(1, std::memory_order_relaxed) % partitions;
  for (std::size_t i = 0; i < records.size(); ++i) {
    if (partition) {
      target[i] = *partition;
    } else if (records[i].message_group_id) {
      // A FIFO group must stay in one partition, whatever the records' keys.
      target[i] = PartitionForKey(*records[i].message_group_id, partitions);
    } else if (records[i].key) {
      target[i] = PartitionForKey(*records[i].key, partitions);
    } else {
      target[i] = sticky;
    }
  }
  // Deduplication: an id appended within the window answers with the original; an id that
  // another call (or an earlier record of this one) is appending waits for its outcome.
  std::vector<ProducedRecord> values(records.size());
  std::vector<bool> appended(records.size(), true);
  std::vector<std::pair<std::size_t, std::shared_ptr<DedupPending>>> waits;
  bool any_dedup = false;
  const std::int64_t now = clock_.WallMillis();
  for (std::size_t i = 0; i < records.size(); ++i) {
    if (!records[i].dedup_id) continue;
    any_dedup = true;
    DedupTable::Claim claim = topic->dedup->Take(*records[i].dedup_id, now);
    if (claim.kind == DedupTable::Claim::Kind::kDuplicate) {
      values[i] = {claim.hit.partition, claim.hit.offset, true, claim.hit.sequence};
      appended[i] = false;
    } else if (claim.kind == DedupTable::Claim::Kind::kPending) {
      waits.emplace_back(i, std::move(claim.pending));
      appended[i] = false;
    }
  }
  if (any_dedup) {
    // Ids whose window ended leave the store too.
    if (auto expired = topic->dedup->TakeExpired(now); !expired.empty()) {
      storage::WriteBatch sweep;
      for (const auto& id : expired)
        sweep.Delete(ColumnFamily::kDedup, storage::DedupKey(topic->metadata.id, id));
      store_.Write(std::move(sweep), [](Status) {});
    }
  }

  std::map<std::uint32_t, std::vector<std::size_t>> groups;
  for (std::size_t i = 0; i < records.size(); ++i) {
    if (appended[i]) groups[target[i]].push_back(i);
  }

  if (groups.empty() && waits.empty()) {  // every record was a duplicate
    done(std::move(values));
    return Leave();
  }
  auto op = std::make_shared<ProduceOp>(groups.size() + waits.size(), std::move(values),
                                        std::move(done), [this] { Leave(); });
  for (auto& [i, pending] : waits) {
    pending->Then([op, i = i](Result<DedupHit> outcome) {
      if (!outcome) return op->Fail(outcome.error());
      op->value()[i] = {outcome->partition, outcome->offset, true, outcome->sequence};
      op->Finish();
    });
  }
  for (auto& [p, indexes] : groups) {
    std::vector<storage::Record> part;
    if (indexes.size() == records.size()) {  // all of them, to one partition
      part = std::move(records);
    } else {
      part.reserve(indexes.size());
      for (std::size_t i : indexes)
        part.push_back(std::move(records[i]));
    }
    auto slot = topic->partitions[p];
    boost::asio::post(slot->strand, [this, slot, part = std::move(part),
                                     indexes = std::move(indexes), op]() mutable {
      AppendOnStrand(std::move(slot), std::move(part), std::move(indexes), std::move(op));
    });
  }
}

void Broker::AppendOnStrand(std::shared_ptr<PartitionSlot> slot,
                            std::vector<storage::Record> records, std::vector<std::size_t> indexes,
                            std::shared_ptr<ProduceOp> op, storage::WriteBatch extra) {
  if (slot->deleted) {
    for (const auto& r : records) {
      if (r.dedup_id) slot->dedup->Abandon(*r.dedup_id, NotFound("the topic was deleted"));
    }
    return op->Fail(NotFound("the topic was deleted"));
  }
  storage::WriteBatch batch = std::move(extra);
  // Grouped records are numbered across the topic's partitions; the numbering lock is held
  // until the batch is queued, so batches reach the store in the order of their numbers.
  std::shared_ptr<TopicSequence> sequence;  // outlives the lock on it
  std::unique_lock<std::mutex> numbering;
  if (std::any_of(records.begin(), records.end(),
                  [](const storage::Record& r) { return r.message_group_id.has_value(); })) {
    sequence = slot->sequence;
    numbering = sequence->Lock();
    sequence->Assign(records, batch);
  }
  auto prepared = slot->log.PrepareAppend(records, clock_.WallMillis(), batch);
  const std::uint32_t partition = slot->log.partition();
  // Deduplication ids are stored in the append's own batch: durable together.
  struct Dedup {
    std::string id;
    DedupHit hit;
    std::int64_t expires_ms;
  };
  std::vector<Dedup> dedup;
  for (std::size_t i = 0; i < records.size(); ++i) {
    if (!records[i].dedup_id) continue;
    if (!prepared) {
      slot->dedup->Abandon(*records[i].dedup_id, prepared.error());
      continue;
    }
    Dedup d{*records[i].dedup_id,
            {partition, prepared->first_offset + i, records[i].sequence},
            records[i].append_timestamp_ms + kDedupWindowMs};
    batch.Put(ColumnFamily::kDedup, storage::DedupKey(slot->log.topic(), d.id),
              DedupTable::EncodeValue(d.hit, d.expires_ms));
    dedup.push_back(std::move(d));
  }
  if (!prepared) return op->Fail(prepared.error());
  std::uint64_t payload_bytes = 0;
  // The records whose delivery is still ahead, for the queues' counts (AppendedDelays).
  std::vector<std::pair<std::uint64_t, std::int64_t>> delays;
  for (std::size_t i = 0; i < records.size(); ++i) {
    const storage::Record& r = records[i];
    payload_bytes += r.value.size() + (r.key ? r.key->size() : 0);
    if (r.deliver_after_ms && *r.deliver_after_ms > r.append_timestamp_ms) {
      delays.emplace_back(prepared->first_offset + i, *r.deliver_after_ms);
    }
  }
  for (std::size_t i = 0; i < indexes.size(); ++i) {
    op->value()[indexes[i]] = {partition, prepared->first_offset + i, false, records[i].sequence};
  }
  // The producer is answered from the syncer thread, without waiting for a strand hop. The
  // strand learns of the durable records first: its handler is queued before the answer is
  // sent, so a fetch issued after the answer is ordered after it and sees the records.
  // The slot moves into that handler: once the answer lets Shutdown() proceed, nothing on
  // the syncer thread may still own a strand of the pool being destroyed.
  store_.Write(std::move(batch), [slot = std::move(slot), op = std::move(op), append = *prepared,
                                  payload_bytes, dedup = std::move(dedup),
                                  delays = std::move(delays)](Status s) mutable {
    auto& strand = slot->strand;
    for (const Dedup& d : dedup) {
      if (s) {
        slot->dedup->Complete(d.id, d.hit, d.expires_ms);
      } else {
        slot->dedup->Abandon(d.id, s.error());
      }
    }
    if (!s) {
      boost::asio::post(
          strand, [slot = std::move(slot), error = s.error()] { slot->log.MarkFailed(error); });
    } else {
      slot->AdvanceEnd(append.end);
      slot->published_records.Add(append.end.offset - append.first_offset);
      slot->published_bytes.Add(payload_bytes);
      boost::asio::post(strand, [slot = std::move(slot), append, delays = std::move(delays)] {
        slot->log.MarkDurable(append);
        for (const auto& [offset, deliver_after_ms] : delays)
          slot->delays.Note(offset, deliver_after_ms);
        slot->Publish();
        if (!slot->waiters.empty()) slot->ServeWaiters(false);
        slot->receivers->Wake();
      });
    }
    auto finishing = std::move(op);
    if (!s) return finishing->Fail(s.error());
    finishing->Finish();
  });
  if (sequence) sequence->Queued();
}

void Broker::Fetch(const std::string& topic, std::uint32_t partition, std::uint64_t offset,
                   std::size_t max_records, std::size_t max_bytes,
                   Callback<std::vector<storage::StoredRecord>> done) {
  Fetch(topic, partition, offset, max_records, max_bytes, std::chrono::milliseconds(0),
        std::move(done));
}

void Broker::Fetch(const std::string& topic, std::uint32_t partition, std::uint64_t offset,
                   std::size_t max_records, std::size_t max_bytes,
                   std::chrono::milliseconds max_wait,
                   Callback<std::vector<storage::StoredRecord>> done) {
  if (max_records == 0) return done(InvalidArgument("max_records must be at least 1"));
  if (max_bytes == 0) return done(InvalidArgument("max_bytes must be at least 1"));
  if (max_wait.count() < 0) return done(InvalidArgument("max_wait must not be negative"));
  auto slot = FindPartition(topic, partition);
  if (!slot) return done(slot.error());
  if (!Enter()) return done(ShuttingDown());
  Callback<std::vector<storage::StoredRecord>> finish =
      [this, done = std::move(done)](Result<std::vector<storage::StoredRecord>> r) {
        done(std::move(r));
        Leave();
      };
  boost::asio::post((*slot)->strand, [this, slot = *slot, offset, max_records, max_bytes, max_wait,
                                      finish = std::move(finish)]() mutable {
    if (slot->deleted) return finish(NotFound("the topic was deleted"));
    if (offset != slot->log.end_offset() || max_wait.count() == 0 || no_parking_.load()) {
      return finish(slot->CountFetched(slot->log.Read(offset, max_records, max_bytes)));
    }
    auto waiter = std::make_shared<FetchWaiter>(slot->strand, offset, max_records, max_bytes,
                                                std::move(finish));
    slot->waiters.push_back(waiter);
    waiter->timer.expires_after(max_wait);
    waiter->timer.async_wait(
        [slot, w = std::weak_ptr<FetchWaiter>(waiter)](boost::system::error_code ec) {
          auto waiter = w.lock();
          if (ec || !waiter) return;  // answered already
          auto it = std::find(slot->waiters.begin(), slot->waiters.end(), waiter);
          if (it == slot->waiters.end()) return;
          slot->waiters.erase(it);
          waiter->done(std::vector<storage::StoredRecord>());
        });
  });
}

void Broker::ListOffset(const std::string& topic, std::uint32_t partition, OffsetQuery query,
                        std::int64_t timestamp_ms, Callback<std::optional<std::uint64_t>> done) {
  auto slot = FindPartition(topic, partition);
  if (!slot) return done(slot.error());
  if (!Enter()) return done(ShuttingDown());
  boost::asio::post((*slot)->strand,
                    [this, slot = *slot, query, timestamp_ms, done = std::move(done)] {
                      if (slot->deleted) {
                        done(NotFound("the topic was deleted"));
                      } else {
                        switch (query) {
                          case OffsetQuery::kEarliest:
                            done(std::optional<std::uint64_t>(slot->log.start_offset()));
                            break;
                          case OffsetQuery::kLatest:
                            done(std::optional<std::uint64_t>(slot->log.end_offset()));
                            break;
                          case OffsetQuery::kTimestamp:
                            done(slot->log.OffsetForTimestamp(timestamp_ms));
                            break;
                        }
                      }
                      Leave();
                    });
}

void Broker::EnforceRetention(Callback<std::uint64_t> done) {
  if (!Enter()) return done(ShuttingDown());
  struct Work {
    std::shared_ptr<PartitionSlot> slot;
    storage::RetentionLimits limits;
    // The queues reading a topic that a queue owns: what they all acknowledged is dropped.
    std::vector<std::uint32_t> trimming_queues;
  };
  std::vector<Work> work;
  {
    std::shared_lock lock(topics_mu_);
    std::map<std::string, std::vector<std::uint32_t>> readers;
    std::set<std::string> owned;
    for (const auto& [name, queue] : queues_) {
      readers[queue->topic].push_back(queue->subscription);
      if (queue->owns_topic) owned.insert(queue->topic);
    }
    for (const auto& [name, topic] : topics_) {
      const storage::RetentionLimits limits{topic->metadata.config.retention_ms,
                                            topic->metadata.config.retention_bytes};
      const bool trims = owned.contains(name);
      if (limits.retention_ms < 0 && limits.retention_bytes < 0 && !trims) continue;
      for (const auto& slot : topic->partitions) {
        work.push_back({slot, limits, trims ? readers[name] : std::vector<std::uint32_t>{}});
      }
    }
  }
  if (work.empty()) {
    done(std::uint64_t{0});
    return Leave();
  }
  auto gather =
      std::make_shared<Gather<std::uint64_t>>(work.size(), 0, std::move(done), [this] { Leave(); });
  for (auto& [slot, limits_for_topic, trimming_queues] : work) {
    boost::asio::post(slot->strand, [this, slot, limits = limits_for_topic,
                                     queues = trimming_queues, gather]() mutable {
      if (slot->deleted) return gather->Finish();
      if (!queues.empty()) {
        std::uint64_t floor = UINT64_MAX;
        for (std::uint32_t sub : queues) {
          auto state = slot->Queue(store_, sub);
          if (!state && state.error().code == ErrorCode::kNotFound) continue;  // deleted since
          if (!state) return gather->Fail(state.error());
          floor = std::min(floor, (*state)->floor());
        }
        if (floor != UINT64_MAX) limits.drop_below = floor;
      }
      storage::WriteBatch batch;
      auto dropped = slot->log.PrepareRetention(limits, clock_.WallMillis(), batch);
      if (!dropped) return gather->Fail(dropped.error());
      if (*dropped == 0) return gather->Finish();
      slot->Publish();
      store_.Write(std::move(batch), [slot, gather, n = *dropped](Status s) mutable {
        auto& strand = slot->strand;
        boost::asio::post(
            strand, [slot = std::move(slot), gather = std::move(gather), n, s = std::move(s)] {
              if (!s) return gather->Fail(s.error());
              gather->Update([n](std::uint64_t& total) { total += n; });
              gather->Finish();
            });
      });
    });
  }
}

}  // namespace spool::broker
