#pragma once

// The broker: topics and their partitions, and the thread-safe facade every front end
// (gRPC, HTTP, tests) calls.
//
// Threads (design §3): a worker pool runs all domain work. Each partition is owned by one
// strand of that pool; its PartitionLog is only ever touched there, so it needs no lock.
// Admin changes (create, update, delete) run on one admin strand, which serializes them.
// The topic table is a map of immutable snapshots behind a shared mutex: a lookup copies a
// shared_ptr and lets go. Storage writes complete on the store's syncer thread, which posts
// state changes back to the owning strand; nothing here blocks a caller's thread. Admin
// changes are rare and wait for their own fsync on the admin strand.
//
// Every method may be called from any thread. Callbacks run on a worker thread (a
// partition's strand or the admin strand) or on the store's syncer thread; they must not
// block.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <vector>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>

#include "broker/dedup.h"
#include "broker/group_coordinator.h"
#include "broker/queue_config.h"
#include "broker/queue_partition.h"
#include "broker/redrive_task.h"
#include "broker/topic.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/metrics.h"
#include "storage/partition_log.h"
#include "storage/record.h"
#include "storage/store.h"

namespace spool::broker {

struct BrokerOptions {
  // Worker threads; 0 means one per core.
  std::size_t worker_threads = 0;
  // How often retention runs; zero disables the timer (tests call EnforceRetention()).
  std::chrono::milliseconds retention_check_interval{std::chrono::seconds(30)};
  // Limits of one Produce call.
  std::size_t max_batch_records = 100'000;
  std::size_t max_batch_bytes = 64u << 20;
  GroupLimits groups;
  // How often members' sessions and groups' offsets retention are checked.
  std::chrono::milliseconds group_check_interval{std::chrono::seconds(1)};
  // false: a queue receive is answered once its leases, which carry the receive counts, are
  // durable (fsynced under FsyncMode::kAlways), so a crash never forgets a delivery. true:
  // answered as soon as they are queued, which saves a consumer one fsync per receive; a
  // crash can then forget the last receives (their messages are receivable again at once
  // and their receive counts miss them).
  bool defer_receive_fsync = false;
  // The most messages one native SendMessages or ReceiveMessages call takes (and, for the
  // front ends, entries in one delete or visibility batch). The SQS API keeps SQS's 10.
  std::size_t max_queue_batch = 1'000;
};

// A group's position in a partition, with where a member taking the partition now starts:
// the committed offset, or (with none, or one below the log start) the group's reset policy.
struct GroupOffset {
  PartitionPosition position;
  std::uint64_t start_offset = 0;
  std::string reset_reason;  // empty when start_offset is the committed offset
};

enum class ResetMode { kEarliest, kLatest, kTimestamp, kOffset, kShift };

struct ResetOffsetsRequest {
  std::string group;
  std::string topic;
  std::vector<std::uint32_t> partitions;  // empty: all
  ResetMode mode = ResetMode::kEarliest;
  std::int64_t timestamp_ms = 0;
  std::uint64_t offset = 0;
  std::int64_t shift_by = 0;
  bool force = false;
  bool dry_run = false;
};

struct ResetOffsetResult {
  std::uint32_t partition = 0;
  std::optional<std::uint64_t> previous;
  std::uint64_t new_offset = 0;
};

struct ResetOffsetsOutcome {
  std::vector<ResetOffsetResult> results;
  bool applied = false;
};

struct ProducedRecord {
  std::uint32_t partition = 0;
  std::uint64_t offset = 0;
  // Not appended: its deduplication id was appended within the last 5 minutes, at
  // (partition, offset).
  bool duplicate = false;
  // A record with a message group id: its sequence number (storage::Record::sequence).
  std::optional<std::uint64_t> sequence;
  bool operator==(const ProducedRecord&) const = default;
};

struct PartitionInfo {
  std::uint32_t partition = 0;
  std::uint64_t start_offset = 0;
  std::uint64_t end_offset = 0;
  std::uint64_t size_bytes = 0;
  // Since the broker started: records and payload bytes (key + value) published and fetched.
  std::uint64_t published_records = 0;
  std::uint64_t published_bytes = 0;
  std::uint64_t fetched_records = 0;
  std::uint64_t fetched_bytes = 0;
};

struct TopicInfo {
  TopicMetadata metadata;
  std::vector<PartitionInfo> partitions;
  std::vector<std::string> queues;  // the queue subscriptions reading the topic, sorted
  std::string owner_queue;          // the queue that owns the topic, if any
};

// Fields left empty keep their value. Partitions may only grow.
struct TopicUpdate {
  std::optional<std::uint32_t> partitions;
  std::optional<std::int64_t> retention_ms;
  std::optional<std::int64_t> retention_bytes;
  std::optional<std::int64_t> max_message_bytes;
};

enum class OffsetQuery { kEarliest, kLatest, kTimestamp };

// What happened on a queue since the broker started.
struct QueueActivity {
  std::uint64_t sent = 0;           // messages appended by SendMessages (duplicates not)
  std::uint64_t received = 0;       // messages returned by receives
  std::uint64_t redelivered = 0;    // ... of which had been received before
  std::uint64_t deleted = 0;        // successful deletes by receipt
  std::uint64_t dead_lettered = 0;  // messages moved to the dead-letter queue
  std::uint64_t redriven = 0;       // messages a redrive task moved out of this queue
};

// A queue and its approximate message counts.
struct QueueInfo {
  QueueMetadata metadata;
  QueueCounts counts;  // over all partitions; counts.oldest_visible is not set
  // Append time of the oldest message a receive could return now, if there is one.
  std::optional<std::int64_t> oldest_visible_sent_ms;
  QueueActivity activity;
};

struct CreateQueueResult {
  QueueInfo queue;
  bool created = false;  // false: it existed with these settings
};

// One message to send to a queue.
struct QueueSend {
  storage::Record record;                // value, headers, message group and deduplication ids
  std::optional<std::int64_t> delay_ms;  // else the queue's delivery delay
};

struct QueueReceive {
  std::string queue;
  std::size_t max_messages = 1;
  std::optional<std::int64_t> visibility_ms;  // else the queue's visibility timeout
  std::optional<std::int64_t> wait_ms;        // long poll, 0-20 s; else the queue's wait
  // Optional; asked before every attempt to lease. True once the caller has gone (a
  // cancelled call, a closed stream): a parked receive that wakes then answers empty
  // rather than lease messages to nobody, which would hide them and count a receive.
  std::function<bool()> cancelled = nullptr;
};

// A received message and where it is; (partition, offset, generation) is its receipt.
struct QueueMessage {
  std::uint32_t partition = 0;
  ReceivedMessage message;
};

// What a receive leased, and whether the queue's in-flight limit held messages back: the
// answer has fewer than asked (perhaps none, after a long poll) because max_in_flight
// messages are leased.
struct QueueReceived {
  std::vector<QueueMessage> messages;
  bool in_flight_limit = false;
};

// Names a received message: the receipt handle's contents.
struct QueueReceipt {
  std::uint32_t partition = 0;
  std::uint64_t offset = 0;
  std::uint64_t generation = 0;
  // The receipt is good only while its lease lasts: once the message is receivable again a
  // delete or visibility change with it fails (FailedPrecondition, "expired"), as SQS FIFO
  // receipt handles do. Otherwise it stays good until the message is received again.
  bool expires_with_lease = false;
};

struct RedriveRequest {
  std::string source;       // a dead-letter queue
  std::string destination;  // empty: each message's source queue
  std::uint32_t max_per_second = kDefaultRedriveRate;
};

// Reserved headers a queue message may carry: a header's data type (`spool.type.<name>`:
// String, Number or Binary, with an optional `.suffix`) and a tracing header (up to 8 KiB),
// as the SQS API stores message attributes and AWSTraceHeader. Other `spool.` names are
// refused.
inline constexpr std::string_view kHeaderTypePrefix = "spool.type.";
inline constexpr std::string_view kTraceHeader = "spool.trace_header";
inline constexpr std::size_t kMaxTraceHeaderBytes = 8 * 1024;
// On a message moved to a dead-letter queue: "<topic id>/<partition>/<offset>" of the
// message as first sent, from which front ends derive its original message id.
inline constexpr std::string_view kDeadLetterOriginHeader = "spool.dlq.origin";

// Whether `message` may be sent to a queue with `attributes` (FIFO group and deduplication
// ids, delays, body, reserved headers, size). SendMessages checks every message with it and
// refuses the whole call on the first failure; a batch front end checks each entry first.
Status CheckQueueSend(const QueueAttributes& attributes, const QueueSend& message);

template <class T>
using Callback = std::function<void(Result<T>)>;
using StatusCallback = std::function<void(Status)>;

class Broker {
 public:
  // Loads every topic from `store` and opens its partitions. `store` and `clock` must
  // outlive the broker.
  static Result<std::unique_ptr<Broker>> Open(storage::Store& store, const Clock& clock,
                                              BrokerOptions options = {});

  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;
  ~Broker();

  // Refuses new calls (Unavailable), waits for calls in flight to complete and stops the
  // workers. Idempotent. Must not be called from a broker callback.
  void Shutdown();
  // Answers every parked long-poll Fetch now (with what is there) and makes later fetches
  // answer at once instead of parking. The daemon calls it before draining its front ends,
  // so that no client call waits for its long-poll deadline during shutdown.
  void ReleaseWaiters();

  // --- topics ---------------------------------------------------------------------------
  void CreateTopic(TopicConfig config, Callback<TopicInfo> done);
  void UpdateTopic(std::string name, TopicUpdate update, Callback<TopicInfo> done);
  void DeleteTopic(std::string name, StatusCallback done) {
    DeleteTopic(std::move(name), false, std::move(done));
  }
  // With queues reading the topic: FailedPrecondition, or with `force` they go with it.
  void DeleteTopic(std::string name, bool force, StatusCallback done);
  // Non-blocking reads of the topic table; offsets are those last made durable.
  Result<TopicInfo> DescribeTopic(const std::string& name) const;
  std::vector<TopicMetadata> ListTopics() const;  // sorted by name

  // --- records --------------------------------------------------------------------------
  // Appends `records` to `topic`: to `partition` if given, else records with a message group
  // id by the Kafka hash of the group id, keyed records by the hash of their key, and the
  // rest all to one partition chosen round-robin per call. A record whose deduplication id
  // was appended to the topic within 5 minutes (or is being appended) is not appended again.
  // `done` gets one (partition, offset) per record, in input order, once all are durable.
  // Validation happens before anything is written: a bad batch writes nothing.
  void Produce(const std::string& topic, std::optional<std::uint32_t> partition,
               std::vector<storage::Record> records, Callback<std::vector<ProducedRecord>> done);

  // Reads up to `max_records` records and `max_bytes` bytes from `offset` (the first record
  // always, even if larger). An offset outside [log start, log end] is OutOfRange.
  void Fetch(const std::string& topic, std::uint32_t partition, std::uint64_t offset,
             std::size_t max_records, std::size_t max_bytes,
             Callback<std::vector<storage::StoredRecord>> done);
  // The same as a long poll: when `offset` is the log end, the call parks (no thread, no
  // polling) until a record there becomes durable, then answers at once; after `max_wait`
  // it answers with no records. Shutdown and topic deletion answer parked calls early.
  void Fetch(const std::string& topic, std::uint32_t partition, std::uint64_t offset,
             std::size_t max_records, std::size_t max_bytes, std::chrono::milliseconds max_wait,
             Callback<std::vector<storage::StoredRecord>> done);

  // kEarliest: the log start. kLatest: the log end (next offset to be read). kTimestamp: the
  // first offset with append time >= `timestamp_ms`, or nullopt if there is none.
  void ListOffset(const std::string& topic, std::uint32_t partition, OffsetQuery query,
                  std::int64_t timestamp_ms, Callback<std::optional<std::uint64_t>> done);

  // Applies every topic's retention now; `done` gets the number of records dropped.
  void EnforceRetention(Callback<std::uint64_t> done);

  const Clock& clock() const { return clock_; }

  // Consumer groups (broker/group_coordinator.h has the protocol). Thread-safe.
  Result<HeartbeatAnswer> GroupHeartbeat(const MemberHeartbeat& heartbeat);
  Status LeaveGroup(const std::string& group, const std::string& member_id);
  void CommitOffsets(const std::string& group, const std::string& member_id,
                     std::uint32_t member_epoch, std::vector<OffsetCommit> offsets,
                     StatusCallback done);
  // `filter`: topic -> partitions (empty: all of the topic); empty: every committed partition.
  void FetchGroupOffsets(const std::string& group,
                         std::map<std::string, std::vector<std::uint32_t>> filter,
                         Callback<std::vector<GroupOffset>> done);
  std::vector<GroupSummary> ListGroups(const std::string& prefix, const std::string& after,
                                       std::size_t limit) const;
  Result<GroupDescription> DescribeGroup(const std::string& group) const;
  void DeleteGroup(const std::string& group, StatusCallback done);
  void ResetGroupOffsets(ResetOffsetsRequest request, Callback<ResetOffsetsOutcome> done);
  std::vector<GroupCoordinator::GroupMetrics> GroupMetrics() const;

  // --- queues (broker_queues.cc; semantics in proto/spool/v1/queue.proto) ----------------
  // `queue.topic` empty (or equal to the name, with owns_topic): the queue owns a new topic
  // of its name. Otherwise it subscribes to that existing topic. Idempotent with identical
  // settings; AlreadyExists with others.
  void CreateQueue(QueueMetadata queue, Callback<CreateQueueResult> done);
  void DescribeQueue(const std::string& name, Callback<QueueInfo> done);
  // Changes a queue's attributes: `change` maps the current ones (topic-level ones as the
  // topic has them) to the new ones, on the admin strand so that concurrent changes do not
  // lose each other. Topic-level changes (partitions, retention, max message bytes) and the
  // queue are written in one batch. Answers the queue as changed, once durable.
  void SetQueueAttributes(std::string name,
                          std::function<Result<QueueAttributes>(const QueueAttributes&)> change,
                          Callback<QueueInfo> done);
  // Replaces a queue's tags with what `change` makes of them (validated, then stored).
  void SetQueueTags(std::string name, std::function<Result<QueueTags>(const QueueTags&)> change,
                    Callback<QueueInfo> done);
  // The queues whose redrive policy names `dead_letter_queue`, sorted, after `after`
  // (exclusive), at most `limit`. NotFound if `dead_letter_queue` is not a queue.
  Result<std::vector<std::string>> DeadLetterSourceQueues(const std::string& dead_letter_queue,
                                                          const std::string& after,
                                                          std::size_t limit) const;
  // Sorted by name, after `after` (exclusive), at most `limit`.
  std::vector<std::string> ListQueues(const std::string& prefix, const std::string& after,
                                      std::size_t limit) const;
  // BrokerOptions::max_queue_batch.
  std::size_t max_queue_batch() const { return options_.max_queue_batch; }
  // Non-blocking read of the queue table; null if there is no such queue.
  std::shared_ptr<const QueueMetadata> FindQueueMetadata(const std::string& name) const {
    return FindQueue(name);
  }
  // Removes the queue and its progress, and the topic if the queue owns it.
  void DeleteQueue(std::string name, StatusCallback done);
  // Acknowledges everything sent so far; answers about how many messages that removed.
  void PurgeQueue(std::string name, Callback<std::uint64_t> done);
  // Appends the messages (delays applied) once validated all together; answers once durable.
  void SendMessages(const std::string& queue, std::vector<QueueSend> messages,
                    Callback<std::vector<ProducedRecord>> done);
  // Leases up to max_messages receivable messages, partitions taken in turn; answers once
  // the leases are queued to the store, not fsynced (a crash may forget them; see
  // QueueReceiveOptions::generation_floor), or durable when dead letters had to move. With
  // nothing receivable and a wait, the call parks (no thread, no polling) and tries again
  // when a message may have become receivable: an append to the queue's topic, a release, a
  // delete (FIFO), or the time a lease or delay ends. It answers empty at the end of the
  // wait, and at once after ReleaseWaiters().
  void ReceiveMessages(QueueReceive request, Callback<std::vector<QueueMessage>> done);
  // The same, also saying whether the queue's in-flight limit cut the answer short.
  void ReceiveMessagesWithLimit(QueueReceive request, Callback<QueueReceived> done);
  // True once ReleaseWaiters() ran: receives answer at once from then on, so a caller that
  // loops on long polls (a receive stream) must stop.
  bool waiters_released() const { return no_parking_.load(); }
  void DeleteMessage(const std::string& queue, QueueReceipt receipt, StatusCallback done);
  // Deletes several receipts of one queue with one write per partition (a batch costs about
  // what one delete does). Answers a status per receipt, in order, once all are durable.
  void DeleteMessages(const std::string& queue, std::vector<QueueReceipt> receipts,
                      Callback<std::vector<Status>> done);
  // The receipt's lease ends `visible_in_ms` from now (0: receivable at once).
  void ChangeMessageVisibility(const std::string& queue, QueueReceipt receipt,
                               std::int64_t visible_in_ms, StatusCallback done) {
    ChangeMessageVisibility(queue, receipt, visible_in_ms, false, std::move(done));
  }
  // Gives the message back, receivable `delay_ms` from now; until then it counts as delayed
  // rather than in flight.
  void NackMessage(const std::string& queue, QueueReceipt receipt, std::int64_t delay_ms,
                   StatusCallback done) {
    ChangeMessageVisibility(queue, receipt, delay_ms, true, std::move(done));
  }
  void ChangeMessageVisibility(const std::string& queue, QueueReceipt receipt,
                               std::int64_t visible_in_ms, bool release, StatusCallback done);

  // --- redrive tasks (broker_redrive.cc; semantics in proto/spool/v1/queue.proto) --------
  // Starts moving the messages now in a dead-letter queue back, a batch per step at the
  // task's rate, each batch in one write per destination partition. Answers the new task.
  void StartRedrive(RedriveRequest request, Callback<RedriveTask> done);
  // The source's tasks, most recent first, at most `max`. NotFound if no such queue.
  Result<std::vector<RedriveTask>> ListRedriveTasks(const std::string& source,
                                                    std::size_t max) const;
  // Stops a running task: CANCELLED at once between steps, else CANCELLING until its step
  // ends.
  void CancelRedrive(std::uint64_t id, Callback<RedriveTask> done);

 private:
  using Strand = boost::asio::strand<boost::asio::thread_pool::executor_type>;
  struct PartitionSlot;
  class Directory;
  struct FetchWaiter;
  struct Topic;
  struct ProduceOp;
  struct ReceiveOp;
  struct ParkedReceive;

  Broker(storage::Store& store, const Clock& clock, BrokerOptions options);
  Status Load();
  Status LoadQueues();  // broker_queues.cc
  Status DropOrphanedData(const std::map<std::string, std::shared_ptr<const Topic>>& topics);
  // Deduplication ids still in their window go back into their topics' tables.
  Status LoadDedup(const std::map<std::string, std::shared_ptr<const Topic>>& topics);
  std::shared_ptr<const Topic> FindTopic(const std::string& name) const;
  Result<std::shared_ptr<PartitionSlot>> FindPartition(const std::string& topic,
                                                       std::uint32_t partition) const;
  TopicInfo Describe(const Topic& topic) const;
  // Counts a call in flight; false (and nothing counted) once shutting down.
  bool Enter();
  void Leave();
  void ScheduleRetention();
  void ScheduleGroupChecks();
  // Where a member taking a partition starts (see GroupOffset); may look up a time.
  void ResolveStarts(std::vector<PartitionPosition> positions, const GroupSettings& settings,
                     Callback<std::vector<GroupOffset>> done);
  void CreateOnAdminStrand(TopicConfig config, Callback<TopicInfo> done);
  // Opens a new topic's partitions and adds its metadata to `batch`; the caller writes the
  // batch, then calls AddTopic.
  Result<std::shared_ptr<Topic>> NewTopic(TopicConfig config, storage::WriteBatch& batch);
  // A partition of `topic` on its own strand, sharing the topic's wait list, deduplication
  // table and sequence.
  std::shared_ptr<PartitionSlot> NewSlot(const Topic& topic, storage::PartitionLog log);
  void AddTopic(std::shared_ptr<Topic> topic);
  std::shared_ptr<const QueueMetadata> FindQueue(const std::string& name) const;
  void CreateQueueOnAdminStrand(QueueMetadata queue, Callback<CreateQueueResult> done);
  void DeleteQueueOnAdminStrand(const std::string& name, StatusCallback done);
  void SetQueueTagsOnAdminStrand(const std::string& name,
                                 const std::function<Result<QueueTags>(const QueueTags&)>& change,
                                 const Callback<QueueInfo>& done);
  void SetQueueAttributesOnAdminStrand(
      const std::string& name,
      const std::function<Result<QueueAttributes>(const QueueAttributes&)>& change,
      Callback<QueueInfo> done);
  // Whether `queue` may use the dead-letter queue its redrive policy names.
  Status CheckDeadLetterQueue(const std::string& queue, const QueueAttributes& attributes) const;
  // One receive over every partition; `op` says whether it may park when empty.
  void ReceiveAttempt(std::shared_ptr<ReceiveOp> op);
  void ReceiveStep(std::shared_ptr<ReceiveOp> op, std::size_t step);
  void ReceiveDone(std::shared_ptr<ReceiveOp> op);
  void RetryReceive(ParkedReceive& parked, bool may_park);
  // Runs `fn(QueuePartition&, WriteBatch&)` on the receipt's partition strand, writes the
  // batch and answers once durable.
  void OnQueuePartition(const std::string& queue, std::uint32_t partition,
                        std::function<Status(QueuePartition&, storage::WriteBatch&)> fn,
                        StatusCallback done);
  // `extra` is written in the same batch as the topic's new metadata.
  void UpdateOnAdminStrand(const std::string& name, const TopicUpdate& update,
                           Callback<TopicInfo> done, storage::WriteBatch extra = {});
  void DeleteOnAdminStrand(const std::string& name, bool force, StatusCallback done);
  // On the slot's strand: appends `records`, writing `extra` in the same batch.
  void AppendOnStrand(std::shared_ptr<PartitionSlot> slot, std::vector<storage::Record> records,
                      std::vector<std::size_t> indexes, std::shared_ptr<ProduceOp> op,
                      storage::WriteBatch extra = {});
  struct DeadLetter;
  // Appends dead letters to their dead-letter queue and deletes them from the source in one
  // write per dead-letter partition; answers nobody (the receive that found them has).
  void MoveDeadLetters(std::shared_ptr<const QueueMetadata> source,
                       std::shared_ptr<const Topic> source_topic, std::vector<DeadLetter> letters);
  // Appends locked dead letters of `source` to `destination`'s topic and deletes them from
  // the source, one write per destination partition (FIFO: a group keeps to one partition).
  // `rewrite` prepares each record. `done` gets how many moved once every write ended, or
  // the first error; the letters of a failed write are receivable again.
  void MoveLocked(std::shared_ptr<const QueueMetadata> source,
                  std::shared_ptr<const Topic> source_topic,
                  std::shared_ptr<const Topic> destination, std::vector<DeadLetter> letters,
                  const std::function<void(storage::Record&, const DeadLetter&)>& rewrite,
                  Callback<std::uint64_t> done);
  void UnlockDeadLetters(std::shared_ptr<const Topic> topic, std::uint32_t subscription,
                         std::vector<QueueReceipt> receipts);

  // Redrive tasks (broker_redrive.cc); their control runs on the admin strand.
  struct RedriveRun;
  struct RedriveStepOp;
  Status LoadRedriveTasks();
  void ResumeRedriveTasks();
  void StartRedriveOnAdminStrand(const RedriveRequest& request, std::uint64_t to_move,
                                 Callback<RedriveTask> done);
  void ScheduleRedriveStep(std::shared_ptr<RedriveRun> run, std::chrono::milliseconds after);
  void RedriveStep(std::shared_ptr<RedriveRun> run);
  void RedriveTake(std::shared_ptr<RedriveStepOp> step, std::size_t index);
  void RedriveMove(std::shared_ptr<RedriveStepOp> step);
  void FinishRedriveStep(std::shared_ptr<RedriveRun> run, std::uint64_t moved, bool exhausted,
                         std::optional<std::string> failure);
  // Sets a final status and stores the task; returns it as it is now.
  RedriveTask EndRedrive(RedriveRun& run, RedriveStatus status, std::string failure = {});
  Status StoreRedriveTask(const RedriveTask& task, storage::WriteBatch batch = {});

  storage::Store& store_;
  const Clock& clock_;
  const BrokerOptions options_;
  boost::asio::thread_pool pool_;
  Strand admin_strand_;
  boost::asio::steady_timer retention_timer_;
  boost::asio::steady_timer group_timer_;  // on admin_strand_
  std::unique_ptr<Directory> directory_;
  std::unique_ptr<GroupCoordinator> groups_;

  mutable std::shared_mutex topics_mu_;
  std::map<std::string, std::shared_ptr<const Topic>> topics_;          // guarded by topics_mu_
  std::uint32_t next_topic_id_ = 1;                                     // admin strand only
  std::map<std::string, std::shared_ptr<const QueueMetadata>> queues_;  // guarded by topics_mu_
  // The names in queues_ by the topic each reads.
  std::map<std::string, std::set<std::string>> queues_by_topic_;  // guarded by topics_mu_
  // This run's number << 32 (see QueueReceiveOptions::generation_floor); set by Load().
  std::uint64_t generation_floor_ = 0;
  // Activity counters by subscription, created on first use.
  struct QueueCounters;
  std::shared_ptr<QueueCounters> CountersOf(std::uint32_t subscription);
  std::mutex counters_mu_;
  std::map<std::uint32_t, std::shared_ptr<QueueCounters>> queue_counters_;  // counters_mu_
  std::uint32_t next_subscription_id_ = 1;                                  // admin strand only
  mutable std::mutex redrive_mu_;
  std::map<std::uint64_t, std::shared_ptr<RedriveRun>> redrive_runs_;  // guarded by redrive_mu_
  std::uint64_t next_redrive_id_ = 1;                                  // admin strand only

  std::mutex inflight_mu_;
  std::condition_variable inflight_cv_;
  std::size_t inflight_ = 0;  // guarded by inflight_mu_
  bool stopping_ = false;     // guarded by inflight_mu_
  bool stopped_ = false;      // guarded by inflight_mu_
  std::atomic<bool> no_parking_{false};
};

}  // namespace spool::broker
