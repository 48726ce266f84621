// The gRPC QueueService against an in-process server (real store, broker and gRPC on
// 127.0.0.1 port 0): queue administration, sends and batches with per-entry errors, receives
// with leases and long polls, deletes, visibility changes and nacks by receipt handle, FIFO
// deduplication, dead letters, and the status code of each bad input.

#include <atomic>
#include <chrono>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "broker/broker.h"
#include "common/clock.h"
#include "protocol/grpc_server.h"
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
  }
  void TearDown() override {
    stub_.reset();
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

  testing::TempDir dir_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<broker::Broker> broker_;
  std::unique_ptr<protocol::GrpcServer> server_;
  std::unique_ptr<v1::QueueService::Stub> stub_;
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

}  // namespace
}  // namespace spool
