// End-to-end tests of a real spoold process over gRPC on 127.0.0.1: the API round trip,
// long polling, bad input, pipelined publishing, and durability across SIGTERM and SIGKILL.

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <arpa/inet.h>
#include <google/protobuf/descriptor.pb.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "spool/v1/admin.grpc.pb.h"
#include "spool/v1/consume.grpc.pb.h"
#include "spool/v1/groups.grpc.pb.h"
#include "spool/v1/publish.grpc.pb.h"
#include "spool/v1/queue.grpc.pb.h"
#include "tests/testing/http_request.h"
#include "tests/testing/spoold_process.h"
#include "tests/testing/temp_dir.h"

namespace spool {
namespace {

using testing::BodyOf;
using testing::HttpRequest;
using testing::SpooldProcess;
using testing::TempDir;

constexpr auto kRpcTimeout = std::chrono::seconds(20);

std::unique_ptr<grpc::ClientContext> Context(
    std::chrono::milliseconds timeout =
        std::chrono::duration_cast<std::chrono::milliseconds>(kRpcTimeout)) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + timeout);
  return context;
}

// Publishes from several threads until told to stop, remembering every acknowledged record.
class LoadGenerator {
 public:
  LoadGenerator(std::shared_ptr<grpc::Channel> channel, std::string topic)
      : stub_(v1::PublishService::NewStub(std::move(channel))), topic_(std::move(topic)) {}

  void Run(int threads) {
    for (int t = 0; t < threads; ++t) {
      threads_.emplace_back([this, t] {
        for (int i = 0; !stop_ && i < 100'000; ++i) {
          v1::PublishRequest request;
          request.set_topic(topic_);
          std::vector<std::string> values;
          for (int r = 0; r < 5; ++r) {
            values.push_back("t" + std::to_string(t) + "-" + std::to_string(i) + "-" +
                             std::to_string(r));
            request.add_records()->set_value(values.back());
          }
          v1::PublishResponse response;
          grpc::ClientContext context;
          context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
          if (!stub_->Publish(&context, request, &response).ok()) continue;
          std::lock_guard lock(mu_);
          for (int r = 0; r < 5; ++r) {
            acked_[{response.results(r).partition(), response.results(r).offset()}] = values[r];
          }
        }
      });
    }
  }

  void StopAndJoin() {
    stop_ = true;
    for (auto& t : threads_)
      t.join();
  }

  std::map<std::pair<std::uint32_t, std::uint64_t>, std::string> acked() {
    std::lock_guard lock(mu_);
    return acked_;
  }

 private:
  std::unique_ptr<v1::PublishService::Stub> stub_;
  std::string topic_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::map<std::pair<std::uint32_t, std::uint64_t>, std::string> acked_;
};

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override { StartDaemon(); }

  void StartDaemon() {
    ASSERT_TRUE(daemon_.Start(SPOOLD_BINARY, dir_.Sub("data"), extra_args_)) << daemon_.output();
    channel_ = grpc::CreateChannel(daemon_.address(), grpc::InsecureChannelCredentials());
    admin_ = v1::AdminService::NewStub(channel_);
    publish_ = v1::PublishService::NewStub(channel_);
    stream_ = v1::StreamService::NewStub(channel_);
  }

  void RestartDaemon() {
    ASSERT_EQ(daemon_.Stop(), 0) << daemon_.output();
    StartDaemon();
  }

  grpc::Status CreateTopic(const std::string& name, std::uint32_t partitions) {
    v1::CreateTopicRequest request;
    request.mutable_config()->set_name(name);
    request.mutable_config()->set_partitions(partitions);
    v1::CreateTopicResponse response;
    return admin_->CreateTopic(Context().get(), request, &response);
  }

  static v1::Record MakeRecord(const std::string& value, std::optional<std::string> key = {}) {
    v1::Record r;
    r.set_value(value);
    if (key) r.set_key(*key);
    return r;
  }

  grpc::Status Publish(const std::string& topic, std::vector<v1::Record> records,
                       v1::PublishResponse* response,
                       std::optional<std::uint32_t> partition = std::nullopt) {
    v1::PublishRequest request;
    request.set_topic(topic);
    if (partition) request.set_partition(*partition);
    for (auto& r : records)
      *request.add_records() = std::move(r);
    return publish_->Publish(Context().get(), request, response);
  }

  grpc::Status Fetch(const std::string& topic, std::uint32_t partition, std::uint64_t offset,
                     v1::FetchResponse* response, std::int64_t max_wait_ms = 0) {
    v1::FetchRequest request;
    request.set_topic(topic);
    request.set_partition(partition);
    request.set_offset(offset);
    request.set_max_records(100'000);
    request.set_max_bytes(64 << 20);
    request.set_max_wait_ms(max_wait_ms);
    return stream_->Fetch(Context().get(), request, response);
  }

  // Every record of a partition, read in pages.
  std::vector<v1::Record> FetchAll(const std::string& topic, std::uint32_t partition) {
    std::vector<v1::Record> all;
    std::uint64_t offset = 0;
    for (int pages = 0; pages < 10'000; ++pages) {
      v1::FetchResponse response;
      grpc::Status s = Fetch(topic, partition, offset, &response);
      EXPECT_TRUE(s.ok()) << s.error_message();
      if (!s.ok() || response.records().empty()) break;
      for (const auto& r : response.records())
        all.push_back(r);
      offset = response.next_offset();
    }
    return all;
  }

  // Every record the load generator was told is durable is stored where it was told, with
  // its value.
  void ExpectAcknowledgedRecordsStored(LoadGenerator& load, const std::string& topic,
                                       std::uint32_t partitions) {
    auto acked = load.acked();
    ASSERT_FALSE(acked.empty()) << "the load generator got no acknowledgement";
    std::vector<std::vector<v1::Record>> stored;
    for (std::uint32_t p = 0; p < partitions; ++p)
      stored.push_back(FetchAll(topic, p));
    for (const auto& [where, value] : acked) {
      const auto& records = stored.at(where.first);
      ASSERT_LT(where.second, records.size())
          << "acknowledged record " << where.first << "/" << where.second << " is lost";
      EXPECT_EQ(records[where.second].offset(), where.second);
      EXPECT_EQ(records[where.second].value(), value);
    }
  }

  std::uint64_t EndOffset(const std::string& topic, std::uint32_t partition) {
    v1::GetTopicRequest request;
    request.set_name(topic);
    v1::GetTopicResponse response;
    grpc::Status s = admin_->GetTopic(Context().get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return s.ok() ? response.topic().partitions(partition).end_offset() : UINT64_MAX;
  }

  // The topic's config and partition count as GetTopic reports them.
  v1::Topic GetTopic(const std::string& name) {
    v1::GetTopicRequest request;
    request.set_name(name);
    v1::GetTopicResponse response;
    grpc::Status s = admin_->GetTopic(Context().get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.topic();
  }

  std::vector<std::string> TopicNames() {
    v1::ListTopicsRequest request;
    v1::ListTopicsResponse response;
    grpc::Status s = admin_->ListTopics(Context().get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::vector<std::string> names;
    for (const auto& t : response.topics())
      names.push_back(t.name());
    return names;
  }

  // Sends `request` as the only request of a new PublishStream; its answer goes to
  // `answer`. Returns the stream's status, or UNKNOWN when the write or the answer failed.
  grpc::Status PublishOnStream(const v1::PublishStreamRequest& request,
                               v1::PublishStreamResponse* answer) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kRpcTimeout);
    auto stream = publish_->PublishStream(&context);
    if (!stream->Write(request)) return {grpc::StatusCode::UNKNOWN, "the write failed"};
    stream->WritesDone();
    const bool answered = stream->Read(answer);
    v1::PublishStreamResponse extra;
    while (stream->Read(&extra)) {
    }
    grpc::Status s = stream->Finish();
    if (s.ok() && !answered) return {grpc::StatusCode::UNKNOWN, "no answer"};
    return s;
  }

  // Flags for spoold beyond the data directory and listen addresses.
  std::vector<std::string> extra_args_;
  TempDir dir_;
  SpooldProcess daemon_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::unique_ptr<v1::PublishService::Stub> publish_;
  std::unique_ptr<v1::StreamService::Stub> stream_;
};

TEST_F(DaemonTest, RoundTripAcrossPartitionsKeepsKeyOrder) {
  ASSERT_TRUE(CreateTopic("orders", 4).ok());
  std::vector<v1::Record> records;
  for (int i = 0; i < 200; ++i) {
    records.push_back(MakeRecord("v" + std::to_string(i), "user-" + std::to_string(i % 7)));
  }

  v1::PublishResponse published;
  ASSERT_TRUE(Publish("orders", records, &published).ok());

  ASSERT_EQ(published.results_size(), 200);
  std::map<std::string, std::vector<int>> seen_by_key;
  std::size_t total = 0;
  for (std::uint32_t p = 0; p < 4; ++p) {
    for (const v1::Record& r : FetchAll("orders", p)) {
      EXPECT_EQ(r.partition(), p);
      seen_by_key[r.key()].push_back(std::stoi(r.value().substr(1)));
      ++total;
    }
  }
  EXPECT_EQ(total, 200u);
  for (const auto& [key, values] : seen_by_key) {
    EXPECT_TRUE(std::is_sorted(values.begin(), values.end())) << "key " << key << " reordered";
  }
  for (int i = 0; i < 200; ++i) {
    const v1::PublishResult& result = published.results(i);
    v1::FetchResponse one;
    ASSERT_TRUE(Fetch("orders", result.partition(), result.offset(), &one).ok());
    ASSERT_FALSE(one.records().empty());
    EXPECT_EQ(one.records(0).value(), "v" + std::to_string(i)) << "result " << i;
  }
}

TEST_F(DaemonTest, HttpServesHealthReadinessAndValidPrometheusMetrics) {
  ASSERT_TRUE(CreateTopic("m", 2).ok());
  v1::PublishResponse published;
  ASSERT_TRUE(Publish("m", {MakeRecord("abc"), MakeRecord("de")}, &published, 1).ok());
  v1::FetchResponse fetched;
  ASSERT_TRUE(Fetch("m", 1, 0, &fetched).ok());
  {
    // One batch on a PublishStream, to partition 0: timed per batch.
    v1::PublishStreamRequest request;
    request.set_sequence(1);
    request.mutable_batch()->set_topic("m");
    request.mutable_batch()->set_partition(0);
    *request.mutable_batch()->add_records() = MakeRecord("s");
    v1::PublishStreamResponse answer;
    grpc::Status s = PublishOnStream(request, &answer);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_FALSE(answer.has_error());
  }
  // Group series: one group with a committed offset, one with a live member.
  auto groups = v1::GroupService::NewStub(channel_);
  {
    v1::CommitOffsetsRequest commit;
    commit.set_group_id("billing");
    auto* offset = commit.add_offsets();
    offset->set_topic("m");
    offset->set_partition(1);
    offset->set_offset(1);
    v1::CommitOffsetsResponse committed;
    ASSERT_TRUE(groups->CommitOffsets(Context().get(), commit, &committed).ok());
    v1::HeartbeatRequest join;
    join.set_group_id("live");
    join.set_member_id("member-1");
    join.add_subscribed_topics("m");
    v1::HeartbeatResponse joined;
    ASSERT_TRUE(groups->Heartbeat(Context().get(), join, &joined).ok());
  }
  // Queue series: "work" dead-letters one message after one receive, has one deleted and
  // one visible; "again" redelivers one.
  auto queues = v1::QueueService::NewStub(channel_);
  {
    auto create = [&](const std::string& name, std::optional<std::string> dlq) {
      v1::CreateQueueRequest request;
      request.set_name(name);
      if (dlq) {
        request.mutable_attributes()->mutable_redrive_policy()->set_dead_letter_queue(*dlq);
        request.mutable_attributes()->mutable_redrive_policy()->set_max_receive_count(1);
      }
      v1::CreateQueueResponse response;
      ASSERT_TRUE(queues->CreateQueue(Context().get(), request, &response).ok());
    };
    auto send = [&](const std::string& queue, const std::string& body) {
      v1::SendMessageRequest request;
      request.set_queue(queue);
      request.set_body(body);
      v1::SendMessageResponse response;
      ASSERT_TRUE(queues->SendMessage(Context().get(), request, &response).ok());
    };
    auto receive = [&](const std::string& queue, std::optional<std::uint32_t> visibility) {
      v1::ReceiveMessagesRequest request;
      request.set_queue(queue);
      if (visibility) request.set_visibility_timeout_seconds(*visibility);
      v1::ReceiveMessagesResponse response;
      EXPECT_TRUE(queues->ReceiveMessages(Context().get(), request, &response).ok());
      return response;
    };
    create("work-dlq", std::nullopt);
    create("work", "work-dlq");
    create("again", std::nullopt);
    send("work", "a");
    ASSERT_EQ(receive("work", 0).messages_size(), 1);
    EXPECT_EQ(receive("work", std::nullopt).messages_size(), 0) << "moved instead";
    // The move is written after the receive answers.
    bool moved = false;
    for (int i = 0; i < 200 && !moved; ++i) {
      v1::GetQueueAttributesRequest get;
      get.set_queue("work-dlq");
      v1::GetQueueAttributesResponse got;
      ASSERT_TRUE(queues->GetQueueAttributes(Context().get(), get, &got).ok());
      moved = got.queue().stats().approximate_visible() == 1;
      if (!moved) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(moved);
    send("work", "b");
    auto b = receive("work", std::nullopt);
    ASSERT_EQ(b.messages_size(), 1);
    v1::DeleteMessageRequest del;
    del.set_queue("work");
    del.set_receipt_handle(b.messages(0).receipt_handle());
    v1::DeleteMessageResponse deleted;
    ASSERT_TRUE(queues->DeleteMessage(Context().get(), del, &deleted).ok());
    send("work", "c");
    send("again", "x");
    ASSERT_EQ(receive("again", 0).messages_size(), 1);
    ASSERT_EQ(receive("again", std::nullopt).messages_size(), 1);
  }

  // SQS API requests, timed and counted per action: one found, one not.
  const std::string found =
      HttpRequest(daemon_.http_address(), "GET", "/?Action=GetQueueUrl&QueueName=work");
  const std::string not_found =
      HttpRequest(daemon_.http_address(), "GET", "/?Action=GetQueueUrl&QueueName=nope");
  const std::string invalid = HttpRequest(daemon_.http_address(), "GET", "/?Action=Nope");
  const std::string health = HttpRequest(daemon_.http_address(), "GET", "/healthz");
  const std::string ready = HttpRequest(daemon_.http_address(), "GET", "/readyz");
  const std::string metrics = HttpRequest(daemon_.http_address(), "GET", "/metrics");
  const std::string missing = HttpRequest(daemon_.http_address(), "GET", "/nope");
  const std::string wrong_method = HttpRequest(daemon_.http_address(), "POST", "/metrics");

  EXPECT_EQ(found.rfind("HTTP/1.1 200", 0), 0u) << found;
  EXPECT_EQ(not_found.rfind("HTTP/1.1 400", 0), 0u) << not_found;
  EXPECT_EQ(invalid.rfind("HTTP/1.1 400", 0), 0u) << invalid;
  EXPECT_EQ(health.rfind("HTTP/1.1 200", 0), 0u) << health;
  EXPECT_EQ(ready.rfind("HTTP/1.1 200", 0), 0u) << ready;
  // Other paths belong to the SQS API, which wants an action.
  EXPECT_EQ(missing.rfind("HTTP/1.1 400", 0), 0u) << missing;
  EXPECT_NE(missing.find("<Code>MissingAction</Code>"), std::string::npos) << missing;
  EXPECT_EQ(wrong_method.rfind("HTTP/1.1 405", 0), 0u) << wrong_method;
  ASSERT_EQ(metrics.rfind("HTTP/1.1 200", 0), 0u) << metrics;
  const std::string body = BodyOf(metrics);
  EXPECT_NE(body.find("spool_published_records_total{topic=\"m\",partition=\"1\"} 2"),
            std::string::npos)
      << body;
  EXPECT_NE(body.find("spool_published_bytes_total{topic=\"m\",partition=\"1\"} 5"),
            std::string::npos);
  EXPECT_NE(body.find("spool_fetched_records_total{topic=\"m\",partition=\"1\"} 2"),
            std::string::npos);
  EXPECT_NE(body.find("spool_partition_log_end_offset{topic=\"m\",partition=\"1\"} 2"),
            std::string::npos);
  EXPECT_NE(body.find("spool_grpc_request_duration_seconds_count{method=\"Publish\"} 1"),
            std::string::npos);
  EXPECT_NE(body.find("spool_grpc_request_duration_seconds_count{method=\"PublishStream\"} 1"),
            std::string::npos)
      << "each batch of a PublishStream is timed";
  EXPECT_NE(body.find("spool_store_wal_syncs_total"), std::string::npos);
  EXPECT_NE(
      body.find("spool_group_committed_offset{group=\"billing\",topic=\"m\",partition=\"1\"} 1"),
      std::string::npos);
  EXPECT_NE(body.find("spool_group_lag{group=\"billing\",topic=\"m\",partition=\"1\"} 1"),
            std::string::npos);
  EXPECT_NE(body.find("spool_group_members{group=\"live\"} 1"), std::string::npos);
  EXPECT_NE(body.find("spool_group_rebalances_total{group=\"live\"} 1"), std::string::npos);
  for (const char* sample : {
           "spool_queue_sent_messages_total{queue=\"work\"} 3",
           "spool_queue_received_messages_total{queue=\"work\"} 2",
           "spool_queue_deleted_messages_total{queue=\"work\"} 1",
           "spool_queue_dead_lettered_messages_total{queue=\"work\"} 1",
           "spool_queue_redelivered_messages_total{queue=\"work\"} 0",
           "spool_queue_redelivered_messages_total{queue=\"again\"} 1",
           "spool_queue_messages{queue=\"work\",state=\"visible\"} 1",
           "spool_queue_messages{queue=\"work\",state=\"in_flight\"} 0",
           "spool_queue_messages{queue=\"again\",state=\"in_flight\"} 1",
           "spool_queue_messages{queue=\"work-dlq\",state=\"visible\"} 1",
           "spool_queue_dead_letter_messages{queue=\"work\",dead_letter_queue=\"work-dlq\"} 1",
           "spool_queue_oldest_visible_age_seconds{queue=\"again\"} 0",
           "spool_sqs_request_duration_seconds_count{action=\"GetQueueUrl\"} 2",
           "spool_sqs_request_duration_seconds_count{action=\"SendMessage\"} 0",
           "spool_sqs_errors_total{action=\"GetQueueUrl\","
           "code=\"AWS.SimpleQueueService.NonExistentQueue\"} 1",
           "spool_sqs_errors_total{action=\"unknown\",code=\"InvalidAction\"} 1",
       }) {
    EXPECT_NE(body.find(sample), std::string::npos) << "missing: " << sample;
  }
  EXPECT_NE(body.find("spool_queue_oldest_visible_age_seconds{queue=\"work\"} "),
            std::string::npos);

  // promtool (Debian's prometheus package) is the reference parser of the format.
  const std::string file = dir_.Sub("metrics.txt");
  {
    std::ofstream out(file);
    out << body;
  }
  const int rc =
      std::system(("promtool check metrics < " + file + " > " + file + ".out 2>&1").c_str());
  std::ifstream report(file + ".out");
  std::stringstream text;
  text << report.rdbuf();
  EXPECT_EQ(rc, 0) << "promtool check metrics:\n" << text.str();
}

TEST_F(DaemonTest, HealthServiceReportsServing) {
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  auto stub = grpc::health::v1::Health::NewStub(channel_);

  grpc::Status s = stub->Check(Context().get(), request, &response);

  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(DaemonTest, ReflectionListsEveryServiceAndDescribesIt) {
  namespace reflection = grpc::reflection::v1alpha;
  auto stub = reflection::ServerReflection::NewStub(channel_);
  auto context = Context();
  auto stream = stub->ServerReflectionInfo(context.get());
  ASSERT_TRUE(stream);

  reflection::ServerReflectionRequest list;
  list.set_list_services("");
  ASSERT_TRUE(stream->Write(list));
  reflection::ServerReflectionResponse listed;
  ASSERT_TRUE(stream->Read(&listed));
  ASSERT_TRUE(listed.has_list_services_response()) << listed.DebugString();
  std::set<std::string> services;
  for (const auto& service : listed.list_services_response().service())
    services.insert(service.name());
  for (const char* name :
       {"spool.v1.AdminService", "spool.v1.PublishService", "spool.v1.StreamService",
        "spool.v1.GroupService", "spool.v1.QueueService"}) {
    EXPECT_TRUE(services.contains(name)) << name << " is not listed";
  }

  // A tool can build requests from what reflection sends: the file that defines a service.
  reflection::ServerReflectionRequest describe;
  describe.set_file_containing_symbol("spool.v1.QueueService");
  ASSERT_TRUE(stream->Write(describe));
  reflection::ServerReflectionResponse described;
  ASSERT_TRUE(stream->Read(&described));
  ASSERT_TRUE(described.has_file_descriptor_response()) << described.DebugString();
  bool found = false;
  for (const std::string& bytes : described.file_descriptor_response().file_descriptor_proto()) {
    google::protobuf::FileDescriptorProto file;
    ASSERT_TRUE(file.ParseFromString(bytes));
    for (const auto& service : file.service()) {
      if (file.package() == "spool.v1" && service.name() == "QueueService") {
        found = true;
        EXPECT_GT(service.method_size(), 10) << "the queue service's methods";
      }
    }
  }
  EXPECT_TRUE(found) << "no file defines spool.v1.QueueService";

  reflection::ServerReflectionRequest unknown;
  unknown.set_file_containing_symbol("spool.v1.NoSuchService");
  ASSERT_TRUE(stream->Write(unknown));
  reflection::ServerReflectionResponse refused;
  ASSERT_TRUE(stream->Read(&refused));
  ASSERT_TRUE(refused.has_error_response());
  EXPECT_EQ(refused.error_response().error_code(), grpc::StatusCode::NOT_FOUND);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(DaemonTest, LongPollFetchWakesOnPublish) {
  ASSERT_TRUE(CreateTopic("t", 1).ok());
  v1::FetchResponse fetched;
  grpc::Status fetch_status;
  const auto start = std::chrono::steady_clock::now();
  std::chrono::steady_clock::duration took{};
  std::thread poller([&] {
    fetch_status = Fetch("t", 0, 0, &fetched, /*max_wait_ms=*/30'000);
    took = std::chrono::steady_clock::now() - start;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let the fetch park

  v1::PublishResponse published;
  ASSERT_TRUE(Publish("t", {MakeRecord("ping")}, &published).ok());
  poller.join();

  ASSERT_TRUE(fetch_status.ok()) << fetch_status.error_message();
  ASSERT_EQ(fetched.records_size(), 1);
  EXPECT_EQ(fetched.records(0).value(), "ping");
  EXPECT_LT(took, std::chrono::seconds(10)) << "woken by the publish, not the 30 s deadline";
}

TEST_F(DaemonTest, LongPollFetchReturnsEmptyAtItsDeadline) {
  ASSERT_TRUE(CreateTopic("t", 1).ok());
  v1::FetchResponse fetched;
  const auto start = std::chrono::steady_clock::now();

  grpc::Status s = Fetch("t", 0, 0, &fetched, /*max_wait_ms=*/300);

  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(fetched.records_size(), 0);
  EXPECT_EQ(fetched.next_offset(), 0u);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(300));
}

TEST_F(DaemonTest, LongPollEndsEmptyBeforeTheCallersDeadline) {
  ASSERT_TRUE(CreateTopic("t", 1).ok());
  v1::FetchRequest request;
  request.set_topic("t");
  request.set_max_wait_ms(60'000);
  v1::FetchResponse response;

  auto context = Context(std::chrono::milliseconds(500));
  grpc::Status s = stream_->Fetch(context.get(), request, &response);

  ASSERT_TRUE(s.ok()) << "an empty answer, not DEADLINE_EXCEEDED: " << s.error_message();
  EXPECT_EQ(response.records_size(), 0);
}

TEST_F(DaemonTest, BadInputGetsTheRightStatusAndWritesNothing) {
  ASSERT_TRUE(CreateTopic("t", 2).ok());
  v1::PublishResponse published;
  ASSERT_TRUE(Publish("t", {MakeRecord("keep")}, &published, 0).ok());
  v1::PublishResponse ignored;
  v1::FetchResponse fetched;

  EXPECT_EQ(CreateTopic("bad name", 1).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(CreateTopic("", 1).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(CreateTopic("zero", 0).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(CreateTopic("many", 1025).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(CreateTopic("t", 2).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(Publish("missing", {MakeRecord("x")}, &ignored).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Publish("t", {}, &ignored).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Publish("t", {MakeRecord("x")}, &ignored, 2).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Publish("t", {MakeRecord("ok"), MakeRecord(std::string(2 << 20, 'x'))}, &ignored, 0)
                .error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  v1::Record reserved = MakeRecord("x");
  auto* header = reserved.add_headers();
  header->set_key("spool.internal");
  EXPECT_EQ(Publish("t", {MakeRecord("ok"), reserved}, &ignored, 0).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Fetch("missing", 0, 0, &fetched).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Fetch("t", 9, 0, &fetched).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Fetch("t", 0, 5, &fetched).error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(Fetch("t", 0, 0, &fetched, 60'001).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::UpdateTopicRequest shrink;
  shrink.set_name("t");
  shrink.set_partitions(1);
  v1::UpdateTopicResponse updated;
  EXPECT_EQ(admin_->UpdateTopic(Context().get(), shrink, &updated).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  v1::DeleteTopicRequest del;
  del.set_name("missing");
  v1::DeleteTopicResponse deleted;
  EXPECT_EQ(admin_->DeleteTopic(Context().get(), del, &deleted).error_code(),
            grpc::StatusCode::NOT_FOUND);

  EXPECT_EQ(EndOffset("t", 0), 1u) << "no rejected record was written";
  EXPECT_EQ(EndOffset("t", 1), 0u);
  v1::ListTopicsRequest list;
  v1::ListTopicsResponse topics;
  ASSERT_TRUE(admin_->ListTopics(Context().get(), list, &topics).ok());
  EXPECT_EQ(topics.topics_size(), 1) << "no rejected topic was created";
}

TEST_F(DaemonTest, ListTopicsPagesThroughAPrefix) {
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(CreateTopic("a." + std::to_string(i), 1).ok());
  ASSERT_TRUE(CreateTopic("b.0", 1).ok());
  std::vector<std::string> names;
  std::string token;

  for (int page = 0; page < 10; ++page) {
    v1::ListTopicsRequest request;
    request.set_prefix("a.");
    request.set_page_size(2);
    request.set_page_token(token);
    v1::ListTopicsResponse response;
    ASSERT_TRUE(admin_->ListTopics(Context().get(), request, &response).ok());
    for (const auto& t : response.topics())
      names.push_back(t.name());
    token = response.next_page_token();
    if (token.empty()) break;
  }

  EXPECT_EQ(names, (std::vector<std::string>{"a.0", "a.1", "a.2", "a.3", "a.4"}));
}

TEST_F(DaemonTest, PublishStreamPipelinesBatchesAndReportsErrorsPerBatch) {
  ASSERT_TRUE(CreateTopic("t", 1).ok());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kRpcTimeout);
  auto stream = publish_->PublishStream(&context);
  constexpr int kBatches = 100;

  for (int b = 0; b < kBatches; ++b) {
    v1::PublishStreamRequest request;
    request.set_sequence(1000 + b);
    request.mutable_batch()->set_topic(b == 50 ? "missing" : "t");
    for (int i = 0; i < 10; ++i)
      *request.mutable_batch()->add_records() = MakeRecord("r");
    ASSERT_TRUE(stream->Write(request));
  }
  stream->WritesDone();
  std::map<std::uint64_t, v1::PublishStreamResponse> responses;
  v1::PublishStreamResponse response;
  while (stream->Read(&response))
    responses[response.sequence()] = response;
  grpc::Status s = stream->Finish();

  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(responses.size(), std::size_t{kBatches}) << "one answer per batch";
  for (int b = 0; b < kBatches; ++b) {
    const auto& r = responses.at(1000 + b);
    if (b == 50) {
      ASSERT_TRUE(r.has_error());
      EXPECT_EQ(r.error().code(), v1::ERROR_CODE_NOT_FOUND);
    } else {
      ASSERT_TRUE(r.has_response()) << r.error().message();
      EXPECT_EQ(r.response().results_size(), 10);
    }
  }
  EXPECT_EQ(EndOffset("t", 0), std::uint64_t{(kBatches - 1) * 10});
}

// A producer pipelining single-record batches far deeper than one fsync's worth, writing
// with gRPC's buffer hint as a pipelining client does: every batch is answered once, with
// offsets in the order of writing. The answers must all arrive while the stream is still
// open: the server writes runs of answers with the same hint, and an answer it left held
// back would only go out with the stream's end (WritesDone, then Finish).
TEST_F(DaemonTest, PublishStreamAnswersEveryBatchOfADeepPipeline) {
  ASSERT_TRUE(CreateTopic("t", 1).ok());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kRpcTimeout);
  auto stream = publish_->PublishStream(&context);
  constexpr int kBatches = 3000;

  std::mutex mu;
  std::condition_variable answered;
  std::map<std::uint64_t, std::uint64_t> offsets;  // sequence -> offset, guarded by mu
  std::thread reader([&] {
    v1::PublishStreamResponse response;
    while (stream->Read(&response)) {
      std::lock_guard lock(mu);
      if (response.has_response() && response.response().results_size() == 1) {
        offsets[response.sequence()] = response.response().results(0).offset();
      }
      answered.notify_one();
    }
  });
  bool written = true;
  for (int b = 0; b < kBatches && written; ++b) {
    v1::PublishStreamRequest request;
    request.set_sequence(b);
    request.mutable_batch()->set_topic("t");
    request.mutable_batch()->set_partition(0);
    *request.mutable_batch()->add_records() = MakeRecord("r" + std::to_string(b));
    const bool more = b + 1 < kBatches;
    written = stream->Write(request,
                            more ? grpc::WriteOptions().set_buffer_hint() : grpc::WriteOptions());
  }
  std::size_t answered_while_open = 0;
  {
    std::unique_lock lock(mu);
    answered.wait_for(lock, std::chrono::seconds(10),
                      [&] { return offsets.size() == std::size_t{kBatches}; });
    answered_while_open = offsets.size();
  }
  stream->WritesDone();
  reader.join();
  grpc::Status s = stream->Finish();

  EXPECT_TRUE(written) << "a write failed";
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(answered_while_open, std::size_t{kBatches}) << "answers held back until the end";
  ASSERT_EQ(offsets.size(), std::size_t{kBatches}) << "one answer per batch";
  for (int b = 0; b < kBatches; ++b)
    EXPECT_EQ(offsets.at(b), std::uint64_t(b)) << "batch " << b;
  EXPECT_EQ(EndOffset("t", 0), std::uint64_t{kBatches});
}

TEST_F(DaemonTest, DataSurvivesARestart) {
  ASSERT_TRUE(CreateTopic("t", 2).ok());
  v1::PublishResponse published;
  ASSERT_TRUE(Publish("t", {MakeRecord("a", "k"), MakeRecord("b", "k")}, &published).ok());

  RestartDaemon();
  const std::uint32_t p = published.results(0).partition();
  auto records = FetchAll("t", p);

  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].value(), "a");
  EXPECT_EQ(records[1].value(), "b");
}

TEST_F(DaemonTest, CreateTopicWithOutOfRangeConfigIsInvalidArgumentAndCreatesNothing) {
  auto create = [&](const std::string& name, auto set) {
    v1::CreateTopicRequest request;
    request.mutable_config()->set_name(name);
    set(*request.mutable_config());
    v1::CreateTopicResponse response;
    return admin_->CreateTopic(Context().get(), request, &response).error_code();
  };
  using v1::TopicConfig;
  constexpr std::int64_t kMaxMessageLimit = 64 << 20;

  EXPECT_EQ(create("rms0", [](TopicConfig& c) { c.set_retention_ms(0); }),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(create("rms-2", [](TopicConfig& c) { c.set_retention_ms(-2); }),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(create("rb0", [](TopicConfig& c) { c.set_retention_bytes(0); }),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(create("rb-2", [](TopicConfig& c) { c.set_retention_bytes(-2); }),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(create("mmb0", [](TopicConfig& c) { c.set_max_message_bytes(0); }),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(create("mmb-1", [](TopicConfig& c) { c.set_max_message_bytes(-1); }),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(create("mmbbig", [](TopicConfig& c) { c.set_max_message_bytes(kMaxMessageLimit + 1); }),
            grpc::StatusCode::INVALID_ARGUMENT);
  // The edges of the ranges are accepted.
  EXPECT_EQ(create("edge",
                   [](TopicConfig& c) {
                     c.set_retention_ms(-1);
                     c.set_retention_bytes(-1);
                     c.set_max_message_bytes(kMaxMessageLimit);
                   }),
            grpc::StatusCode::OK);
  EXPECT_EQ(create("low",
                   [](TopicConfig& c) {
                     c.set_retention_ms(1);
                     c.set_retention_bytes(1);
                     c.set_max_message_bytes(1);
                   }),
            grpc::StatusCode::OK);

  EXPECT_EQ(TopicNames(), (std::vector<std::string>{"edge", "low"}))
      << "no rejected topic was created";
}

TEST_F(DaemonTest, UpdateTopicWithABadValueOrUnknownTopicChangesNothing) {
  {
    v1::CreateTopicRequest request;
    request.mutable_config()->set_name("t");
    request.mutable_config()->set_partitions(2);
    request.mutable_config()->set_retention_ms(3'600'000);
    request.mutable_config()->set_retention_bytes(1 << 30);
    request.mutable_config()->set_max_message_bytes(1 << 16);
    v1::CreateTopicResponse response;
    ASSERT_TRUE(admin_->CreateTopic(Context().get(), request, &response).ok());
  }
  v1::PublishResponse published;
  ASSERT_TRUE(Publish("t", {MakeRecord("keep")}, &published, 0).ok());
  auto update = [&](const std::string& name, auto set) {
    v1::UpdateTopicRequest request;
    request.set_name(name);
    set(request);
    v1::UpdateTopicResponse response;
    return admin_->UpdateTopic(Context().get(), request, &response).error_code();
  };
  using v1::UpdateTopicRequest;

  // A valid partition growth in the same request must not be applied either.
  EXPECT_EQ(update("t",
                   [](UpdateTopicRequest& r) {
                     r.set_partitions(4);
                     r.set_retention_ms(0);
                   }),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(update("t", [](UpdateTopicRequest& r) { r.set_retention_ms(-5); }),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(update("t",
                   [](UpdateTopicRequest& r) {
                     r.set_retention_ms(60'000);
                     r.set_retention_bytes(0);
                   }),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(update("t", [](UpdateTopicRequest& r) { r.set_max_message_bytes((64 << 20) + 1); }),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(update("missing", [](UpdateTopicRequest& r) { r.set_retention_ms(60'000); }),
            grpc::StatusCode::NOT_FOUND);

  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round == 0 ? "before restart" : "after restart");
    const v1::Topic topic = GetTopic("t");
    EXPECT_EQ(topic.config().partitions(), 2u);
    EXPECT_EQ(topic.partitions_size(), 2);
    EXPECT_EQ(topic.config().retention_ms(), 3'600'000);
    EXPECT_EQ(topic.config().retention_bytes(), 1 << 30);
    EXPECT_EQ(topic.config().max_message_bytes(), 1 << 16);
    EXPECT_EQ(EndOffset("t", 0), 1u);
    EXPECT_EQ(TopicNames(), (std::vector<std::string>{"t"})) << "'missing' was not created";
    if (round == 0) RestartDaemon();  // what is stored, not only what is in memory
  }
}

TEST_F(DaemonTest, ListTopicsRejectsAPageTokenOfAnotherPrefix) {
  for (const char* name : {"a.0", "a.1", "b.0"})
    ASSERT_TRUE(CreateTopic(name, 1).ok());
  auto list = [&](const std::string& prefix, const std::string& token,
                  v1::ListTopicsResponse* response) {
    v1::ListTopicsRequest request;
    request.set_prefix(prefix);
    request.set_page_size(1);
    request.set_page_token(token);
    return admin_->ListTopics(Context().get(), request, response);
  };
  v1::ListTopicsResponse response;

  // Tokens spoold never handed out for prefix "a.": another prefix's names, or none at all.
  EXPECT_EQ(list("a.", "b.0", &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(list("a.", "zzz", &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(list("a.", "a", &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(list("a.", "A.0", &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // A token it did hand out still works.
  v1::ListTopicsResponse first;
  ASSERT_TRUE(list("a.", "", &first).ok());
  ASSERT_EQ(first.next_page_token(), "a.0");
  v1::ListTopicsResponse second;
  ASSERT_TRUE(list("a.", first.next_page_token(), &second).ok());
  ASSERT_EQ(second.topics_size(), 1);
  EXPECT_EQ(second.topics(0).name(), "a.1");
}

// The page token is the last name of the previous page: one that can never be a topic name
// was never handed out (admin.proto: INVALID_ARGUMENT).
TEST_F(DaemonTest, ListTopicsRejectsAPageTokenThatIsNoTopicName) {
  ASSERT_TRUE(CreateTopic("a.0", 1).ok());
  v1::ListTopicsRequest request;
  request.set_prefix("a.");
  request.set_page_token("a. not a name!");
  v1::ListTopicsResponse response;

  EXPECT_EQ(admin_->ListTopics(Context().get(), request, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(DaemonTest, FetchAboveItsRecordOrByteLimitIsInvalidArgument) {
  ASSERT_TRUE(CreateTopic("t", 1).ok());
  v1::PublishResponse published;
  ASSERT_TRUE(Publish("t", {MakeRecord("r")}, &published).ok());
  auto fetch = [&](std::uint32_t max_records, std::uint64_t max_bytes,
                   v1::FetchResponse* response) {
    v1::FetchRequest request;
    request.set_topic("t");
    request.set_max_records(max_records);
    request.set_max_bytes(max_bytes);
    return stream_->Fetch(Context().get(), request, response);
  };
  v1::FetchResponse rejected;

  EXPECT_EQ(fetch(100'001, 0, &rejected).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(fetch(UINT32_MAX, 0, &rejected).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(fetch(0, (64 << 20) + 1, &rejected).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(fetch(0, UINT64_MAX, &rejected).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // At the limits it answers.
  v1::FetchResponse fetched;
  grpc::Status s = fetch(100'000, 64 << 20, &fetched);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(fetched.records_size(), 1);
  EXPECT_EQ(fetched.records(0).value(), "r");
}

TEST_F(DaemonTest, ListOffsetsRejectsABadSpecAndUnknownTopicOrPartition) {
  ASSERT_TRUE(CreateTopic("t", 2).ok());
  v1::PublishResponse published;
  ASSERT_TRUE(Publish("t", {MakeRecord("a"), MakeRecord("b")}, &published, 0).ok());
  auto list = [&](const std::string& topic, std::uint32_t partition, v1::OffsetSpec spec,
                  v1::ListOffsetsResponse* response) {
    v1::ListOffsetsRequest request;
    request.set_topic(topic);
    request.set_partition(partition);
    request.set_spec(spec);
    return stream_->ListOffsets(Context().get(), request, response);
  };
  v1::ListOffsetsResponse rejected;

  EXPECT_EQ(list("t", 0, v1::OFFSET_SPEC_UNSPECIFIED, &rejected).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(list("t", 0, static_cast<v1::OffsetSpec>(42), &rejected).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(list("missing", 0, v1::OFFSET_SPEC_LATEST, &rejected).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(list("t", 2, v1::OFFSET_SPEC_LATEST, &rejected).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(list("t", UINT32_MAX, v1::OFFSET_SPEC_EARLIEST, &rejected).error_code(),
            grpc::StatusCode::NOT_FOUND);
  // A good query still answers.
  v1::ListOffsetsResponse latest;
  grpc::Status s = list("t", 0, v1::OFFSET_SPEC_LATEST, &latest);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(latest.offset(), 2u);
  EXPECT_EQ(TopicNames(), (std::vector<std::string>{"t"}));
}

// A name no topic could have is INVALID_ARGUMENT, not NOT_FOUND, where these calls name a
// topic (consume.proto Fetch and ListOffsets, publish.proto Publish, admin.proto GetTopic).
TEST_F(DaemonTest, BadTopicNameIsInvalidArgumentNotNotFound) {
  const std::string bad = "bad name";
  v1::ListOffsetsRequest offsets;
  offsets.set_topic(bad);
  offsets.set_spec(v1::OFFSET_SPEC_LATEST);
  v1::ListOffsetsResponse offsets_response;
  v1::FetchResponse fetched;
  v1::PublishResponse published;
  v1::GetTopicRequest get;
  get.set_name(bad);
  v1::GetTopicResponse got;

  EXPECT_EQ(stream_->ListOffsets(Context().get(), offsets, &offsets_response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Fetch(bad, 0, 0, &fetched).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Publish(bad, {MakeRecord("x")}, &published).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(admin_->GetTopic(Context().get(), get, &got).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

// A spoold with small publish limits: 10 records and 4096 bytes a batch, hence a gRPC
// receive limit of 4096 bytes + 1 MiB.
class SmallBatchDaemonTest : public DaemonTest {
 protected:
  static constexpr std::size_t kMaxBatchBytes = 4096;
  static constexpr std::size_t kMaxReceiveBytes = kMaxBatchBytes + (1u << 20);
  SmallBatchDaemonTest() {
    extra_args_ = {"--max-batch-records", "10", "--max-batch-bytes", std::to_string(kMaxBatchBytes),
                   "--queue-max-batch",   "10"};
  }
};

TEST_F(SmallBatchDaemonTest, QueueCallsAboveTheConfiguredBatchLimitAreRefused) {
  auto queues = v1::QueueService::NewStub(channel_);
  v1::CreateQueueRequest create;
  create.set_name("jobs");
  v1::CreateQueueResponse created;
  ASSERT_TRUE(queues->CreateQueue(Context().get(), create, &created).ok());
  v1::GetBrokerInfoResponse info;
  ASSERT_TRUE(admin_->GetBrokerInfo(Context().get(), {}, &info).ok());
  EXPECT_EQ(info.max_queue_batch(), 10u);

  v1::SendMessageBatchRequest send;
  send.set_queue("jobs");
  for (int i = 0; i < 11; ++i)
    send.add_entries()->set_body("m");
  v1::SendMessageBatchResponse sent;
  grpc::Status too_many = queues->SendMessageBatch(Context().get(), send, &sent);
  EXPECT_EQ(too_many.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(too_many.error_message().find("more than 10 entries"), std::string::npos)
      << too_many.error_message();
  v1::DeleteMessageBatchRequest remove;
  remove.set_queue("jobs");
  for (int i = 0; i < 11; ++i)
    remove.add_entries()->set_receipt_handle("h");
  v1::DeleteMessageBatchResponse removed;
  EXPECT_EQ(queues->DeleteMessageBatch(Context().get(), remove, &removed).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  v1::ReceiveMessagesRequest receive;
  receive.set_queue("jobs");
  receive.set_max_messages(11);
  v1::ReceiveMessagesResponse received;
  EXPECT_EQ(queues->ReceiveMessages(Context().get(), receive, &received).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(EndOffset("jobs", 0), 0u) << "the refused batch sent nothing";

  send.mutable_entries()->RemoveLast();
  ASSERT_TRUE(queues->SendMessageBatch(Context().get(), send, &sent).ok());
  EXPECT_EQ(EndOffset("jobs", 0), 10u);
}

// The receive stream leases in receives of its own; they must keep to the configured limit.
TEST_F(SmallBatchDaemonTest, AReceiveStreamKeepsToTheConfiguredBatchLimit) {
  auto queues = v1::QueueService::NewStub(channel_);
  v1::CreateQueueRequest create;
  create.set_name("jobs");
  v1::CreateQueueResponse created;
  ASSERT_TRUE(queues->CreateQueue(Context().get(), create, &created).ok());
  v1::SendMessageBatchRequest send;
  send.set_queue("jobs");
  for (int i = 0; i < 10; ++i)
    send.add_entries()->set_body("m");
  v1::SendMessageBatchResponse sent;
  for (int round = 0; round < 3; ++round)
    ASSERT_TRUE(queues->SendMessageBatch(Context().get(), send, &sent).ok());

  auto context = Context();
  auto stream = queues->StreamingReceive(context.get());
  v1::StreamingReceiveRequest open;
  open.set_queue("jobs");
  open.set_max_outstanding_messages(50);
  ASSERT_TRUE(stream->Write(open));
  std::size_t delivered = 0;
  v1::StreamingReceiveResponse response;
  while (delivered < 30 && stream->Read(&response))
    delivered += static_cast<std::size_t>(response.messages_size());
  EXPECT_EQ(delivered, 30u) << "the stream ended early";
  context->TryCancel();
  grpc::Status ended = stream->Finish();
  EXPECT_NE(ended.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << ended.error_message();
}

TEST_F(SmallBatchDaemonTest, PublishOverTheBatchLimitsIsResourceExhaustedAndWritesNothing) {
  ASSERT_TRUE(CreateTopic("t", 1).ok());
  std::vector<v1::Record> ten(10, MakeRecord("r"));
  v1::PublishResponse published;
  ASSERT_TRUE(Publish("t", ten, &published).ok()) << "ten records are within the limit";
  ASSERT_EQ(EndOffset("t", 0), 10u);
  v1::PublishResponse ignored;

  std::vector<v1::Record> eleven(11, MakeRecord("r"));
  grpc::Status too_many = Publish("t", eleven, &ignored);
  grpc::Status too_many_to_partition = Publish("t", eleven, &ignored, 0);
  grpc::Status too_large = Publish(
      "t", {MakeRecord(std::string(3000, 'x')), MakeRecord(std::string(3000, 'y'))}, &ignored);
  v1::PublishStreamResponse streamed;
  {
    v1::PublishStreamRequest request;
    request.set_sequence(7);
    request.mutable_batch()->set_topic("t");
    for (const auto& r : eleven)
      *request.mutable_batch()->add_records() = r;
    grpc::Status s = PublishOnStream(request, &streamed);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }

  EXPECT_EQ(too_many.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << too_many.error_message();
  EXPECT_EQ(too_many_to_partition.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(too_large.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << too_large.error_message();
  EXPECT_NE(too_large.error_message().find("limit is 4096"), std::string::npos)
      << "refused by the batch byte limit, not another: " << too_large.error_message();
  EXPECT_EQ(streamed.sequence(), 7u);
  ASSERT_TRUE(streamed.has_error());
  EXPECT_EQ(streamed.error().code(), v1::ERROR_CODE_RESOURCE_EXHAUSTED);
  EXPECT_EQ(EndOffset("t", 0), 10u) << "no rejected record was written";
}

TEST_F(SmallBatchDaemonTest, RequestAboveTheGrpcReceiveLimitIsRefused) {
  ASSERT_TRUE(CreateTopic("t", 1).ok());
  v1::GetBrokerInfoRequest info_request;
  v1::GetBrokerInfoResponse info;
  ASSERT_TRUE(admin_->GetBrokerInfo(Context().get(), info_request, &info).ok());
  EXPECT_EQ(info.max_batch_records(), 10u);
  EXPECT_EQ(info.max_batch_bytes(), kMaxBatchBytes);
  EXPECT_EQ(info.max_grpc_message_bytes(), kMaxReceiveBytes);
  v1::PublishResponse ignored;

  grpc::Status s = Publish("t", {MakeRecord(std::string(kMaxReceiveBytes + 1024, 'x'))}, &ignored);

  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  // gRPC's own refusal, before the broker (which would also refuse it, by its own limits).
  EXPECT_NE(s.error_message().find("larger than max"), std::string::npos) << s.error_message();
  EXPECT_EQ(EndOffset("t", 0), 0u) << "nothing was written";
  v1::PublishResponse published;
  ASSERT_TRUE(Publish("t", {MakeRecord("after")}, &published).ok()) << "spoold still serves";
  EXPECT_EQ(EndOffset("t", 0), 1u);
}

TEST_F(DaemonTest, SigintStopsGracefullyLikeSigterm) {
  ASSERT_TRUE(CreateTopic("t", 1).ok());
  v1::PublishResponse published;
  ASSERT_TRUE(Publish("t", {MakeRecord("a"), MakeRecord("b"), MakeRecord("c")}, &published).ok());

  const int code = daemon_.StopWith(SIGINT);
  const std::string output = daemon_.output();
  StartDaemon();
  auto records = FetchAll("t", 0);

  EXPECT_EQ(code, 0) << output;
  EXPECT_NE(output.find("received signal " + std::to_string(SIGINT)), std::string::npos) << output;
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].value(), "a");
  EXPECT_EQ(records[1].value(), "b");
  EXPECT_EQ(records[2].value(), "c");
}

// Type=notify in deploy/spoold.service relies on this: spoold sends READY=1 to
// $NOTIFY_SOCKET once it serves.
TEST(DaemonNotifyTest, ReportsReadinessToTheNotifySocket) {
  TempDir dir;
  const std::string socket_path = dir.Sub("notify.sock");
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  setenv("NOTIFY_SOCKET", socket_path.c_str(), 1);
  SpooldProcess daemon;

  const bool started = daemon.Start(SPOOLD_BINARY, dir.Sub("data"));
  unsetenv("NOTIFY_SOCKET");
  pollfd p{fd, POLLIN, 0};
  const int ready = poll(&p, 1, 10'000);
  char buf[512] = {};
  const ssize_t n = ready > 0 ? recv(fd, buf, sizeof buf - 1, 0) : -1;
  close(fd);

  ASSERT_TRUE(started) << daemon.output();
  ASSERT_GT(n, 0) << "no notification within 10 s";
  EXPECT_NE(std::string(buf).find("READY=1"), std::string::npos) << buf;
  EXPECT_EQ(daemon.Stop(), 0);
}

TEST_F(DaemonTest, SecondDaemonOnTheSameDataDirectoryRefusesToStart) {
  SpooldProcess second;

  const int code = second.RunToExit(
      SPOOLD_BINARY, {"--data-dir", dir_.Sub("data"), "--grpc-listen", "127.0.0.1:0"});

  EXPECT_NE(code, 0);
  EXPECT_NE(second.output().find("in use by another process"), std::string::npos)
      << second.output();
}

TEST_F(DaemonTest, BadConfigurationStopsStartupWithOneClearLine) {
  const std::string bad_file = dir_.Sub("bad.yaml");
  {
    std::ofstream out(bad_file);
    out << "data_dir: " << dir_.Sub("other") << "\nfsync_every: 5\n";
  }
  SpooldProcess from_file;
  SpooldProcess from_flag;
  SpooldProcess from_dir;
  SpooldProcess from_env;

  const int env_code = from_env.RunToExit(
      "/usr/bin/env", {"SPOOL_FSYNC_INTERVAL=5", SPOOLD_BINARY, "--data-dir", dir_.Sub("y")});
  const int file_code = from_file.RunToExit(SPOOLD_BINARY, {"--config", bad_file});
  const int flag_code =
      from_flag.RunToExit(SPOOLD_BINARY, {"--data-dir", dir_.Sub("x"), "--fsync", "sometimes"});
  const int dir_code = from_dir.RunToExit(
      SPOOLD_BINARY, {"--data-dir", "/proc/spool-cannot-be-here", "--grpc-listen", "127.0.0.1:0"});

  EXPECT_EQ(file_code, 2);
  EXPECT_NE(from_file.output().find("unknown key 'fsync_every'"), std::string::npos)
      << from_file.output();
  EXPECT_EQ(flag_code, 2);
  EXPECT_NE(from_flag.output().find("'sometimes' is not one of always, interval"),
            std::string::npos)
      << from_flag.output();
  EXPECT_NE(dir_code, 0);
  EXPECT_NE(from_dir.output().find("cannot open the store"), std::string::npos)
      << from_dir.output();
  EXPECT_EQ(env_code, 2) << "a misspelled SPOOL_ variable (the key is fsync_interval_ms)";
  EXPECT_NE(from_env.output().find("environment SPOOL_FSYNC_INTERVAL: not a spoold setting"),
            std::string::npos)
      << from_env.output();
}

TEST_F(DaemonTest, SigtermUnderLoadLosesNoAcknowledgedRecord) {
  ASSERT_TRUE(CreateTopic("t", 3).ok());
  LoadGenerator load(channel_, "t");
  load.Run(4);
  std::this_thread::sleep_for(std::chrono::milliseconds(700));

  const int code = daemon_.Stop();
  load.StopAndJoin();
  StartDaemon();

  EXPECT_EQ(code, 0) << daemon_.output();
  ExpectAcknowledgedRecordsStored(load, "t", 3);
}

TEST_F(DaemonTest, SigkillUnderLoadThenRestartLosesNoAcknowledgedRecord) {
  ASSERT_TRUE(CreateTopic("t", 3).ok());
  LoadGenerator load(channel_, "t");
  load.Run(4);
  std::this_thread::sleep_for(std::chrono::milliseconds(700));

  daemon_.Kill();
  load.StopAndJoin();
  StartDaemon();

  ExpectAcknowledgedRecordsStored(load, "t", 3);
}

}  // namespace
}  // namespace spool
