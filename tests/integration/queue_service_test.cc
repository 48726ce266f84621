// The gRPC QueueService against an in-process server (real store, broker and gRPC on
// 127.0.0.1 port 0): queue administration, sends and batches with per-entry errors, receives
// with leases and long polls, deletes, visibility changes and nacks by receipt handle, FIFO
// deduplication, dead letters, and the status code of each bad input, which changes nothing.

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "broker/broker.h"
#include "common/clock.h"
#include "protocol/grpc_server.h"
#include "spool/v1/admin.grpc.pb.h"
#include "spool/v1/queue.grpc.pb.h"
#include "storage/store.h"
#include "tests/testing/temp_dir.h"

namespace spool {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class QueueServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = storage::Store::Open(dir_.path(), {});
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
    broker::BrokerOptions options;
    options.worker_threads = 2;
    auto broker = broker::Broker::Open(*store_, SystemClock::Instance(), options);
    ASSERT_TRUE(broker) << broker.error().ToString();
    broker_ = std::move(*broker);
    protocol::GrpcServerOptions server_options;
    server_options.listen = "127.0.0.1:0";
    auto server = protocol::GrpcServer::Start(*broker_, server_options, {});
    ASSERT_TRUE(server) << server.error().ToString();
    server_ = std::move(*server);
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                       grpc::InsecureChannelCredentials());
    stub_ = v1::QueueService::NewStub(channel);
    admin_ = v1::AdminService::NewStub(channel);
  }
  void TearDown() override {
    stub_.reset();
    admin_.reset();
    if (broker_) broker_->ReleaseWaiters();
    if (server_) server_->Shutdown(milliseconds(10'000));
    server_.reset();
    if (broker_) broker_->Shutdown();
    broker_.reset();
    store_.reset();
  }

  static std::unique_ptr<grpc::ClientContext> Context(seconds timeout = seconds(30)) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + timeout);
    return context;
  }

  grpc::Status Create(const std::string& name, v1::QueueAttributes attributes = {}) {
    v1::CreateQueueRequest request;
    request.set_name(name);
    *request.mutable_attributes() = std::move(attributes);
    v1::CreateQueueResponse response;
    return stub_->CreateQueue(Context().get(), request, &response);
  }

  v1::SendMessageResponse Send(const std::string& queue, const std::string& body,
                               std::optional<std::string> group = {},
                               std::optional<std::string> dedup = {}) {
    v1::SendMessageRequest request;
    request.set_queue(queue);
    request.set_body(body);
    if (group) request.set_message_group_id(*group);
    if (dedup) request.set_deduplication_id(*dedup);
    v1::SendMessageResponse response;
    grpc::Status s = stub_->SendMessage(Context().get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  }

  v1::ReceiveMessagesResponse Receive(const std::string& queue, std::uint32_t max,
                                      std::optional<std::uint32_t> wait_seconds = {}) {
    v1::ReceiveMessagesRequest request;
    request.set_queue(queue);
    request.set_max_messages(max);
    if (wait_seconds) request.set_wait_time_seconds(*wait_seconds);
    v1::ReceiveMessagesResponse response;
    grpc::Status s = stub_->ReceiveMessages(Context().get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  }

  grpc::Status Delete(const std::string& queue, const std::string& handle) {
    v1::DeleteMessageRequest request;
    request.set_queue(queue);
    request.set_receipt_handle(handle);
    v1::DeleteMessageResponse response;
    return stub_->DeleteMessage(Context().get(), request, &response);
  }

  // What the API shows of the broker's state, by item. Partitions show their end offsets
  // only: a retention run may move their start over deleted messages at any time.
  std::map<std::string, std::string> Snapshot() {
    std::map<std::string, std::string> out;
    auto ok = [](const grpc::Status& s, const std::string& what) {
      EXPECT_TRUE(s.ok()) << what << ": " << s.error_message();
    };
    v1::ListQueuesResponse queues;
    ok(stub_->ListQueues(Context().get(), {}, &queues), "ListQueues");
    out["queue list"] = queues.DebugString();
    v1::ListTopicsResponse topics;
    ok(admin_->ListTopics(Context().get(), {}, &topics), "ListTopics");
    out["topic list"] = topics.DebugString();
    v1::GetBrokerInfoResponse info;
    ok(admin_->GetBrokerInfo(Context().get(), {}, &info), "GetBrokerInfo");
    out["broker counts"] = std::to_string(info.topic_count()) + " topics, " +
                           std::to_string(info.queue_count()) + " queues";
    for (const std::string& name : queues.queues()) {
      v1::GetQueueAttributesRequest get;
      get.set_queue(name);
      v1::GetQueueAttributesResponse got;
      ok(stub_->GetQueueAttributes(Context().get(), get, &got), "GetQueueAttributes " + name);
      out["queue " + name] = got.queue().DebugString();
      v1::GetTopicRequest topic;
      topic.set_name(got.queue().topic());
      v1::GetTopicResponse described;
      ok(admin_->GetTopic(Context().get(), topic, &described), "GetTopic " + topic.name());
      std::string& shown = out["topic " + topic.name()];
      shown = described.topic().config().DebugString();
      for (const auto& p : described.topic().partitions())
        shown += "partition " + std::to_string(p.partition()) + " ends at " +
                 std::to_string(p.end_offset()) + "\n";
      for (const auto& q : described.topic().queues())
        shown += "read by " + q + "\n";
      shown += "owned by " + described.topic().owner_queue() + "\n";
      v1::ListRedriveTasksRequest tasks;
      tasks.set_source_queue(name);
      tasks.set_max_results(10);
      v1::ListRedriveTasksResponse listed;
      ok(stub_->ListRedriveTasks(Context().get(), tasks, &listed), "ListRedriveTasks " + name);
      out["redrive tasks of " + name] = listed.DebugString();
      v1::ListDeadLetterSourceQueuesRequest sources;
      sources.set_queue(name);
      v1::ListDeadLetterSourceQueuesResponse found;
      ok(stub_->ListDeadLetterSourceQueues(Context().get(), sources, &found),
         "ListDeadLetterSourceQueues " + name);
      out["dead-letter sources of " + name] = found.DebugString();
    }
    return out;
  }

  testing::TempDir dir_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<broker::Broker> broker_;
  std::unique_ptr<protocol::GrpcServer> server_;
  std::unique_ptr<v1::QueueService::Stub> stub_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
};

TEST_F(QueueServiceTest, AQueueIsCreatedDescribedListedPurgedAndDeleted) {
  v1::QueueAttributes a;
  a.set_visibility_timeout_seconds(45);
  a.set_partitions(2);
  ASSERT_TRUE(Create("jobs", a).ok());
  ASSERT_TRUE(Create("jobs", a).ok()) << "the same settings again";
  v1::QueueAttributes other;
  other.set_visibility_timeout_seconds(5);
  EXPECT_EQ(Create("jobs", other).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  Send("jobs", "one");
  v1::GetQueueAttributesRequest get;
  get.set_queue("jobs");
  v1::GetQueueAttributesResponse got;
  ASSERT_TRUE(stub_->GetQueueAttributes(Context().get(), get, &got).ok());
  EXPECT_EQ(got.queue().attributes().visibility_timeout_seconds(), 45u);
  EXPECT_EQ(got.queue().attributes().partitions(), 2u);
  EXPECT_EQ(got.queue().attributes().receive_wait_seconds(), 0u);
  EXPECT_TRUE(got.queue().owns_topic());
  EXPECT_EQ(got.queue().stats().approximate_visible(), 1u);
  ASSERT_TRUE(Create("jobs-2").ok());
  v1::ListQueuesRequest list;
  list.set_page_size(1);
  v1::ListQueuesResponse page;
  ASSERT_TRUE(stub_->ListQueues(Context().get(), list, &page).ok());
  ASSERT_EQ(page.queues_size(), 1);
  EXPECT_EQ(page.queues(0), "jobs");
  list.set_page_token(page.next_page_token());
  ASSERT_TRUE(stub_->ListQueues(Context().get(), list, &page).ok());
  EXPECT_EQ(page.queues(0), "jobs-2");
  EXPECT_TRUE(page.next_page_token().empty());
  v1::PurgeQueueRequest purge;
  purge.set_queue("jobs");
  v1::PurgeQueueResponse purged;
  ASSERT_TRUE(stub_->PurgeQueue(Context().get(), purge, &purged).ok());
  EXPECT_EQ(purged.approximate_messages_purged(), 1u);
  EXPECT_EQ(Receive("jobs", 10).messages_size(), 0);
  v1::DeleteQueueRequest del;
  del.set_queue("jobs");
  v1::DeleteQueueResponse deleted;
  ASSERT_TRUE(stub_->DeleteQueue(Context().get(), del, &deleted).ok());
  EXPECT_EQ(stub_->GetQueueAttributes(Context().get(), get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(QueueServiceTest, ATopicNamesItsQueuesAndTheBrokerCountsThem) {
  ASSERT_TRUE(Create("owner").ok());
  v1::CreateQueueRequest fan_out;
  fan_out.set_name("reader");
  fan_out.set_topic("owner");
  v1::CreateQueueResponse created;
  ASSERT_TRUE(stub_->CreateQueue(Context().get(), fan_out, &created).ok());
  ASSERT_TRUE(Create("alone").ok());
  v1::GetTopicRequest get;
  get.set_name("owner");
  v1::GetTopicResponse topic;
  ASSERT_TRUE(admin_->GetTopic(Context().get(), get, &topic).ok());
  EXPECT_EQ(std::vector<std::string>(topic.topic().queues().begin(), topic.topic().queues().end()),
            (std::vector<std::string>{"owner", "reader"}));
  EXPECT_EQ(topic.topic().owner_queue(), "owner");
  v1::GetBrokerInfoResponse info;
  ASSERT_TRUE(admin_->GetBrokerInfo(Context().get(), {}, &info).ok());
  EXPECT_EQ(info.topic_count(), 2u);
  EXPECT_EQ(info.queue_count(), 3u);
  EXPECT_EQ(info.group_count(), 0u);
}

TEST_F(QueueServiceTest, AReceiveCutShortByTheInFlightLimitSaysSo) {
  v1::QueueAttributes narrow;
  narrow.set_max_in_flight(1);
  ASSERT_TRUE(Create("narrow", narrow).ok());
  Send("narrow", "a");
  Send("narrow", "b");
  auto cut = Receive("narrow", 10);
  EXPECT_EQ(cut.messages_size(), 1);
  EXPECT_TRUE(cut.in_flight_limit_reached());
  auto waited = Receive("narrow", 10, 1);
  EXPECT_EQ(waited.messages_size(), 0);
  EXPECT_TRUE(waited.in_flight_limit_reached()) << "a long poll ends empty and says why";
  ASSERT_TRUE(Delete("narrow", cut.messages(0).receipt_handle()).ok());
  auto exact = Receive("narrow", 1);
  EXPECT_EQ(exact.messages_size(), 1);
  EXPECT_FALSE(exact.in_flight_limit_reached());
}

TEST_F(QueueServiceTest, MessagesAreReceivedDeletedReleasedAndNacked) {
  ASSERT_TRUE(Create("work").ok());
  v1::SendMessageRequest send;
  send.set_queue("work");
  send.set_body("payload");
  auto* h = send.add_headers();
  h->set_key("trace");
  h->set_value("abc");
  v1::SendMessageResponse sent;
  ASSERT_TRUE(stub_->SendMessage(Context().get(), send, &sent).ok());
  EXPECT_EQ(sent.result().message_id().size(), 36u) << "shaped like a UUID";
  auto first = Receive("work", 10);
  ASSERT_EQ(first.messages_size(), 1);
  const v1::QueueMessage& m = first.messages(0);
  EXPECT_EQ(m.body(), "payload");
  EXPECT_EQ(m.message_id(), sent.result().message_id());
  EXPECT_EQ(m.receive_count(), 1u);
  ASSERT_EQ(m.headers_size(), 1);
  EXPECT_EQ(m.headers(0).key(), "trace");
  EXPECT_GT(m.visibility_deadline_ms(), m.first_receive_timestamp_ms());
  EXPECT_EQ(Receive("work", 10).messages_size(), 0) << "leased, yet received again";
  // Nack: back at once, counted.
  v1::NackMessageRequest nack;
  nack.set_queue("work");
  nack.set_receipt_handle(m.receipt_handle());
  v1::NackMessageResponse nacked;
  ASSERT_TRUE(stub_->NackMessage(Context().get(), nack, &nacked).ok());
  auto second = Receive("work", 10);
  ASSERT_EQ(second.messages_size(), 1);
  EXPECT_EQ(second.messages(0).receive_count(), 2u);
  EXPECT_EQ(Delete("work", m.receipt_handle()).error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << "the first receipt is stale";
  v1::ChangeMessageVisibilityRequest change;
  change.set_queue("work");
  change.set_receipt_handle(second.messages(0).receipt_handle());
  change.set_visibility_timeout_seconds(60);
  v1::ChangeMessageVisibilityResponse changed;
  ASSERT_TRUE(stub_->ChangeMessageVisibility(Context().get(), change, &changed).ok());
  EXPECT_GT(changed.visibility_deadline_ms(), 0);
  ASSERT_TRUE(Delete("work", second.messages(0).receipt_handle()).ok());
  EXPECT_TRUE(Delete("work", second.messages(0).receipt_handle()).ok()) << "idempotent";
  EXPECT_EQ(Receive("work", 10).messages_size(), 0);
}

TEST_F(QueueServiceTest, BatchesReportEachEntry) {
  ASSERT_TRUE(Create("b").ok());
  v1::SendMessageBatchRequest batch;
  batch.set_queue("b");
  for (int i = 0; i < 3; ++i) {
    auto* e = batch.add_entries();
    e->set_id("e" + std::to_string(i));
    e->set_body("m" + std::to_string(i));
  }
  batch.mutable_entries(1)->add_headers()->set_key("spool.reserved");
  v1::SendMessageBatchResponse sent;
  ASSERT_TRUE(stub_->SendMessageBatch(Context().get(), batch, &sent).ok());
  ASSERT_EQ(sent.results_size(), 3);
  EXPECT_TRUE(sent.results(0).has_sent());
  EXPECT_TRUE(sent.results(1).has_error()) << "a reserved header";
  EXPECT_EQ(sent.results(1).error().code(), v1::ERROR_CODE_INVALID_ARGUMENT);
  EXPECT_TRUE(sent.results(2).has_sent());
  auto got = Receive("b", 10);
  ASSERT_EQ(got.messages_size(), 2);
  v1::DeleteMessageBatchRequest del;
  del.set_queue("b");
  for (int i = 0; i < 2; ++i) {
    auto* e = del.add_entries();
    e->set_id("d" + std::to_string(i));
    e->set_receipt_handle(got.messages(i).receipt_handle());
  }
  auto* bad = del.add_entries();
  bad->set_id("bad");
  bad->set_receipt_handle("not a handle");
  v1::DeleteMessageBatchResponse deleted;
  ASSERT_TRUE(stub_->DeleteMessageBatch(Context().get(), del, &deleted).ok());
  ASSERT_EQ(deleted.results_size(), 3);
  EXPECT_FALSE(deleted.results(0).has_error());
  EXPECT_FALSE(deleted.results(1).has_error());
  EXPECT_EQ(deleted.results(2).error().code(), v1::ERROR_CODE_INVALID_ARGUMENT);
  batch.mutable_entries(2)->set_id("e0");
  EXPECT_EQ(stub_->SendMessageBatch(Context().get(), batch, &sent).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT)
      << "two entries with one id";

  // Queue rules fail their entry alone too: the others of the batch are sent.
  v1::QueueAttributes fifo;
  fifo.set_fifo(true);
  ASSERT_TRUE(Create("b.fifo", fifo).ok());
  v1::SendMessageBatchRequest mixed;
  mixed.set_queue("b.fifo");
  for (int i = 0; i < 3; ++i) {
    auto* e = mixed.add_entries();
    e->set_id("f" + std::to_string(i));
    e->set_body("fifo" + std::to_string(i));
    e->set_message_group_id("g");
    e->set_deduplication_id("d" + std::to_string(i));
  }
  mixed.mutable_entries(1)->clear_message_group_id();
  mixed.mutable_entries(2)->set_delay_seconds(5);
  v1::SendMessageBatchResponse partly;
  ASSERT_TRUE(stub_->SendMessageBatch(Context().get(), mixed, &partly).ok());
  ASSERT_EQ(partly.results_size(), 3);
  EXPECT_TRUE(partly.results(0).has_sent()) << partly.results(0).error().message();
  EXPECT_NE(partly.results(1).error().message().find("message group"), std::string::npos)
      << partly.results(1).error().message();
  EXPECT_NE(partly.results(2).error().message().find("delay"), std::string::npos)
      << partly.results(2).error().message();
  auto fifo_got = Receive("b.fifo", 10);
  ASSERT_EQ(fifo_got.messages_size(), 1);
  EXPECT_EQ(fifo_got.messages(0).body(), "fifo0");
}

TEST_F(QueueServiceTest, ALongPollReturnsAsSoonAsAMessageArrives) {
  ASSERT_TRUE(Create("lp").ok());
  std::thread sender([&] {
    std::this_thread::sleep_for(milliseconds(300));
    Send("lp", "late");
  });
  auto got = Receive("lp", 1, 10);
  sender.join();
  ASSERT_EQ(got.messages_size(), 1) << "the long poll ended without the message";
  EXPECT_EQ(got.messages(0).body(), "late");
}

TEST_F(QueueServiceTest, FifoQueuesDeduplicateAndDeadLettersArriveWithTheirSource) {
  v1::QueueAttributes fifo;
  fifo.set_fifo(true);
  ASSERT_TRUE(Create("dlq.fifo", fifo).ok());
  fifo.mutable_redrive_policy()->set_dead_letter_queue("dlq.fifo");
  fifo.mutable_redrive_policy()->set_max_receive_count(1);
  fifo.set_visibility_timeout_seconds(0);
  ASSERT_TRUE(Create("orders.fifo", fifo).ok());
  auto a = Send("orders.fifo", "a", "g", "id-1");
  auto again = Send("orders.fifo", "a", "g", "id-1");
  EXPECT_FALSE(a.result().duplicate());
  EXPECT_TRUE(again.result().duplicate());
  EXPECT_EQ(again.result().message_id(), a.result().message_id());
  EXPECT_TRUE(a.result().has_sequence_number());
  auto first = Receive("orders.fifo", 10);
  ASSERT_EQ(first.messages_size(), 1);
  EXPECT_EQ(first.messages(0).message_group_id(), "g");
  // Visibility 0: the next receive would be the second; it moves the message instead.
  EXPECT_EQ(Receive("orders.fifo", 10).messages_size(), 0);
  v1::QueueMessage moved;
  for (int i = 0; i < 100 && moved.body().empty(); ++i) {
    auto got = Receive("dlq.fifo", 1);
    if (got.messages_size() == 1)
      moved = got.messages(0);
    else
      std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_EQ(moved.body(), "a");
  EXPECT_EQ(moved.dead_letter_source_queue(), "orders.fifo");
  EXPECT_EQ(moved.receive_count(), 2u) << "the count continues from the source queue";
  EXPECT_EQ(moved.sent_timestamp_ms(), first.messages(0).sent_timestamp_ms())
      << "the send time is the original's";
  for (const auto& header : moved.headers())
    EXPECT_NE(header.key().rfind("spool.", 0), 0u) << "a reserved header leaked";
}

TEST_F(QueueServiceTest, CreatingAgainComparesOnlyTheAttributesGiven) {
  v1::QueueAttributes custom;
  custom.set_visibility_timeout_seconds(90);
  custom.set_receive_wait_seconds(5);
  ASSERT_TRUE(Create("c", custom).ok());
  v1::CreateQueueRequest bare;
  bare.set_name("c");
  v1::CreateQueueResponse again;
  ASSERT_TRUE(stub_->CreateQueue(Context().get(), bare, &again).ok());
  EXPECT_FALSE(again.created());
  EXPECT_EQ(again.queue().attributes().visibility_timeout_seconds(), 90u);
  custom.set_visibility_timeout_seconds(91);
  EXPECT_EQ(Create("c", custom).error_code(), grpc::StatusCode::ALREADY_EXISTS);
}

TEST_F(QueueServiceTest, SetAttributesChangesOnlyWhatIsGivenAndRemovesPolicies) {
  ASSERT_TRUE(Create("dlq").ok());
  v1::QueueAttributes initial;
  initial.set_visibility_timeout_seconds(90);
  initial.mutable_redrive_policy()->set_dead_letter_queue("dlq");
  initial.mutable_redrive_policy()->set_max_receive_count(4);
  ASSERT_TRUE(Create("src", initial).ok());
  v1::SetQueueAttributesRequest set;
  set.set_queue("src");
  set.mutable_attributes()->set_delivery_delay_seconds(7);
  set.mutable_attributes()->set_partitions(2);
  v1::SetQueueAttributesResponse changed;
  grpc::Status s = stub_->SetQueueAttributes(Context().get(), set, &changed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(changed.queue().attributes().delivery_delay_seconds(), 7u);
  EXPECT_EQ(changed.queue().attributes().partitions(), 2u);
  EXPECT_EQ(changed.queue().attributes().visibility_timeout_seconds(), 90u) << "kept";
  EXPECT_EQ(changed.queue().attributes().redrive_policy().dead_letter_queue(), "dlq");
  EXPECT_GE(changed.queue().last_modified_timestamp_ms(), changed.queue().created_timestamp_ms());

  v1::ListDeadLetterSourceQueuesRequest list;
  list.set_queue("dlq");
  v1::ListDeadLetterSourceQueuesResponse sources;
  ASSERT_TRUE(stub_->ListDeadLetterSourceQueues(Context().get(), list, &sources).ok());
  ASSERT_EQ(sources.queues_size(), 1);
  EXPECT_EQ(sources.queues(0), "src");

  // An empty dead-letter queue removes the policy.
  set.clear_attributes();
  set.mutable_attributes()->mutable_redrive_policy();
  ASSERT_TRUE(stub_->SetQueueAttributes(Context().get(), set, &changed).ok());
  EXPECT_FALSE(changed.queue().attributes().has_redrive_policy());
  sources.Clear();
  ASSERT_TRUE(stub_->ListDeadLetterSourceQueues(Context().get(), list, &sources).ok());
  EXPECT_EQ(sources.queues_size(), 0);

  // Bad changes: the type, a shrink, a value out of range, an unknown queue or page token.
  set.clear_attributes();
  set.mutable_attributes()->set_fifo(true);
  EXPECT_EQ(stub_->SetQueueAttributes(Context().get(), set, &changed).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  set.clear_attributes();
  set.mutable_attributes()->set_partitions(1);
  EXPECT_EQ(stub_->SetQueueAttributes(Context().get(), set, &changed).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  set.clear_attributes();
  set.mutable_attributes()->set_receive_wait_seconds(21);
  EXPECT_EQ(stub_->SetQueueAttributes(Context().get(), set, &changed).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  set.set_queue("missing");
  EXPECT_EQ(stub_->SetQueueAttributes(Context().get(), set, &changed).error_code(),
            grpc::StatusCode::NOT_FOUND);
  set.set_queue("bad name");
  EXPECT_EQ(stub_->SetQueueAttributes(Context().get(), set, &changed).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  list.set_page_token("not a name!");
  EXPECT_EQ(stub_->ListDeadLetterSourceQueues(Context().get(), list, &sources).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  list.set_page_token("");
  list.set_queue("missing");
  EXPECT_EQ(stub_->ListDeadLetterSourceQueues(Context().get(), list, &sources).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(QueueServiceTest, RedriveTasksMoveDeadLettersBackAndReportProgress) {
  ASSERT_TRUE(Create("dlq").ok());
  v1::QueueAttributes policy;
  policy.mutable_redrive_policy()->set_dead_letter_queue("dlq");
  policy.mutable_redrive_policy()->set_max_receive_count(1);
  policy.set_visibility_timeout_seconds(0);
  ASSERT_TRUE(Create("src", policy).ok());
  Send("src", "one");
  Send("src", "two");
  ASSERT_EQ(Receive("src", 10).messages_size(), 2);
  EXPECT_EQ(Receive("src", 10).messages_size(), 0) << "moved instead";
  bool arrived = false;
  for (int i = 0; i < 500 && !arrived; ++i) {
    v1::GetQueueAttributesRequest get;
    get.set_queue("dlq");
    v1::GetQueueAttributesResponse got;
    ASSERT_TRUE(stub_->GetQueueAttributes(Context().get(), get, &got).ok());
    arrived = got.queue().stats().approximate_visible() == 2;
    if (!arrived) std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_TRUE(arrived);

  v1::StartRedriveRequest start;
  start.set_source_queue("dlq");
  v1::StartRedriveResponse started;
  grpc::Status s = stub_->StartRedrive(Context().get(), start, &started);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(started.task().status(), v1::REDRIVE_TASK_STATUS_RUNNING);
  EXPECT_EQ(started.task().task_id().size(), 16u);
  EXPECT_EQ(started.task().max_messages_per_second(), 500u) << "the default rate";
  EXPECT_EQ(started.task().approximate_messages_to_move(), 2u);
  v1::RedriveTask last;
  for (int i = 0; i < 500; ++i) {
    v1::ListRedriveTasksRequest list;
    list.set_source_queue("dlq");
    v1::ListRedriveTasksResponse listed;
    ASSERT_TRUE(stub_->ListRedriveTasks(Context().get(), list, &listed).ok());
    ASSERT_EQ(listed.tasks_size(), 1);
    last = listed.tasks(0);
    if (last.status() != v1::REDRIVE_TASK_STATUS_RUNNING) break;
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(last.status(), v1::REDRIVE_TASK_STATUS_COMPLETED) << last.failure_reason();
  EXPECT_EQ(last.task_id(), started.task().task_id());
  EXPECT_EQ(last.approximate_messages_moved(), 2u);
  EXPECT_GT(last.finished_timestamp_ms(), 0);
  auto back = Receive("src", 10);
  ASSERT_EQ(back.messages_size(), 2);
  EXPECT_EQ(back.messages(0).receive_count(), 1u);
  EXPECT_TRUE(back.messages(0).dead_letter_source_queue().empty());

  // Bad inputs.
  start.set_max_messages_per_second(0);
  EXPECT_EQ(stub_->StartRedrive(Context().get(), start, &started).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  start.set_max_messages_per_second(100);
  start.set_source_queue("src");
  EXPECT_EQ(stub_->StartRedrive(Context().get(), start, &started).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION)
      << "src is no dead-letter queue";
  start.set_source_queue("dlq");
  start.set_destination_queue("missing");
  EXPECT_EQ(stub_->StartRedrive(Context().get(), start, &started).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::CancelRedriveRequest cancel;
  v1::CancelRedriveResponse cancelled;
  cancel.set_task_id("xyz");
  EXPECT_EQ(stub_->CancelRedrive(Context().get(), cancel, &cancelled).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  cancel.set_task_id("00000000000000ff");
  EXPECT_EQ(stub_->CancelRedrive(Context().get(), cancel, &cancelled).error_code(),
            grpc::StatusCode::NOT_FOUND);
  cancel.set_task_id(last.task_id());
  EXPECT_EQ(stub_->CancelRedrive(Context().get(), cancel, &cancelled).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION)
      << "the task completed";
  v1::ListRedriveTasksRequest list;
  list.set_source_queue("dlq");
  list.set_max_results(11);
  v1::ListRedriveTasksResponse listed;
  EXPECT_EQ(stub_->ListRedriveTasks(Context().get(), list, &listed).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  list.set_max_results(1);
  list.set_source_queue("missing");
  EXPECT_EQ(stub_->ListRedriveTasks(Context().get(), list, &listed).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

// Reads stream responses until `enough` says so or the stream ends (the context bounds it).
template <class Stream, class Pred>
std::vector<v1::StreamingReceiveResponse> ReadUntil(Stream& stream, Pred enough) {
  std::vector<v1::StreamingReceiveResponse> got;
  v1::StreamingReceiveResponse response;
  for (int i = 0; i < 1000 && !enough(got) && stream.Read(&response); ++i)
    got.push_back(response);
  return got;
}

std::size_t MessagesIn(const std::vector<v1::StreamingReceiveResponse>& responses) {
  std::size_t n = 0;
  for (const auto& r : responses)
    n += static_cast<std::size_t>(r.messages_size());
  return n;
}

TEST_F(QueueServiceTest, AReceiveStreamKeepsItsWindowAndConfirmsAcks) {
  ASSERT_TRUE(Create("s").ok());
  for (int i = 0; i < 5; ++i)
    Send("s", "m" + std::to_string(i));
  auto context = Context(seconds(20));
  auto stream = stub_->StreamingReceive(context.get());
  v1::StreamingReceiveRequest open;
  open.set_queue("s");
  open.set_max_outstanding_messages(2);
  ASSERT_TRUE(stream->Write(open));
  auto first = ReadUntil(*stream, [](const auto& got) { return MessagesIn(got) >= 2; });
  ASSERT_EQ(MessagesIn(first), 2u);
  std::vector<v1::QueueMessage> delivered;
  for (const auto& r : first)
    for (const auto& m : r.messages())
      delivered.push_back(m);
  EXPECT_EQ(delivered[0].body(), "m0");

  // One ack (and a garbage handle) opens one place: a confirmation and one more message.
  v1::StreamingReceiveRequest ack;
  ack.set_sequence(7);
  ack.add_deletes(delivered[0].receipt_handle());
  ack.add_deletes("garbage");
  ASSERT_TRUE(stream->Write(ack));
  std::optional<v1::StreamingReceiveConfirmation> confirmation;
  auto second = ReadUntil(*stream, [&](const auto& got) {
    for (const auto& r : got)
      if (r.has_confirmation()) confirmation = r.confirmation();
    return confirmation && MessagesIn(got) >= 1;
  });
  ASSERT_TRUE(confirmation);
  EXPECT_EQ(confirmation->sequence(), 7u);
  ASSERT_EQ(confirmation->failures_size(), 1);
  EXPECT_EQ(confirmation->failures(0).receipt_handle(), "garbage");
  EXPECT_EQ(confirmation->failures(0).action(), v1::RECEIPT_ACTION_DELETE);
  EXPECT_EQ(confirmation->failures(0).error().code(), v1::ERROR_CODE_INVALID_ARGUMENT);
  ASSERT_EQ(MessagesIn(second), 1u);
  for (const auto& r : second)
    for (const auto& m : r.messages())
      delivered.push_back(m);
  // The window holds: two in flight, two still visible, one deleted.
  v1::GetQueueAttributesRequest get;
  get.set_queue("s");
  v1::GetQueueAttributesResponse attributes;
  ASSERT_TRUE(stub_->GetQueueAttributes(Context().get(), get, &attributes).ok());
  EXPECT_EQ(attributes.queue().stats().approximate_in_flight(), 2u);
  EXPECT_EQ(attributes.queue().stats().approximate_visible(), 2u);

  // A nack gives a message back; the window takes the next one.
  v1::StreamingReceiveRequest nack;
  nack.set_sequence(8);
  nack.add_nacks()->set_receipt_handle(delivered[1].receipt_handle());
  ASSERT_TRUE(stream->Write(nack));
  confirmation.reset();
  auto third = ReadUntil(*stream, [&](const auto& got) {
    for (const auto& r : got)
      if (r.has_confirmation()) confirmation = r.confirmation();
    return confirmation && MessagesIn(got) >= 1;
  });
  ASSERT_TRUE(confirmation);
  EXPECT_EQ(confirmation->sequence(), 8u);
  EXPECT_EQ(confirmation->failures_size(), 0);
  EXPECT_EQ(MessagesIn(third), 1u);

  ASSERT_TRUE(stream->WritesDone());
  auto rest = ReadUntil(*stream, [](const auto&) { return false; });
  grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(MessagesIn(rest), 0u) << "nothing is delivered after the client half-closed";
}

TEST_F(QueueServiceTest, AReceiveStreamWakesForSendsAndReopensWhenLeasesEnd) {
  ASSERT_TRUE(Create("w").ok());
  auto context = Context(seconds(20));
  auto stream = stub_->StreamingReceive(context.get());
  v1::StreamingReceiveRequest open;
  open.set_queue("w");
  open.set_max_outstanding_messages(1);
  open.set_visibility_timeout_seconds(1);
  ASSERT_TRUE(stream->Write(open));
  std::thread sender([this] {
    std::this_thread::sleep_for(milliseconds(200));
    Send("w", "late");
    Send("w", "later");
  });
  auto woken = ReadUntil(*stream, [](const auto& got) { return MessagesIn(got) >= 1; });
  sender.join();
  ASSERT_EQ(MessagesIn(woken), 1u) << "the stream did not wake for the send";
  // Not acknowledged: when its 1 s lease ends, the window takes another message.
  const auto before = std::chrono::steady_clock::now();
  auto next = ReadUntil(*stream, [](const auto& got) { return MessagesIn(got) >= 1; });
  ASSERT_EQ(MessagesIn(next), 1u);
  EXPECT_GE(std::chrono::steady_clock::now() - before, milliseconds(500))
      << "the window reopened before the lease ended";
  context->TryCancel();
  stream->Finish();
}

TEST_F(QueueServiceTest, AReceiveStreamRefusesBadRequestsAndEndsWithItsQueue) {
  ASSERT_TRUE(Create("e").ok());
  auto status_of = [this](std::vector<v1::StreamingReceiveRequest> requests) {
    auto context = Context(seconds(10));
    auto stream = stub_->StreamingReceive(context.get());
    for (const auto& r : requests)
      stream->Write(r);
    ReadUntil(*stream, [](const auto&) { return false; });
    return stream->Finish();
  };
  v1::StreamingReceiveRequest no_queue;
  EXPECT_EQ(status_of({no_queue}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::StreamingReceiveRequest unknown;
  unknown.set_queue("nope");
  EXPECT_EQ(status_of({unknown}).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::StreamingReceiveRequest too_wide;
  too_wide.set_queue("e");
  too_wide.set_max_outstanding_messages(120'001);
  EXPECT_EQ(status_of({too_wide}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::StreamingReceiveRequest good;
  good.set_queue("e");
  v1::StreamingReceiveRequest other = good;
  other.set_queue("other");
  EXPECT_EQ(status_of({good, other}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // Deleting the queue ends the stream parked on it.
  auto context = Context(seconds(10));
  auto stream = stub_->StreamingReceive(context.get());
  ASSERT_TRUE(stream->Write(good));
  std::this_thread::sleep_for(milliseconds(100));
  v1::DeleteQueueRequest del;
  del.set_queue("e");
  v1::DeleteQueueResponse deleted;
  ASSERT_TRUE(stub_->DeleteQueue(Context().get(), del, &deleted).ok());
  ReadUntil(*stream, [](const auto&) { return false; });
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(QueueServiceTest, ALongPollWhoseCallerCancelledLeasesNothing) {
  ASSERT_TRUE(Create("c").ok());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + seconds(30));
  v1::ReceiveMessagesRequest request;
  request.set_queue("c");
  request.set_wait_time_seconds(10);
  v1::ReceiveMessagesResponse abandoned;
  grpc::Status abandoned_status;
  std::atomic<bool> answered{false};
  stub_->async()->ReceiveMessages(&context, &request, &abandoned, [&](grpc::Status s) {
    abandoned_status = std::move(s);
    answered = true;
  });
  std::this_thread::sleep_for(milliseconds(200));  // parked in the broker
  context.TryCancel();
  std::this_thread::sleep_for(milliseconds(100));
  Send("c", "wanted");  // wakes the parked receive, which must not lease it for nobody
  auto got = Receive("c", 1, 5);
  ASSERT_EQ(got.messages_size(), 1) << "the message stayed leased to the cancelled call";
  EXPECT_EQ(got.messages(0).body(), "wanted");
  EXPECT_EQ(got.messages(0).receive_count(), 1u) << "the cancelled call counted a receive";
  for (int i = 0; i < 500 && !answered; ++i)
    std::this_thread::sleep_for(milliseconds(10));
  EXPECT_TRUE(answered);
  EXPECT_EQ(abandoned.messages_size(), 0);
}

TEST_F(QueueServiceTest, TheQueuesDefaultWaitEndsBeforeTheCallersDeadline) {
  v1::QueueAttributes waits;
  waits.set_receive_wait_seconds(20);
  ASSERT_TRUE(Create("w", waits).ok());
  v1::ReceiveMessagesRequest request;
  request.set_queue("w");
  v1::ReceiveMessagesResponse response;
  // The caller allows 2 s; the queue would wait 20 s.
  grpc::Status s = stub_->ReceiveMessages(Context(seconds(2)).get(), request, &response);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.messages_size(), 0);
}

TEST_F(QueueServiceTest, BadInputsGetDistinctStatuses) {
  ASSERT_TRUE(Create("q").ok());
  v1::QueueAttributes fifo;
  fifo.set_fifo(true);
  ASSERT_TRUE(Create("f.fifo", fifo).ok());
  EXPECT_EQ(Create("bad name").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::QueueAttributes too_long;
  too_long.set_visibility_timeout_seconds(43'201);
  EXPECT_EQ(Create("x", too_long).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::QueueAttributes mismatch;
  mismatch.set_fifo(false);
  EXPECT_EQ(Create("y.fifo", mismatch).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::SendMessageRequest send;
  send.set_queue("nope");
  send.set_body("x");
  v1::SendMessageResponse sent;
  EXPECT_EQ(stub_->SendMessage(Context().get(), send, &sent).error_code(),
            grpc::StatusCode::NOT_FOUND);
  send.set_queue("bad name");
  EXPECT_EQ(stub_->SendMessage(Context().get(), send, &sent).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT)
      << "a malformed name is not an unknown queue";
  send.set_queue("f.fifo");
  EXPECT_EQ(stub_->SendMessage(Context().get(), send, &sent).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT)
      << "FIFO without a group";
  send.set_queue("q");
  send.set_delay_seconds(901);
  EXPECT_EQ(stub_->SendMessage(Context().get(), send, &sent).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  v1::ReceiveMessagesRequest receive;
  receive.set_queue("q");
  receive.set_max_messages(1001);
  v1::ReceiveMessagesResponse received;
  EXPECT_EQ(stub_->ReceiveMessages(Context().get(), receive, &received).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  receive.set_max_messages(1);
  receive.set_wait_time_seconds(21);
  EXPECT_EQ(stub_->ReceiveMessages(Context().get(), receive, &received).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Delete("q", "zz").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // A handle from another queue.
  Send("f.fifo", "m", "g", "d");
  auto other = Receive("f.fifo", 1);
  ASSERT_EQ(other.messages_size(), 1);
  grpc::Status foreign = Delete("q", other.messages(0).receipt_handle());
  EXPECT_EQ(foreign.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(foreign.error_message().find("another queue"), std::string::npos);
}

// A refusal: its code, and the part of its message that tells it from the other refusals.
void ExpectRefused(const grpc::Status& s, grpc::StatusCode code, std::string_view says,
                   std::string_view call) {
  EXPECT_EQ(s.error_code(), code) << call << ": " << s.error_message();
  EXPECT_NE(s.error_message().find(says), std::string::npos)
      << call << ": \"" << s.error_message() << "\" does not say \"" << says << "\"";
}

void ExpectEntryRefused(const v1::Error& e, v1::ErrorCode code, std::string_view says,
                        std::string_view entry) {
  EXPECT_EQ(e.code(), code) << entry << ": " << e.message();
  EXPECT_NE(e.message().find(says), std::string::npos)
      << entry << ": \"" << e.message() << "\" does not say \"" << says << "\"";
}

void ExpectSame(const std::map<std::string, std::string>& before,
                const std::map<std::string, std::string>& after, std::string_view when) {
  std::set<std::string> items;
  for (const auto& [item, shown] : before)
    items.insert(item);
  for (const auto& [item, shown] : after)
    items.insert(item);
  for (const std::string& item : items) {
    const std::string was = before.contains(item) ? before.at(item) : "(absent)\n";
    const std::string is = after.contains(item) ? after.at(item) : "(absent)\n";
    EXPECT_EQ(was, is) << item << " changed " << when;
  }
}

// A handle of the same queue as `like` for another receive: what a client could forge. The
// layout is protocol/queue_convert.cc's (version and subscription, then partition, offset
// and generation in hex).
std::string ForgeReceipt(const std::string& like, std::uint32_t partition, std::uint64_t offset,
                         std::uint64_t generation) {
  char rest[41];
  std::snprintf(rest, sizeof rest, "%08x%016llx%016llx", partition,
                static_cast<unsigned long long>(offset),
                static_cast<unsigned long long>(generation));
  return like.substr(0, 10) + rest;
}

TEST_F(QueueServiceTest, BadInputToEveryOperationChangesNothing) {
  // A dead-letter queue that admits only "std", a standard queue using it, a FIFO queue, a
  // finished redrive task, and messages visible, delayed, in flight and deleted.
  v1::QueueAttributes dlq_attributes;
  dlq_attributes.mutable_redrive_allow_policy()->set_permission(v1::REDRIVE_PERMISSION_BY_QUEUE);
  dlq_attributes.mutable_redrive_allow_policy()->add_source_queues("std");
  ASSERT_TRUE(Create("dlq", dlq_attributes).ok());
  v1::QueueAttributes std_attributes;
  // Long enough that no lease ends while the test runs.
  std_attributes.set_visibility_timeout_seconds(600);
  std_attributes.set_partitions(2);
  std_attributes.set_max_message_bytes(1024);
  std_attributes.mutable_redrive_policy()->set_dead_letter_queue("dlq");
  std_attributes.mutable_redrive_policy()->set_max_receive_count(5);
  ASSERT_TRUE(Create("std", std_attributes).ok());
  v1::QueueAttributes fifo_attributes;
  fifo_attributes.set_fifo(true);
  fifo_attributes.set_visibility_timeout_seconds(600);
  ASSERT_TRUE(Create("orders.fifo", fifo_attributes).ok());

  v1::StartRedriveRequest start;
  start.set_source_queue("dlq");
  start.set_destination_queue("std");
  v1::StartRedriveResponse started;
  ASSERT_TRUE(stub_->StartRedrive(Context().get(), start, &started).ok());
  v1::RedriveTask task = started.task();
  for (int i = 0; i < 500 && task.status() == v1::REDRIVE_TASK_STATUS_RUNNING; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
    v1::ListRedriveTasksRequest list;
    list.set_source_queue("dlq");
    v1::ListRedriveTasksResponse listed;
    ASSERT_TRUE(stub_->ListRedriveTasks(Context().get(), list, &listed).ok());
    ASSERT_EQ(listed.tasks_size(), 1);
    task = listed.tasks(0);
  }
  ASSERT_EQ(task.status(), v1::REDRIVE_TASK_STATUS_COMPLETED) << task.failure_reason();

  // One message group puts every message of "std" in one partition: receives take them
  // oldest first.
  std::vector<v1::SendMessageResult> sent;
  for (int i = 0; i < 6; ++i)
    sent.push_back(Send("std", "m" + std::to_string(i), "k").result());
  v1::SendMessageRequest delayed;
  delayed.set_queue("std");
  delayed.set_body("later");
  delayed.set_message_group_id("k");
  delayed.set_delay_seconds(900);
  v1::SendMessageResponse delayed_sent;
  ASSERT_TRUE(stub_->SendMessage(Context().get(), delayed, &delayed_sent).ok());
  Send("dlq", "d0");
  Send("dlq", "d1");
  Send("orders.fifo", "f0", "g", "fd0");
  Send("orders.fifo", "f1", "g", "fd1");
  Send("orders.fifo", "f2", "h", "fd2");

  auto first = Receive("std", 1);
  ASSERT_EQ(first.messages_size(), 1);
  ASSERT_EQ(first.messages(0).message_id(), sent[0].message_id());
  const std::string deleted = first.messages(0).receipt_handle();
  ASSERT_TRUE(Delete("std", deleted).ok());
  auto leased = Receive("std", 2);
  ASSERT_EQ(leased.messages_size(), 2);
  ASSERT_EQ(leased.messages(0).message_id(), sent[1].message_id());
  ASSERT_EQ(leased.messages(1).message_id(), sent[2].message_id());
  const std::string stale = leased.messages(0).receipt_handle();
  const std::string m2 = leased.messages(1).receipt_handle();
  {
    v1::ChangeMessageVisibilityRequest release;
    release.set_queue("std");
    release.set_receipt_handle(stale);
    release.set_visibility_timeout_seconds(0);
    v1::ChangeMessageVisibilityResponse released;
    ASSERT_TRUE(stub_->ChangeMessageVisibility(Context().get(), release, &released).ok());
  }
  auto again = Receive("std", 1);
  ASSERT_EQ(again.messages_size(), 1);
  ASSERT_EQ(again.messages(0).message_id(), sent[1].message_id());
  ASSERT_EQ(again.messages(0).receive_count(), 2u);
  const std::string m1 = again.messages(0).receipt_handle();
  auto fifo_leased = Receive("orders.fifo", 1);
  ASSERT_EQ(fifo_leased.messages_size(), 1);
  ASSERT_EQ(fifo_leased.messages(0).body(), "f0");
  const std::string f0 = fifo_leased.messages(0).receipt_handle();
  // Well-formed handles of "std" that no receive issued: for a message never received, and
  // for a partition the queue does not have.
  const std::string unreceived = ForgeReceipt(m1, sent[3].partition(), sent[3].offset(), 1);
  const std::string no_partition = ForgeReceipt(m1, 7, 0, 1);

  const std::map<std::string, std::string> initial = Snapshot();
  {
    v1::GetQueueAttributesRequest get;
    get.set_queue("std");
    v1::GetQueueAttributesResponse got;
    ASSERT_TRUE(stub_->GetQueueAttributes(Context().get(), get, &got).ok());
    ASSERT_EQ(got.queue().stats().approximate_visible(), 3u);
    ASSERT_EQ(got.queue().stats().approximate_in_flight(), 2u);
    ASSERT_EQ(got.queue().stats().approximate_delayed(), 1u);
  }
  // Each group of calls is compared with the state before it, so that a change shows where
  // it came from; the end compares with the start.
  std::map<std::string, std::string> before = initial;
  auto expect_unchanged_by = [&](std::string_view calls) {
    std::map<std::string, std::string> now = Snapshot();
    ExpectSame(before, now, "by bad " + std::string(calls));
    before = std::move(now);
  };
  using grpc::StatusCode;

  // CreateQueue.
  {
    auto create = [this](const std::string& name, v1::QueueAttributes a,
                         const std::string& topic = "") {
      v1::CreateQueueRequest request;
      request.set_name(name);
      request.set_topic(topic);
      *request.mutable_attributes() = std::move(a);
      v1::CreateQueueResponse response;
      return stub_->CreateQueue(Context().get(), request, &response);
    };
    v1::QueueAttributes a;
    ExpectRefused(create("bad name", a), StatusCode::INVALID_ARGUMENT, "not allowed", "bad name");
    ExpectRefused(create("", a), StatusCode::INVALID_ARGUMENT, "empty", "empty name");
    a.set_visibility_timeout_seconds(5);
    ExpectRefused(create("std", a), StatusCode::ALREADY_EXISTS, "other settings",
                  "std with another visibility");
    a.set_visibility_timeout_seconds(43'201);
    ExpectRefused(create("std", a), StatusCode::INVALID_ARGUMENT, "visibility_timeout",
                  "std with visibility out of range");
    ExpectRefused(create("fresh", a), StatusCode::INVALID_ARGUMENT, "visibility_timeout",
                  "visibility out of range");
    a.Clear();
    a.set_fifo(true);
    ExpectRefused(create("fresh", a), StatusCode::INVALID_ARGUMENT, ".fifo",
                  "FIFO without the suffix");
    a.Clear();
    a.set_max_in_flight(0);
    ExpectRefused(create("fresh", a), StatusCode::INVALID_ARGUMENT, "max_in_flight",
                  "max_in_flight 0");
    a.Clear();
    a.set_content_based_deduplication(true);
    ExpectRefused(create("fresh", a), StatusCode::INVALID_ARGUMENT, "content_based_deduplication",
                  "content-based deduplication, standard");
    a.Clear();
    a.mutable_redrive_allow_policy()->add_source_queues("std");
    ExpectRefused(create("fresh", a), StatusCode::INVALID_ARGUMENT, "permission",
                  "allow policy without a permission");
    a.Clear();
    a.mutable_redrive_policy()->set_dead_letter_queue("fresh");
    a.mutable_redrive_policy()->set_max_receive_count(3);
    ExpectRefused(create("fresh", a), StatusCode::INVALID_ARGUMENT, "its own dead-letter queue",
                  "own dead-letter queue");
    a.mutable_redrive_policy()->set_dead_letter_queue("missing");
    ExpectRefused(create("fresh", a), StatusCode::NOT_FOUND, "'missing'",
                  "unknown dead-letter queue");
    a.mutable_redrive_policy()->set_dead_letter_queue("orders.fifo");
    ExpectRefused(create("fresh", a), StatusCode::FAILED_PRECONDITION, "standard too",
                  "FIFO dead-letter queue");
    a.mutable_redrive_policy()->set_dead_letter_queue("dlq");
    ExpectRefused(create("fresh", a), StatusCode::FAILED_PRECONDITION, "allow policy",
                  "dead-letter queue that does not admit it");
    a.Clear();
    ExpectRefused(create("fresh", a, "missing-topic"), StatusCode::NOT_FOUND, "missing-topic",
                  "unknown topic");
    a.set_partitions(2);
    ExpectRefused(create("fresh", a, "std"), StatusCode::INVALID_ARGUMENT, "belong to the topic",
                  "partitions on a shared topic");
    a.Clear();
    // Far above the 1,209,600 s limit: 2^61 + 86,400 s, whose milliseconds (times 1000)
    // wrap around 64 bits to exactly one day.
    a.set_retention_seconds((std::int64_t{1} << 61) + 86'400);
    ExpectRefused(create("huge-retention", a), StatusCode::INVALID_ARGUMENT, "retention",
                  "retention far out of range");
  }
  expect_unchanged_by("CreateQueue");

  // GetQueueAttributes.
  {
    auto get = [this](const std::string& name) {
      v1::GetQueueAttributesRequest request;
      request.set_queue(name);
      v1::GetQueueAttributesResponse response;
      return stub_->GetQueueAttributes(Context().get(), request, &response);
    };
    ExpectRefused(get("missing"), StatusCode::NOT_FOUND, "does not exist", "unknown queue");
    ExpectRefused(get("bad name"), StatusCode::INVALID_ARGUMENT, "not allowed", "bad name");
    ExpectRefused(get(""), StatusCode::INVALID_ARGUMENT, "empty", "empty name");
  }
  expect_unchanged_by("GetQueueAttributes");

  // SetQueueAttributes: alone, and next to a valid change that must not be applied either.
  {
    auto set = [this](const std::string& name, v1::QueueAttributes a) {
      v1::SetQueueAttributesRequest request;
      request.set_queue(name);
      *request.mutable_attributes() = std::move(a);
      v1::SetQueueAttributesResponse response;
      return stub_->SetQueueAttributes(Context().get(), request, &response);
    };
    v1::QueueAttributes a;
    a.set_visibility_timeout_seconds(43'201);
    ExpectRefused(set("std", a), StatusCode::INVALID_ARGUMENT, "visibility_timeout",
                  "visibility out of range");
    a.Clear();
    a.set_delivery_delay_seconds(901);
    ExpectRefused(set("std", a), StatusCode::INVALID_ARGUMENT, "delivery_delay",
                  "delivery delay out of range");
    a.Clear();
    a.set_receive_wait_seconds(21);
    ExpectRefused(set("std", a), StatusCode::INVALID_ARGUMENT, "receive_wait",
                  "receive wait out of range");
    a.Clear();
    a.set_max_message_bytes(0);
    ExpectRefused(set("std", a), StatusCode::INVALID_ARGUMENT, "max_message_bytes",
                  "max_message_bytes 0");
    a.set_max_message_bytes(1'048'577);
    ExpectRefused(set("std", a), StatusCode::INVALID_ARGUMENT, "max_message_bytes",
                  "max_message_bytes above 1 MiB");
    a.Clear();
    a.set_retention_seconds(59);
    ExpectRefused(set("std", a), StatusCode::INVALID_ARGUMENT, "retention", "retention 59 s");
    a.set_retention_seconds((std::int64_t{1} << 61) + 86'400);
    ExpectRefused(set("std", a), StatusCode::INVALID_ARGUMENT, "retention",
                  "retention far out of range");
    a.Clear();
    a.set_fifo(true);
    ExpectRefused(set("std", a), StatusCode::INVALID_ARGUMENT, "type is fixed", "fifo on std");
    a.Clear();
    a.set_content_based_deduplication(true);
    ExpectRefused(set("std", a), StatusCode::INVALID_ARGUMENT, "content_based_deduplication",
                  "content-based deduplication on std");
    a.Clear();
    a.set_partitions(1);
    ExpectRefused(set("std", a), StatusCode::INVALID_ARGUMENT, "not shrink", "fewer partitions");
    a.Clear();
    a.set_visibility_timeout_seconds(7);
    a.set_max_in_flight(0);
    ExpectRefused(set("std", a), StatusCode::INVALID_ARGUMENT, "max_in_flight",
                  "a valid visibility with max_in_flight 0");
    a.Clear();
    a.set_partitions(3);
    a.mutable_redrive_policy()->set_dead_letter_queue("missing");
    a.mutable_redrive_policy()->set_max_receive_count(3);
    ExpectRefused(set("std", a), StatusCode::NOT_FOUND, "'missing'",
                  "more partitions with an unknown dead-letter queue");
    a.Clear();
    a.mutable_redrive_policy()->set_dead_letter_queue("std");
    a.mutable_redrive_policy()->set_max_receive_count(3);
    ExpectRefused(set("std", a), StatusCode::INVALID_ARGUMENT, "its own dead-letter queue",
                  "own dead-letter queue");
    a.mutable_redrive_policy()->set_dead_letter_queue("dlq");
    a.mutable_redrive_policy()->set_max_receive_count(0);
    ExpectRefused(set("std", a), StatusCode::INVALID_ARGUMENT, "max_receive_count",
                  "max_receive_count 0");
    a.mutable_redrive_policy()->set_dead_letter_queue("orders.fifo");
    a.mutable_redrive_policy()->set_max_receive_count(3);
    ExpectRefused(set("std", a), StatusCode::FAILED_PRECONDITION, "standard too",
                  "FIFO dead-letter queue");
    a.Clear();
    a.mutable_redrive_allow_policy()->set_permission(v1::REDRIVE_PERMISSION_BY_QUEUE);
    ExpectRefused(set("dlq", a), StatusCode::INVALID_ARGUMENT, "source queues",
                  "allow policy by queue naming none");
    a.mutable_redrive_allow_policy()->set_permission(v1::REDRIVE_PERMISSION_ALLOW_ALL);
    a.mutable_redrive_allow_policy()->add_source_queues("std");
    ExpectRefused(set("dlq", a), StatusCode::INVALID_ARGUMENT, "only for a redrive allow policy",
                  "allow-all policy naming queues");
    a.Clear();
    a.set_partitions(2);
    a.set_visibility_timeout_seconds(7);
    ExpectRefused(set("orders.fifo", a), StatusCode::FAILED_PRECONDITION,
                  "partition count cannot change", "more partitions for FIFO with a visibility");
    a.Clear();
    a.set_visibility_timeout_seconds(7);
    ExpectRefused(set("missing", a), StatusCode::NOT_FOUND, "does not exist", "unknown queue");
    ExpectRefused(set("bad name", a), StatusCode::INVALID_ARGUMENT, "not allowed", "bad name");
  }
  expect_unchanged_by("SetQueueAttributes");

  // ListQueues and ListDeadLetterSourceQueues: page tokens never handed out.
  {
    v1::ListQueuesRequest list;
    v1::ListQueuesResponse page;
    list.set_page_token("not a name!");
    ExpectRefused(stub_->ListQueues(Context().get(), list, &page), StatusCode::INVALID_ARGUMENT,
                  "not handed out", "malformed page token");
    list.set_prefix("s");
    list.set_page_token("dlq");
    ExpectRefused(stub_->ListQueues(Context().get(), list, &page), StatusCode::INVALID_ARGUMENT,
                  "prefix", "page token of another prefix");
    v1::ListDeadLetterSourceQueuesRequest sources;
    v1::ListDeadLetterSourceQueuesResponse found;
    sources.set_queue("dlq");
    sources.set_page_token("not a name!");
    ExpectRefused(stub_->ListDeadLetterSourceQueues(Context().get(), sources, &found),
                  StatusCode::INVALID_ARGUMENT, "page_token", "malformed page token");
    sources.clear_page_token();
    sources.set_queue("missing");
    ExpectRefused(stub_->ListDeadLetterSourceQueues(Context().get(), sources, &found),
                  StatusCode::NOT_FOUND, "does not exist", "unknown queue");
    sources.set_queue("bad name");
    ExpectRefused(stub_->ListDeadLetterSourceQueues(Context().get(), sources, &found),
                  StatusCode::INVALID_ARGUMENT, "not allowed", "bad name");
  }
  expect_unchanged_by("listings");

  // DeleteQueue and PurgeQueue.
  {
    for (const auto& [name, code, says] :
         {std::tuple{"missing", StatusCode::NOT_FOUND, "does not exist"},
          std::tuple{"missing.fifo", StatusCode::NOT_FOUND, "does not exist"},
          std::tuple{"bad name", StatusCode::INVALID_ARGUMENT, "not allowed"},
          std::tuple{"", StatusCode::INVALID_ARGUMENT, "empty"}}) {
      v1::DeleteQueueRequest del;
      del.set_queue(name);
      v1::DeleteQueueResponse deleted_queue;
      ExpectRefused(stub_->DeleteQueue(Context().get(), del, &deleted_queue), code, says,
                    std::string("DeleteQueue '") + name + "'");
      v1::PurgeQueueRequest purge;
      purge.set_queue(name);
      v1::PurgeQueueResponse purged;
      ExpectRefused(stub_->PurgeQueue(Context().get(), purge, &purged), code, says,
                    std::string("PurgeQueue '") + name + "'");
    }
  }
  expect_unchanged_by("DeleteQueue and PurgeQueue");

  // SendMessage.
  {
    auto send = [this](v1::SendMessageRequest request) {
      v1::SendMessageResponse response;
      return stub_->SendMessage(Context().get(), request, &response);
    };
    v1::SendMessageRequest r;
    r.set_queue("missing");
    r.set_body("x");
    ExpectRefused(send(r), StatusCode::NOT_FOUND, "does not exist", "unknown queue");
    r.set_queue("bad name");
    ExpectRefused(send(r), StatusCode::INVALID_ARGUMENT, "not allowed", "bad name");
    r.set_queue("std");
    r.set_body("");
    ExpectRefused(send(r), StatusCode::INVALID_ARGUMENT, "empty", "empty body");
    r.set_body("x");
    r.set_delay_seconds(901);
    ExpectRefused(send(r), StatusCode::INVALID_ARGUMENT, "delay", "delay out of range");
    r.clear_delay_seconds();
    r.add_headers()->set_key("spool.mine");
    ExpectRefused(send(r), StatusCode::INVALID_ARGUMENT, "reserved", "reserved header");
    r.clear_headers();
    r.set_message_group_id(std::string(129, 'g'));
    ExpectRefused(send(r), StatusCode::INVALID_ARGUMENT, "message_group_id", "long group id");
    r.clear_message_group_id();
    r.set_deduplication_id("has space");
    ExpectRefused(send(r), StatusCode::INVALID_ARGUMENT, "deduplication_id", "bad dedup id");
    r.clear_deduplication_id();
    r.set_body(std::string(2000, 'b'));
    ExpectRefused(send(r), StatusCode::RESOURCE_EXHAUSTED, "1024", "above max_message_bytes");
    v1::SendMessageRequest f;
    f.set_queue("orders.fifo");
    f.set_body("x");
    f.set_deduplication_id("refused-1");
    ExpectRefused(send(f), StatusCode::INVALID_ARGUMENT, "message group", "FIFO without group");
    f.set_message_group_id("g");
    f.clear_deduplication_id();
    ExpectRefused(send(f), StatusCode::INVALID_ARGUMENT, "deduplication id",
                  "FIFO without dedup id");
    f.set_deduplication_id("refused-2");
    f.set_delay_seconds(5);
    ExpectRefused(send(f), StatusCode::INVALID_ARGUMENT, "delay", "FIFO with a delay");
  }
  expect_unchanged_by("SendMessage");

  // SendMessageBatch: refused as a whole, valid entries included; or every entry refused.
  {
    auto batch = [this](v1::SendMessageBatchRequest request, v1::SendMessageBatchResponse* out) {
      return stub_->SendMessageBatch(Context().get(), request, out);
    };
    v1::SendMessageBatchResponse response;
    v1::SendMessageBatchRequest r;
    r.set_queue("std");
    ExpectRefused(batch(r, &response), StatusCode::INVALID_ARGUMENT, "no entries", "no entries");
    for (int i = 0; i < 2; ++i) {
      auto* e = r.add_entries();
      e->set_id("same");
      e->set_body("valid");
      e->set_deduplication_id("refused-3");
    }
    ExpectRefused(batch(r, &response), StatusCode::INVALID_ARGUMENT, "used twice", "one id twice");
    r.clear_entries();
    for (int i = 0; i < 1001; ++i) {
      auto* e = r.add_entries();
      e->set_id("e" + std::to_string(i));
      e->set_body("valid");
    }
    ExpectRefused(batch(r, &response), StatusCode::RESOURCE_EXHAUSTED, "1000", "1001 entries");
    r.mutable_entries()->DeleteSubrange(1, 1000);
    r.set_queue("missing");
    ExpectRefused(batch(r, &response), StatusCode::NOT_FOUND, "does not exist", "unknown queue");
    r.set_queue("bad name");
    ExpectRefused(batch(r, &response), StatusCode::INVALID_ARGUMENT, "not allowed", "bad name");

    v1::SendMessageBatchRequest bad;
    bad.set_queue("std");
    auto entry = [&bad](const std::string& id) {
      auto* e = bad.add_entries();
      e->set_id(id);
      e->set_body("x");
      return e;
    };
    entry("empty")->set_body("");
    entry("late")->set_delay_seconds(901);
    entry("reserved")->add_headers()->set_key("spool.mine");
    entry("big")->set_body(std::string(2000, 'b'));
    entry("group")->set_message_group_id(std::string(129, 'g'));
    entry("dedup")->set_deduplication_id("has space");
    response.Clear();
    grpc::Status s = batch(bad, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(response.results_size(), 6);
    const std::vector<std::tuple<v1::ErrorCode, std::string_view>> expected = {
        {v1::ERROR_CODE_INVALID_ARGUMENT, "empty"},
        {v1::ERROR_CODE_INVALID_ARGUMENT, "delay"},
        {v1::ERROR_CODE_INVALID_ARGUMENT, "reserved"},
        {v1::ERROR_CODE_RESOURCE_EXHAUSTED, "1024"},
        {v1::ERROR_CODE_INVALID_ARGUMENT, "message_group_id"},
        {v1::ERROR_CODE_INVALID_ARGUMENT, "deduplication_id"}};
    for (int i = 0; i < 6; ++i) {
      const auto& result = response.results(i);
      EXPECT_EQ(result.id(), bad.entries(i).id());
      EXPECT_TRUE(result.has_error()) << result.id() << " was sent";
      ExpectEntryRefused(result.error(), std::get<0>(expected[i]), std::get<1>(expected[i]),
                         result.id());
    }

    v1::SendMessageBatchRequest fifo_bad;
    fifo_bad.set_queue("orders.fifo");
    auto* no_group = fifo_bad.add_entries();
    no_group->set_id("no-group");
    no_group->set_body("x");
    no_group->set_deduplication_id("refused-4");
    auto* no_dedup = fifo_bad.add_entries();
    no_dedup->set_id("no-dedup");
    no_dedup->set_body("x");
    no_dedup->set_message_group_id("g");
    auto* late = fifo_bad.add_entries();
    late->set_id("late");
    late->set_body("x");
    late->set_message_group_id("g");
    late->set_deduplication_id("refused-5");
    late->set_delay_seconds(5);
    response.Clear();
    s = batch(fifo_bad, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(response.results_size(), 3);
    ExpectEntryRefused(response.results(0).error(), v1::ERROR_CODE_INVALID_ARGUMENT,
                       "message group", "no-group");
    ExpectEntryRefused(response.results(1).error(), v1::ERROR_CODE_INVALID_ARGUMENT,
                       "deduplication id", "no-dedup");
    ExpectEntryRefused(response.results(2).error(), v1::ERROR_CODE_INVALID_ARGUMENT, "delay",
                       "late");

    // The API allows entry ids of up to 80 characters; the refusal may be the call's or the
    // entry's.
    v1::SendMessageBatchRequest long_id;
    long_id.set_queue("dlq");
    auto* e = long_id.add_entries();
    e->set_id(std::string(81, 'i'));
    e->set_body("x");
    response.Clear();
    s = batch(long_id, &response);
    const bool refused =
        s.ok() ? response.results_size() == 1 && response.results(0).has_error() &&
                     response.results(0).error().code() == v1::ERROR_CODE_INVALID_ARGUMENT
               : s.error_code() == StatusCode::INVALID_ARGUMENT;
    EXPECT_TRUE(refused) << "an entry id of 81 characters: " << s.error_message() << " "
                         << response.DebugString();
  }
  expect_unchanged_by("SendMessageBatch");

  // ReceiveMessages.
  {
    auto receive = [this](const std::string& queue, std::uint32_t max,
                          std::optional<std::uint32_t> visibility,
                          std::optional<std::uint32_t> wait) {
      v1::ReceiveMessagesRequest request;
      request.set_queue(queue);
      request.set_max_messages(max);
      if (visibility) request.set_visibility_timeout_seconds(*visibility);
      if (wait) request.set_wait_time_seconds(*wait);
      v1::ReceiveMessagesResponse response;
      grpc::Status s = stub_->ReceiveMessages(Context().get(), request, &response);
      EXPECT_EQ(response.messages_size(), 0) << "a refused receive returned messages";
      return s;
    };
    ExpectRefused(receive("std", 1001, {}, {}), StatusCode::INVALID_ARGUMENT, "max_messages",
                  "max_messages 1001");
    ExpectRefused(receive("std", 10, 43'201, {}), StatusCode::INVALID_ARGUMENT,
                  "visibility timeout", "visibility out of range");
    ExpectRefused(receive("std", 10, {}, 21), StatusCode::INVALID_ARGUMENT, "wait time",
                  "wait out of range");
    ExpectRefused(receive("missing", 10, {}, {}), StatusCode::NOT_FOUND, "does not exist",
                  "unknown queue");
    ExpectRefused(receive("bad name", 10, {}, {}), StatusCode::INVALID_ARGUMENT, "not allowed",
                  "bad name");
  }
  expect_unchanged_by("ReceiveMessages");

  // Per-handle errors, the same for the unary calls and their batches' entries (whose
  // ErrorCode numbers are gRPC's).
  struct BadHandle {
    std::string label;
    std::string handle;
    StatusCode code;
    std::string_view says;
  };
  const std::vector<BadHandle> garbage = {
      {"garbage", "zz", StatusCode::INVALID_ARGUMENT, "malformed"},
      {"upper-case hex", m1.substr(0, 2) + "ABCDEF01" + m1.substr(10), StatusCode::INVALID_ARGUMENT,
       "malformed"},
      {"foreign", f0, StatusCode::INVALID_ARGUMENT, "another queue"},
      {"no partition", no_partition, StatusCode::INVALID_ARGUMENT, "does not have"},
      {"stale", stale, StatusCode::FAILED_PRECONDITION, "received again"},
      {"unreceived", unreceived, StatusCode::FAILED_PRECONDITION, "has not been received"}};
  // A batch whose every entry was refused, each for its own reason, in order.
  auto expect_entries_refused = [](const auto& response, const std::vector<BadHandle>& entries,
                                   const std::string& call) {
    ASSERT_EQ(response.results_size(), static_cast<int>(entries.size()));
    for (std::size_t i = 0; i < entries.size(); ++i) {
      const auto& result = response.results(static_cast<int>(i));
      EXPECT_EQ(result.id(), entries[i].label);
      EXPECT_TRUE(result.has_error()) << entries[i].label << " succeeded in " << call;
      ExpectEntryRefused(result.error(), static_cast<v1::ErrorCode>(entries[i].code),
                         entries[i].says, call + " " + entries[i].label);
    }
  };

  // The whole-call refusals the receipt batches share (their shape, then the queue's name),
  // each carrying the good handles m1 and m2, which must stay leased. `call` sends a request.
  auto expect_batch_refused = [&](auto r, auto call) {
    r.set_queue("std");
    ExpectRefused(call(r), StatusCode::INVALID_ARGUMENT, "no entries", "no entries");
    for (const std::string& handle : {m1, m2}) {
      auto* e = r.add_entries();
      e->set_id("same");
      e->set_receipt_handle(handle);
    }
    ExpectRefused(call(r), StatusCode::INVALID_ARGUMENT, "used twice",
                  "one id twice, good handles");
    r.clear_entries();
    for (int i = 0; i < 1001; ++i) {
      auto* e = r.add_entries();
      e->set_id("e" + std::to_string(i));
      e->set_receipt_handle(i % 2 == 0 ? m1 : m2);
    }
    ExpectRefused(call(r), StatusCode::RESOURCE_EXHAUSTED, "1000", "1001 entries, good handles");
    r.mutable_entries()->DeleteSubrange(1, 1000);
    r.set_queue("missing");
    ExpectRefused(call(r), StatusCode::NOT_FOUND, "does not exist", "unknown queue");
    r.set_queue("bad name");
    ExpectRefused(call(r), StatusCode::INVALID_ARGUMENT, "not allowed", "bad name");
  };

  // DeleteMessage and DeleteMessageBatch.
  {
    for (const BadHandle& bad : garbage)
      ExpectRefused(Delete("std", bad.handle), bad.code, bad.says, "DeleteMessage " + bad.label);
    ExpectRefused(Delete("missing", m1), StatusCode::NOT_FOUND, "does not exist", "unknown queue");
    ExpectRefused(Delete("bad name", m1), StatusCode::INVALID_ARGUMENT, "not allowed", "bad name");

    v1::DeleteMessageBatchRequest r;
    v1::DeleteMessageBatchResponse response;
    expect_batch_refused(r, [&](const v1::DeleteMessageBatchRequest& request) {
      return stub_->DeleteMessageBatch(Context().get(), request, &response);
    });

    r.set_queue("std");
    r.clear_entries();
    for (const BadHandle& bad : garbage) {
      auto* e = r.add_entries();
      e->set_id(bad.label);
      e->set_receipt_handle(bad.handle);
    }
    response.Clear();
    grpc::Status s = stub_->DeleteMessageBatch(Context().get(), r, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    expect_entries_refused(response, garbage, "DeleteMessageBatch");
  }
  expect_unchanged_by("DeleteMessage and DeleteMessageBatch");

  // A lease is capped at 12 hours from its receive: once a few milliseconds have passed, a
  // 43,200 s lease from now exceeds it.
  std::this_thread::sleep_for(milliseconds(5));
  // ChangeMessageVisibility and its batch.
  {
    auto change = [this](const std::string& queue, const std::string& handle,
                         std::uint32_t seconds) {
      v1::ChangeMessageVisibilityRequest request;
      request.set_queue(queue);
      request.set_receipt_handle(handle);
      request.set_visibility_timeout_seconds(seconds);
      v1::ChangeMessageVisibilityResponse response;
      return stub_->ChangeMessageVisibility(Context().get(), request, &response);
    };
    for (const BadHandle& bad : garbage) {
      ExpectRefused(change("std", bad.handle, 0), bad.code, bad.says,
                    "ChangeMessageVisibility " + bad.label);
    }
    ExpectRefused(change("std", deleted, 0), StatusCode::FAILED_PRECONDITION, "was deleted",
                  "a deleted message");
    ExpectRefused(change("std", m2, 43'201), StatusCode::INVALID_ARGUMENT, "0-43200",
                  "visibility out of range");
    ExpectRefused(change("std", m2, 43'200), StatusCode::INVALID_ARGUMENT, "after the message",
                  "a lease beyond 12 hours from the receive");
    ExpectRefused(change("missing", m2, 0), StatusCode::NOT_FOUND, "does not exist",
                  "unknown queue");
    ExpectRefused(change("bad name", m2, 0), StatusCode::INVALID_ARGUMENT, "not allowed",
                  "bad name");

    v1::ChangeMessageVisibilityBatchRequest r;
    v1::ChangeMessageVisibilityBatchResponse response;
    // Entries' visibility_timeout_seconds stay 0, a valid value.
    expect_batch_refused(r, [&](const v1::ChangeMessageVisibilityBatchRequest& request) {
      return stub_->ChangeMessageVisibilityBatch(Context().get(), request, &response);
    });

    std::vector<BadHandle> entries = garbage;
    entries.push_back({"deleted", deleted, StatusCode::FAILED_PRECONDITION, "was deleted"});
    const std::size_t handle_entries = entries.size();
    entries.push_back({"out of range", m1, StatusCode::INVALID_ARGUMENT, "0-43200"});
    entries.push_back({"beyond 12 hours", m2, StatusCode::INVALID_ARGUMENT, "after the message"});
    r.set_queue("std");
    r.clear_entries();
    for (std::size_t i = 0; i < entries.size(); ++i) {
      auto* e = r.add_entries();
      e->set_id(entries[i].label);
      e->set_receipt_handle(entries[i].handle);
      e->set_visibility_timeout_seconds(i < handle_entries    ? 0
                                        : i == handle_entries ? 43'201
                                                              : 43'200);
    }
    response.Clear();
    grpc::Status s = stub_->ChangeMessageVisibilityBatch(Context().get(), r, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    expect_entries_refused(response, entries, "ChangeMessageVisibilityBatch");
  }
  expect_unchanged_by("ChangeMessageVisibility and its batch");

  // NackMessage.
  {
    auto nack = [this](const std::string& queue, const std::string& handle, std::uint32_t delay) {
      v1::NackMessageRequest request;
      request.set_queue(queue);
      request.set_receipt_handle(handle);
      request.set_delay_seconds(delay);
      v1::NackMessageResponse response;
      return stub_->NackMessage(Context().get(), request, &response);
    };
    for (const BadHandle& bad : garbage)
      ExpectRefused(nack("std", bad.handle, 0), bad.code, bad.says, "NackMessage " + bad.label);
    ExpectRefused(nack("std", deleted, 0), StatusCode::FAILED_PRECONDITION, "was deleted",
                  "a deleted message");
    // The request has no visibility timeout: the error should name its delay.
    ExpectRefused(nack("std", m1, 43'201), StatusCode::INVALID_ARGUMENT, "delay",
                  "delay out of range");
    ExpectRefused(nack("std", m1, 43'200), StatusCode::INVALID_ARGUMENT, "after the message",
                  "a delay beyond 12 hours from the receive");
    ExpectRefused(nack("missing", m1, 0), StatusCode::NOT_FOUND, "does not exist", "unknown queue");
    ExpectRefused(nack("bad name", m1, 0), StatusCode::INVALID_ARGUMENT, "not allowed", "bad name");
  }
  expect_unchanged_by("NackMessage");

  // StreamingReceive: a bad first request ends the stream before anything is received, and
  // the deletes and nacks it carries are not carried out.
  {
    auto stream_status = [this](const v1::StreamingReceiveRequest& first) {
      auto context = Context(seconds(10));
      auto stream = stub_->StreamingReceive(context.get());
      stream->Write(first);
      auto got = ReadUntil(*stream, [](const auto&) { return false; });
      EXPECT_EQ(MessagesIn(got), 0u) << "a refused stream delivered messages";
      return stream->Finish();
    };
    v1::StreamingReceiveRequest r;
    ExpectRefused(stream_status(r), StatusCode::INVALID_ARGUMENT, "name the queue", "no queue");
    r.set_queue("missing");
    ExpectRefused(stream_status(r), StatusCode::NOT_FOUND, "does not exist", "unknown queue");
    r.set_queue("bad name");
    ExpectRefused(stream_status(r), StatusCode::INVALID_ARGUMENT, "not allowed", "bad name");
    r.set_queue("std");
    r.set_visibility_timeout_seconds(43'201);
    ExpectRefused(stream_status(r), StatusCode::INVALID_ARGUMENT, "visibility_timeout_seconds",
                  "visibility out of range");
    r.clear_visibility_timeout_seconds();
    r.set_max_outstanding_messages(120'001);
    r.add_deletes(m1);
    r.add_nacks()->set_receipt_handle(m2);
    r.add_visibility_changes()->set_receipt_handle(f0);
    ExpectRefused(stream_status(r), StatusCode::INVALID_ARGUMENT, "max_outstanding_messages",
                  "a window too wide, with deletes and nacks of good handles");
  }
  expect_unchanged_by("StreamingReceive");

  // StartRedrive, ListRedriveTasks and CancelRedrive.
  {
    auto redrive = [this](const std::string& source, const std::string& destination,
                          std::optional<std::uint32_t> rate) {
      v1::StartRedriveRequest request;
      request.set_source_queue(source);
      request.set_destination_queue(destination);
      if (rate) request.set_max_messages_per_second(*rate);
      v1::StartRedriveResponse response;
      return stub_->StartRedrive(Context().get(), request, &response);
    };
    ExpectRefused(redrive("dlq", "", 0), StatusCode::INVALID_ARGUMENT, "rate", "rate 0");
    ExpectRefused(redrive("dlq", "", 10'001), StatusCode::INVALID_ARGUMENT, "rate", "rate 10001");
    ExpectRefused(redrive("bad name", "", {}), StatusCode::INVALID_ARGUMENT, "not allowed",
                  "bad source name");
    ExpectRefused(redrive("dlq", "bad name", {}), StatusCode::INVALID_ARGUMENT, "not allowed",
                  "bad destination name");
    ExpectRefused(redrive("dlq", "dlq", {}), StatusCode::INVALID_ARGUMENT, "the queue they are in",
                  "destination is the source");
    ExpectRefused(redrive("missing", "", {}), StatusCode::NOT_FOUND, "'missing'", "unknown source");
    ExpectRefused(redrive("dlq", "missing", {}), StatusCode::NOT_FOUND, "'missing'",
                  "unknown destination");
    ExpectRefused(redrive("std", "", {}), StatusCode::FAILED_PRECONDITION,
                  "not the dead-letter queue", "a source that is no dead-letter queue");
    ExpectRefused(redrive("dlq", "orders.fifo", {}), StatusCode::FAILED_PRECONDITION, "one type",
                  "a FIFO destination");

    v1::ListRedriveTasksRequest list;
    v1::ListRedriveTasksResponse listed;
    list.set_source_queue("dlq");
    list.set_max_results(11);
    ExpectRefused(stub_->ListRedriveTasks(Context().get(), list, &listed),
                  StatusCode::INVALID_ARGUMENT, "max_results", "max_results 11");
    list.set_max_results(1);
    list.set_source_queue("missing");
    ExpectRefused(stub_->ListRedriveTasks(Context().get(), list, &listed), StatusCode::NOT_FOUND,
                  "does not exist", "unknown queue");
    list.set_source_queue("bad name");
    ExpectRefused(stub_->ListRedriveTasks(Context().get(), list, &listed),
                  StatusCode::INVALID_ARGUMENT, "not allowed", "bad name");

    auto cancel = [this](const std::string& id) {
      v1::CancelRedriveRequest request;
      request.set_task_id(id);
      v1::CancelRedriveResponse response;
      return stub_->CancelRedrive(Context().get(), request, &response);
    };
    ExpectRefused(cancel("xyz"), StatusCode::INVALID_ARGUMENT, "malformed", "short id");
    ExpectRefused(cancel(""), StatusCode::INVALID_ARGUMENT, "malformed", "empty id");
    ExpectRefused(cancel("00000000000000FF"), StatusCode::INVALID_ARGUMENT, "malformed",
                  "upper-case id");
    ExpectRefused(cancel("00000000000000ff"), StatusCode::NOT_FOUND, "no redrive task",
                  "unknown task");
    ExpectRefused(cancel(task.task_id()), StatusCode::FAILED_PRECONDITION, "not RUNNING",
                  "a completed task");
  }
  expect_unchanged_by("redrive calls");

  ExpectSame(initial, Snapshot(), "by all the bad requests");

  // The leases held: the leased messages are still hidden, no refused call counted a receive,
  // and the newest handles still work.
  auto visible = Receive("std", 10);
  std::multiset<std::string> ids;
  for (const auto& m : visible.messages()) {
    ids.insert(m.message_id());
    EXPECT_EQ(m.receive_count(), 1u) << m.body();
  }
  EXPECT_EQ(ids, (std::multiset<std::string>{sent[3].message_id(), sent[4].message_id(),
                                             sent[5].message_id()}));
  EXPECT_TRUE(Delete("std", m1).ok());
  EXPECT_TRUE(Delete("std", m2).ok());
  EXPECT_TRUE(Delete("orders.fifo", f0).ok());
  auto fifo_next = Receive("orders.fifo", 10);
  ASSERT_GE(fifo_next.messages_size(), 1);
  std::set<std::string> fifo_bodies;
  for (const auto& m : fifo_next.messages())
    fifo_bodies.insert(m.body());
  EXPECT_TRUE(fifo_bodies.contains("f1")) << "f0's delete did not unlock its group";

  // Refused sends claimed no deduplication id.
  EXPECT_FALSE(Send("orders.fifo", "x", "g", "refused-1").result().duplicate());
  EXPECT_FALSE(Send("orders.fifo", "x", "g", "refused-2").result().duplicate());
  EXPECT_FALSE(Send("orders.fifo", "x", "g", "refused-4").result().duplicate());
  EXPECT_FALSE(Send("orders.fifo", "x", "g", "refused-5").result().duplicate());
  EXPECT_FALSE(Send("std", "x", std::nullopt, "refused-3").result().duplicate());
}

}  // namespace
}  // namespace spool
