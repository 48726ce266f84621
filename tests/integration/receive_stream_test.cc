// spool::ReceiveStream (QueueClient::StreamingReceive) against a real spoold on 127.0.0.1:
// the window holds back messages until settlements free it, deletes, nacks and lease
// changes are confirmed per operation and per request, bad handles and options get their
// status, Close gives back what the caller never saw, and the stream reports why it ended
// (unknown or deleted queue, spoold stopping), and Close ends a stream whose server stopped
// reading (SIGSTOP) without waiting for a Write stuck on it.

#include <atomic>
#include <chrono>
#include <future>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <signal.h>

#include "spool/queue.h"
#include "tests/testing/spoold_process.h"
#include "tests/testing/temp_dir.h"

namespace spool {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::SpooldProcess;
using testing::TempDir;
using SteadyClock = std::chrono::steady_clock;

constexpr auto kFutureWait = seconds(20);

class ReceiveStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(daemon_.Start(SPOOLD_BINARY, dir_.Sub("data"))) << daemon_.output();
    ClientOptions options;
    options.address = daemon_.address();
    options.call_timeout = seconds(10);
    client_ = std::make_unique<Client>(options);
    ASSERT_TRUE(client_->WaitForConnected(seconds(10)));
    queues_ = std::make_unique<QueueClient>(*client_);
  }

  void CreateWith(const std::string& name, std::uint32_t messages) {
    auto created = queues_->CreateQueue(name);
    ASSERT_TRUE(created.ok()) << created.status.error_message();
    for (std::uint32_t i = 0; i < messages; ++i) {
      std::string body = "m";  // not "m" + ...: GCC 12 warns (-Wrestrict) on that
      body += std::to_string(i);
      auto sent = queues_->SendMessage(name, std::move(body));
      ASSERT_TRUE(sent.ok()) << sent.status.error_message();
    }
  }

  // Receives until `n` messages came or 10 s passed.
  static std::vector<v1::QueueMessage> ReceiveN(ReceiveStream& stream, std::size_t n) {
    std::vector<v1::QueueMessage> got;
    const auto deadline = SteadyClock::now() + seconds(10);
    while (got.size() < n && SteadyClock::now() < deadline) {
      auto more = stream.Receive(milliseconds(200), n - got.size());
      EXPECT_TRUE(more.ok()) << more.status.error_message();
      if (!more.ok()) break;
      for (auto& m : more.value)
        got.push_back(std::move(m));
    }
    return got;
  }

  // The stream's ending status: Receive until it fails (at most 10 s).
  static grpc::Status EndOf(ReceiveStream& stream) {
    const auto deadline = SteadyClock::now() + seconds(10);
    while (SteadyClock::now() < deadline) {
      auto got = stream.Receive(milliseconds(200));
      if (!got.ok()) return got.status;
    }
    return grpc::Status::OK;
  }

  static grpc::Status Get(std::future<grpc::Status> future) {
    if (future.wait_for(kFutureWait) != std::future_status::ready) {
      return {grpc::StatusCode::DEADLINE_EXCEEDED, "no confirmation within 20 s"};
    }
    return future.get();
  }

  v1::QueueStats Stats(const std::string& queue) {
    auto got = queues_->GetQueueAttributes(queue);
    EXPECT_TRUE(got.ok()) << got.status.error_message();
    return got->stats();
  }

  TempDir dir_;
  SpooldProcess daemon_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<QueueClient> queues_;
};

TEST_F(ReceiveStreamTest, TheWindowHoldsBackMessagesUntilSettlementsFreeIt) {
  CreateWith("work", 5);
  ReceiveStreamOptions options;
  options.max_outstanding_messages = 2;
  options.visibility_timeout_seconds = 600;
  auto stream = queues_->StreamingReceive("work", options);

  auto first = ReceiveN(*stream, 2);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_TRUE(stream->Receive(milliseconds(300))->empty()) << "the window of 2 is full";
  EXPECT_EQ(Stats("work").approximate_in_flight(), 2u);

  // A delete frees one place; a lease extension does not.
  ASSERT_TRUE(Get(stream->ChangeVisibility(first[1].receipt_handle(), 900)).ok());
  EXPECT_TRUE(stream->Receive(milliseconds(300))->empty()) << "an extension frees no place";
  ASSERT_TRUE(Get(stream->Delete(first[0].receipt_handle())).ok());
  auto second = ReceiveN(*stream, 1);
  ASSERT_EQ(second.size(), 1u);

  // Widening the window lets the rest come.
  ASSERT_TRUE(stream->SetFlowControl(10).ok());
  auto rest = ReceiveN(*stream, 2);
  ASSERT_EQ(rest.size(), 2u);
  std::set<std::string> bodies;
  for (const auto* batch : {&first, &second, &rest}) {
    for (const auto& m : *batch) {
      bodies.insert(m.body());
      EXPECT_EQ(m.receive_count(), 1u);
    }
  }
  EXPECT_EQ(bodies, (std::set<std::string>{"m0", "m1", "m2", "m3", "m4"}));

  // One request settles the other four.
  Settlement all;
  all.deletes = {first[1].receipt_handle(), second[0].receipt_handle(), rest[0].receipt_handle(),
                 rest[1].receipt_handle()};
  auto settled = stream->Settle(std::move(all));
  ASSERT_EQ(settled.wait_for(kFutureWait), std::future_status::ready);
  auto outcome = settled.get();
  ASSERT_TRUE(outcome.ok()) << outcome.status.error_message();
  EXPECT_TRUE(outcome->empty());
  EXPECT_TRUE(stream->Close().ok());
  const v1::QueueStats stats = Stats("work");
  EXPECT_EQ(stats.approximate_visible() + stats.approximate_in_flight(), 0u);
}

TEST_F(ReceiveStreamTest, ANackRedeliversOnTheStream) {
  CreateWith("work", 1);
  auto stream = queues_->StreamingReceive("work");
  auto first = ReceiveN(*stream, 1);
  ASSERT_EQ(first.size(), 1u);
  ASSERT_TRUE(Get(stream->Nack(first[0].receipt_handle())).ok());
  auto again = ReceiveN(*stream, 1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].message_id(), first[0].message_id());
  EXPECT_EQ(again[0].receive_count(), 2u);
  EXPECT_NE(again[0].receipt_handle(), first[0].receipt_handle());

  // The first handle is stale now; with a delay, the message stays away.
  EXPECT_EQ(Get(stream->Delete(first[0].receipt_handle())).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_TRUE(Get(stream->Nack(again[0].receipt_handle(), 600)).ok());
  EXPECT_TRUE(stream->Receive(milliseconds(300))->empty()) << "nacked with a delay";
  EXPECT_EQ(Stats("work").approximate_in_flight(), 1u) << "in flight until the delay ends";
  EXPECT_EQ(Stats("work").approximate_delayed(), 0u);
}

TEST_F(ReceiveStreamTest, EachFailedOperationIsReportedWithItsAction) {
  CreateWith("work", 1);
  auto stream = queues_->StreamingReceive("work");
  auto got = ReceiveN(*stream, 1);
  ASSERT_EQ(got.size(), 1u);

  Settlement mixed;
  mixed.deletes = {got[0].receipt_handle(), "not-a-handle"};
  mixed.nacks = {{"also-garbage", 0}};
  mixed.visibility_changes = {{got[0].receipt_handle(), 60}};
  auto settled = stream->Settle(std::move(mixed));
  ASSERT_EQ(settled.wait_for(kFutureWait), std::future_status::ready);
  auto outcome = settled.get();
  ASSERT_TRUE(outcome.ok()) << outcome.status.error_message();
  std::set<std::pair<std::string, int>> failed;
  for (const auto& f : *outcome) {
    failed.insert({f.receipt_handle(), f.action()});
    EXPECT_FALSE(f.error().message().empty());
  }
  // The visibility change races the delete of the same handle: it may find it deleted.
  failed.erase({got[0].receipt_handle(), v1::RECEIPT_ACTION_CHANGE_VISIBILITY});
  EXPECT_EQ(failed,
            (std::set<std::pair<std::string, int>>{{"not-a-handle", v1::RECEIPT_ACTION_DELETE},
                                                   {"also-garbage", v1::RECEIPT_ACTION_NACK}}));
  EXPECT_EQ(Get(stream->Delete("garbage")).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // An empty settlement needs no request.
  auto nothing = stream->Settle(Settlement{});
  ASSERT_EQ(nothing.wait_for(seconds(0)), std::future_status::ready);
  EXPECT_TRUE(nothing.get().ok());
  // Receive(..., 0) is a misuse; the stream goes on.
  EXPECT_EQ(stream->Receive(milliseconds(0), 0).status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(stream->SetFlowControl(120'001).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(stream->SetFlowControl(0, 0).ok()) << "nothing to change";
  EXPECT_TRUE(stream->Close().ok());
}

TEST_F(ReceiveStreamTest, BadOptionsAndUnknownQueuesEndTheStream) {
  auto unknown = queues_->StreamingReceive("nope");
  EXPECT_EQ(EndOf(*unknown).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Get(unknown->Delete("x")).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(unknown->Close().error_code(), grpc::StatusCode::NOT_FOUND);

  CreateWith("work", 0);
  ReceiveStreamOptions too_wide;
  too_wide.max_outstanding_messages = 120'001;
  auto wide = queues_->StreamingReceive("work", too_wide);
  EXPECT_EQ(EndOf(*wide).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ReceiveStreamOptions too_long;
  too_long.visibility_timeout_seconds = 43'201;
  auto lease = queues_->StreamingReceive("work", too_long);
  EXPECT_EQ(EndOf(*lease).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ReceiveStreamTest, CloseGivesBackWhatTheCallerNeverSaw) {
  CreateWith("work", 3);
  ReceiveStreamOptions options;
  options.visibility_timeout_seconds = 600;
  auto stream = queues_->StreamingReceive("work", options);
  auto one = ReceiveN(*stream, 1);
  ASSERT_EQ(one.size(), 1u);
  // Wait (bounded) until the other two are delivered into the stream's buffer too.
  for (int i = 0; i < 250 && Stats("work").approximate_in_flight() < 3; ++i)
    std::this_thread::sleep_for(milliseconds(20));
  ASSERT_EQ(Stats("work").approximate_in_flight(), 3u);

  ASSERT_TRUE(stream->Close().ok());
  EXPECT_TRUE(stream->Close().ok()) << "idempotent";
  EXPECT_EQ(stream->Receive(milliseconds(0)).status.error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Get(stream->Delete(one[0].receipt_handle())).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(stream->SetFlowControl(5).error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  // The two it never returned are visible again at once; the one it returned keeps its
  // lease, and its handle still works outside the stream.
  ReceiveOptions receive;
  receive.max_messages = 10;
  receive.wait_time_seconds = 0;
  auto back = queues_->ReceiveMessages("work", receive);
  ASSERT_TRUE(back.ok()) << back.status.error_message();
  ASSERT_EQ(back->size(), 2u);
  for (const auto& m : *back) {
    EXPECT_NE(m.message_id(), one[0].message_id());
    EXPECT_EQ(m.receive_count(), 2u) << "one delivery on the stream, then this receive";
  }
  // The stream's last long poll has ended with it: a new message is not leased to it.
  auto sent = queues_->SendMessage("work", "after");
  ASSERT_TRUE(sent.ok()) << sent.status.error_message();
  auto after = queues_->ReceiveMessages("work", receive);
  ASSERT_TRUE(after.ok()) << after.status.error_message();
  ASSERT_EQ(after->size(), 1u) << "the closed stream's long poll leased it";
  EXPECT_EQ(after->front().receive_count(), 1u);
  EXPECT_TRUE(queues_->DeleteMessage("work", one[0].receipt_handle()).ok());
}

TEST_F(ReceiveStreamTest, ThreadsReceiveAndSettleWhileTwoOthersCloseIt) {
  CreateWith("work", 300);
  ReceiveStreamOptions options;
  options.max_outstanding_messages = 40;
  auto stream = queues_->StreamingReceive("work", options);
  std::atomic<int> settled{0}, answered{0}, deleted{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int w = 0; w < 3; ++w) {
    workers.emplace_back([&] {
      const auto deadline = SteadyClock::now() + seconds(20);
      while (!stop && SteadyClock::now() < deadline) {
        auto got = stream->Receive(milliseconds(20), 5);
        if (!got.ok()) return;  // closed
        Settlement done;
        for (const auto& m : *got)
          done.deletes.push_back(m.receipt_handle());
        if (done.empty()) continue;
        ++settled;
        const int n = static_cast<int>(done.deletes.size());
        stream->Settle(std::move(done), [&, n](CallResult<ReceiveStream::Failures> outcome) {
          ++answered;
          if (outcome.ok()) deleted += n - static_cast<int>(outcome->size());
        });
      }
    });
  }
  for (int i = 0; i < 500 && deleted < 100; ++i)
    std::this_thread::sleep_for(milliseconds(20));
  grpc::Status second;
  std::thread closer([&] { second = stream->Close(); });
  const grpc::Status first = stream->Close();
  closer.join();
  stop = true;
  for (auto& w : workers)
    w.join();
  EXPECT_TRUE(first.ok()) << first.error_message();
  EXPECT_TRUE(second.ok()) << second.error_message();
  EXPECT_GE(deleted.load(), 100);
  EXPECT_EQ(answered.load(), settled.load()) << "a settlement was never answered";
  // Nothing is lost: every message is deleted, or back in the queue (released by Close or
  // still leased after a settlement that came too late).
  const v1::QueueStats stats = Stats("work");
  EXPECT_EQ(static_cast<int>(stats.approximate_visible() + stats.approximate_in_flight()) +
                deleted.load(),
            300);
}

TEST_F(ReceiveStreamTest, DeletingTheQueueEndsTheStream) {
  CreateWith("work", 0);
  auto stream = queues_->StreamingReceive("work");
  EXPECT_TRUE(stream->Receive(milliseconds(200))->empty());
  ASSERT_TRUE(queues_->DeleteQueue("work").ok());
  EXPECT_EQ(EndOf(*stream).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ReceiveStreamTest, AStoppingServerEndsTheStreamAsUnavailable) {
  CreateWith("work", 1);
  auto stream = queues_->StreamingReceive("work");
  auto got = ReceiveN(*stream, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(daemon_.Stop(), 0);
  EXPECT_EQ(EndOf(*stream).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Get(stream->Delete(got[0].receipt_handle())).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(stream->Close().error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(ReceiveStreamTest, CloseDoesNotWaitForAWriteAServerThatStoppedReadingHoldsUp) {
  CreateWith("work", 0);
  ClientOptions options;
  options.address = daemon_.address();
  options.call_timeout = seconds(1);
  Client client(options);
  QueueClient queues(client);
  auto stream = queues.StreamingReceive("work");
  ASSERT_TRUE(stream->Receive(milliseconds(200)).ok());
  ASSERT_EQ(kill(daemon_.pid(), SIGSTOP), 0);
  // Settlements nobody reads fill the stream's flow-control window and the socket until a
  // Write blocks, holding the write lock that Close needs for its WritesDone. A cancel does
  // not end such a Write: it lasts until the socket drains.
  std::atomic<int> started{0}, returned{0};
  std::atomic<bool> failed{false};
  std::thread settler([&] {
    Settlement big;
    big.deletes.assign(100, std::string(1000, 'h'));
    for (int i = 0; i < 2000 && !failed; ++i) {
      ++started;
      stream->Settle(big, [&](CallResult<ReceiveStream::Failures> outcome) {
        if (!outcome.ok()) failed = true;
      });
      ++returned;
    }
  });
  // Blocked: one Settle has not returned for 300 ms (waited for at most 10 s).
  int still = 0;
  for (int i = 0, last = -1; i < 100 && still < 3; ++i) {
    std::this_thread::sleep_for(milliseconds(100));
    const int now = started;
    still = now != returned && now == last ? still + 1 : 0;
    last = now;
  }
  // Close cancels after the call timeout (1 s) and must not wait for that Write; before
  // the fix it waited until the kernel took more of the stopped server's data, ~10 s here.
  auto closing = std::async(std::launch::async, [&] { return stream->Close(); });
  const bool closed_in_time = closing.wait_for(seconds(6)) == std::future_status::ready;
  // Let spoold go on before anything can end the test, so that every wait below ends.
  ASSERT_EQ(kill(daemon_.pid(), SIGCONT), 0);
  const grpc::Status status = closing.get();
  settler.join();
  ASSERT_EQ(still, 3) << "no Settle blocked; the transport took " << started.load()
                      << " settlements";
  EXPECT_TRUE(closed_in_time) << "Close waited for the Write a stopped server held up";
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << status.error_message();
  EXPECT_TRUE(failed) << "the blocked settlement was not answered";
  // The server is fine once it runs again.
  EXPECT_TRUE(queues_->SendMessage("work", "after").ok());
}

}  // namespace
}  // namespace spool
