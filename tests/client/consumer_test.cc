// spool::Consumer against an in-process spoold (real store, broker and gRPC services on
// 127.0.0.1 port 0): two members share a topic and read every record once through a
// rebalance; Seek, async commits and Close. Runs under ThreadSanitizer too: the consumer's
// heartbeat thread, fetch callbacks and Poll share its state.

#include "spool/consumer.h"

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "broker/broker.h"
#include "common/clock.h"
#include "protocol/grpc_server.h"
#include "spool/producer.h"
#include "storage/store.h"
#include "tests/testing/temp_dir.h"

namespace spool {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class ConsumerTest : public ::testing::Test {
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
    ClientOptions client_options;
    client_options.address = "127.0.0.1:" + std::to_string(server_->port());
    client_ = std::make_unique<Client>(client_options);
  }
  void TearDown() override {
    client_.reset();
    // As spoold does: answer parked long polls before the server stops.
    if (broker_) broker_->ReleaseWaiters();
    if (server_) server_->Shutdown(milliseconds(10'000));
    server_.reset();
    if (broker_) broker_->Shutdown();
    broker_.reset();
    store_.reset();
  }

  void Produce(const std::string& topic, std::uint32_t partitions, int count) {
    Admin admin(*client_);
    auto created = admin.CreateTopic({topic, partitions, std::nullopt, std::nullopt, std::nullopt});
    ASSERT_TRUE(created.ok()) << created.status.error_message();
    Producer producer(*client_);
    for (int i = 0; i < count; ++i) {
      ProducerRecord r;
      r.topic = topic;
      r.partition = static_cast<std::uint32_t>(i) % partitions;
      r.value = std::to_string(i);
      producer.Send(std::move(r), [](const Delivery&) {});
    }
    ASSERT_TRUE(producer.Flush(seconds(30)));
  }

  ConsumerOptions Options(const std::string& group, const std::string& topic) {
    ConsumerOptions options;
    options.group = group;
    options.topics = {topic};
    options.session_timeout = seconds(6);  // heartbeats every 2 s
    options.max_poll_records = 7;          // many small polls
    return options;
  }

  testing::TempDir dir_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<broker::Broker> broker_;
  std::unique_ptr<protocol::GrpcServer> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(ConsumerTest, TwoMembersReadEveryRecordOnceThroughARebalance) {
  Produce("t", 4, 2000);
  std::mutex mu;
  std::multiset<std::string> seen;
  std::atomic<bool> stop{false};
  std::atomic<int> revocations{0};
  auto member = [&](int delay_ms) {
    std::this_thread::sleep_for(milliseconds(delay_ms));
    auto options = Options("g", "t");
    options.on_revoked = [&](const std::vector<TopicPartition>&) {
      if (!stop) ++revocations;  // Close revokes too; count rebalances only
    };
    Consumer consumer(*client_, options);
    while (!stop) {
      auto records = consumer.Poll(milliseconds(50));
      ASSERT_TRUE(records.ok()) << records.status.error_message();
      std::lock_guard lock(mu);
      for (const auto& r : *records)
        seen.insert(r.record.value());
      // Slow enough that the second member joins before the first is done.
      std::this_thread::sleep_for(milliseconds(10));
    }
    EXPECT_TRUE(consumer.Close().ok());
  };
  std::thread a(member, 0), b(member, 300);
  const auto deadline = std::chrono::steady_clock::now() + seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard lock(mu);
      if (seen.size() >= 2000) break;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  std::this_thread::sleep_for(milliseconds(200));  // anything read twice shows up now
  stop = true;
  a.join();
  b.join();
  std::lock_guard lock(mu);
  EXPECT_EQ(seen.size(), 2000u) << "records read twice or missed";
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), 2000u);
  EXPECT_GT(revocations.load(), 0) << "the second member never took partitions";
}

TEST_F(ConsumerTest, SeekRereadsAndCloseCommitsAndLeaves) {
  Produce("s", 1, 20);
  Admin admin(*client_);
  {
    Consumer consumer(*client_, Options("h", "s"));
    std::size_t got = 0;
    const auto deadline = std::chrono::steady_clock::now() + seconds(30);
    while (got < 20 && std::chrono::steady_clock::now() < deadline) {
      auto records = consumer.Poll(milliseconds(100));
      ASSERT_TRUE(records.ok());
      got += records->size();
    }
    ASSERT_EQ(got, 20u);
    ASSERT_TRUE(consumer.Seek({"s", 0}, 15).ok());
    std::vector<std::string> again;
    while (again.size() < 5 && std::chrono::steady_clock::now() < deadline) {
      auto records = consumer.Poll(milliseconds(100));
      for (const auto& r : *records)
        again.push_back(r.record.value());
    }
    EXPECT_EQ(again, (std::vector<std::string>{"15", "16", "17", "18", "19"}));
    EXPECT_EQ(consumer.Seek({"s", 7}, 0).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    std::promise<grpc::Status> async;
    consumer.CommitAsync([&](grpc::Status s) { async.set_value(s); });
    EXPECT_TRUE(async.get_future().get().ok());
    ASSERT_TRUE(consumer.Close().ok());
    EXPECT_EQ(consumer.Poll(milliseconds(0)).status.error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
  }
  auto described = admin.DescribeGroup("h");
  ASSERT_TRUE(described.ok());
  EXPECT_EQ(described->members_size(), 0) << "Close left the group";
  ASSERT_EQ(described->offsets_size(), 1);
  EXPECT_EQ(described->offsets(0).committed_offset(), 20u);
}

TEST_F(ConsumerTest, AnUnknownTopicIsAssignedOnceCreated) {
  Consumer consumer(*client_, Options("late", "later"));
  auto records = consumer.Poll(milliseconds(300));
  ASSERT_TRUE(records.ok());
  EXPECT_TRUE(records->empty());
  Produce("later", 1, 3);
  std::size_t got = 0;
  const auto deadline = std::chrono::steady_clock::now() + seconds(30);
  while (got < 3 && std::chrono::steady_clock::now() < deadline) {
    auto more = consumer.Poll(milliseconds(200));
    ASSERT_TRUE(more.ok());
    got += more->size();
  }
  EXPECT_EQ(got, 3u);
}

}  // namespace
}  // namespace spool
