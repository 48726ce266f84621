// Broker: queues. A queue's metadata lives in the queue table (admin strand writes it); its
// progress on each partition is a QueuePartition owned by that partition's strand, next to
// the log it reads. A receive visits the partitions one strand at a time and writes every
// lease it took in one batch; deletes and visibility changes run on the receipt's partition.

#include <algorithm>
#include <numeric>

#include <fmt/format.h>
#include <openssl/sha.h>

#include "broker/broker.h"
#include "broker/broker_internal.h"
#include "broker/partitioner.h"
#include "common/coding.h"
#include "storage/keys.h"

namespace spool::broker {
using namespace internal;  // NOLINT(google-build-using-namespace)
namespace {

using storage::ColumnFamily;
using storage::MetaKey;
using storage::MetaTag;

const std::string kNextSubscriptionIdCounter = "next_subscription_id";
constexpr std::size_t kDescribeExamineLimit = 10'000;

// Content-based deduplication ids: the SHA-256 of the body, in lower-case hex.
std::string Sha256Hex(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * SHA256_DIGEST_LENGTH);
  for (unsigned char byte : digest) {
    out.push_back(kHex[byte >> 4]);
    out.push_back(kHex[byte & 0xf]);
  }
  return out;
}

Error UnknownQueue(const std::string& name) {
  return NotFound("queue '" + name + "' does not exist");
}

// Settings that decide whether CreateQueue on an existing queue is a repeat.
Error ExpiredReceipt(const QueueReceipt& r) {
  return FailedPrecondition("message " + std::to_string(r.offset) +
                            ": the receipt handle has expired (its lease ended)");
}

// Extra attributes (kept for a front end, which judges them itself) and tags are not
// settings: creating a queue again need not repeat them.
bool SameSettings(const QueueMetadata& a, const QueueMetadata& b) {
  QueueAttributes x = a.attributes;
  QueueAttributes y = b.attributes;
  x.extra.clear();
  y.extra.clear();
  return a.topic == b.topic && a.owns_topic == b.owns_topic && x == y;
}

}  // namespace

std::shared_ptr<Broker::QueueCounters> Broker::CountersOf(std::uint32_t subscription) {
  std::lock_guard lock(counters_mu_);
  auto& counters = queue_counters_[subscription];
  if (!counters) counters = std::make_shared<QueueCounters>();
  return counters;
}

// A receive waiting for a wake or its timer, whichever comes first.
struct Broker::ParkedReceive {
  ParkedReceive(boost::asio::thread_pool::executor_type executor, std::shared_ptr<ReceiveOp> o)
      : timer(executor), op(std::move(o)) {}
  boost::asio::steady_timer timer;
  std::shared_ptr<ReceiveOp> op;
  std::atomic<bool> woken{false};
};

struct Broker::ReceiveOp {
  QueueReceive request;
  std::int64_t deadline_ms = 0;  // of the long poll (the broker's clock)
  bool may_park = true;
  Callback<QueueReceived> done;
  // One attempt:
  std::shared_ptr<const QueueMetadata> queue;
  std::shared_ptr<const Topic> topic;
  std::uint64_t wakes_seen = 0;  // the topic's wake count when the attempt started
  std::size_t first = 0;         // partition to start from
  QueueReceiveOptions options;
  std::vector<QueueMessage> messages;
  std::optional<std::int64_t> next_visible_ms;
  std::vector<DeadLetter> dead;
  bool in_flight_limit = false;  // a partition leased less than it could for the limit
  std::shared_ptr<QueueCounters> counters;
  bool more_to_scan = false;  // a partition stopped at its scan budget
  bool leased = false;        // this call queued lease writes (in any attempt)
  // Set when a partition failed; what earlier partitions leased is still written.
  std::optional<Error> error;
};

Status Broker::LoadQueues() {
  auto next_id = LoadCounter(store_, kNextSubscriptionIdCounter, next_subscription_id_);
  if (!next_id) return next_id.error();
  next_subscription_id_ = *next_id;
  auto it = MetaEntries(store_, MetaTag::kQueue);
  std::map<std::string, std::shared_ptr<const QueueMetadata>> loaded;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto queue = DecodeQueueMetadata(it->value());
    if (!queue) return queue.error();
    next_subscription_id_ = std::max(next_subscription_id_, queue->subscription + 1);
    const std::string name = queue->name;
    loaded.emplace(name, std::make_shared<const QueueMetadata>(std::move(*queue)));
  }
  if (Status s = it->status(); !s) return s;
  Log().info("loaded {} queues", loaded.size());
  std::unique_lock lock(topics_mu_);
  queues_ = std::move(loaded);
  queues_by_topic_.clear();
  for (const auto& [name, queue] : queues_)
    queues_by_topic_[queue->topic].insert(name);
  return Ok();
}

std::shared_ptr<const QueueMetadata> Broker::FindQueue(const std::string& name) const {
  std::shared_lock lock(topics_mu_);
  auto it = queues_.find(name);
  return it == queues_.end() ? nullptr : it->second;
}

std::vector<std::string> Broker::ListQueues(const std::string& prefix, const std::string& after,
                                            std::size_t limit) const {
  std::shared_lock lock(topics_mu_);
  std::vector<std::string> out;
  for (auto it = queues_.upper_bound(after); it != queues_.end() && out.size() < limit; ++it) {
    if (it->first.rfind(prefix, 0) == 0) out.push_back(it->first);
  }
  return out;
}

void Broker::CreateQueue(QueueMetadata queue, Callback<CreateQueueResult> done) {
  if (Status s = ValidateQueueName(queue.name, queue.attributes.fifo); !s) return done(s.error());
  if (Status s = ValidateQueueAttributes(queue.name, queue.attributes); !s) {
    return done(s.error());
  }
  if (queue.topic.empty()) queue.topic = queue.name;
  queue.owns_topic = queue.owns_topic && queue.topic == queue.name;
  if (!Enter()) return done(ShuttingDown());
  boost::asio::post(admin_strand_, [this, queue = std::move(queue), done = std::move(done)] {
    CreateQueueOnAdminStrand(queue, done);
    Leave();
  });
}

void Broker::CreateQueueOnAdminStrand(QueueMetadata queue, Callback<CreateQueueResult> done) {
  const QueueAttributes& a = queue.attributes;
  if (auto existing = FindQueue(queue.name)) {
    if (!SameSettings(*existing, queue)) {
      return done(AlreadyExists("queue '" + queue.name + "' exists with other settings"));
    }
    return DescribeQueue(queue.name, [done](Result<QueueInfo> info) {
      if (!info) return done(info.error());
      done(CreateQueueResult{std::move(*info), false});
    });
  }
  if (Status s = CheckDeadLetterQueue(queue.name, a); !s) return done(s.error());
  if (Status s = ValidateQueueTags(queue.tags); !s) return done(s.error());
  if (next_subscription_id_ == UINT32_MAX) {
    return done(ResourceExhausted("subscription ids are exhausted"));
  }
  storage::WriteBatch batch;
  std::shared_ptr<Topic> created_topic;
  if (queue.owns_topic) {
    TopicConfig config;
    config.name = queue.name;
    config.partitions = a.partitions;
    config.retention_ms = a.retention_ms;
    config.max_message_bytes = a.max_message_bytes;
    auto topic = NewTopic(std::move(config), batch);
    if (!topic) {
      if (topic.error().code == ErrorCode::kAlreadyExists) {
        return done(AlreadyExists("a topic named '" + queue.name +
                                  "' exists; subscribe to it by naming it as the queue's topic"));
      }
      return done(topic.error());
    }
    created_topic = *topic;
  } else if (!FindTopic(queue.topic)) {
    return done(UnknownTopic(queue.topic));
  }
  queue.subscription = next_subscription_id_;
  queue.created_ms = queue.modified_ms = clock_.WallMillis();
  std::string counter;
  PutFixed64BE(counter, next_subscription_id_ + 1);
  batch.Put(ColumnFamily::kMeta, MetaKey(MetaTag::kCounter, kNextSubscriptionIdCounter),
            std::move(counter));
  batch.Put(ColumnFamily::kMeta, MetaKey(MetaTag::kQueue, queue.name), EncodeQueueMetadata(queue));
  // The topic and the queue become durable together: a crash leaves both or neither.
  if (Status s = store_.WriteSync(std::move(batch)); !s) return done(s.error());
  ++next_subscription_id_;
  if (created_topic) AddTopic(created_topic);
  {
    std::unique_lock lock(topics_mu_);
    queues_[queue.name] = std::make_shared<const QueueMetadata>(queue);
    queues_by_topic_[queue.topic].insert(queue.name);
  }
  Log().info("created queue '{}' (subscription {}) on topic '{}'", queue.name, queue.subscription,
             queue.topic);
  QueueInfo info;
  info.metadata = std::move(queue);
  done(CreateQueueResult{std::move(info), true});
}

Status Broker::CheckDeadLetterQueue(const std::string& queue,
                                    const QueueAttributes& attributes) const {
  if (!attributes.redrive_policy) return Ok();
  auto dlq = FindQueue(attributes.redrive_policy->dead_letter_queue);
  if (!dlq) return UnknownQueue(attributes.redrive_policy->dead_letter_queue);
  if (dlq->attributes.fifo != attributes.fifo) {
    const std::string type = attributes.fifo ? "FIFO" : "standard";
    return FailedPrecondition("the dead-letter queue of a " + type + " queue must be " + type +
                              " too");
  }
  if (!RedriveAllows(dlq->attributes.redrive_allow_policy, queue)) {
    return FailedPrecondition("the redrive allow policy of '" + dlq->name + "' does not admit '" +
                              queue + "'");
  }
  return Ok();
}

void Broker::DescribeQueue(const std::string& name, Callback<QueueInfo> done) {
  auto queue = FindQueue(name);
  if (!queue) return done(UnknownQueue(name));
  auto topic = FindTopic(queue->topic);
  if (!topic) return done(UnknownTopic(queue->topic));
  if (!Enter()) return done(ShuttingDown());
  QueueInfo described{*queue, {}, std::nullopt, CountersOf(queue->subscription)->Snapshot()};
  // Topic-level attributes as the topic has them (it may have been updated as a topic, or
  // belong to another owner).
  QueueAttributes& a = described.metadata.attributes;
  a.partitions = topic->metadata.config.partitions;
  a.retention_ms = topic->metadata.config.retention_ms;
  a.max_message_bytes = topic->metadata.config.max_message_bytes;
  auto gather = std::make_shared<Gather<QueueInfo>>(topic->partitions.size(), std::move(described),
                                                    std::move(done), [this] { Leave(); });
  const std::int64_t now = clock_.WallMillis();
  for (const auto& slot : topic->partitions) {
    boost::asio::post(slot->strand, [this, slot, gather, sub = queue->subscription, now] {
      auto state = slot->Queue(store_, sub);
      if (!state) return gather->Fail(state.error());
      // Delayed messages count as delayed once examined; a short unexamined tail is.
      if (Status examined = (*state)->Examine(kDescribeExamineLimit); !examined) {
        return gather->Fail(examined.error());
      }
      const QueueCounts c = (*state)->Counts(now);
      std::optional<std::int64_t> oldest_sent_ms;
      if (c.oldest_visible) {
        // Best effort: a record retention just removed has no age to report.
        auto read = slot->log.Read(*c.oldest_visible, 1, 1);
        if (read && !read->empty()) oldest_sent_ms = read->front().record.append_timestamp_ms;
      }
      gather->Update([&](QueueInfo& info) {
        info.counts.visible += c.visible;
        info.counts.in_flight += c.in_flight;
        info.counts.delayed += c.delayed;
        if (oldest_sent_ms &&
            (!info.oldest_visible_sent_ms || *oldest_sent_ms < *info.oldest_visible_sent_ms)) {
          info.oldest_visible_sent_ms = oldest_sent_ms;
        }
      });
      gather->Finish();
    });
  }
}

void Broker::SetQueueAttributes(
    std::string name, std::function<Result<QueueAttributes>(const QueueAttributes&)> change,
    Callback<QueueInfo> done) {
  if (!Enter()) return done(ShuttingDown());
  boost::asio::post(admin_strand_, [this, name = std::move(name), change = std::move(change),
                                    done = std::move(done)] {
    SetQueueAttributesOnAdminStrand(name, change, done);
    Leave();
  });
}

void Broker::SetQueueAttributesOnAdminStrand(
    const std::string& name,
    const std::function<Result<QueueAttributes>(const QueueAttributes&)>& change,
    Callback<QueueInfo> done) {
  auto queue = FindQueue(name);
  if (!queue) return done(UnknownQueue(name));
  auto topic = FindTopic(queue->topic);
  if (!topic) return done(UnknownTopic(queue->topic));
  QueueAttributes current = queue->attributes;
  const TopicConfig& config = topic->metadata.config;
  current.partitions = config.partitions;
  current.retention_ms = config.retention_ms;
  current.max_message_bytes = config.max_message_bytes;
  auto next = change(current);
  if (!next) return done(next.error());
  if (next->fifo != current.fifo) {
    return done(InvalidArgument("queue '" + name + "' is " + (current.fifo ? "FIFO" : "standard") +
                                "; a queue's type is fixed at creation"));
  }
  TopicUpdate update;
  // Unchanged topic-level values are kept as the queue was given them: the topic's own may
  // lie outside the queue ranges (set as a topic) and are not this call's to judge.
  QueueAttributes stored = *next;
  if (next->partitions != current.partitions) {
    update.partitions = next->partitions;
  } else {
    stored.partitions = queue->attributes.partitions;
  }
  if (next->retention_ms != current.retention_ms) {
    update.retention_ms = next->retention_ms;
  } else {
    stored.retention_ms = queue->attributes.retention_ms;
  }
  if (next->max_message_bytes != current.max_message_bytes) {
    update.max_message_bytes = next->max_message_bytes;
  } else {
    stored.max_message_bytes = queue->attributes.max_message_bytes;
  }
  if (Status s = ValidateQueueAttributes(name, stored); !s) return done(s.error());
  const bool topic_changes = update.partitions || update.retention_ms || update.max_message_bytes;
  if (topic_changes && !queue->owns_topic) {
    return done(FailedPrecondition("queue '" + name + "' subscribes to topic '" + queue->topic +
                                   "': partitions, retention and max message bytes belong to "
                                   "the topic; change them there"));
  }
  if (next->partitions < current.partitions) {
    return done(InvalidArgument("queue '" + name + "' has " + std::to_string(current.partitions) +
                                " partitions; the count can grow but not shrink to " +
                                std::to_string(next->partitions)));
  }
  if (next->redrive_policy != current.redrive_policy) {
    if (Status s = CheckDeadLetterQueue(name, *next); !s) return done(s.error());
  }
  auto changed = std::make_shared<QueueMetadata>(*queue);
  changed->attributes = stored;
  changed->modified_ms = clock_.WallMillis();
  storage::WriteBatch batch;
  batch.Put(ColumnFamily::kMeta, MetaKey(MetaTag::kQueue, name), EncodeQueueMetadata(*changed));
  auto install = [this, changed, done] {
    {
      std::unique_lock lock(topics_mu_);
      queues_[changed->name] = changed;
    }
    Log().info("changed the attributes of queue '{}'", changed->name);
    // A longer wait, a higher in-flight limit or a removed redrive policy may let parked
    // receives take something.
    if (auto t = FindTopic(changed->topic)) t->receivers->Wake();
    DescribeQueue(changed->name, done);
  };
  if (topic_changes) {
    // The topic's update refuses more partitions for a FIFO queue's topic.
    return UpdateOnAdminStrand(
        queue->topic, update,
        [install, done](Result<TopicInfo> updated) {
          if (!updated) return done(updated.error());
          install();
        },
        std::move(batch));
  }
  if (Status s = store_.WriteSync(std::move(batch)); !s) return done(s.error());
  install();
}

void Broker::SetQueueTags(std::string name,
                          std::function<Result<QueueTags>(const QueueTags&)> change,
                          Callback<QueueInfo> done) {
  if (!Enter()) return done(ShuttingDown());
  boost::asio::post(admin_strand_, [this, name = std::move(name), change = std::move(change),
                                    done = std::move(done)] {
    SetQueueTagsOnAdminStrand(name, change, done);
    Leave();
  });
}

void Broker::SetQueueTagsOnAdminStrand(
    const std::string& name, const std::function<Result<QueueTags>(const QueueTags&)>& change,
    const Callback<QueueInfo>& done) {
  auto queue = FindQueue(name);
  if (!queue) return done(UnknownQueue(name));
  auto tags = change(queue->tags);
  if (!tags) return done(tags.error());
  if (Status s = ValidateQueueTags(*tags); !s) return done(s.error());
  auto changed = std::make_shared<QueueMetadata>(*queue);
  changed->tags = std::move(*tags);
  storage::WriteBatch batch;
  batch.Put(ColumnFamily::kMeta, MetaKey(MetaTag::kQueue, name), EncodeQueueMetadata(*changed));
  if (Status s = store_.WriteSync(std::move(batch)); !s) return done(s.error());
  {
    std::unique_lock lock(topics_mu_);
    queues_[name] = std::move(changed);
  }
  DescribeQueue(name, done);
}

Result<std::vector<std::string>> Broker::DeadLetterSourceQueues(
    const std::string& dead_letter_queue, const std::string& after, std::size_t limit) const {
  std::shared_lock lock(topics_mu_);
  if (!queues_.contains(dead_letter_queue)) return UnknownQueue(dead_letter_queue);
  std::vector<std::string> out;
  for (auto it = queues_.upper_bound(after); it != queues_.end() && out.size() < limit; ++it) {
    const auto& policy = it->second->attributes.redrive_policy;
    if (policy && policy->dead_letter_queue == dead_letter_queue) out.push_back(it->first);
  }
  return out;
}

void Broker::DeleteQueue(std::string name, StatusCallback done) {
  if (!Enter()) return done(ShuttingDown());
  boost::asio::post(admin_strand_, [this, name = std::move(name), done = std::move(done)] {
    DeleteQueueOnAdminStrand(name, done);
  });
}

void Broker::DeleteQueueOnAdminStrand(const std::string& name, StatusCallback done) {
  auto queue = FindQueue(name);
  if (!queue) {
    done(UnknownQueue(name));
    return Leave();
  }
  {
    std::unique_lock lock(topics_mu_);
    queues_.erase(name);
    if (auto on_topic = queues_by_topic_.find(queue->topic); on_topic != queues_by_topic_.end()) {
      on_topic->second.erase(name);
      if (on_topic->second.empty()) queues_by_topic_.erase(on_topic);
    }
  }
  storage::WriteBatch batch;
  batch.Delete(ColumnFamily::kMeta, MetaKey(MetaTag::kQueue, name));
  // Subscription ids key queue_state like topic ids key the log: one contiguous range.
  batch.DeleteRange(ColumnFamily::kQueueState, storage::TopicPrefix(queue->subscription),
                    storage::TopicRangeEnd(queue->subscription));
  if (Status s = store_.WriteSync(std::move(batch)); !s) {
    done(s);
    return Leave();
  }
  Log().info("deleted queue '{}' (subscription {})", name, queue->subscription);
  {
    std::lock_guard lock(counters_mu_);
    queue_counters_.erase(queue->subscription);
  }
  if (auto topic = FindTopic(queue->topic)) {
    topic->receivers->Wake();  // parked receives answer NotFound
    for (const auto& slot : topic->partitions) {
      boost::asio::post(slot->strand, [slot, sub = queue->subscription] {
        slot->queues.erase(sub);
        slot->deleted_queues.insert(sub);  // a late receive must not load it again
      });
    }
  }
  if (!queue->owns_topic) {
    done(Ok());
    return Leave();
  }
  // The topic goes, and with it any other queue that subscribed to it.
  DeleteOnAdminStrand(queue->topic, true, [done](Status s) {
    // The topic may have been deleted on its own already.
    if (!s && s.error().code == ErrorCode::kNotFound) return done(Ok());
    done(std::move(s));
  });
}

void Broker::PurgeQueue(std::string name, Callback<std::uint64_t> done) {
  auto queue = FindQueue(name);
  if (!queue) return done(UnknownQueue(name));
  auto topic = FindTopic(queue->topic);
  if (!topic) return done(UnknownTopic(queue->topic));
  if (!Enter()) return done(ShuttingDown());
  if (queue->owns_topic) {
    // The queue's deduplication history goes with its messages.
    topic->dedup->Clear();
    storage::WriteBatch forget;
    forget.DeleteRange(ColumnFamily::kDedup, storage::TopicPrefix(topic->metadata.id),
                       storage::TopicRangeEnd(topic->metadata.id));
    store_.Write(std::move(forget), [](Status) {});
  }
  auto gather = std::make_shared<Gather<std::uint64_t>>(topic->partitions.size(), 0,
                                                        std::move(done), [this] { Leave(); });
  const std::int64_t now = clock_.WallMillis();
  for (const auto& slot : topic->partitions) {
    boost::asio::post(slot->strand, [this, slot, gather, sub = queue->subscription, now] {
      if (slot->deleted) return gather->Fail(NotFound("the topic was deleted"));
      auto state = slot->Queue(store_, sub);
      if (!state) return gather->Fail(state.error());
      const QueueCounts c = (*state)->Counts(now);
      storage::WriteBatch batch;
      (*state)->AckBelow(slot->log.end_offset(), batch);
      store_.Write(std::move(batch), [gather, n = c.visible + c.in_flight + c.delayed](Status s) {
        if (!s) return gather->Fail(s.error());
        gather->Update([&](std::uint64_t& total) { total += n; });
        gather->Finish();
      });
    });
  }
}

Status CheckQueueSend(const QueueAttributes& a, const QueueSend& m) {
  if (a.fifo) {
    if (!m.record.message_group_id || m.record.message_group_id->empty()) {
      return InvalidArgument("a FIFO queue needs a message group id");
    }
    if (m.delay_ms && *m.delay_ms != 0) {
      return InvalidArgument("FIFO queues take no per-message delay");
    }
    if (!m.record.dedup_id && !a.content_based_deduplication) {
      return InvalidArgument(
          "a FIFO queue needs a deduplication id (or content-based deduplication turned on)");
    }
  }
  // On a standard queue a message group only chooses the partition (Produce hashes it).
  const std::int64_t delay = m.delay_ms.value_or(a.delivery_delay_ms);
  if (delay < 0 || delay > kMaxDeliveryDelayMs) {
    return InvalidArgument("delay " + std::to_string(delay) + " ms is out of range 0-" +
                           std::to_string(kMaxDeliveryDelayMs));
  }
  if (m.record.value.empty()) return InvalidArgument("the message body is empty");
  for (const auto& [key, value] : m.record.headers) {
    if (key.rfind("spool.", 0) != 0) continue;
    // A header's data type (as SQS message attributes have): `spool.type.<name>` next to
    // header <name>, naming a String, Number or Binary type.
    if (key.rfind(kHeaderTypePrefix, 0) == 0) {
      const std::string_view named = std::string_view(key).substr(kHeaderTypePrefix.size());
      const bool has_header = std::any_of(m.record.headers.begin(), m.record.headers.end(),
                                          [&](const auto& h) { return h.first == named; });
      bool known_type = false;
      for (std::string_view base : {"String", "Number", "Binary"}) {
        known_type = known_type || value == base ||
                     (value.size() > base.size() + 1 && value.starts_with(base) &&
                      value[base.size()] == '.');
      }
      if (has_header && known_type && value.size() <= 256) continue;
      return InvalidArgument("header '" + key + "' must name a String, Number or Binary type " +
                             "for header '" + std::string(named) + "' of the same message");
    }
    if (key == kTraceHeader && value.size() <= kMaxTraceHeaderBytes) continue;
    return InvalidArgument("header '" + key + "': names starting with \"spool.\" are reserved");
  }
  if (static_cast<std::int64_t>(storage::MessageBytes(m.record)) > a.max_message_bytes) {
    return ResourceExhausted("the message is above the queue's " +
                             std::to_string(a.max_message_bytes) + " bytes");
  }
  return Ok();
}

void Broker::SendMessages(const std::string& queue_name, std::vector<QueueSend> messages,
                          Callback<std::vector<ProducedRecord>> done) {
  auto queue = FindQueue(queue_name);
  if (!queue) return done(UnknownQueue(queue_name));
  if (messages.empty()) return done(InvalidArgument("no messages to send"));
  if (messages.size() > options_.max_queue_batch) {
    return done(ResourceExhausted("more than " + std::to_string(options_.max_queue_batch) +
                                  " messages in one send"));
  }
  const QueueAttributes& a = queue->attributes;
  const std::int64_t now = clock_.WallMillis();
  std::vector<storage::Record> records;
  records.reserve(messages.size());
  for (std::size_t i = 0; i < messages.size(); ++i) {
    QueueSend& m = messages[i];
    if (Status s = CheckQueueSend(a, m); !s) {
      if (messages.size() == 1) return done(s.error());
      return done(Error{s.error().code, "message " + std::to_string(i) + ": " + s.error().message});
    }
    if (a.fifo && !m.record.dedup_id) m.record.dedup_id = Sha256Hex(m.record.value);
    const std::int64_t delay = m.delay_ms.value_or(a.delivery_delay_ms);
    m.record.deliver_after_ms.reset();
    if (delay > 0) m.record.deliver_after_ms = now + delay;
    records.push_back(std::move(m.record));
  }
  Produce(queue->topic, std::nullopt, std::move(records),
          [counters = CountersOf(queue->subscription),
           done = std::move(done)](Result<std::vector<ProducedRecord>> sent) {
            if (sent) {
              counters->sent.fetch_add(
                  static_cast<std::uint64_t>(std::count_if(
                      sent->begin(), sent->end(), [](const auto& r) { return !r.duplicate; })),
                  std::memory_order_relaxed);
            }
            done(std::move(sent));
          });
}

void Broker::ReceiveMessages(QueueReceive request, Callback<std::vector<QueueMessage>> done) {
  ReceiveMessagesWithLimit(std::move(request),
                           [done = std::move(done)](Result<QueueReceived> received) {
                             if (!received) return done(received.error());
                             done(std::move(received->messages));
                           });
}

void Broker::ReceiveMessagesWithLimit(QueueReceive request, Callback<QueueReceived> done) {
  if (request.max_messages < 1 || request.max_messages > options_.max_queue_batch) {
    return done(InvalidArgument("max_messages must be within 1-" +
                                std::to_string(options_.max_queue_batch)));
  }
  if (request.visibility_ms &&
      (*request.visibility_ms < 0 || *request.visibility_ms > kMaxVisibilityTimeoutMs)) {
    return done(InvalidArgument("the visibility timeout must be within 0-" +
                                std::to_string(kMaxVisibilityTimeoutMs / 1000) + " s"));
  }
  if (request.wait_ms && (*request.wait_ms < 0 || *request.wait_ms > kMaxReceiveWaitMs)) {
    return done(InvalidArgument("the wait time must be within 0-" +
                                std::to_string(kMaxReceiveWaitMs / 1000) + " s"));
  }
  auto queue = FindQueue(request.queue);
  if (!queue) return done(UnknownQueue(request.queue));
  if (!Enter()) return done(ShuttingDown());
  auto op = std::make_shared<ReceiveOp>();
  op->deadline_ms =
      clock_.WallMillis() + request.wait_ms.value_or(queue->attributes.receive_wait_ms);
  op->request = std::move(request);
  op->done = std::move(done);
  ReceiveAttempt(std::move(op));
}

void Broker::ReceiveAttempt(std::shared_ptr<ReceiveOp> op) {
  auto queue = FindQueue(op->request.queue);
  auto topic = queue ? FindTopic(queue->topic) : nullptr;
  if (!queue || !topic) {
    op->done(queue ? UnknownTopic(queue->topic) : UnknownQueue(op->request.queue));
    op.reset();  // it may hold the topic of an earlier attempt: see ReceiveDone
    return Leave();
  }
  if (op->request.cancelled && op->request.cancelled()) {
    op->done(QueueReceived{});
    op.reset();
    return Leave();
  }
  op->queue = queue;
  op->topic = topic;
  op->wakes_seen = topic->receivers->Seen();
  op->messages.clear();
  op->next_visible_ms.reset();
  op->dead.clear();
  op->in_flight_limit = false;
  op->more_to_scan = false;
  op->error.reset();
  // Start where the last receive of this topic's partitions did not, so every partition is
  // served in turn.
  op->first =
      topic->next_sticky->fetch_add(1, std::memory_order_relaxed) % topic->partitions.size();
  op->options.max_messages = op->request.max_messages;
  op->options.visibility_ms =
      op->request.visibility_ms.value_or(queue->attributes.visibility_timeout_ms);
  op->options.fifo = queue->attributes.fifo;
  op->options.max_in_flight = queue->attributes.max_in_flight;
  op->options.generation_floor = generation_floor_;
  op->counters = CountersOf(queue->subscription);
  // Messages past the max receive count move only while the dead-letter queue exists;
  // otherwise they stay receivable.
  op->options.max_receive_count.reset();
  if (const auto& policy = queue->attributes.redrive_policy) {
    auto dlq = FindQueue(policy->dead_letter_queue);
    if (dlq && FindTopic(dlq->topic)) op->options.max_receive_count = policy->max_receive_count;
  }
  ReceiveStep(std::move(op), 0);
}

void Broker::ReceiveStep(std::shared_ptr<ReceiveOp> op, std::size_t step) {
  const std::size_t n = op->topic->partitions.size();
  if (step == n || op->messages.size() >= op->options.max_messages || op->error) {
    // Each partition's leases were queued to the store on its strand (below). By default the
    // answer waits until they are durable: a lease carries the message's receive count, and
    // a crash must not forget a delivery (a poison message would get past its max receive
    // count). With defer_receive_fsync the answer goes out at once, as a delivery does in
    // other brokers: a crash can forget the last receives, whose messages are then
    // receivable at once after the restart (with a receive count that missed them).
    // Generations go on above the forgotten ones' (generation_floor), so their receipts stay
    // stale; and every later change of these messages is queued behind the leases and waits
    // for an fsync that covers both.
    if (op->dead.empty() && (!op->leased || options_.defer_receive_fsync)) {
      return ReceiveDone(std::move(op));
    }
    // Callbacks run in the order writes were queued, and a failed write fails every later
    // one, so an empty write queued now answers for all the leases (and dead letters move
    // only once the leases that locked them are durable).
    store_.Write(storage::WriteBatch(), [this, op](Status s) mutable {
      if (!s) {
        // The leases may never reach the disk, and the store takes no more writes: deliver
        // nothing (what was leased here becomes receivable when its lease runs out).
        op->error = s.error();
        op->messages.clear();
        op->dead.clear();
      }
      if (s && !op->dead.empty()) {
        auto dead = std::move(op->dead);
        op->dead.clear();
        MoveDeadLetters(op->queue, op->topic, std::move(dead));
      }
      ReceiveDone(std::move(op));
    });
    return;
  }
  auto slot = op->topic->partitions[(op->first + step) % n];
  boost::asio::post(slot->strand, [this, op = std::move(op), slot, step]() mutable {
    if (slot->deleted) {
      op->error = NotFound("the topic was deleted");
      return ReceiveStep(std::move(op), step + 1);
    }
    auto state = slot->Queue(store_, op->queue->subscription);
    if (!state) {
      op->error = state.error();
      return ReceiveStep(std::move(op), step + 1);
    }
    QueueReceiveOptions options = op->options;
    options.max_messages -= op->messages.size();
    // The limit is the queue's: what the other partitions hold counts against it.
    const std::size_t others = op->counters->OthersInFlight(slot->log.partition());
    options.max_in_flight = others >= options.max_in_flight ? 0 : options.max_in_flight - others;
    storage::WriteBatch leases;
    auto got = (*state)->Receive(clock_.WallMillis(), options, leases);
    // Queued here, on the strand that changed the states, so the store gets every change of
    // a message in the order it was made. Written once all partitions were visited, one
    // receive's leases of an earlier partition could land after another receive's re-lease
    // and delete there, and bring the deleted message back at the next start.
    if (!leases.empty()) {
      op->leased = true;
      store_.Write(std::move(leases), [](Status) {});
    }
    if (got) op->counters->SetInFlight(slot->log.partition(), got->in_flight);
    if (!got) {
      op->error = got.error();
    } else {
      // A message that cannot be read stops this partition for now; what was taken before
      // it is answered (and the next receive meets the error again).
      if (got->error) {
        Log().error("queue '{}' partition {}: {}", op->queue->name, slot->log.partition(),
                    got->error->ToString());
      }
      for (auto& m : got->messages)
        op->messages.push_back({slot->log.partition(), std::move(m)});
      for (auto& m : got->dead_letters) {
        DeadLetter d;
        d.partition = slot->log.partition();
        if (Status st = (*state)->PrepareDeadLetterDelete(m.offset, m.generation, d.source_delete);
            !st) {
          Log().error("queue '{}': {}", op->queue->name, st.error().ToString());
          continue;
        }
        d.message = std::move(m);
        op->dead.push_back(std::move(d));
      }
      if (got->in_flight_limit) op->in_flight_limit = true;
      if (got->more_to_scan) op->more_to_scan = true;
      if (got->next_visible_ms &&
          (!op->next_visible_ms || *got->next_visible_ms < *op->next_visible_ms)) {
        op->next_visible_ms = got->next_visible_ms;
      }
    }
    ReceiveStep(std::move(op), step + 1);
  });
}

// Answers, or parks the receive until a wake or the next time something becomes visible.
void Broker::ReceiveDone(std::shared_ptr<ReceiveOp> op) {
  const std::int64_t now = clock_.WallMillis();
  if (op->error && !op->messages.empty()) {
    // What other partitions leased is answered; the failing one is retried by later receives.
    Log().error("queue '{}': {}", op->queue->name, op->error->ToString());
    op->error.reset();
  }
  if (!op->error && op->messages.empty() && op->more_to_scan && op->may_park &&
      now < op->deadline_ms && !no_parking_.load()) {
    // A partition stopped at its scan budget before finding anything: go on at once.
    boost::asio::post(pool_,
                      [this, op = std::move(op)]() mutable { ReceiveAttempt(std::move(op)); });
    return;
  }
  if (op->error || !op->messages.empty() || !op->may_park || now >= op->deadline_ms ||
      no_parking_.load()) {
    auto done = std::move(op->done);
    if (op->error && op->messages.empty()) {
      done(*op->error);
    } else if (op->messages.empty() && op->in_flight_limit &&
               op->request.wait_ms.value_or(op->queue->attributes.receive_wait_ms) == 0) {
      // Without a wait the limit is an error; a long poll just ends empty.
      done(ResourceExhausted("queue '" + op->queue->name + "' has " +
                             std::to_string(op->queue->attributes.max_in_flight) +
                             " messages in flight, its limit"));
    } else {
      if (!op->messages.empty()) {
        auto counters = CountersOf(op->queue->subscription);
        counters->received.fetch_add(op->messages.size(), std::memory_order_relaxed);
        counters->redelivered.fetch_add(
            static_cast<std::uint64_t>(
                std::count_if(op->messages.begin(), op->messages.end(),
                              [](const QueueMessage& m) { return m.message.receive_count > 1; })),
            std::memory_order_relaxed);
      }
      const bool limited = op->in_flight_limit && op->messages.size() < op->request.max_messages;
      done(QueueReceived{std::move(op->messages), limited});
    }
    // The op owns its topic, whose partitions own strands of pool_. This may run on the
    // store's syncer thread (after dead letters), and Leave() lets Shutdown() join and
    // destroy the pool: a strand destroyed after that locks a destroyed mutex. So the op goes
    // first. (On a strand of the pool, the join waits for this handler anyway.)
    op.reset();
    return Leave();
  }
  auto parked = std::make_shared<ParkedReceive>(pool_.get_executor(), op);
  const std::int64_t until = std::min(op->deadline_ms, op->next_visible_ms.value_or(INT64_MAX));
  // The deadline's timer gives the last try; an earlier one (a lease or delay ending) retries
  // and may park again.
  const bool last = until == op->deadline_ms;
  parked->timer.expires_after(std::chrono::milliseconds(std::max<std::int64_t>(0, until - now)));
  parked->timer.async_wait([this, parked, last](boost::system::error_code ec) {
    if (!ec) RetryReceive(*parked, !last);
  });
  // Woken, the receive tries again at once; a wake it missed (one between its attempt and
  // now) counts too.
  std::weak_ptr<ParkedReceive> weak = parked;
  ReceiveWaitList::Entry entry{weak, [this, weak] {
                                 if (auto p = weak.lock()) {
                                   p->timer.cancel();
                                   RetryReceive(*p, true);
                                 }
                               }};
  if (!op->topic->receivers->Park(op->wakes_seen, std::move(entry))) {
    parked->timer.cancel();
    RetryReceive(*parked, true);
  }
}

void Broker::RetryReceive(ParkedReceive& parked, bool may_park) {
  if (parked.woken.exchange(true)) return;  // the timer and a wake raced; one retry
  parked.op->may_park = may_park;
  ReceiveAttempt(parked.op);
}

void Broker::MoveDeadLetters(std::shared_ptr<const QueueMetadata> source,
                             std::shared_ptr<const Topic> source_topic,
                             std::vector<DeadLetter> letters) {
  const auto& policy = source->attributes.redrive_policy;
  auto dlq = policy ? FindQueue(policy->dead_letter_queue) : nullptr;
  auto dlq_topic = dlq ? FindTopic(dlq->topic) : nullptr;
  if (!dlq_topic) {
    // Gone since the receive started: the messages stay here, receivable again.
    Log().warn("queue '{}': {} messages could not move; the dead-letter queue is gone",
               source->name, letters.size());
    std::vector<QueueReceipt> receipts;
    for (const DeadLetter& d : letters)
      receipts.push_back({d.partition, d.message.offset, d.message.generation});
    return UnlockDeadLetters(source_topic, source->subscription, std::move(receipts));
  }
  const std::size_t count = letters.size();
  MoveLocked(
      source, source_topic, dlq_topic, std::move(letters),
      [&source, topic_id = source_topic->metadata.id](storage::Record& r, const DeadLetter& d) {
        // Where the message was first sent: its message id stays that of the original, as
        // SQS keeps it across the move (a message moved on again keeps its first origin).
        if (std::none_of(r.headers.begin(), r.headers.end(),
                         [](const auto& h) { return h.first == kDeadLetterOriginHeader; })) {
          r.headers.emplace_back(kDeadLetterOriginHeader,
                                 fmt::format("{}/{}/{}", topic_id, d.partition, d.message.offset));
        }
        r.headers.emplace_back("spool.dlq.source_queue", source->name);
        r.headers.emplace_back("spool.dlq.receive_count", std::to_string(d.message.receive_count));
        r.headers.emplace_back("spool.dlq.sent_timestamp_ms",
                               std::to_string(r.append_timestamp_ms));
      },
      [this, source, count, dlq_name = dlq->name](Result<std::uint64_t> moved) {
        if (!moved) {
          Log().error("queue '{}': moving {} messages to '{}' failed: {}", source->name, count,
                      dlq_name, moved.error().ToString());
          return;
        }
        CountersOf(source->subscription)
            ->dead_lettered.fetch_add(*moved, std::memory_order_relaxed);
      });
}

void Broker::MoveLocked(std::shared_ptr<const QueueMetadata> source,
                        std::shared_ptr<const Topic> source_topic,
                        std::shared_ptr<const Topic> destination, std::vector<DeadLetter> letters,
                        const std::function<void(storage::Record&, const DeadLetter&)>& rewrite,
                        Callback<std::uint64_t> done) {
  if (letters.empty()) return done(std::uint64_t{0});
  const auto n = static_cast<std::uint32_t>(destination->partitions.size());
  const std::uint32_t sticky =
      destination->next_sticky->fetch_add(1, std::memory_order_relaxed) % n;
  std::map<std::uint32_t, std::vector<DeadLetter>> by_partition;
  for (auto& d : letters) {
    // FIFO: each group keeps to one partition of the destination too.
    const auto& group = d.message.record.message_group_id;
    by_partition[group ? PartitionForKey(*group, n) : sticky].push_back(std::move(d));
  }
  auto total =
      std::make_shared<Gather<std::uint64_t>>(by_partition.size(), 0, std::move(done), [] {});
  for (auto& [p, part] : by_partition) {
    std::vector<storage::Record> records;
    storage::WriteBatch deletes;
    std::vector<QueueReceipt> receipts;
    for (auto& d : part) {
      storage::Record r = std::move(d.message.record);
      r.deliver_after_ms.reset();
      // Not a publish: it must not touch the destination's deduplication claims.
      r.dedup_id.reset();
      rewrite(r, d);
      records.push_back(std::move(r));
      deletes.Append(std::move(d.source_delete));
      receipts.push_back({d.partition, d.message.offset, d.message.generation});
    }
    // Shutting down: the letters stay locked, and are receivable again after the restart.
    if (!Enter()) {
      total->Fail(ShuttingDown());
      continue;
    }
    std::vector<std::size_t> indexes(records.size());
    std::iota(indexes.begin(), indexes.end(), 0);
    const std::size_t count = records.size();
    // Once the move is durable, the source's memory learns of the deletes its write carried.
    auto op = std::make_shared<ProduceOp>(
        1, std::vector<ProducedRecord>(count),
        [this, source, source_topic, receipts, total](Result<std::vector<ProducedRecord>> moved) {
          if (!moved) {
            UnlockDeadLetters(source_topic, source->subscription, receipts);
            return total->Fail(moved.error());
          }
          auto counters = CountersOf(source->subscription);
          for (const QueueReceipt& r : receipts) {
            if (!Enter()) break;
            auto slot = source_topic->partitions[r.partition];
            boost::asio::post(slot->strand, [this, slot, r, counters, sub = source->subscription] {
              auto state = slot->Queue(store_, sub);
              storage::WriteBatch floor;
              if (state) {
                (void)(*state)->Delete(r.offset, r.generation, floor);
                // The locked message counted in flight; the queue's limit sees it gone.
                counters->SetInFlight(r.partition, (*state)->InFlight(clock_.WallMillis()));
              }
              store_.Write(std::move(floor), [this](Status) { Leave(); });
            });
          }
          source_topic->receivers->Wake();  // FIFO groups and in-flight room are free
          total->Update([&](std::uint64_t& moved_count) { moved_count += receipts.size(); });
          total->Finish();
        },
        [this] { Leave(); });
    auto slot = destination->partitions[p];
    boost::asio::post(slot->strand,
                      [this, slot, records = std::move(records), indexes = std::move(indexes),
                       op = std::move(op), deletes = std::move(deletes)]() mutable {
                        AppendOnStrand(slot, std::move(records), std::move(indexes), std::move(op),
                                       std::move(deletes));
                      });
  }
}

void Broker::UnlockDeadLetters(std::shared_ptr<const Topic> topic, std::uint32_t subscription,
                               std::vector<QueueReceipt> receipts) {
  auto counters = CountersOf(subscription);
  for (const QueueReceipt& r : receipts) {
    if (!Enter()) return;  // the locks end with the restart anyway
    auto slot = topic->partitions[r.partition];
    boost::asio::post(slot->strand, [this, slot, r, subscription, counters] {
      if (auto state = slot->Queue(store_, subscription)) {
        (void)(*state)->UnlockDeadLetter(r.offset, r.generation, clock_.WallMillis());
        counters->SetInFlight(r.partition, (*state)->InFlight(clock_.WallMillis()));
      }
      slot->receivers->Wake();
      Leave();
    });
  }
}

void Broker::OnQueuePartition(const std::string& queue_name, std::uint32_t partition,
                              std::function<Status(QueuePartition&, storage::WriteBatch&)> fn,
                              StatusCallback done) {
  auto queue = FindQueue(queue_name);
  if (!queue) return done(UnknownQueue(queue_name));
  auto topic = FindTopic(queue->topic);
  if (!topic) return done(UnknownTopic(queue->topic));
  if (partition >= topic->partitions.size()) {
    return done(InvalidArgument("the receipt handle names partition " + std::to_string(partition) +
                                ", which queue '" + queue_name + "' does not have"));
  }
  if (!Enter()) return done(ShuttingDown());
  auto slot = topic->partitions[partition];
  boost::asio::post(
      slot->strand, [this, slot, sub = queue->subscription, fn = std::move(fn),
                     counters = CountersOf(queue->subscription), done = std::move(done)] {
        auto finish = [this, done](Status s) {
          done(std::move(s));
          Leave();
        };
        if (slot->deleted) return finish(NotFound("the topic was deleted"));
        auto state = slot->Queue(store_, sub);
        if (!state) return finish(state.error());
        storage::WriteBatch batch;
        Status applied = fn(**state, batch);
        counters->SetInFlight(slot->log.partition(), (*state)->InFlight(clock_.WallMillis()));
        // Written even when empty: the answer then also waits for earlier writes of this state
        // (a repeated delete must not be acknowledged before the first one is durable).
        store_.Write(std::move(batch), [applied, finish, receivers = slot->receivers](Status s) {
          // A release, or a delete that unlocks a FIFO group or frees in-flight room: parked
          // receives may find something now.
          if (s && applied) receivers->Wake();
          finish(s ? applied : s);
        });
      });
}

void Broker::DeleteMessage(const std::string& queue, QueueReceipt receipt, StatusCallback done) {
  auto q = FindQueue(queue);
  auto counters = q ? CountersOf(q->subscription) : nullptr;
  OnQueuePartition(
      queue, receipt.partition,
      [this, receipt](QueuePartition& state, storage::WriteBatch& batch) -> Status {
        if (receipt.expires_with_lease &&
            state.LeaseEnded(receipt.offset, receipt.generation, clock_.WallMillis())) {
          return ExpiredReceipt(receipt);
        }
        return state.Delete(receipt.offset, receipt.generation, batch);
      },
      [counters, done = std::move(done)](Status s) {
        if (s && counters) counters->deleted.fetch_add(1, std::memory_order_relaxed);
        done(std::move(s));
      });
}

void Broker::DeleteMessages(const std::string& queue, std::vector<QueueReceipt> receipts,
                            Callback<std::vector<Status>> done) {
  if (receipts.empty()) return done(std::vector<Status>{});
  auto q = FindQueue(queue);
  auto counters = q ? CountersOf(q->subscription) : nullptr;
  std::map<std::uint32_t, std::vector<std::size_t>> by_partition;
  for (std::size_t i = 0; i < receipts.size(); ++i)
    by_partition[receipts[i].partition].push_back(i);
  // Each partition fills its own entries; the last to finish answers.
  auto results = std::make_shared<std::vector<Status>>(receipts.size());
  auto all = std::make_shared<const std::vector<QueueReceipt>>(std::move(receipts));
  auto gather = std::make_shared<Gather<bool>>(
      by_partition.size(), true,
      [results, done = std::move(done)](Result<bool>) { done(std::move(*results)); }, nullptr);
  for (auto& [partition, indexes] : by_partition) {
    OnQueuePartition(
        queue, partition,
        [this, all, indexes, results](QueuePartition& state, storage::WriteBatch& batch) {
          const std::int64_t now = clock_.WallMillis();
          // Expiry first (deleting one message ends no other's lease), then one DeleteMany,
          // which stores what it acknowledges out of order as runs, not a state each.
          std::vector<QueuePartition::Deletion> deletions;
          std::vector<std::size_t> deleted;
          for (std::size_t i : indexes) {
            const QueueReceipt& r = (*all)[i];
            if (r.expires_with_lease && state.LeaseEnded(r.offset, r.generation, now)) {
              (*results)[i] = ExpiredReceipt(r);
            } else {
              deletions.push_back({r.offset, r.generation});
              deleted.push_back(i);
            }
          }
          std::vector<Status> statuses = state.DeleteMany(deletions, batch);
          for (std::size_t k = 0; k < deleted.size(); ++k)
            (*results)[deleted[k]] = std::move(statuses[k]);
          return Ok();
        },
        [results, indexes, gather, counters](Status written) {
          for (std::size_t i : indexes) {
            if (!written) {
              (*results)[i] = written;
            } else if ((*results)[i] && counters) {
              counters->deleted.fetch_add(1, std::memory_order_relaxed);
            }
          }
          gather->Finish();
        });
  }
}

void Broker::ChangeMessageVisibility(const std::string& queue, QueueReceipt receipt,
                                     std::int64_t visible_in_ms, bool release,
                                     StatusCallback done) {
  if (visible_in_ms < 0 || visible_in_ms > kMaxVisibilityTimeoutMs) {
    return done(InvalidArgument(std::string(release ? "the nack delay" : "the visibility timeout") +
                                " must be within 0-" +
                                std::to_string(kMaxVisibilityTimeoutMs / 1000) + " s"));
  }
  OnQueuePartition(
      queue, receipt.partition,
      [this, receipt, visible_in_ms, release](QueuePartition& state,
                                              storage::WriteBatch& batch) -> Status {
        if (receipt.expires_with_lease &&
            state.LeaseEnded(receipt.offset, receipt.generation, clock_.WallMillis())) {
          return ExpiredReceipt(receipt);
        }
        return state.ChangeVisibility(receipt.offset, receipt.generation, clock_.WallMillis(),
                                      visible_in_ms, kMaxVisibilityTimeoutMs, batch, release);
      },
      std::move(done));
}

}  // namespace spool::broker
