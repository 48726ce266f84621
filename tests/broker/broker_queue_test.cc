// Queues through the Broker facade (real store, worker threads, a manual clock): create
// (idempotent, conflicts, dead-letter checks), send with delays, receive across partitions,
// delete and visibility by receipt, purge, describe counts, list, delete with the topic,
// topic deletion guarded by its queues, and a restart keeping leases and progress.

#include <atomic>
#include <future>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>

#include "broker/broker.h"
#include "storage/keys.h"
#include "tests/testing/manual_clock.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/wait.h"

namespace spool::broker {
namespace {

using spool::testing::ManualClock;
using spool::testing::StatusWaiter;
using spool::testing::TempDir;
using spool::testing::Waiter;
using std::chrono::milliseconds;

class BrokerQueueTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void TearDown() override { Close(); }

  void Open() {
    storage::StoreOptions store_options;
    store_options.write_fault = [fail = fail_writes_]() -> Status {
      if (fail->load()) return Internal("injected write failure");
      return Ok();
    };
    auto store = storage::Store::Open(dir_.path(), store_options);
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
    BrokerOptions options;
    options.worker_threads = 2;
    options.retention_check_interval = milliseconds(0);
    options.defer_receive_fsync = defer_receive_fsync_;
    options.max_queue_batch = max_queue_batch_;
    auto broker = Broker::Open(*store_, clock_, options);
    ASSERT_TRUE(broker) << broker.error().ToString();
    broker_ = std::move(*broker);
  }
  void Close() {
    if (broker_) broker_->Shutdown();
    broker_.reset();
    store_.reset();
  }

  Result<CreateQueueResult> CreateQueue(const std::string& name, QueueAttributes attributes = {},
                                        std::string topic = "") {
    QueueMetadata q;
    q.name = name;
    q.topic = std::move(topic);
    q.owns_topic = q.topic.empty();
    q.attributes = std::move(attributes);
    Waiter<CreateQueueResult> w;
    broker_->CreateQueue(q, w.Callback());
    return w.Get();
  }

  Result<std::vector<ProducedRecord>> Send(const std::string& queue,
                                           std::vector<std::string> bodies,
                                           std::optional<std::int64_t> delay_ms = {},
                                           std::optional<std::string> group = {}) {
    std::vector<QueueSend> messages;
    for (auto& body : bodies) {
      QueueSend m;
      m.record.value = std::move(body);
      m.record.message_group_id = group;
      m.delay_ms = delay_ms;
      messages.push_back(std::move(m));
    }
    Waiter<std::vector<ProducedRecord>> w;
    broker_->SendMessages(queue, std::move(messages), w.Callback());
    return w.Get();
  }

  Result<std::vector<QueueMessage>> Receive(const std::string& queue, std::size_t max,
                                            std::optional<std::int64_t> visibility_ms = {}) {
    Waiter<std::vector<QueueMessage>> w;
    broker_->ReceiveMessages({queue, max, visibility_ms, std::nullopt}, w.Callback());
    return w.Get();
  }

  // Receives until `count` messages came or a receive returns nothing (bounded).
  std::vector<QueueMessage> ReceiveAll(const std::string& queue, std::size_t count) {
    std::vector<QueueMessage> all;
    for (int i = 0; i < 100 && all.size() < count; ++i) {
      auto got = Receive(queue, 10);
      EXPECT_TRUE(got) << got.error().ToString();
      if (!got || got->empty()) break;
      for (auto& m : *got)
        all.push_back(std::move(m));
    }
    return all;
  }

  static QueueReceipt Receipt(const QueueMessage& m) {
    return {m.partition, m.message.offset, m.message.generation};
  }

  Status Delete(const std::string& queue, const QueueMessage& m) {
    StatusWaiter w;
    broker_->DeleteMessage(queue, Receipt(m), w.Callback());
    return w.Get();
  }

  Status ChangeVisibility(const std::string& queue, const QueueMessage& m, std::int64_t in_ms) {
    StatusWaiter w;
    broker_->ChangeMessageVisibility(queue, Receipt(m), in_ms, w.Callback());
    return w.Get();
  }

  Result<QueueInfo> SetAttributes(const std::string& queue,
                                  std::function<void(QueueAttributes&)> change) {
    Waiter<QueueInfo> w;
    broker_->SetQueueAttributes(
        queue,
        [change](const QueueAttributes& current) -> Result<QueueAttributes> {
          QueueAttributes next = current;
          change(next);
          return next;
        },
        w.Callback());
    return w.Get();
  }

  // Receives every message of `source` twice (its redrive policy allows one receive) and
  // waits until `dlq` holds `expected` messages.
  void DeadLetterAll(const std::string& source, const std::string& dlq, std::uint64_t expected) {
    for (int round = 0; round < 2; ++round) {
      for (int i = 0; i < 20; ++i) {
        auto got = Receive(source, 100, 0);
        ASSERT_TRUE(got) << got.error().ToString();
        if (got->empty()) break;
      }
    }
    for (int i = 0; i < 500; ++i) {
      auto info = Describe(dlq);
      ASSERT_TRUE(info);
      if (info->counts.visible == expected) return;
      std::this_thread::sleep_for(milliseconds(10));
    }
    FAIL() << "the dead letters did not arrive in '" << dlq << "'";
  }

  Result<RedriveTask> StartRedrive(const std::string& source, const std::string& destination = "",
                                   std::uint32_t rate = 10'000) {
    Waiter<RedriveTask> w;
    broker_->StartRedrive({source, destination, rate}, w.Callback());
    return w.Get();
  }

  // The task once it is no longer active (bounded wait).
  RedriveTask AwaitRedrive(const std::string& source, std::uint64_t id) {
    for (int i = 0; i < 1000; ++i) {
      auto tasks = broker_->ListRedriveTasks(source, 10);
      EXPECT_TRUE(tasks);
      if (!tasks) break;
      for (const auto& t : *tasks) {
        if (t.id == id && !t.active()) return t;
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
    ADD_FAILURE() << "redrive task " << id << " did not end";
    return {};
  }

  static std::set<std::string> Bodies(const std::vector<QueueMessage>& messages) {
    std::set<std::string> out;
    for (const auto& m : messages)
      out.insert(m.message.record.value);
    return out;
  }

  Result<QueueInfo> Describe(const std::string& queue) {
    Waiter<QueueInfo> w;
    broker_->DescribeQueue(queue, w.Callback());
    return w.Get();
  }

  TempDir dir_;
  ManualClock clock_;
  bool defer_receive_fsync_ = false;
  std::size_t max_queue_batch_ = 1'000;
  // While set, every store write fails (as a disk error would).
  std::shared_ptr<std::atomic<bool>> fail_writes_ = std::make_shared<std::atomic<bool>>(false);
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<Broker> broker_;
};

TEST_F(BrokerQueueTest, CreateIsIdempotentAndRefusesConflicts) {
  auto created = CreateQueue("jobs");
  ASSERT_TRUE(created) << created.error().ToString();
  EXPECT_TRUE(created->created);
  EXPECT_EQ(created->queue.metadata.topic, "jobs");
  EXPECT_TRUE(created->queue.metadata.owns_topic);
  ASSERT_TRUE(broker_->DescribeTopic("jobs")) << "the queue's topic was not created";
  auto again = CreateQueue("jobs");
  ASSERT_TRUE(again);
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->queue.metadata.subscription, created->queue.metadata.subscription);
  QueueAttributes other;
  other.visibility_timeout_ms = 5'000;
  EXPECT_EQ(CreateQueue("jobs", other).error().code, ErrorCode::kAlreadyExists);
  // A topic of the queue's name that the queue would own.
  TopicConfig topic;
  topic.name = "events";
  Waiter<TopicInfo> t;
  broker_->CreateTopic(topic, t.Callback());
  ASSERT_TRUE(t.Get());
  EXPECT_EQ(CreateQueue("events").error().code, ErrorCode::kAlreadyExists);
  // ... but a queue may subscribe to it.
  auto fan = CreateQueue("audit", {}, "events");
  ASSERT_TRUE(fan) << fan.error().ToString();
  EXPECT_FALSE(fan->queue.metadata.owns_topic);
  EXPECT_EQ(CreateQueue("x", {}, "no-such-topic").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(CreateQueue("bad name").error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(broker_->ListQueues("", "", 10), (std::vector<std::string>{"audit", "jobs"}));
  EXPECT_EQ(broker_->ListQueues("j", "", 10), (std::vector<std::string>{"jobs"}));
  EXPECT_EQ(broker_->ListQueues("", "audit", 10), (std::vector<std::string>{"jobs"}));
}

TEST_F(BrokerQueueTest, DeadLetterQueuesMustExistMatchAndAllow) {
  QueueAttributes with_dlq;
  with_dlq.redrive_policy = RedrivePolicy{"dlq", 3};
  EXPECT_EQ(CreateQueue("src", with_dlq).error().code, ErrorCode::kNotFound);
  QueueAttributes fifo;
  fifo.fifo = true;
  ASSERT_TRUE(CreateQueue("dlq.fifo", fifo));
  QueueAttributes to_fifo;
  to_fifo.redrive_policy = RedrivePolicy{"dlq.fifo", 3};
  EXPECT_EQ(CreateQueue("src", to_fifo).error().code, ErrorCode::kFailedPrecondition)
      << "a standard queue named a FIFO dead-letter queue";
  QueueAttributes deny;
  deny.redrive_allow_policy.permission = RedrivePermission::kDenyAll;
  ASSERT_TRUE(CreateQueue("dlq", deny));
  EXPECT_EQ(CreateQueue("src", with_dlq).error().code, ErrorCode::kFailedPrecondition);
  QueueAttributes allow;
  allow.redrive_allow_policy = {RedrivePermission::kByQueue, {"src"}};
  ASSERT_TRUE(CreateQueue("dlq2", allow));
  with_dlq.redrive_policy->dead_letter_queue = "dlq2";
  EXPECT_TRUE(CreateQueue("src", with_dlq));
}

TEST_F(BrokerQueueTest, SetAttributesChangesTheQueueAndItsTopicDurably) {
  ASSERT_TRUE(CreateQueue("jobs"));
  auto changed = SetAttributes("jobs", [](QueueAttributes& a) {
    a.visibility_timeout_ms = 5'000;
    a.receive_wait_ms = 2'000;
    a.partitions = 3;
    a.retention_ms = 3'600'000;
  });
  ASSERT_TRUE(changed) << changed.error().ToString();
  EXPECT_EQ(changed->metadata.attributes.visibility_timeout_ms, 5'000);
  EXPECT_EQ(changed->metadata.attributes.partitions, 3u);
  auto topic = broker_->DescribeTopic("jobs");
  ASSERT_TRUE(topic);
  EXPECT_EQ(topic->metadata.config.partitions, 3u);
  EXPECT_EQ(topic->metadata.config.retention_ms, 3'600'000);
  // The new visibility timeout applies to the next receive.
  ASSERT_TRUE(Send("jobs", {"a"}));
  auto got = Receive("jobs", 1);
  ASSERT_TRUE(got && got->size() == 1);
  EXPECT_EQ(got->front().message.visibility_deadline_ms, clock_.WallMillis() + 5'000);

  // Bad changes leave everything as it was.
  EXPECT_EQ(SetAttributes("jobs", [](QueueAttributes& a) { a.partitions = 2; }).error().code,
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(SetAttributes("jobs", [](QueueAttributes& a) { a.fifo = true; }).error().code,
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(
      SetAttributes("jobs", [](QueueAttributes& a) { a.visibility_timeout_ms = -1; }).error().code,
      ErrorCode::kInvalidArgument);
  EXPECT_EQ(SetAttributes("jobs",
                          [](QueueAttributes& a) {
                            a.redrive_policy = {"nope", 3};
                          })
                .error()
                .code,
            ErrorCode::kNotFound);
  EXPECT_EQ(SetAttributes("missing", [](QueueAttributes&) {}).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(Describe("jobs")->metadata.attributes.visibility_timeout_ms, 5'000);

  // FIFO queues keep their partition count; so does their topic through the topic API.
  QueueAttributes fifo;
  fifo.fifo = true;
  ASSERT_TRUE(CreateQueue("orders.fifo", fifo));
  EXPECT_EQ(SetAttributes("orders.fifo", [](QueueAttributes& a) { a.partitions = 2; }).error().code,
            ErrorCode::kFailedPrecondition);
  TopicUpdate grow;
  grow.partitions = 2;
  Waiter<TopicInfo> grown;
  broker_->UpdateTopic("orders.fifo", grow, grown.Callback());
  EXPECT_EQ(grown.Get().error().code, ErrorCode::kFailedPrecondition);

  // A queue on a shared topic may not change the topic, but may set what it has.
  TopicConfig shared;
  shared.name = "events";
  shared.retention_ms = 1'000;  // below the queue range: set as a topic
  Waiter<TopicInfo> t;
  broker_->CreateTopic(shared, t.Callback());
  ASSERT_TRUE(t.Get());
  ASSERT_TRUE(CreateQueue("audit", {}, "events"));
  EXPECT_EQ(Describe("audit")->metadata.attributes.retention_ms, 1'000);
  EXPECT_EQ(SetAttributes("audit", [](QueueAttributes& a) { a.partitions = 4; }).error().code,
            ErrorCode::kFailedPrecondition);
  auto audit = SetAttributes("audit", [](QueueAttributes& a) { a.delivery_delay_ms = 1'000; });
  ASSERT_TRUE(audit) << audit.error().ToString();
  EXPECT_EQ(audit->metadata.attributes.delivery_delay_ms, 1'000);

  // The change is durable.
  Close();
  Open();
  auto reopened = Describe("jobs");
  ASSERT_TRUE(reopened);
  EXPECT_EQ(reopened->metadata.attributes.visibility_timeout_ms, 5'000);
  EXPECT_EQ(reopened->metadata.attributes.receive_wait_ms, 2'000);
  EXPECT_EQ(reopened->metadata.attributes.partitions, 3u);
  EXPECT_EQ(Describe("audit")->metadata.attributes.delivery_delay_ms, 1'000);
}

TEST_F(BrokerQueueTest, RedrivePoliciesAreCheckedWhenSetAndListedByTheirDeadLetterQueue) {
  QueueAttributes deny;
  deny.redrive_allow_policy.permission = RedrivePermission::kDenyAll;
  ASSERT_TRUE(CreateQueue("closed-dlq", deny));
  ASSERT_TRUE(CreateQueue("dlq"));
  for (const char* name : {"c", "a", "b"})
    ASSERT_TRUE(CreateQueue(name));
  EXPECT_EQ(SetAttributes("a",
                          [](QueueAttributes& q) {
                            q.redrive_policy = {"closed-dlq", 2};
                          })
                .error()
                .code,
            ErrorCode::kFailedPrecondition);
  EXPECT_EQ(SetAttributes("a",
                          [](QueueAttributes& q) {
                            q.redrive_policy = {"a", 2};
                          })
                .error()
                .code,
            ErrorCode::kInvalidArgument);
  for (const char* name : {"c", "a", "b"}) {
    ASSERT_TRUE(SetAttributes(name, [](QueueAttributes& q) { q.redrive_policy = {"dlq", 2}; }));
  }
  auto sources = broker_->DeadLetterSourceQueues("dlq", "", 10);
  ASSERT_TRUE(sources);
  EXPECT_EQ(*sources, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(*broker_->DeadLetterSourceQueues("dlq", "a", 1), std::vector<std::string>{"b"});
  EXPECT_TRUE(broker_->DeadLetterSourceQueues("closed-dlq", "", 10)->empty());
  EXPECT_EQ(broker_->DeadLetterSourceQueues("nope", "", 10).error().code, ErrorCode::kNotFound);
  // Removing the policy takes the queue off the list.
  ASSERT_TRUE(SetAttributes("b", [](QueueAttributes& q) { q.redrive_policy.reset(); }));
  EXPECT_EQ(*broker_->DeadLetterSourceQueues("dlq", "", 10), (std::vector<std::string>{"a", "c"}));
}

TEST_F(BrokerQueueTest, ARedriveMovesDeadLettersBackToTheirSourcesOnce) {
  ASSERT_TRUE(CreateQueue("dlq"));
  QueueAttributes policy;
  policy.redrive_policy = RedrivePolicy{"dlq", 1};
  policy.partitions = 2;
  ASSERT_TRUE(CreateQueue("src1", policy));
  ASSERT_TRUE(CreateQueue("src2", policy));
  ASSERT_TRUE(Send("src1", {"a0", "a1", "a2"}));
  ASSERT_TRUE(Send("src2", {"b0"}));
  DeadLetterAll("src1", "dlq", 3);
  DeadLetterAll("src2", "dlq", 4);

  auto started = StartRedrive("dlq");
  ASSERT_TRUE(started) << started.error().ToString();
  EXPECT_EQ(started->status, RedriveStatus::kRunning);
  EXPECT_EQ(started->to_move, 4u);
  const RedriveTask done = AwaitRedrive("dlq", started->id);
  EXPECT_EQ(done.status, RedriveStatus::kCompleted) << done.failure;
  EXPECT_EQ(done.moved, 4u);
  EXPECT_GE(done.finished_ms, done.started_ms);

  auto back1 = ReceiveAll("src1", 3);
  EXPECT_EQ(Bodies(back1), (std::set<std::string>{"a0", "a1", "a2"}));
  for (const auto& m : back1) {
    EXPECT_EQ(m.message.receive_count, 1u) << "a new message at its source";
    for (const auto& [key, value] : m.message.record.headers)
      EXPECT_NE(key.rfind("spool.dlq.", 0), 0u) << key;
  }
  EXPECT_EQ(Bodies(ReceiveAll("src2", 1)), std::set<std::string>{"b0"});
  auto dlq = Describe("dlq");
  ASSERT_TRUE(dlq);
  EXPECT_EQ(dlq->counts.visible + dlq->counts.in_flight + dlq->counts.delayed, 0u);
  EXPECT_EQ(dlq->activity.redriven, 4u);
  EXPECT_EQ(Describe("src1")->activity.dead_lettered, 3u);
}

TEST_F(BrokerQueueTest, ARedriveWithoutASourceFailsAndOneWithADestinationMovesIt) {
  ASSERT_TRUE(CreateQueue("dlq"));
  QueueAttributes policy;
  policy.redrive_policy = RedrivePolicy{"dlq", 1};
  ASSERT_TRUE(CreateQueue("src", policy));
  ASSERT_TRUE(CreateQueue("other"));
  ASSERT_TRUE(Send("dlq", {"orphan"}));  // sent to the dead-letter queue directly
  auto failing = StartRedrive("dlq");
  ASSERT_TRUE(failing);
  const RedriveTask failed = AwaitRedrive("dlq", failing->id);
  EXPECT_EQ(failed.status, RedriveStatus::kFailed);
  EXPECT_NE(failed.failure.find("no source queue"), std::string::npos) << failed.failure;
  EXPECT_EQ(Describe("dlq")->counts.visible, 1u) << "the message stays, receivable";

  auto moving = StartRedrive("dlq", "other");
  ASSERT_TRUE(moving);
  const RedriveTask moved = AwaitRedrive("dlq", moving->id);
  EXPECT_EQ(moved.status, RedriveStatus::kCompleted) << moved.failure;
  EXPECT_EQ(moved.moved, 1u);
  EXPECT_EQ(Bodies(ReceiveAll("other", 1)), std::set<std::string>{"orphan"});
  auto listed = broker_->ListRedriveTasks("dlq", 10);
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ(listed->at(0).id, moving->id) << "most recent first";
  EXPECT_EQ(broker_->ListRedriveTasks("dlq", 1)->size(), 1u);
}

TEST_F(BrokerQueueTest, RedriveRequestsAreCheckedAndRunningTasksCancelled) {
  ASSERT_TRUE(CreateQueue("dlq"));
  QueueAttributes policy;
  policy.redrive_policy = RedrivePolicy{"dlq", 1};
  ASSERT_TRUE(CreateQueue("src", policy));
  QueueAttributes fifo;
  fifo.fifo = true;
  ASSERT_TRUE(CreateQueue("f.fifo", fifo));
  EXPECT_EQ(StartRedrive("dlq", "", 0).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(StartRedrive("dlq", "", 10'001).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(StartRedrive("dlq", "dlq").error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(StartRedrive("bad name").error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(StartRedrive("nope").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(StartRedrive("dlq", "nope").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(StartRedrive("src").error().code, ErrorCode::kFailedPrecondition)
      << "not a dead-letter queue";
  EXPECT_EQ(StartRedrive("dlq", "f.fifo").error().code, ErrorCode::kFailedPrecondition)
      << "a standard dead-letter queue into a FIFO queue";
  EXPECT_EQ(broker_->ListRedriveTasks("nope", 1).error().code, ErrorCode::kNotFound);

  ASSERT_TRUE(Send("src", {"1", "2", "3", "4", "5"}));
  DeadLetterAll("src", "dlq", 5);
  auto slow = StartRedrive("dlq", "", 1);  // one message a second
  ASSERT_TRUE(slow);
  EXPECT_EQ(StartRedrive("dlq").error().code, ErrorCode::kFailedPrecondition) << "one at a time";
  Waiter<RedriveTask> cancel;
  broker_->CancelRedrive(slow->id, cancel.Callback());
  auto cancelling = cancel.Get();
  ASSERT_TRUE(cancelling) << cancelling.error().ToString();
  EXPECT_TRUE(cancelling->status == RedriveStatus::kCancelling ||
              cancelling->status == RedriveStatus::kCancelled);
  const RedriveTask cancelled = AwaitRedrive("dlq", slow->id);
  EXPECT_EQ(cancelled.status, RedriveStatus::kCancelled);
  EXPECT_LT(cancelled.moved, 5u);
  // Nothing lost, nothing twice.
  EXPECT_EQ(Describe("dlq")->counts.visible + Describe("src")->counts.visible, 5u);
  Waiter<RedriveTask> again;
  broker_->CancelRedrive(slow->id, again.Callback());
  EXPECT_EQ(again.Get().error().code, ErrorCode::kFailedPrecondition);
  Waiter<RedriveTask> unknown;
  broker_->CancelRedrive(12345, unknown.Callback());
  EXPECT_EQ(unknown.Get().error().code, ErrorCode::kNotFound);
}

TEST_F(BrokerQueueTest, ARedriveResumesAfterARestartWithoutDuplicates) {
  QueueAttributes fifo;
  fifo.fifo = true;
  fifo.content_based_deduplication = true;
  ASSERT_TRUE(CreateQueue("dlq.fifo", fifo));
  QueueAttributes policy = fifo;
  policy.redrive_policy = RedrivePolicy{"dlq.fifo", 1};
  ASSERT_TRUE(CreateQueue("src.fifo", policy));
  ASSERT_TRUE(Send("src.fifo", {"m0", "m1", "m2", "m3"}, std::nullopt, "G"));
  // FIFO dead-letters one message per receive pair: the group waits for each move.
  for (int i = 0; i < 4; ++i)
    DeadLetterAll("src.fifo", "dlq.fifo", static_cast<std::uint64_t>(i + 1));
  auto task = StartRedrive("dlq.fifo", "", 5);  // one message per 200 ms
  ASSERT_TRUE(task);
  Close();
  Open();
  const RedriveTask done = AwaitRedrive("dlq.fifo", task->id);
  EXPECT_EQ(done.status, RedriveStatus::kCompleted) << done.failure;
  std::vector<std::string> order;
  for (int i = 0; i < 10 && order.size() < 5; ++i) {
    auto got = Receive("src.fifo", 10);
    ASSERT_TRUE(got);
    if (got->empty()) break;
    for (const auto& m : *got) {
      order.push_back(m.message.record.value);
      ASSERT_TRUE(Delete("src.fifo", m));
    }
  }
  EXPECT_EQ(order, (std::vector<std::string>{"m0", "m1", "m2", "m3"})) << "in order, once each";
  auto dlq = Describe("dlq.fifo");
  EXPECT_EQ(dlq->counts.visible + dlq->counts.in_flight, 0u);
}

TEST_F(BrokerQueueTest, MessagesAreLeasedDeletedAndReleasedAcrossPartitions) {
  QueueAttributes a;
  a.partitions = 3;
  ASSERT_TRUE(CreateQueue("work", a));
  // Each send goes to the next partition in turn.
  for (int i = 0; i < 30; ++i)
    ASSERT_TRUE(Send("work", {"m" + std::to_string(i)}));
  auto got = ReceiveAll("work", 30);
  ASSERT_EQ(got.size(), 30u);
  std::set<std::string> seen;
  std::set<std::uint32_t> partitions;
  for (const auto& m : got) {
    seen.insert(m.message.record.value);
    partitions.insert(m.partition);
    EXPECT_EQ(m.message.receive_count, 1u);
  }
  EXPECT_EQ(seen.size(), 30u) << "a message was received twice while leased";
  EXPECT_EQ(partitions.size(), 3u);
  EXPECT_TRUE(Receive("work", 10)->empty());
  auto info = Describe("work");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->counts.in_flight, 30u);
  // Delete ten, release one at once, let the rest's leases run out.
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(Delete("work", got[i]));
  ASSERT_TRUE(ChangeVisibility("work", got[10], 0));
  auto released = Receive("work", 10);
  ASSERT_EQ(released->size(), 1u);
  EXPECT_EQ(released->at(0).message.record.value, got[10].message.record.value);
  EXPECT_EQ(released->at(0).message.receive_count, 2u);
  EXPECT_EQ(Delete("work", got[10]).error().code, ErrorCode::kFailedPrecondition)
      << "the first receipt is stale after the second receive";
  clock_.Advance(milliseconds(30'000));
  EXPECT_EQ(ReceiveAll("work", 30).size(), 20u) << "expired leases did not come back";
  EXPECT_TRUE(Delete("work", got[0])) << "deleting twice is fine";
  QueueReceipt foreign{7, 0, 1};
  StatusWaiter w;
  broker_->DeleteMessage("work", foreign, w.Callback());
  EXPECT_EQ(w.Get().error().code, ErrorCode::kInvalidArgument);
}

// Delayed messages count as delayed, not visible, also past the 10,000 records per partition
// that a description examines: each delayed append is noted when it becomes durable.
TEST_F(BrokerQueueTest, DelayedMessagesCountAsDelayedWithoutBeingExamined) {
  ASSERT_TRUE(CreateQueue("later"));
  ASSERT_TRUE(Send("later", {"now"}, 0));
  for (int b = 0; b < 12; ++b)
    ASSERT_TRUE(Send("later", std::vector<std::string>(1'000, "x"), 60'000));
  auto info = Describe("later");
  ASSERT_TRUE(info) << info.error().ToString();
  EXPECT_EQ(info->counts.delayed, 12'000u);
  EXPECT_EQ(info->counts.visible, 1u);
  EXPECT_TRUE(info->oldest_visible_sent_ms);

  // The receive takes "now" and examines delayed records past it: none may count twice.
  auto got = Receive("later", 10);
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ(got->at(0).message.record.value, "now");
  info = Describe("later");
  EXPECT_EQ(info->counts.delayed, 12'000u);
  EXPECT_EQ(info->counts.in_flight, 1u);
  EXPECT_EQ(info->counts.visible, 0u);
  EXPECT_FALSE(info->oldest_visible_sent_ms) << "every other message is delayed";
  ASSERT_TRUE(Delete("later", got->at(0)));

  clock_.Advance(milliseconds(60'000));
  info = Describe("later");
  EXPECT_EQ(info->counts.delayed, 0u);
  EXPECT_EQ(info->counts.visible, 12'000u);
  EXPECT_TRUE(info->oldest_visible_sent_ms);

  ASSERT_TRUE(Send("later", std::vector<std::string>(5, "y"), 60'000));
  Waiter<std::uint64_t> purged;
  broker_->PurgeQueue("later", purged.Callback());
  ASSERT_TRUE(purged.Get());
  info = Describe("later");
  EXPECT_EQ(info->counts.visible + info->counts.in_flight + info->counts.delayed, 0u)
      << "a purge takes delayed messages too";
}

// More delayed messages than a description examines (10,000) count as delayed after a
// restart too: the log's delay index lists them, so no record is read.
TEST_F(BrokerQueueTest, DelayedMessagesStillCountAsDelayedAfterARestart) {
  ASSERT_TRUE(CreateQueue("later"));
  ASSERT_TRUE(Send("later", {"now"}, 0));
  for (int b = 0; b < 12; ++b)
    ASSERT_TRUE(Send("later", std::vector<std::string>(1'000, "x"), 60'000));
  ASSERT_TRUE(Send("later", {"sooner"}, 30'000));
  Close();
  Open();
  auto info = Describe("later");
  ASSERT_TRUE(info) << info.error().ToString();
  EXPECT_EQ(info->counts.delayed, 12'001u);
  EXPECT_EQ(info->counts.visible, 1u);
  auto got = Receive("later", 10);
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ(got->at(0).message.record.value, "now");
  ASSERT_TRUE(Delete("later", got->at(0)));

  clock_.Advance(milliseconds(30'000));
  Close();
  Open();
  info = Describe("later");
  EXPECT_EQ(info->counts.delayed, 12'000u) << "what is due is no longer delayed";
  EXPECT_EQ(info->counts.visible, 1u);
  // A receive reads at most 10,000 records: the second one reaches "sooner".
  got = Receive("later", 10);
  for (int i = 0; i < 3 && got && got->empty(); ++i)
    got = Receive("later", 10);
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ(got->at(0).message.record.value, "sooner");
  ASSERT_TRUE(Delete("later", got->at(0)));

  clock_.Advance(milliseconds(30'000));
  info = Describe("later");
  EXPECT_EQ(info->counts.delayed, 0u);
  EXPECT_EQ(info->counts.visible, 12'000u);
  EXPECT_EQ(info->counts.in_flight, 0u);
}

TEST_F(BrokerQueueTest, SendValidatesAndAppliesDelays) {
  QueueAttributes a;
  a.delivery_delay_ms = 2'000;
  ASSERT_TRUE(CreateQueue("slow", a));
  ASSERT_TRUE(Send("slow", {"default delay"}));
  ASSERT_TRUE(Send("slow", {"no delay"}, 0));
  ASSERT_TRUE(Send("slow", {"long delay"}, 10'000));
  auto now = Receive("slow", 10);
  ASSERT_EQ(now->size(), 1u);
  EXPECT_EQ(now->at(0).message.record.value, "no delay");
  EXPECT_EQ(Describe("slow")->counts.delayed, 2u);
  clock_.Advance(milliseconds(2'000));
  EXPECT_EQ(Receive("slow", 10)->at(0).message.record.value, "default delay");
  clock_.Advance(milliseconds(8'000));
  EXPECT_EQ(Receive("slow", 10)->at(0).message.record.value, "long delay");

  EXPECT_EQ(Send("slow", {"x"}, 900'001).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(Send("slow", {""}).error().code, ErrorCode::kInvalidArgument);
  EXPECT_TRUE(Send("slow", {"x"}, std::nullopt, "g")) << "a group on a standard queue is fine";
  EXPECT_EQ(Send("nope", {"x"}).error().code, ErrorCode::kNotFound);
  QueueAttributes small;
  small.max_message_bytes = 64;
  ASSERT_TRUE(CreateQueue("small", small));
  EXPECT_EQ(Send("small", {std::string(100, 'x')}).error().code, ErrorCode::kResourceExhausted);
  QueueAttributes fifo;
  fifo.fifo = true;
  ASSERT_TRUE(CreateQueue("f.fifo", fifo));
  EXPECT_EQ(Send("f.fifo", {"x"}).error().code, ErrorCode::kInvalidArgument) << "no group id";
  EXPECT_EQ(Send("f.fifo", {"x"}, 5, "g").error().code, ErrorCode::kInvalidArgument)
      << "a per-message delay on a FIFO queue";
  EXPECT_EQ(Send("f.fifo", {"x"}, std::nullopt, "g").error().code, ErrorCode::kInvalidArgument)
      << "no deduplication id, and content-based deduplication is off";
  EXPECT_EQ(Receive("slow", 0).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(Receive("slow", 1001).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(Receive("slow", 1, 12LL * 3600 * 1000 + 1).error().code, ErrorCode::kInvalidArgument);
}

TEST_F(BrokerQueueTest, TheInFlightLimitIsAnErrorWithoutAWaitAndEmptyWithOne) {
  QueueAttributes a;
  a.max_in_flight = 1;
  ASSERT_TRUE(CreateQueue("narrow", a));
  ASSERT_TRUE(Send("narrow", {"1", "2", "3"}));
  auto receive = [&](std::size_t max, std::optional<std::int64_t> wait_ms) {
    Waiter<QueueReceived> w;
    broker_->ReceiveMessagesWithLimit({"narrow", max, std::nullopt, wait_ms}, w.Callback());
    return w.Get();
  };
  auto cut = receive(10, std::nullopt);
  ASSERT_TRUE(cut) << cut.error().ToString();
  EXPECT_EQ(cut->messages.size(), 1u);
  EXPECT_TRUE(cut->in_flight_limit) << "one of ten, and two more visible: the limit says why";
  EXPECT_EQ(Receive("narrow", 10).error().code, ErrorCode::kResourceExhausted);
  auto waited = receive(1, 200);
  ASSERT_TRUE(waited) << waited.error().ToString();
  EXPECT_TRUE(waited->messages.empty());
  EXPECT_TRUE(waited->in_flight_limit) << "a long poll ends empty, and says why";
  ASSERT_TRUE(Delete("narrow", cut->messages.at(0)));
  auto exact = receive(1, std::nullopt);
  ASSERT_TRUE(exact) << exact.error().ToString();
  EXPECT_EQ(exact->messages.size(), 1u);
  EXPECT_FALSE(exact->in_flight_limit) << "all that was asked came";
  ASSERT_TRUE(Delete("narrow", exact->messages.at(0)));
  ASSERT_TRUE(SetAttributes("narrow", [&](QueueAttributes& q) { q.max_in_flight = 10; }));
  auto short_of_messages = receive(10, std::nullopt);
  ASSERT_TRUE(short_of_messages) << short_of_messages.error().ToString();
  EXPECT_EQ(short_of_messages->messages.size(), 1u);
  EXPECT_FALSE(short_of_messages->in_flight_limit) << "fewer because there were no more";
}

TEST_F(BrokerQueueTest, TheInFlightLimitHoldsAcrossPartitions) {
  QueueAttributes a;
  a.max_in_flight = 2;
  a.partitions = 3;
  ASSERT_TRUE(CreateQueue("wide", a));
  ASSERT_TRUE(Send("wide", {"1", "2", "3", "4", "5", "6"}));
  auto first = Receive("wide", 10);
  ASSERT_TRUE(first) << first.error().ToString();
  EXPECT_EQ(first->size(), 2u) << "each partition applied the whole limit";
  EXPECT_EQ(Receive("wide", 10).error().code, ErrorCode::kResourceExhausted);
  ASSERT_TRUE(Delete("wide", first->at(0)));
  auto more = Receive("wide", 10);
  ASSERT_TRUE(more) << more.error().ToString();
  EXPECT_EQ(more->size(), 1u);
  // Ended leases leave the count.
  clock_.Advance(milliseconds(30'000));
  auto after = Receive("wide", 10);
  ASSERT_TRUE(after) << after.error().ToString();
  EXPECT_EQ(after->size(), 2u);
}

TEST_F(BrokerQueueTest, WhatEveryQueueOfAnOwnedTopicAcknowledgedIsTrimmed) {
  ASSERT_TRUE(CreateQueue("jobs"));
  ASSERT_TRUE(CreateQueue("audit", {}, "jobs"));  // a second subscription on the same topic
  ASSERT_TRUE(Send("jobs", {"1", "2", "3", "4", "5"}));
  auto trim = [&] {
    Waiter<std::uint64_t> w;
    broker_->EnforceRetention(w.Callback());
    auto dropped = w.Get();
    EXPECT_TRUE(dropped) << dropped.error().ToString();
    return broker_->DescribeTopic("jobs")->partitions.at(0).start_offset;
  };
  auto jobs = Receive("jobs", 3);
  ASSERT_TRUE(jobs && jobs->size() == 3);
  for (const auto& m : *jobs)
    ASSERT_TRUE(Delete("jobs", m));
  EXPECT_EQ(trim(), 0u) << "audit has acknowledged nothing yet";
  auto audit = Receive("audit", 2);
  ASSERT_EQ(audit->size(), 2u);
  for (const auto& m : *audit)
    ASSERT_TRUE(Delete("audit", m));
  EXPECT_EQ(trim(), 2u) << "the lowest ack floor of the topic's queues";
  EXPECT_EQ(Bodies(ReceiveAll("jobs", 2)), (std::set<std::string>{"4", "5"}));
  EXPECT_EQ(Bodies(ReceiveAll("audit", 3)), (std::set<std::string>{"3", "4", "5"}));
  // A topic no queue owns keeps what its queues acknowledged: streams may read it.
  TopicConfig shared;
  shared.name = "events";
  Waiter<TopicInfo> t;
  broker_->CreateTopic(shared, t.Callback());
  ASSERT_TRUE(t.Get());
  ASSERT_TRUE(CreateQueue("events-q", {}, "events"));
  ASSERT_TRUE(Send("events-q", {"e"}));
  auto events = Receive("events-q", 1);
  ASSERT_TRUE(events && events->size() == 1);
  ASSERT_TRUE(Delete("events-q", events->front()));
  trim();
  EXPECT_EQ(broker_->DescribeTopic("events")->partitions.at(0).start_offset, 0u);
}

TEST_F(BrokerQueueTest, ATopicListsTheQueuesThatReadIt) {
  auto queues_of = [&](const std::string& topic) {
    auto info = broker_->DescribeTopic(topic);
    EXPECT_TRUE(info) << topic;
    return info ? std::pair{info->queues, info->owner_queue}
                : std::pair{std::vector<std::string>{}, std::string()};
  };
  using Listed = std::pair<std::vector<std::string>, std::string>;
  ASSERT_TRUE(CreateQueue("jobs"));
  ASSERT_TRUE(CreateQueue("b-audit", {}, "jobs"));
  ASSERT_TRUE(CreateQueue("a-audit", {}, "jobs"));
  ASSERT_TRUE(CreateQueue("other"));
  EXPECT_EQ(queues_of("jobs"), (Listed{{"a-audit", "b-audit", "jobs"}, "jobs"}));
  EXPECT_EQ(queues_of("other"), (Listed{{"other"}, "other"}));
  StatusWaiter deleted;
  broker_->DeleteQueue("b-audit", deleted.Callback());
  ASSERT_TRUE(deleted.Get());
  EXPECT_EQ(queues_of("jobs"), (Listed{{"a-audit", "jobs"}, "jobs"}));
  Close();
  Open();
  EXPECT_EQ(queues_of("jobs"), (Listed{{"a-audit", "jobs"}, "jobs"})) << "after a restart";
  StatusWaiter forced;
  broker_->DeleteTopic("jobs", true, forced.Callback());
  ASSERT_TRUE(forced.Get());
  TopicConfig again;
  again.name = "jobs";
  Waiter<TopicInfo> created;
  broker_->CreateTopic(again, created.Callback());
  ASSERT_TRUE(created.Get());
  EXPECT_EQ(queues_of("jobs"), Listed{}) << "the deleted topic's queues came back";
  EXPECT_EQ(queues_of("other"), (Listed{{"other"}, "other"}));
}

TEST_F(BrokerQueueTest, FifoGroupsStayInOrder) {
  QueueAttributes fifo;
  fifo.fifo = true;
  fifo.content_based_deduplication = true;
  fifo.partitions = 2;
  ASSERT_TRUE(CreateQueue("orders.fifo", fifo));
  ASSERT_TRUE(Send("orders.fifo", {"a1", "a2", "a3"}, std::nullopt, "A"));
  auto first = Receive("orders.fifo", 1);
  ASSERT_EQ(first->size(), 1u);
  EXPECT_EQ(first->at(0).message.record.value, "a1");
  EXPECT_TRUE(Receive("orders.fifo", 10)->empty()) << "a2 overtook the in-flight a1";
  ASSERT_TRUE(Delete("orders.fifo", first->at(0)));
  auto rest = Receive("orders.fifo", 10);
  ASSERT_EQ(rest->size(), 2u);
  EXPECT_EQ(rest->at(0).message.record.value, "a2");
  EXPECT_EQ(rest->at(1).message.record.value, "a3");
}

TEST_F(BrokerQueueTest, PurgeDescribeAndDelete) {
  ASSERT_TRUE(CreateQueue("p"));
  ASSERT_TRUE(Send("p", {"1", "2", "3"}));
  ASSERT_EQ(Receive("p", 1)->size(), 1u);
  auto info = Describe("p");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->counts.visible, 2u);
  EXPECT_EQ(info->counts.in_flight, 1u);
  Waiter<std::uint64_t> purged;
  broker_->PurgeQueue("p", purged.Callback());
  EXPECT_EQ(*purged.Get(), 3u);
  clock_.Advance(milliseconds(60'000));
  EXPECT_TRUE(Receive("p", 10)->empty()) << "purged messages came back";
  ASSERT_TRUE(Send("p", {"after"}));
  EXPECT_EQ(Receive("p", 10)->size(), 1u);

  // A topic with queues is only deleted with force; deleting the owning queue deletes it.
  StatusWaiter refused;
  broker_->DeleteTopic("p", refused.Callback());
  EXPECT_EQ(refused.Get().error().code, ErrorCode::kFailedPrecondition);
  StatusWaiter deleted;
  broker_->DeleteQueue("p", deleted.Callback());
  ASSERT_TRUE(deleted.Get());
  EXPECT_FALSE(broker_->DescribeTopic("p"));
  EXPECT_EQ(Describe("p").error().code, ErrorCode::kNotFound);
  StatusWaiter again;
  broker_->DeleteQueue("p", again.Callback());
  EXPECT_EQ(again.Get().error().code, ErrorCode::kNotFound);
  // Re-created, it starts empty.
  ASSERT_TRUE(CreateQueue("p"));
  EXPECT_TRUE(Receive("p", 10)->empty());
  StatusWaiter forced;
  broker_->DeleteTopic("p", true, forced.Callback());
  ASSERT_TRUE(forced.Get());
  EXPECT_TRUE(broker_->ListQueues("", "", 10).empty()) << "force left the queue behind";
}

TEST_F(BrokerQueueTest, QueuesLeasesAndProgressSurviveARestart) {
  ASSERT_TRUE(CreateQueue("durable"));
  ASSERT_TRUE(Send("durable", {"a", "b", "c"}));
  auto got = Receive("durable", 2);
  ASSERT_EQ(got->size(), 2u);
  ASSERT_TRUE(Delete("durable", got->at(0)));
  Close();
  Open();
  ASSERT_EQ(broker_->ListQueues("", "", 10), (std::vector<std::string>{"durable"}));
  clock_.Advance(milliseconds(10'000));
  auto after = Receive("durable", 10);
  ASSERT_EQ(after->size(), 1u) << "b is still leased; only c is receivable";
  EXPECT_EQ(after->at(0).message.record.value, "c");
  clock_.Advance(milliseconds(20'000));  // b's lease (from before the restart) has ended
  auto b = Receive("durable", 10);
  ASSERT_EQ(b->size(), 1u);
  EXPECT_EQ(b->at(0).message.record.value, "b");
  EXPECT_EQ(b->at(0).message.receive_count, 2u);
  ASSERT_TRUE(CreateQueue("second"));
  EXPECT_NE(Describe("second")->metadata.subscription, 0u);
  EXPECT_GT(Describe("second")->metadata.subscription, Describe("durable")->metadata.subscription)
      << "subscription ids were reused";
}

// Holds the store's completions back: every write queued after Hold() completes only
// after Release(). Write callbacks run one at a time in queue order, so one that waits
// delays all later ones.
class CompletionGate {
 public:
  void Hold(storage::Store& store) {
    auto entered = std::make_shared<std::promise<void>>();
    auto in = entered->get_future();
    store.Write(storage::WriteBatch(), [entered, open = open_](Status) {
      entered->set_value();
      open.wait();
    });
    ASSERT_EQ(in.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  }
  void Release() { release_.set_value(); }
  ~CompletionGate() {
    if (open_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) Release();
  }

 private:
  std::promise<void> release_;
  std::shared_future<void> open_ = release_.get_future().share();
};

// A lease carries the message's receive count, so by default a receive is answered only
// once its lease is durable: a crash must not forget a delivery, or a poison message could
// be delivered past its max receive count.
TEST_F(BrokerQueueTest, AReceiveIsAnsweredOnlyOnceItsLeaseIsDurable) {
  ASSERT_TRUE(CreateQueue("durable"));
  ASSERT_TRUE(Send("durable", {"a"}));
  CompletionGate gate;
  gate.Hold(*store_);
  auto answer = std::make_shared<std::promise<Result<std::vector<QueueMessage>>>>();
  auto answered = answer->get_future();
  broker_->ReceiveMessages(
      {"durable", 1, std::nullopt, std::nullopt},
      [answer](Result<std::vector<QueueMessage>> r) { answer->set_value(std::move(r)); });
  EXPECT_EQ(answered.wait_for(milliseconds(300)), std::future_status::timeout)
      << "the receive was answered before its lease was durable";
  gate.Release();
  ASSERT_EQ(answered.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  auto got = answered.get();
  ASSERT_TRUE(got) << got.error().ToString();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ(got->at(0).message.receive_count, 1u);
}

// A receive whose leases fail to reach the disk delivers nothing: its messages' receive
// counts would be lost.
TEST_F(BrokerQueueTest, AReceiveWhoseLeaseWriteFailsDeliversNothing) {
  ASSERT_TRUE(CreateQueue("failing"));
  ASSERT_TRUE(Send("failing", {"a"}));
  fail_writes_->store(true);

  auto got = Receive("failing", 1);

  ASSERT_FALSE(got) << "delivered " << got->size() << " message(s) whose lease was not written";
  // The lease write fails as injected; a write queued after it fails as the store's
  // failure (Unavailable), depending on whether they went to the disk together.
  EXPECT_TRUE(got.error().code == ErrorCode::kInternal ||
              got.error().code == ErrorCode::kUnavailable)
      << got.error().ToString();
}

// With defer_receive_fsync the answer does not wait for the store.
TEST_F(BrokerQueueTest, ADeferredReceiveIsAnsweredBeforeItsLeaseIsDurable) {
  Close();
  defer_receive_fsync_ = true;
  Open();
  ASSERT_TRUE(CreateQueue("deferred"));
  ASSERT_TRUE(Send("deferred", {"a"}));
  CompletionGate gate;
  gate.Hold(*store_);
  Waiter<std::vector<QueueMessage>> w;
  broker_->ReceiveMessages({"deferred", 1, std::nullopt, std::nullopt}, w.Callback());
  auto got = w.Get(std::chrono::seconds(10));
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_EQ(got->size(), 1u);
  gate.Release();
}

// With defer_receive_fsync (or after a power loss under fsync: interval) a crash can forget
// a receive whose answer went out. Its receipt must not come back to life: the next run's
// receive of the message gets another generation, and only that one deletes it. A lease
// that was written keeps its receipt.
TEST_F(BrokerQueueTest, AReceiptOfAReceiveACrashForgotStaysStale) {
  Close();
  defer_receive_fsync_ = true;
  Open();
  ASSERT_TRUE(CreateQueue("forget"));
  ASSERT_TRUE(Send("forget", {"a", "b"}));
  // One at a time, so that each lease is a state of its own (two would share a lease run).
  auto first = Receive("forget", 1);
  auto second = Receive("forget", 1);
  ASSERT_TRUE(first);
  ASSERT_TRUE(second);
  ASSERT_EQ(first->size(), 1u);
  ASSERT_EQ(second->size(), 1u);
  const bool a_first = first->at(0).message.record.value == "a";
  const QueueMessage forgotten = a_first ? first->at(0) : second->at(0);
  const QueueMessage kept = a_first ? second->at(0) : first->at(0);
  const std::uint32_t subscription = Describe("forget")->metadata.subscription;
  Close();
  {
    // What the crash took: a's lease write, as if it never reached the disk.
    auto store = storage::Store::Open(dir_.path(), {});
    ASSERT_TRUE(store) << store.error().ToString();
    storage::WriteBatch lose;
    lose.Delete(
        storage::ColumnFamily::kQueueState,
        storage::QueueMessageKey(subscription, forgotten.partition, forgotten.message.offset));
    ASSERT_TRUE((*store)->WriteSync(std::move(lose)));
  }
  Open();
  auto again = Receive("forget", 10);
  ASSERT_TRUE(again);
  ASSERT_EQ(again->size(), 1u) << "a is receivable at once; b is still leased";
  EXPECT_EQ(again->at(0).message.record.value, "a");
  EXPECT_EQ(again->at(0).message.receive_count, 1u) << "the forgotten receive is not counted";
  EXPECT_NE(again->at(0).message.generation, forgotten.message.generation);

  Status stale = Delete("forget", forgotten);
  ASSERT_FALSE(stale) << "the forgotten receive's receipt deleted the redelivered message";
  EXPECT_EQ(stale.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_TRUE(Delete("forget", again->at(0)));
  EXPECT_TRUE(Delete("forget", kept)) << "a lease that was written keeps its receipt";
  EXPECT_EQ(Describe("forget")->counts.in_flight, 0u);
}

// The same for leases stored as one run (one receive took both for the first time): the crash
// took the run, so both are receivable at once, uncounted, and their receipts are stale.
TEST_F(BrokerQueueTest, ReceiptsOfALeaseRunACrashForgotStayStale) {
  Close();
  defer_receive_fsync_ = true;
  Open();
  ASSERT_TRUE(CreateQueue("forget-run"));
  ASSERT_TRUE(Send("forget-run", {"a", "b"}));
  auto got = Receive("forget-run", 2);
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 2u);
  const QueueMessage first = got->at(0);
  const std::uint32_t subscription = Describe("forget-run")->metadata.subscription;
  Close();
  {
    auto store = storage::Store::Open(dir_.path(), {});
    ASSERT_TRUE(store) << store.error().ToString();
    storage::WriteBatch lose;
    lose.Delete(storage::ColumnFamily::kQueueState,
                storage::QueueLeaseRunKey(subscription, first.partition, first.message.offset));
    ASSERT_TRUE((*store)->WriteSync(std::move(lose)));
  }
  Open();
  auto again = Receive("forget-run", 10);
  ASSERT_TRUE(again);
  ASSERT_EQ(again->size(), 2u) << "both are receivable at once";
  for (const QueueMessage& m : *again) {
    EXPECT_EQ(m.message.receive_count, 1u) << "the forgotten receive is not counted";
  }
  for (const QueueMessage& old : *got) {
    Status stale = Delete("forget-run", old);
    ASSERT_FALSE(stale) << "a forgotten receive's receipt deleted the redelivered message";
    EXPECT_EQ(stale.error().code, ErrorCode::kFailedPrecondition);
  }
  for (const QueueMessage& m : *again)
    EXPECT_TRUE(Delete("forget-run", m));
  EXPECT_EQ(Describe("forget-run")->counts.in_flight, 0u);
}

// The limit counts the message (body, headers), not the record's framing: a message of
// exactly the limit is accepted, one byte more is not, and Spool's own headers do not count.
TEST_F(BrokerQueueTest, TheSizeLimitCountsTheMessageNotItsFraming) {
  QueueAttributes small;
  small.max_message_bytes = 64;
  ASSERT_TRUE(CreateQueue("exact", small));
  EXPECT_TRUE(Send("exact", {std::string(64, 'x')}));
  EXPECT_EQ(Send("exact", {std::string(65, 'x')}).error().code, ErrorCode::kResourceExhausted);
  auto typed = [&](std::vector<std::pair<std::string, std::string>> headers) {
    QueueSend m;
    m.record.value = "body";
    m.record.headers = std::move(headers);
    Waiter<std::vector<ProducedRecord>> w;
    broker_->SendMessages("exact", {m}, w.Callback());
    return w.Get();
  };
  EXPECT_TRUE(typed({{"n", std::string(59, 'v')}})) << "4 + 1 + 59 bytes";
  EXPECT_FALSE(typed({{"n", std::string(59, 'v')}, {"spool.type.n", "Binary"}}))
      << "a header's type counts, as an SQS attribute's does";
  EXPECT_FALSE(typed({{"n", std::string(60, 'v')}}));
  EXPECT_TRUE(typed({{"n", "42"}, {"spool.type.n", "Number.int"}, {"spool.trace_header", "t"}}))
      << "typed headers and the trace header are allowed";
  for (const auto& bad : std::vector<std::vector<std::pair<std::string, std::string>>>{
           {{"spool.type.n", "Number"}},                              // no header n
           {{"n", "1"}, {"spool.type.n", "Integer"}},                 // not a known type
           {{"n", "1"}, {"spool.type.n", "Stringy"}},                 // a suffix needs its dot
           {{"spool.trace_header", std::string(8 * 1024 + 1, 't')}},  // too long
           {{"spool.dlq.source_queue", "elsewhere"}},                 // reserved
       }) {
    auto refused = typed(bad);
    ASSERT_FALSE(refused) << bad.front().first;
    EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
  }
}

TEST_F(BrokerQueueTest, ABatchDeleteAnswersEachReceiptAcrossPartitions) {
  QueueAttributes a;
  a.partitions = 3;
  ASSERT_TRUE(CreateQueue("many", a));
  // One send each: the messages of one send stick to one partition.
  for (int i = 0; i < 12; ++i)
    ASSERT_TRUE(Send("many", {"m" + std::to_string(i)}));
  auto got = Receive("many", 12);
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 12u);
  std::set<std::uint32_t> partitions;
  std::vector<QueueReceipt> receipts;
  for (const auto& m : *got) {
    partitions.insert(m.partition);
    receipts.push_back(Receipt(m));
  }
  // A stale receipt (an older generation), one of a partition the queue lacks, and one
  // repeated: each gets its own answer.
  // (The stale one comes first: after its message's delete it would simply be done.)
  QueueReceipt stale = receipts[0];
  stale.generation += 7;
  QueueReceipt nowhere{5, 0, 1};
  receipts.insert(receipts.begin(), stale);
  receipts.push_back(nowhere);
  receipts.push_back(receipts[2]);
  Waiter<std::vector<Status>> w;
  broker_->DeleteMessages("many", receipts, w.Callback());
  auto results = w.Get();
  ASSERT_TRUE(results);
  ASSERT_EQ(results->size(), 15u);
  ASSERT_FALSE((*results)[0]);
  EXPECT_EQ((*results)[0].error().code, ErrorCode::kFailedPrecondition);
  for (std::size_t i = 1; i <= 12; ++i)
    EXPECT_TRUE((*results)[i]) << i;
  ASSERT_FALSE((*results)[13]);
  EXPECT_EQ((*results)[13].error().code, ErrorCode::kInvalidArgument);
  EXPECT_TRUE((*results)[14]) << "deleting twice is fine";
  auto info = Describe("many");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->counts.in_flight, 0u);
  EXPECT_EQ(info->counts.visible, 0u);
  EXPECT_EQ(info->activity.deleted, 13u);
  EXPECT_GT(partitions.size(), 1u) << "the messages should spread over the partitions";
}

TEST_F(BrokerQueueTest, TagsAndExtraAttributesAreKeptAcrossARestart) {
  QueueAttributes a;
  a.extra["Policy"] = R"({"Version":"2012-10-17"})";
  QueueMetadata q;
  q.name = "tagged";
  q.attributes = a;
  q.tags = {{"team", "billing"}};
  Waiter<CreateQueueResult> created;
  broker_->CreateQueue(q, created.Callback());
  ASSERT_TRUE(created.Get());
  Waiter<QueueInfo> tagged;
  broker_->SetQueueTags(
      "tagged",
      [](const QueueTags& current) -> Result<QueueTags> {
        QueueTags next = current;
        next["env"] = "prod";
        return next;
      },
      tagged.Callback());
  ASSERT_TRUE(tagged.Get());
  Waiter<QueueInfo> too_many;
  broker_->SetQueueTags(
      "tagged",
      [](const QueueTags&) -> Result<QueueTags> {
        QueueTags next;
        for (int i = 0; i < 51; ++i)
          next["k" + std::to_string(i)] = "v";
        return next;
      },
      too_many.Callback());
  EXPECT_EQ(too_many.Get().error().code, ErrorCode::kInvalidArgument);
  Close();
  Open();
  auto info = Describe("tagged");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->metadata.tags, (QueueTags{{"env", "prod"}, {"team", "billing"}}));
  EXPECT_EQ(info->metadata.attributes.extra.at("Policy"), R"({"Version":"2012-10-17"})");
}

TEST_F(BrokerQueueTest, AMessageReceivedTooOftenMovesToTheDeadLetterQueueOnce) {
  ASSERT_TRUE(CreateQueue("dead"));
  QueueAttributes a;
  a.visibility_timeout_ms = 1'000;
  a.redrive_policy = RedrivePolicy{"dead", 2};
  ASSERT_TRUE(CreateQueue("src", a));
  std::vector<QueueSend> one(1);
  one[0].record.value = "poison";
  one[0].record.headers = {{"kind", "test"}};
  Waiter<std::vector<ProducedRecord>> sent;
  broker_->SendMessages("src", std::move(one), sent.Callback());
  ASSERT_TRUE(sent.Get());
  for (std::uint32_t i = 1; i <= 2; ++i) {
    auto got = Receive("src", 1);
    ASSERT_EQ(got->size(), 1u);
    EXPECT_EQ(got->at(0).message.receive_count, i);
    clock_.Advance(milliseconds(1'000));
  }
  EXPECT_TRUE(Receive("src", 10)->empty()) << "the third receive delivered it";
  // The move is durable shortly after; the dead-letter queue has it, with where it came from.
  std::vector<QueueMessage> moved;
  for (int i = 0; i < 100 && moved.empty(); ++i) {
    moved = *Receive("dead", 10);
    if (moved.empty()) std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_EQ(moved.size(), 1u) << "the message never reached the dead-letter queue";
  const storage::Record& r = moved[0].message.record;
  EXPECT_EQ(r.value, "poison");
  auto header = [&](const std::string& key) -> std::string {
    for (const auto& [k, v] : r.headers)
      if (k == key) return v;
    return "<missing>";
  };
  EXPECT_EQ(header("kind"), "test");
  EXPECT_EQ(header("spool.dlq.source_queue"), "src");
  EXPECT_EQ(header("spool.dlq.receive_count"), "2");
  EXPECT_EQ(moved[0].message.receive_count, 1u) << "the dead-letter queue counts its own";
  // Never in both, also after a restart.
  clock_.Advance(milliseconds(60'000));
  EXPECT_TRUE(Receive("src", 10)->empty());
  Close();
  Open();
  clock_.Advance(milliseconds(60'000));
  EXPECT_TRUE(Receive("src", 10)->empty()) << "the moved message came back to the source";
  EXPECT_EQ(Receive("dead", 10)->size(), 1u);
  // Reserved header names are refused on send.
  std::vector<QueueSend> reserved(1);
  reserved[0].record.value = "x";
  reserved[0].record.headers = {{"spool.dlq.source_queue", "forged"}};
  Waiter<std::vector<ProducedRecord>> refused;
  broker_->SendMessages("src", std::move(reserved), refused.Callback());
  EXPECT_EQ(refused.Get().error().code, ErrorCode::kInvalidArgument);
}

TEST_F(BrokerQueueTest, WithoutItsDeadLetterQueueAMessageStaysReceivable) {
  ASSERT_TRUE(CreateQueue("dead"));
  QueueAttributes a;
  a.visibility_timeout_ms = 1'000;
  a.redrive_policy = RedrivePolicy{"dead", 1};
  ASSERT_TRUE(CreateQueue("src", a));
  ASSERT_TRUE(Send("src", {"m"}));
  StatusWaiter deleted;
  broker_->DeleteQueue("dead", deleted.Callback());
  ASSERT_TRUE(deleted.Get());
  for (std::uint32_t i = 1; i <= 3; ++i) {
    auto got = Receive("src", 1);
    ASSERT_EQ(got->size(), 1u) << "receive " << i;
    clock_.Advance(milliseconds(1'000));
  }
}

TEST_F(BrokerQueueTest, FifoSendsAreDeduplicatedByIdOrBody) {
  QueueAttributes fifo;
  fifo.fifo = true;
  fifo.content_based_deduplication = true;
  ASSERT_TRUE(CreateQueue("d.fifo", fifo));
  auto first = Send("d.fifo", {"same body"}, std::nullopt, "g");
  ASSERT_TRUE(first) << first.error().ToString();
  EXPECT_FALSE(first->at(0).duplicate);
  auto again = Send("d.fifo", {"same body"}, std::nullopt, "g");
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->at(0).duplicate) << "the body's hash did not deduplicate";
  EXPECT_EQ(again->at(0).offset, first->at(0).offset);
  std::vector<QueueSend> by_id(2);
  for (auto& m : by_id) {
    m.record.value = "different bodies";
    m.record.message_group_id = "g";
    m.record.dedup_id = "order-17";
  }
  by_id[1].record.value = "another body";
  Waiter<std::vector<ProducedRecord>> w;
  broker_->SendMessages("d.fifo", std::move(by_id), w.Callback());
  auto sent = w.Get();
  ASSERT_TRUE(sent) << sent.error().ToString();
  EXPECT_FALSE(sent->at(0).duplicate);
  EXPECT_TRUE(sent->at(1).duplicate) << "an explicit id repeated in one batch";
  EXPECT_EQ(ReceiveAll("d.fifo", 10).size(), 2u) << "duplicates were delivered";
  // A purge forgets the history: the same body is new again.
  Waiter<std::uint64_t> purged;
  broker_->PurgeQueue("d.fifo", purged.Callback());
  ASSERT_TRUE(purged.Get());
  auto after = Send("d.fifo", {"same body"}, std::nullopt, "g");
  ASSERT_TRUE(after);
  EXPECT_FALSE(after->at(0).duplicate);
}

// A receive that may park: the test can check whether it has answered yet.
class PendingReceive {
 public:
  PendingReceive(Broker& broker, QueueReceive request) : future_(promise_.get_future()) {
    broker.ReceiveMessages(std::move(request), [this](Result<std::vector<QueueMessage>> r) {
      promise_.set_value(std::move(r));
    });
  }
  bool Answered(milliseconds within) {
    return future_.wait_for(within) == std::future_status::ready;
  }
  Result<std::vector<QueueMessage>> Get() {
    if (!Answered(milliseconds(30'000))) throw std::runtime_error("the receive never answered");
    return future_.get();
  }

 private:
  std::promise<Result<std::vector<QueueMessage>>> promise_;
  std::future<Result<std::vector<QueueMessage>>> future_;
};

TEST_F(BrokerQueueTest, ALongPollWakesForASendAndEndsEmptyAtItsDeadline) {
  QueueAttributes a;
  a.partitions = 2;
  ASSERT_TRUE(CreateQueue("lp", a));
  PendingReceive waiting(*broker_, {"lp", 10, std::nullopt, 10'000});
  EXPECT_FALSE(waiting.Answered(milliseconds(200))) << "an empty receive with a wait answered";
  ASSERT_TRUE(Send("lp", {"hello"}));
  auto got = waiting.Get();  // long before the 10 s wait is over
  ASSERT_TRUE(got) << got.error().ToString();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ(got->at(0).message.record.value, "hello");
  // Nothing comes: empty at the end of the wait (real time; the manual clock stands still).
  PendingReceive quiet(*broker_, {"lp", 10, std::nullopt, 300});
  auto empty = quiet.Get();
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
  // The queue's receive_wait applies when the request has none.
  QueueAttributes waits;
  waits.receive_wait_ms = 20'000;
  ASSERT_TRUE(CreateQueue("waits", waits));
  PendingReceive by_default(*broker_, {"waits", 1, std::nullopt, std::nullopt});
  EXPECT_FALSE(by_default.Answered(milliseconds(200)));
  ASSERT_TRUE(Send("waits", {"x"}));
  EXPECT_EQ(by_default.Get()->size(), 1u);
  PendingReceive bad(*broker_, {"lp", 1, std::nullopt, 20'001});
  EXPECT_EQ(bad.Get().error().code, ErrorCode::kInvalidArgument);
}

TEST_F(BrokerQueueTest, ALongPollWakesForAReleaseAndForALeaseEnding) {
  QueueAttributes a;
  a.visibility_timeout_ms = 1'000;
  ASSERT_TRUE(CreateQueue("rel", a));
  ASSERT_TRUE(Send("rel", {"job"}));
  auto first = Receive("rel", 1);
  ASSERT_EQ(first->size(), 1u);
  PendingReceive waiting(*broker_, {"rel", 1, std::nullopt, 10'000});
  EXPECT_FALSE(waiting.Answered(milliseconds(200)));
  ASSERT_TRUE(ChangeVisibility("rel", first->at(0), 0));
  auto released = waiting.Get();
  ASSERT_EQ(released->size(), 1u) << "a release did not wake the receive";
  EXPECT_EQ(released->at(0).message.receive_count, 2u);
  // The lease (1 s) ends while a receive waits: it wakes at that time.
  PendingReceive later(*broker_, {"rel", 1, std::nullopt, 10'000});
  EXPECT_FALSE(later.Answered(milliseconds(100)));
  clock_.Advance(milliseconds(1'000));
  auto expired = later.Get();
  ASSERT_EQ(expired->size(), 1u) << "the lease's end did not wake the receive";
  EXPECT_EQ(expired->at(0).message.receive_count, 3u);
}

// A FIFO group unlocks when its in-flight message is deleted, and that wakes a long poll;
// a message nacked with a delay keeps its group locked until the delay ends, which wakes it
// too, with the nacked message first.
TEST_F(BrokerQueueTest, AFifoGroupHeldByAnInFlightOrNackedMessageWakesALongPollWhenFreed) {
  QueueAttributes fifo;
  fifo.fifo = true;
  fifo.content_based_deduplication = true;
  ASSERT_TRUE(CreateQueue("held.fifo", fifo));
  ASSERT_TRUE(Send("held.fifo", {"a1", "a2", "a3"}, std::nullopt, "A"));
  auto first = Receive("held.fifo", 1);
  ASSERT_EQ(first->size(), 1u);
  ASSERT_EQ(first->at(0).message.record.value, "a1");

  PendingReceive unlocked(*broker_, {"held.fifo", 1, std::nullopt, 10'000});
  EXPECT_FALSE(unlocked.Answered(milliseconds(200))) << "a2 was delivered while a1 was in flight";
  ASSERT_TRUE(Delete("held.fifo", first->at(0)));
  auto second = unlocked.Get();
  ASSERT_EQ(second->size(), 1u) << "deleting a1 did not wake the long poll";
  ASSERT_EQ(second->at(0).message.record.value, "a2");

  StatusWaiter nacked;
  broker_->NackMessage("held.fifo", Receipt(second->at(0)), 1'000, nacked.Callback());
  ASSERT_TRUE(nacked.Get());
  EXPECT_TRUE(Receive("held.fifo", 10)->empty()) << "a3 overtook a2, which a nack delayed";
  PendingReceive delayed(*broker_, {"held.fifo", 10, std::nullopt, 10'000});
  EXPECT_FALSE(delayed.Answered(milliseconds(200)));
  clock_.Advance(milliseconds(1'000));
  auto again = delayed.Get();
  ASSERT_FALSE(again->empty()) << "the nack's delay ending did not wake the long poll";
  EXPECT_EQ(again->at(0).message.record.value, "a2");
  EXPECT_EQ(again->at(0).message.receive_count, 2u);
}

TEST_F(BrokerQueueTest, AParkedReceiveWhoseCallerHasGoneLeasesNothing) {
  QueueAttributes a;
  a.redrive_policy = RedrivePolicy{"gone-dlq", 1};
  ASSERT_TRUE(CreateQueue("gone-dlq"));
  ASSERT_TRUE(CreateQueue("gone", a));
  auto caller_gone = std::make_shared<std::atomic<bool>>(false);
  QueueReceive abandoned{"gone", 1, std::nullopt, 20'000};
  abandoned.cancelled = [caller_gone] { return caller_gone->load(); };
  PendingReceive parked(*broker_, std::move(abandoned));
  EXPECT_FALSE(parked.Answered(milliseconds(100)));
  caller_gone->store(true);
  // The send wakes the parked receive: it answers empty instead of leasing the message for
  // nobody, which would also count a receive and, with a max receive count of 1, send the
  // message to the dead-letter queue at its first real receive.
  ASSERT_TRUE(Send("gone", {"job"}));
  auto woken = parked.Get();
  ASSERT_TRUE(woken) << woken.error().ToString();
  EXPECT_TRUE(woken->empty());
  auto got = Receive("gone", 1);
  ASSERT_TRUE(got) << got.error().ToString();
  ASSERT_EQ(got->size(), 1u) << "the message was leased to the receive that was cancelled";
  EXPECT_EQ(got->at(0).message.receive_count, 1u);
}

TEST_F(BrokerQueueTest, ParkedReceivesAnswerOnReleaseWaitersAndQueueDeletion) {
  ASSERT_TRUE(CreateQueue("a"));
  ASSERT_TRUE(CreateQueue("b"));
  PendingReceive on_a(*broker_, {"a", 1, std::nullopt, 20'000});
  PendingReceive on_b(*broker_, {"b", 1, std::nullopt, 20'000});
  EXPECT_FALSE(on_a.Answered(milliseconds(100)));
  StatusWaiter deleted;
  broker_->DeleteQueue("a", deleted.Callback());
  ASSERT_TRUE(deleted.Get());
  EXPECT_EQ(on_a.Get().error().code, ErrorCode::kNotFound);
  EXPECT_FALSE(on_b.Answered(milliseconds(100)));
  // Deleting a topic with force answers the receives parked on its queues.
  TopicConfig shared;
  shared.name = "shared";
  Waiter<TopicInfo> t;
  broker_->CreateTopic(shared, t.Callback());
  ASSERT_TRUE(t.Get());
  ASSERT_TRUE(CreateQueue("sub", {}, "shared"));
  PendingReceive on_sub(*broker_, {"sub", 1, std::nullopt, 20'000});
  EXPECT_FALSE(on_sub.Answered(milliseconds(100)));
  StatusWaiter forced;
  broker_->DeleteTopic("shared", true, forced.Callback());
  ASSERT_TRUE(forced.Get());
  ASSERT_TRUE(on_sub.Answered(milliseconds(5'000))) << "the parked receive was not woken";
  EXPECT_EQ(on_sub.Get().error().code, ErrorCode::kNotFound);
  broker_->ReleaseWaiters();  // as spoold does before it drains
  auto b = on_b.Get();
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->empty());
  EXPECT_TRUE(Receive("b", 1)->empty()) << "receives after ReleaseWaiters answer at once";
}

TEST_F(BrokerQueueTest, AFifoQueuesSequenceNumbersIncreaseAcrossItsPartitions) {
  QueueAttributes fifo;
  fifo.fifo = true;
  fifo.content_based_deduplication = true;
  fifo.partitions = 4;
  ASSERT_TRUE(CreateQueue("wide.fifo", fifo));
  std::map<std::string, std::uint64_t> numbers;  // body -> its sequence number
  std::uint64_t last = 0;
  std::set<std::uint32_t> partitions;
  for (int i = 0; i < 16; ++i) {
    const std::string body = "m" + std::to_string(i);
    auto sent = Send("wide.fifo", {body}, std::nullopt, "g" + std::to_string(i));
    ASSERT_TRUE(sent) << sent.error().ToString();
    ASSERT_TRUE(sent->at(0).sequence);
    EXPECT_GT(*sent->at(0).sequence, last) << body;
    last = *sent->at(0).sequence;
    numbers[body] = last;
    partitions.insert(sent->at(0).partition);
  }
  EXPECT_GT(partitions.size(), 1u) << "the groups spread over the partitions";
  auto got = ReceiveAll("wide.fifo", 16);
  ASSERT_EQ(got.size(), 16u);
  for (const QueueMessage& m : got) {
    EXPECT_EQ(m.message.record.sequence,
              std::optional<std::uint64_t>(numbers.at(m.message.record.value)));
  }
}

TEST_F(BrokerQueueTest, TheNativeBatchLimitIsConfigured) {
  EXPECT_EQ(broker_->max_queue_batch(), 1'000u);
  Close();
  max_queue_batch_ = 10;
  Open();
  ASSERT_TRUE(CreateQueue("jobs"));
  std::vector<std::string> eleven(11, "m");
  auto refused = Send("jobs", eleven);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kResourceExhausted);
  EXPECT_NE(refused.error().message.find("more than 10 messages"), std::string::npos)
      << refused.error().message;
  EXPECT_EQ(Describe("jobs")->counts.visible, 0u) << "a refused send appends nothing";
  ASSERT_TRUE(Send("jobs", std::vector<std::string>(10, "m")));
  auto too_many = Receive("jobs", 11);
  ASSERT_FALSE(too_many);
  EXPECT_EQ(too_many.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(too_many.error().message.find("within 1-10"), std::string::npos);
  auto all = Receive("jobs", 10);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 10u);
}

TEST_F(BrokerQueueTest, AVisibilityChangeOrNackOfAMessageNeverReceivedSaysSo) {
  ASSERT_TRUE(CreateQueue("jobs"));
  ASSERT_TRUE(Send("jobs", {"a"}));
  // Offset 0 was sent and never received; offset 7 is past the log's end (a forged handle).
  for (std::uint64_t offset : {0u, 7u}) {
    for (bool nack : {false, true}) {
      StatusWaiter w;
      broker_->ChangeMessageVisibility("jobs", QueueReceipt{0, offset, 1}, 0, nack, w.Callback());
      Status s = w.Get();
      ASSERT_FALSE(s) << offset;
      EXPECT_EQ(s.error().code, ErrorCode::kFailedPrecondition);
      EXPECT_NE(s.error().message.find("has not been received"), std::string::npos)
          << "offset " << offset << (nack ? " (nack)" : "") << ": " << s.error().message;
    }
  }
  StatusWaiter w;
  broker_->DeleteMessage("jobs", QueueReceipt{0, 7, 1}, w.Callback());
  Status deleted = w.Get();
  ASSERT_FALSE(deleted);
  EXPECT_NE(deleted.error().message.find("has not been received"), std::string::npos)
      << "Delete says the same";
}

}  // namespace
}  // namespace spool::broker
