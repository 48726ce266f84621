// spool::QueueClient against a real spoold on 127.0.0.1: queue administration (create, get,
// set, paged listing, purge, delete, subscriptions on an existing topic), sends and batches
// with per-entry failures, long polls that return as soon as a message arrives and whose
// wait is added to the call deadline, delete / change visibility / nack by receipt handle,
// FIFO order and deduplication, dead letters and a redrive back to their source, and the
// status of each bad input. receive_stream_test covers QueueClient::StreamingReceive.

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "spool/queue.h"
#include "tests/testing/spoold_process.h"
#include "tests/testing/temp_dir.h"

namespace spool {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::ElementsAre;
using testing::SpooldProcess;
using testing::TempDir;
using SteadyClock = std::chrono::steady_clock;

class QueueClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(daemon_.Start(SPOOLD_BINARY, dir_.Sub("data"))) << daemon_.output();
    client_ = std::make_unique<Client>(Options(seconds(20)));
    ASSERT_TRUE(client_->WaitForConnected(seconds(10)));
    queues_ = std::make_unique<QueueClient>(*client_);
  }

  ClientOptions Options(milliseconds call_timeout) const {
    ClientOptions options;
    options.address = daemon_.address();
    options.call_timeout = call_timeout;
    return options;
  }

  void Create(const std::string& name, const v1::QueueAttributes& attributes = {}) {
    auto created = queues_->CreateQueue(name, attributes);
    ASSERT_TRUE(created.ok()) << name << ": " << created.status.error_message();
  }

  v1::SendMessageResult Send(const std::string& queue, const std::string& body,
                             const SendOptions& options = {}) {
    auto sent = queues_->SendMessage(queue, body, options);
    EXPECT_TRUE(sent.ok()) << sent.status.error_message();
    return sent.value;
  }

  std::vector<v1::QueueMessage> Receive(const std::string& queue, std::uint32_t max,
                                        std::optional<std::uint32_t> visibility = std::nullopt) {
    ReceiveOptions options;
    options.max_messages = max;
    options.visibility_timeout_seconds = visibility;
    options.wait_time_seconds = 0;
    auto got = queues_->ReceiveMessages(queue, options);
    EXPECT_TRUE(got.ok()) << got.status.error_message();
    return got.value;
  }

  // The queue's counts, waiting (bounded) until `done` holds: some changes, like a move to
  // the dead-letter queue, finish after the call that caused them.
  v1::QueueStats StatsWhen(const std::string& queue, auto done) {
    v1::QueueStats stats;
    for (int i = 0; i < 250; ++i) {
      auto got = queues_->GetQueueAttributes(queue);
      EXPECT_TRUE(got.ok()) << got.status.error_message();
      stats = got->stats();
      if (!got.ok() || done(stats)) break;
      std::this_thread::sleep_for(milliseconds(20));
    }
    return stats;
  }

  TempDir dir_;
  SpooldProcess daemon_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<QueueClient> queues_;
};

TEST_F(QueueClientTest, QueuesAreCreatedDescribedChangedListedPurgedAndDeleted) {
  v1::QueueAttributes attributes;
  attributes.set_visibility_timeout_seconds(45);
  attributes.set_receive_wait_seconds(2);
  attributes.set_partitions(2);
  auto created = queues_->CreateQueue("jobs", attributes);
  ASSERT_TRUE(created.ok()) << created.status.error_message();
  EXPECT_TRUE(created->created());
  EXPECT_EQ(created->queue().name(), "jobs");
  EXPECT_EQ(created->queue().topic(), "jobs");
  EXPECT_TRUE(created->queue().owns_topic());
  auto again = queues_->CreateQueue("jobs", attributes);
  ASSERT_TRUE(again.ok()) << again.status.error_message();
  EXPECT_FALSE(again->created()) << "the same settings again";
  v1::QueueAttributes other;
  other.set_visibility_timeout_seconds(5);
  EXPECT_EQ(queues_->CreateQueue("jobs", other).status.error_code(),
            grpc::StatusCode::ALREADY_EXISTS);

  auto got = queues_->GetQueueAttributes("jobs");
  ASSERT_TRUE(got.ok()) << got.status.error_message();
  const v1::QueueAttributes& a = got->attributes();
  EXPECT_EQ(a.visibility_timeout_seconds(), 45u);
  EXPECT_EQ(a.receive_wait_seconds(), 2u);
  EXPECT_EQ(a.partitions(), 2u);
  EXPECT_EQ(a.delivery_delay_seconds(), 0u) << "defaults are filled in";
  EXPECT_EQ(a.max_message_bytes(), 1u << 20);
  EXPECT_FALSE(a.fifo());
  EXPECT_FALSE(a.has_redrive_policy());
  EXPECT_GT(got->created_timestamp_ms(), 0);

  v1::QueueAttributes change;
  change.set_delivery_delay_seconds(7);
  change.set_max_in_flight(500);
  auto changed = queues_->SetQueueAttributes("jobs", change);
  ASSERT_TRUE(changed.ok()) << changed.status.error_message();
  EXPECT_EQ(changed->attributes().delivery_delay_seconds(), 7u);
  EXPECT_EQ(changed->attributes().max_in_flight(), 500u);
  EXPECT_EQ(changed->attributes().visibility_timeout_seconds(), 45u) << "kept";
  EXPECT_GE(changed->last_modified_timestamp_ms(), changed->created_timestamp_ms());
  change.Clear();
  change.set_delivery_delay_seconds(0);
  ASSERT_TRUE(queues_->SetQueueAttributes("jobs", change).ok());

  // Five more names; pages of two need three calls for "jobs*".
  for (const char* name : {"jobs-a", "jobs-b", "jobs-c", "jobs-d", "mail"})
    Create(name);
  std::vector<std::string> paged;
  std::string token;
  int pages = 0;
  do {
    auto page = queues_->ListQueuesPage("jobs", 2, token);
    ASSERT_TRUE(page.ok()) << page.status.error_message();
    EXPECT_LE(page->queues_size(), 2);
    paged.insert(paged.end(), page->queues().begin(), page->queues().end());
    token = page->next_page_token();
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  EXPECT_THAT(paged, ElementsAre("jobs", "jobs-a", "jobs-b", "jobs-c", "jobs-d"));
  auto listed = queues_->ListQueues("jobs");
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(*listed, paged);
  auto all = queues_->ListQueues();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 6u);
  EXPECT_EQ(all->back(), "mail");

  for (int i = 0; i < 3; ++i)
    Send("jobs", "m" + std::to_string(i));
  EXPECT_EQ(queues_->GetQueueAttributes("jobs")->stats().approximate_visible(), 3u);
  auto purged = queues_->PurgeQueue("jobs");
  ASSERT_TRUE(purged.ok()) << purged.status.error_message();
  EXPECT_EQ(*purged, 3u);
  EXPECT_TRUE(Receive("jobs", 10).empty());

  ASSERT_TRUE(queues_->DeleteQueue("jobs").ok());
  EXPECT_EQ(queues_->GetQueueAttributes("jobs").status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(queues_->DeleteQueue("jobs").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(*queues_->ListQueues("jobs"), ElementsAre("jobs-a", "jobs-b", "jobs-c", "jobs-d"));
}

TEST_F(QueueClientTest, AQueueOnAnExistingTopicSeesWhatIsSentThere) {
  Admin admin(*client_);
  ASSERT_TRUE(admin.CreateTopic({"events", 1, std::nullopt, std::nullopt, std::nullopt}).ok());
  auto created = queues_->CreateQueue("audit", {}, "events");
  ASSERT_TRUE(created.ok()) << created.status.error_message();
  EXPECT_EQ(created->queue().topic(), "events");
  EXPECT_FALSE(created->queue().owns_topic());
  Send("audit", "seen");
  auto got = Receive("audit", 10);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].body(), "seen");
  EXPECT_EQ(queues_->CreateQueue("orphan", {}, "no-such-topic").status.error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::QueueAttributes topic_level;
  topic_level.set_partitions(3);
  EXPECT_EQ(queues_->CreateQueue("audit-2", topic_level, "events").status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT)
      << "partitions belong to the topic";
}

TEST_F(QueueClientTest, SendsAndBatchesReportEachEntry) {
  Create("b");
  SendOptions options;
  options.headers = {{"trace", "abc"}, {"trace", "def"}};
  options.message_group_id = "customer-7";
  const v1::SendMessageResult one = Send("b", "first", options);
  EXPECT_EQ(one.message_id().size(), 36u);
  EXPECT_FALSE(one.duplicate());
  EXPECT_FALSE(one.has_sequence_number()) << "standard queue";

  std::vector<SendEntry> entries(3);
  for (int i = 0; i < 3; ++i) {
    entries[i].id = "e" + std::to_string(i);
    entries[i].body = "batch-" + std::to_string(i);
  }
  entries[1].options.headers = {{"spool.reserved", "x"}};
  auto batch = queues_->SendMessageBatch("b", entries);
  ASSERT_TRUE(batch.ok()) << batch.status.error_message();
  ASSERT_EQ(batch->size(), 3u);
  EXPECT_EQ((*batch)[0].id(), "e0");
  EXPECT_TRUE((*batch)[0].has_sent());
  ASSERT_TRUE((*batch)[1].has_error()) << "a reserved header";
  EXPECT_EQ((*batch)[1].error().code(), v1::ERROR_CODE_INVALID_ARGUMENT);
  EXPECT_TRUE((*batch)[2].has_sent());
  EXPECT_NE((*batch)[0].sent().message_id(), (*batch)[2].sent().message_id());

  auto got = Receive("b", 10);
  ASSERT_EQ(got.size(), 3u);
  std::vector<std::string> bodies;
  for (const auto& m : got) {
    bodies.push_back(m.body());
    EXPECT_EQ(m.receive_count(), 1u);
    EXPECT_FALSE(m.receipt_handle().empty());
  }
  EXPECT_THAT(bodies, ::testing::UnorderedElementsAre("first", "batch-0", "batch-2"));
  for (const auto& m : got) {
    if (m.body() != "first") continue;
    EXPECT_EQ(m.message_id(), one.message_id());
    EXPECT_EQ(m.message_group_id(), "customer-7");
    ASSERT_EQ(m.headers_size(), 2);
    EXPECT_EQ(m.headers(0).key(), "trace");
    EXPECT_EQ(m.headers(0).value(), "abc");
    EXPECT_EQ(m.headers(1).value(), "def");
  }

  std::vector<std::string> handles = {got[0].receipt_handle(), "not a handle",
                                      got[2].receipt_handle()};
  auto deleted = queues_->DeleteMessageBatch("b", handles);
  ASSERT_TRUE(deleted.ok()) << deleted.status.error_message();
  ASSERT_EQ(deleted->size(), 3u);
  EXPECT_FALSE((*deleted)[0].has_error());
  EXPECT_EQ((*deleted)[1].error().code(), v1::ERROR_CODE_INVALID_ARGUMENT);
  EXPECT_FALSE((*deleted)[2].has_error());
  EXPECT_EQ(StatsWhen("b", [](const v1::QueueStats& s) { return s.approximate_in_flight() == 1; })
                .approximate_in_flight(),
            1u);

  // Whole-batch failures: no entries, a repeated id.
  EXPECT_EQ(queues_->SendMessageBatch("b", {}).status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  entries[2].id = "e0";
  EXPECT_EQ(queues_->SendMessageBatch("b", entries).status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(queues_->DeleteMessageBatch("b", {}).status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(QueueClientTest, ALongPollReturnsAsSoonAsAMessageIsSent) {
  Create("lp");
  std::thread sender([this] {
    std::this_thread::sleep_for(milliseconds(300));
    QueueClient other(*client_);
    auto sent = other.SendMessage("lp", "late");
    EXPECT_TRUE(sent.ok()) << sent.status.error_message();
  });
  ReceiveOptions options;
  options.wait_time_seconds = 15;
  const auto start = SteadyClock::now();
  auto got = queues_->ReceiveMessages("lp", options);
  const auto waited = SteadyClock::now() - start;
  sender.join();
  ASSERT_TRUE(got.ok()) << got.status.error_message();
  ASSERT_EQ(got->size(), 1u) << "the long poll ended without the message";
  EXPECT_EQ((*got)[0].body(), "late");
  EXPECT_LT(waited, seconds(10)) << "it waited for the end of the poll instead";
}

TEST_F(QueueClientTest, ALongPollsWaitIsAddedToTheCallDeadline) {
  // A call_timeout shorter than the waits: without the wait on top, the server would end the
  // poll early (or the call would fail with DEADLINE_EXCEEDED).
  Client short_calls(Options(milliseconds(1000)));
  QueueClient queues(short_calls);
  Create("quiet");
  ReceiveOptions options;
  options.wait_time_seconds = 3;
  auto start = SteadyClock::now();
  auto got = queues.ReceiveMessages("quiet", options);
  ASSERT_TRUE(got.ok()) << got.status.error_message();
  EXPECT_TRUE(got->empty());
  EXPECT_GE(SteadyClock::now() - start, milliseconds(2900));

  // Unset: the queue's own wait applies, and the deadline leaves room for it too.
  v1::QueueAttributes waits;
  waits.set_receive_wait_seconds(2);
  Create("waits", waits);
  start = SteadyClock::now();
  got = queues.ReceiveMessages("waits", {});
  ASSERT_TRUE(got.ok()) << got.status.error_message();
  EXPECT_TRUE(got->empty());
  EXPECT_GE(SteadyClock::now() - start, milliseconds(1900));

  // A delayed message ends a long poll when its delay does.
  SendOptions delayed;
  delayed.delay_seconds = 2;
  Send("quiet", "later", delayed);
  EXPECT_EQ(StatsWhen("quiet", [](const v1::QueueStats& s) { return s.approximate_delayed() == 1; })
                .approximate_delayed(),
            1u);
  options.wait_time_seconds = 10;
  got = queues.ReceiveMessages("quiet", options);
  ASSERT_TRUE(got.ok()) << got.status.error_message();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].body(), "later");
}

TEST_F(QueueClientTest, ReceiptHandlesDeleteChangeVisibilityAndNack) {
  Create("work");
  Send("work", "payload");
  auto first = Receive("work", 10, 60);
  ASSERT_EQ(first.size(), 1u);
  const v1::QueueMessage m = first[0];
  EXPECT_EQ(m.receive_count(), 1u);
  EXPECT_GT(m.visibility_deadline_ms(), m.first_receive_timestamp_ms());
  EXPECT_TRUE(Receive("work", 10).empty()) << "leased, yet received again";

  // Visibility 0: visible at once, and the old handle is stale after the next receive.
  auto visible = queues_->ChangeMessageVisibility("work", m.receipt_handle(), 0);
  ASSERT_TRUE(visible.ok()) << visible.status.error_message();
  auto second = Receive("work", 10, 60);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].receive_count(), 2u);
  EXPECT_EQ(queues_->DeleteMessage("work", m.receipt_handle()).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION)
      << "the first handle is stale";

  const auto now_ms =
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  auto extended = queues_->ChangeMessageVisibility("work", second[0].receipt_handle(), 600);
  ASSERT_TRUE(extended.ok()) << extended.status.error_message();
  EXPECT_GT(*extended, now_ms + 500'000);
  auto batch = queues_->ChangeMessageVisibilityBatch(
      "work", {{second[0].receipt_handle(), 300}, {m.receipt_handle(), 300}});
  ASSERT_TRUE(batch.ok()) << batch.status.error_message();
  ASSERT_EQ(batch->size(), 2u);
  EXPECT_FALSE((*batch)[0].has_error());
  EXPECT_EQ((*batch)[1].error().code(), v1::ERROR_CODE_FAILED_PRECONDITION);

  // Nack: back at once and counted; with a delay, hidden for that long.
  ASSERT_TRUE(queues_->NackMessage("work", second[0].receipt_handle()).ok());
  auto third = Receive("work", 10, 60);
  ASSERT_EQ(third.size(), 1u);
  EXPECT_EQ(third[0].receive_count(), 3u);
  ASSERT_TRUE(queues_->NackMessage("work", third[0].receipt_handle(), 60).ok());
  EXPECT_TRUE(Receive("work", 10).empty()) << "nacked with a delay";
  const auto nacked =
      StatsWhen("work", [](const v1::QueueStats& s) { return s.approximate_in_flight() == 1; });
  EXPECT_EQ(nacked.approximate_in_flight(), 1u) << "in flight until the delay ends, as in SQS";
  EXPECT_EQ(nacked.approximate_delayed(), 0u);
  ASSERT_TRUE(queues_->ChangeMessageVisibility("work", third[0].receipt_handle(), 0).ok());
  auto fourth = Receive("work", 10, 60);
  ASSERT_EQ(fourth.size(), 1u);

  ASSERT_TRUE(queues_->DeleteMessage("work", fourth[0].receipt_handle()).ok());
  EXPECT_TRUE(queues_->DeleteMessage("work", fourth[0].receipt_handle()).ok()) << "idempotent";
  EXPECT_EQ(
      queues_->ChangeMessageVisibility("work", fourth[0].receipt_handle(), 5).status.error_code(),
      grpc::StatusCode::FAILED_PRECONDITION)
      << "deleted";
  EXPECT_TRUE(Receive("work", 10).empty());
}

TEST_F(QueueClientTest, FifoQueuesKeepEachGroupsOrderAndDeduplicate) {
  v1::QueueAttributes fifo;
  fifo.set_fifo(true);
  Create("orders.fifo", fifo);
  auto send = [&](const std::string& body, const std::string& group) {
    SendOptions options;
    options.message_group_id = group;
    options.deduplication_id = "id-" + body;
    return Send("orders.fifo", body, options);
  };
  const auto a1 = send("a1", "A");
  send("b1", "B");
  send("a2", "A");
  std::vector<SendEntry> entries = {{"", "a3", {}}, {"", "b2", {}}};
  entries[0].options.message_group_id = "A";
  entries[0].options.deduplication_id = "id-a3";
  entries[1].options.message_group_id = "B";
  entries[1].options.deduplication_id = "id-b2";
  auto batch = queues_->SendMessageBatch("orders.fifo", entries);
  ASSERT_TRUE(batch.ok()) << batch.status.error_message();
  ASSERT_TRUE((*batch)[0].has_sent() && (*batch)[1].has_sent());

  const auto again = send("a1", "A");
  EXPECT_TRUE(again.duplicate());
  EXPECT_EQ(again.message_id(), a1.message_id());
  EXPECT_TRUE(a1.has_sequence_number());
  EXPECT_EQ(again.sequence_number(), a1.sequence_number()) << "the original's number";

  // Every message once, each group in send order.
  std::vector<std::string> a, b;
  std::vector<std::string> handles;
  for (int round = 0; round < 10 && a.size() + b.size() < 5; ++round) {
    for (const auto& m : Receive("orders.fifo", 10, 60)) {
      (m.message_group_id() == "A" ? a : b).push_back(m.body());
      handles.push_back(m.receipt_handle());
    }
    // A group's next messages wait while an earlier one is in flight: release them.
    auto deleted = queues_->DeleteMessageBatch("orders.fifo", handles);
    ASSERT_TRUE(handles.empty() || deleted.ok()) << deleted.status.error_message();
    handles.clear();
  }
  EXPECT_THAT(a, ElementsAre("a1", "a2", "a3"));
  EXPECT_THAT(b, ElementsAre("b1", "b2"));

  // Content-based deduplication: the body is the id.
  v1::QueueAttributes by_content = fifo;
  by_content.set_content_based_deduplication(true);
  Create("content.fifo", by_content);
  SendOptions grouped;
  grouped.message_group_id = "g";
  const auto x = Send("content.fifo", "same", grouped);
  const auto y = Send("content.fifo", "same", grouped);
  EXPECT_FALSE(x.duplicate());
  EXPECT_TRUE(y.duplicate());
  EXPECT_EQ(x.message_id(), y.message_id());

  // A FIFO send without a group, or without an id and content-based deduplication.
  EXPECT_EQ(queues_->SendMessage("orders.fifo", "x").status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(queues_->SendMessage("orders.fifo", "x", grouped).status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(QueueClientTest, MessagesMoveToTheDeadLetterQueueAfterTooManyReceives) {
  Create("dlq");
  v1::QueueAttributes with_dlq;
  with_dlq.mutable_redrive_policy()->set_dead_letter_queue("dlq");
  with_dlq.mutable_redrive_policy()->set_max_receive_count(2);
  Create("src", with_dlq);
  Create("src-2");
  auto sources = queues_->ListDeadLetterSourceQueues("dlq");
  ASSERT_TRUE(sources.ok()) << sources.status.error_message();
  EXPECT_THAT(*sources, ElementsAre("src"));
  // A policy set later counts too.
  ASSERT_TRUE(queues_->SetQueueAttributes("src-2", with_dlq).ok());
  EXPECT_THAT(*queues_->ListDeadLetterSourceQueues("dlq"), ElementsAre("src", "src-2"));

  const auto sent = Send("src", "poison");
  // Visibility 0: every receive counts and leaves the message visible; the third moves it.
  for (std::uint32_t count = 1; count <= 2; ++count) {
    auto got = Receive("src", 1, 0);
    ASSERT_EQ(got.size(), 1u) << "receive " << count;
    EXPECT_EQ(got[0].receive_count(), count);
  }
  EXPECT_TRUE(Receive("src", 1, 0).empty()) << "the third receive moves it instead";

  const v1::QueueStats dlq =
      StatsWhen("dlq", [](const v1::QueueStats& s) { return s.approximate_visible() == 1; });
  EXPECT_EQ(dlq.approximate_visible(), 1u);
  const auto total = [](const v1::QueueStats& s) {
    return s.approximate_visible() + s.approximate_in_flight() + s.approximate_delayed();
  };
  EXPECT_EQ(total(StatsWhen("src", [&](const v1::QueueStats& s) { return total(s) == 0; })), 0u);
  auto moved = Receive("dlq", 10);
  ASSERT_EQ(moved.size(), 1u);
  EXPECT_EQ(moved[0].body(), "poison");
  EXPECT_EQ(moved[0].dead_letter_source_queue(), "src");
  EXPECT_EQ(moved[0].receive_count(), 3u) << "the count continues from the source";
  EXPECT_EQ(moved[0].message_id(), sent.message_id()) << "a dead letter keeps its message id";

  // Removing the policy (an empty dead-letter queue) detaches the source.
  v1::QueueAttributes no_dlq;
  no_dlq.mutable_redrive_policy();
  auto removed = queues_->SetQueueAttributes("src-2", no_dlq);
  ASSERT_TRUE(removed.ok()) << removed.status.error_message();
  EXPECT_FALSE(removed->attributes().has_redrive_policy());
  EXPECT_THAT(*queues_->ListDeadLetterSourceQueues("dlq"), ElementsAre("src"));

  // A redrive sends the dead letter back to "src"; the list shows it finished.
  ASSERT_TRUE(queues_->ChangeMessageVisibility("dlq", moved[0].receipt_handle(), 0).ok());
  auto task = queues_->StartRedrive("dlq", {}, 1000);
  ASSERT_TRUE(task.ok()) << task.status.error_message();
  EXPECT_EQ(task->status(), v1::REDRIVE_TASK_STATUS_RUNNING);
  v1::RedriveTask latest;
  for (int i = 0; i < 500; ++i) {
    auto tasks = queues_->ListRedriveTasks("dlq");
    ASSERT_TRUE(tasks.ok()) << tasks.status.error_message();
    ASSERT_EQ(tasks->size(), 1u);
    latest = tasks->front();
    if (latest.status() != v1::REDRIVE_TASK_STATUS_RUNNING) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(latest.status(), v1::REDRIVE_TASK_STATUS_COMPLETED) << latest.failure_reason();
  EXPECT_EQ(latest.approximate_messages_moved(), 1u);
  auto back = Receive("src", 1);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].body(), "poison");
  EXPECT_EQ(back[0].receive_count(), 1u) << "a new message at its source";
  EXPECT_EQ(queues_->CancelRedrive(latest.task_id()).status.error_code(),
            grpc::StatusCode::FAILED_PRECONDITION)
      << "it completed";
  EXPECT_EQ(queues_->CancelRedrive("nonsense").status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(queues_->StartRedrive("src").status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << "src is no dead-letter queue";
}

TEST_F(QueueClientTest, BadInputsGetTheirStatus) {
  Create("q");
  const auto code = [](const auto& result) { return result.status.error_code(); };
  using grpc::StatusCode;
  // Names: unknown is NOT_FOUND, malformed is INVALID_ARGUMENT.
  EXPECT_EQ(code(queues_->GetQueueAttributes("nope")), StatusCode::NOT_FOUND);
  EXPECT_EQ(code(queues_->GetQueueAttributes("bad name")), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(queues_->DeleteQueue("nope").error_code(), StatusCode::NOT_FOUND);
  EXPECT_EQ(code(queues_->PurgeQueue("nope")), StatusCode::NOT_FOUND);
  EXPECT_EQ(code(queues_->SendMessage("nope", "x")), StatusCode::NOT_FOUND);
  EXPECT_EQ(code(queues_->SendMessage("bad name", "x")), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(queues_->ReceiveMessages("nope")), StatusCode::NOT_FOUND);
  EXPECT_EQ(code(queues_->ListDeadLetterSourceQueues("nope")), StatusCode::NOT_FOUND);
  EXPECT_EQ(code(queues_->SetQueueAttributes("nope", {})), StatusCode::NOT_FOUND);
  EXPECT_EQ(code(queues_->CreateQueue("bad name")), StatusCode::INVALID_ARGUMENT);
  v1::QueueAttributes not_fifo;
  not_fifo.set_fifo(false);
  EXPECT_EQ(code(queues_->CreateQueue("x.fifo", not_fifo)), StatusCode::INVALID_ARGUMENT);

  // Attributes out of range, and changes that are not allowed.
  v1::QueueAttributes bad;
  bad.set_visibility_timeout_seconds(43'201);
  EXPECT_EQ(code(queues_->CreateQueue("x", bad)), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(queues_->SetQueueAttributes("q", bad)), StatusCode::INVALID_ARGUMENT);
  bad.Clear();
  bad.set_fifo(true);
  EXPECT_EQ(code(queues_->SetQueueAttributes("q", bad)), StatusCode::INVALID_ARGUMENT)
      << "the type never changes";
  bad.Clear();
  bad.mutable_redrive_policy()->set_dead_letter_queue("missing");
  bad.mutable_redrive_policy()->set_max_receive_count(3);
  EXPECT_EQ(code(queues_->CreateQueue("x", bad)), StatusCode::NOT_FOUND);
  v1::QueueAttributes fifo;
  fifo.set_fifo(true);
  Create("f.fifo", fifo);
  bad.mutable_redrive_policy()->set_dead_letter_queue("f.fifo");
  EXPECT_EQ(code(queues_->CreateQueue("x", bad)), StatusCode::FAILED_PRECONDITION)
      << "a FIFO dead-letter queue for a standard queue";

  // Messages and receives.
  SendOptions late;
  late.delay_seconds = 901;
  EXPECT_EQ(code(queues_->SendMessage("q", "x", late)), StatusCode::INVALID_ARGUMENT);
  ReceiveOptions too_many;
  too_many.max_messages = 1001;
  EXPECT_EQ(code(queues_->ReceiveMessages("q", too_many)), StatusCode::INVALID_ARGUMENT);
  ReceiveOptions too_long;
  too_long.wait_time_seconds = 21;
  EXPECT_EQ(code(queues_->ReceiveMessages("q", too_long)), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(queues_->DeleteMessage("q", "zz").error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(queues_->NackMessage("q", "zz").error_code(), StatusCode::INVALID_ARGUMENT);
  Send("q", "m");
  auto got = Receive("q", 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(code(queues_->ChangeMessageVisibility("q", got[0].receipt_handle(), 43'201)),
            StatusCode::INVALID_ARGUMENT);
  SendOptions grouped;
  grouped.message_group_id = "g";
  grouped.deduplication_id = "d";
  Send("f.fifo", "m", grouped);
  auto other = Receive("f.fifo", 1);
  ASSERT_EQ(other.size(), 1u);
  const grpc::Status foreign = queues_->DeleteMessage("q", other[0].receipt_handle());
  EXPECT_EQ(foreign.error_code(), StatusCode::INVALID_ARGUMENT) << "a handle of another queue";

  // Paging: a token from another listing.
  EXPECT_EQ(code(queues_->ListQueuesPage("q", 1, "other")), StatusCode::INVALID_ARGUMENT);
}

TEST_F(QueueClientTest, AnUnreachableServerIsUnavailable) {
  daemon_.Stop();
  Client gone(Options(milliseconds(2000)));
  QueueClient queues(gone);
  EXPECT_EQ(queues.ListQueues().status.error_code(), grpc::StatusCode::UNAVAILABLE);
  ReceiveOptions options;
  options.wait_time_seconds = 1;
  EXPECT_EQ(queues.ReceiveMessages("q", options).status.error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace spool
