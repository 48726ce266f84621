// Queues end to end against a real spoold process: many consumers on one queue, each failing
// to process 30% of their messages at random (nacking them or letting their lease run out), with a
// dead-letter queue after three receives. A checker proves every sent message was either
// deleted exactly once or ended in the dead-letter queue, that none was lost, and that no
// message was received again after its delete was acknowledged. The second run kills spoold
// with SIGKILL twice while the consumers work: nothing acknowledged is lost, no deleted
// message reappears, and receive counts keep counting across the restarts (a receive is
// answered only once its count is durable, so every later receive of a message shows a
// higher count).

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "spool/v1/queue.grpc.pb.h"
#include "tests/testing/spoold_process.h"
#include "tests/testing/temp_dir.h"

namespace spool {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::SpooldProcess;
using testing::TempDir;

constexpr int kMessages = 1'000;
constexpr int kConsumers = 6;
constexpr std::uint32_t kMaxReceives = 3;

std::unique_ptr<grpc::ClientContext> Context(seconds timeout = seconds(10)) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + timeout);
  return context;
}

// What the consumers saw, for the checker.
struct Ledger {
  std::mutex mu;
  std::map<std::string, int> deleted;                // body -> acknowledged deletes
  std::set<std::string> uncertain;                   // delete sent, answer lost
  std::map<std::string, std::uint32_t> max_receive;  // body -> highest receive count seen
  std::vector<std::string> violations;

  void Received(const v1::QueueMessage& m) {
    std::lock_guard lock(mu);
    if (deleted.count(m.body()) > 0) {
      violations.push_back("'" + m.body() + "' was received after its delete was acknowledged");
    }
    auto& seen = max_receive[m.body()];
    // Every receive is counted durably before it is answered, so a count never repeats or
    // goes back, across crashes too. It may skip one whose answer was lost (the broker
    // counted it, the consumer never saw it).
    if (m.receive_count() <= seen) {
      violations.push_back("'" + m.body() + "' receive count did not go up from " +
                           std::to_string(seen) + " to " + std::to_string(m.receive_count()));
    }
    seen = std::max(seen, m.receive_count());
  }
};

class QueueEndToEndTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(daemon_.Start(SPOOLD_BINARY, dir_.Sub("data"))) << daemon_.output();
    grpc::ChannelArguments args;
    // Reconnect quickly after the daemon restarts.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
    channel_ =
        grpc::CreateCustomChannel(daemon_.address(), grpc::InsecureChannelCredentials(), args);
    stub_ = v1::QueueService::NewStub(channel_);
  }

  void Restart() {
    const std::string address = daemon_.address();
    daemon_.Kill();
    daemon_.set_grpc_listen(address);
    ASSERT_TRUE(daemon_.Start(SPOOLD_BINARY, dir_.Sub("data"))) << daemon_.output();
  }

  void CreateQueues() {
    v1::CreateQueueRequest dlq;
    dlq.set_name("work-dlq");
    v1::CreateQueueResponse created;
    ASSERT_TRUE(stub_->CreateQueue(Context().get(), dlq, &created).ok());
    v1::CreateQueueRequest work;
    work.set_name("work");
    work.mutable_attributes()->set_partitions(2);
    work.mutable_attributes()->set_visibility_timeout_seconds(1);
    work.mutable_attributes()->mutable_redrive_policy()->set_dead_letter_queue("work-dlq");
    work.mutable_attributes()->mutable_redrive_policy()->set_max_receive_count(kMaxReceives);
    grpc::Status s = stub_->CreateQueue(Context().get(), work, &created);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  void SendAll() {
    for (int batch = 0; batch < kMessages / 100; ++batch) {
      v1::SendMessageBatchRequest request;
      request.set_queue("work");
      for (int i = 0; i < 100; ++i) {
        auto* entry = request.add_entries();
        entry->set_id(std::to_string(i));
        entry->set_body("m" + std::to_string(batch * 100 + i));
      }
      v1::SendMessageBatchResponse response;
      grpc::Status s = stub_->SendMessageBatch(Context().get(), request, &response);
      ASSERT_TRUE(s.ok()) << s.error_message();
      for (const auto& r : response.results())
        ASSERT_FALSE(r.has_error()) << r.error().message();
    }
  }

  // Null while the daemon cannot answer (restarting).
  std::optional<v1::QueueStats> Stats(const std::string& queue) {
    v1::GetQueueAttributesRequest request;
    request.set_queue(queue);
    v1::GetQueueAttributesResponse response;
    grpc::Status s = stub_->GetQueueAttributes(Context().get(), request, &response);
    if (!s.ok()) return std::nullopt;
    return response.queue().stats();
  }

  // Consumes until the queue is empty (bounded); `during` runs on the test thread meanwhile.
  void Consume(
      Ledger& ledger, const std::function<void()>& during = [] {}) {
    std::atomic<bool> stop{false};
    std::vector<std::thread> consumers;
    for (int c = 0; c < kConsumers; ++c) {
      consumers.emplace_back([&, c] {
        std::mt19937 random(static_cast<unsigned>(c) * 7919u + 1u);
        std::uniform_int_distribution<int> percent(0, 99);
        while (!stop) {
          v1::ReceiveMessagesRequest request;
          request.set_queue("work");
          request.set_max_messages(10);
          request.set_wait_time_seconds(1);
          v1::ReceiveMessagesResponse response;
          if (!stub_->ReceiveMessages(Context().get(), request, &response).ok()) {
            std::this_thread::sleep_for(milliseconds(50));  // restarting: retry
            continue;
          }
          // Recorded before any is processed: a lease that ran out while this consumer was
          // deleting earlier messages could otherwise let another consumer record the next
          // receive first.
          for (const auto& m : response.messages())
            ledger.Received(m);
          for (const auto& m : response.messages()) {
            const int roll = percent(random);
            if (roll < 15) continue;  // "crashed" while processing: the lease runs out
            if (roll < 30) {
              v1::NackMessageRequest nack;
              nack.set_queue("work");
              nack.set_receipt_handle(m.receipt_handle());
              v1::NackMessageResponse nacked;
              stub_->NackMessage(Context().get(), nack, &nacked);
              continue;
            }
            v1::DeleteMessageRequest del;
            del.set_queue("work");
            del.set_receipt_handle(m.receipt_handle());
            v1::DeleteMessageResponse deleted;
            grpc::Status s = stub_->DeleteMessage(Context().get(), del, &deleted);
            std::lock_guard lock(ledger.mu);
            if (s.ok()) {
              ++ledger.deleted[m.body()];
              ledger.uncertain.erase(m.body());
            } else if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                       s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
              ledger.uncertain.insert(m.body());  // it may or may not have been written
            }
            // FAILED_PRECONDITION: the lease ran out and another consumer has it now.
          }
        }
      });
    }
    during();
    // Done when nothing is left in any state; leases of at most 1 s bound the tail.
    const auto deadline = std::chrono::steady_clock::now() + seconds(120);
    int empty_in_a_row = 0;
    while (std::chrono::steady_clock::now() < deadline && empty_in_a_row < 3) {
      std::this_thread::sleep_for(milliseconds(500));
      const auto s = Stats("work");
      const bool empty =
          s &&
          s->approximate_visible() + s->approximate_in_flight() + s->approximate_delayed() == 0;
      empty_in_a_row = empty ? empty_in_a_row + 1 : 0;
    }
    stop = true;
    for (auto& t : consumers)
      t.join();
    ASSERT_EQ(empty_in_a_row, 3) << "the queue did not drain in time";
  }

  // Every message is deleted once or dead-lettered (or, after a crash, its delete's answer
  // was lost), never both, none lost.
  void Check(Ledger& ledger) {
    std::map<std::string, v1::QueueMessage> dead;
    for (int i = 0; i < 100; ++i) {
      v1::ReceiveMessagesRequest request;
      request.set_queue("work-dlq");
      request.set_max_messages(100);
      v1::ReceiveMessagesResponse response;
      ASSERT_TRUE(stub_->ReceiveMessages(Context().get(), request, &response).ok());
      if (response.messages_size() == 0) break;
      for (const auto& m : response.messages()) {
        EXPECT_TRUE(dead.emplace(m.body(), m).second) << m.body() << " dead-lettered twice";
        EXPECT_EQ(m.dead_letter_source_queue(), "work");
        EXPECT_GE(m.receive_count(), kMaxReceives + 1) << "the dead letter's count goes on";
      }
    }
    for (const auto& v : ledger.violations)
      ADD_FAILURE() << v;
    // The receive that would be number kMaxReceives + 1 moves the message instead, crashes
    // or not: no consumer ever saw a higher count.
    for (const auto& [body, count] : ledger.max_receive)
      EXPECT_LE(count, kMaxReceives) << body << " was delivered past its max receive count";
    std::size_t deleted_once = 0;
    for (int i = 0; i < kMessages; ++i) {
      const std::string body = "m" + std::to_string(i);
      const auto d = ledger.deleted.find(body);
      const int deletes = d == ledger.deleted.end() ? 0 : d->second;
      EXPECT_LE(deletes, 1) << body << " was deleted " << deletes << " times";
      const bool in_dlq = dead.count(body) > 0;
      EXPECT_FALSE(deletes > 0 && in_dlq) << body << " was deleted and dead-lettered";
      EXPECT_TRUE(deletes > 0 || in_dlq || ledger.uncertain.count(body) > 0) << body << " was lost";
      if (deletes == 1) ++deleted_once;
    }
    EXPECT_GT(deleted_once, static_cast<std::size_t>(kMessages) / 2);
    EXPECT_FALSE(dead.empty()) << "with 30% failures some message should fail three times";
  }

  TempDir dir_;
  SpooldProcess daemon_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::QueueService::Stub> stub_;
};

TEST_F(QueueEndToEndTest, ConsumersWithFailuresDeleteEachMessageOnceOrDeadLetterIt) {
  CreateQueues();
  SendAll();
  Ledger ledger;
  Consume(ledger);
  EXPECT_TRUE(ledger.uncertain.empty());
  Check(ledger);
}

TEST_F(QueueEndToEndTest, KilledTwiceNothingAcknowledgedIsLostAndNothingDeletedReturns) {
  CreateQueues();
  SendAll();
  Ledger ledger;
  Consume(ledger, [&] {
    for (int crash = 0; crash < 2; ++crash) {
      // Let the consumers get going (some deleted, some leased, some past a receive or two).
      // (The clients take a few seconds to see a restarted daemon, so allow for that.)
      for (int i = 0; i < 750; ++i) {
        std::this_thread::sleep_for(milliseconds(20));
        std::lock_guard lock(ledger.mu);
        if (ledger.deleted.size() >= static_cast<std::size_t>(crash + 1) * kMessages / 4) break;
      }
      Restart();
    }
  });
  Check(ledger);
}

}  // namespace
}  // namespace spool
