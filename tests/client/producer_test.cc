// The producer against an in-process fake PublishService: batching, deliveries, retries that
// keep a partition's order, bounded memory and shutdown.

#include "spool/producer.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <future>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/client/fake_publish_server.h"

namespace spool {
namespace {

using Action = testing::FakePublishServer::Action;
using std::chrono::milliseconds;
using ::testing::ElementsAre;
using ::testing::Lt;

ProducerRecord Record(std::string value, std::uint32_t partition = 0) {
  ProducerRecord record;
  record.topic = "t";
  record.partition = partition;
  record.value = std::move(value);
  return record;
}

Client ClientFor(const testing::FakePublishServer& server) {
  ClientOptions options;
  options.address = server.address();
  return Client(options);
}

// Values 0..n-1 were sent in order: checks that each one is in `log` and that their first
// appearances are in order (a retried batch may appear twice, never ahead of its turn).
void ExpectInOrderAtLeastOnce(const std::vector<std::string>& log, int n) {
  std::set<int> seen;
  int next = 0;
  for (const std::string& value : log) {
    const int v = std::stoi(value);
    if (seen.count(v)) continue;  // a duplicate from a retry
    ASSERT_EQ(v, next) << "record " << v << " overtook record " << next;
    seen.insert(v);
    ++next;
  }
  EXPECT_EQ(next, n) << "records missing from the log";
}

// Fails a batch like a server going down: that batch and every later one on the stream,
// until the producer resends the failed batch (whose first value it remembers).
class SuffixFailure {
 public:
  explicit SuffixFailure(std::set<std::uint64_t> fail_at) : fail_at_(std::move(fail_at)) {}
  Action operator()(std::uint64_t index, const v1::PublishRequest& batch) {
    const int first = std::stoi(batch.records(0).value());
    if (failing_ && first <= failed_from_) failing_ = false;  // the resend has come
    if (!failing_ && fail_at_.count(index)) {
      failing_ = true;
      failed_from_ = first;
    }
    if (!failing_) return Action::kAppend;
    ++failed_;
    return Action::kFailUnavailable;
  }
  int failed() const { return failed_; }

 private:
  std::atomic<int> failed_{0};
  std::set<std::uint64_t> fail_at_;
  bool failing_ = false;
  int failed_from_ = 0;
};

TEST(ProducerTest, DeliversEveryRecordWithItsOffsetInSendOrder) {
  testing::FakePublishServer server;
  Client client = ClientFor(server);
  Producer producer(client);
  std::vector<std::future<Delivery>> futures;
  for (int i = 0; i < 500; ++i)
    futures.push_back(producer.Send(Record(std::to_string(i), i % 2)));
  ASSERT_TRUE(producer.Flush(std::chrono::seconds(30)));
  std::uint64_t next_offset[2] = {0, 0};
  for (int i = 0; i < 500; ++i) {
    ASSERT_EQ(futures[i].wait_for(std::chrono::seconds(0)), std::future_status::ready);
    Delivery d = futures[i].get();
    ASSERT_TRUE(d.ok()) << d.status.error_message();
    EXPECT_EQ(d.topic, "t");
    EXPECT_EQ(d.partition, static_cast<std::uint32_t>(i % 2));
    EXPECT_EQ(d.offset, next_offset[i % 2]++);
    EXPECT_EQ(server.Log(d.partition).at(d.offset), std::to_string(i));
  }
  EXPECT_EQ(producer.stats().records_sent, 500u);
  EXPECT_EQ(producer.stats().buffered_bytes, 0u);
}

TEST(ProducerTest, CallbackRunsOncePerRecord) {
  testing::FakePublishServer server;
  Client client = ClientFor(server);
  Producer producer(client);
  std::atomic<int> calls{0};
  std::atomic<int> failures{0};
  for (int i = 0; i < 100; ++i) {
    producer.Send(Record(std::to_string(i)), [&](const Delivery& d) {
      ++calls;
      if (!d.ok()) ++failures;
    });
  }
  ASSERT_TRUE(producer.Flush(std::chrono::seconds(30)));
  EXPECT_EQ(calls.load(), 100);
  EXPECT_EQ(failures.load(), 0);
}

TEST(ProducerTest, FlushReturnsOnlyAfterTheCallbacksHaveRun) {
  testing::FakePublishServer server;
  Client client = ClientFor(server);
  Producer producer(client);
  std::atomic<bool> ran{false};
  producer.Send(Record("slow"), [&](const Delivery&) {
    std::this_thread::sleep_for(milliseconds(100));
    ran = true;
  });
  ASSERT_TRUE(producer.Flush(std::chrono::seconds(30)));
  EXPECT_TRUE(ran.load());
}

TEST(ProducerTest, SplitsBatchesAtMaxRecordsAndFlushSendsTheRest) {
  testing::FakePublishServer server;
  Client client = ClientFor(server);
  ProducerOptions options;
  options.max_batch_records = 10;
  options.linger = std::chrono::hours(1);  // only size and Flush seal a batch
  Producer producer(client, options);
  for (int i = 0; i < 25; ++i)
    producer.Send(Record(std::to_string(i)), [](const Delivery&) {});
  ASSERT_TRUE(producer.Flush(std::chrono::seconds(30)));
  EXPECT_THAT(server.BatchSizes(), ElementsAre(10, 10, 5));
  EXPECT_EQ(server.Log(0).size(), 25u);
}

TEST(ProducerTest, SplitsBatchesAtMaxBytes) {
  testing::FakePublishServer server;
  Client client = ClientFor(server);
  ProducerOptions options;
  options.max_batch_bytes = 1000;
  options.linger = std::chrono::hours(1);
  Producer producer(client, options);
  for (int i = 0; i < 10; ++i)
    producer.Send(Record(std::string(300, 'a' + i)), [](const Delivery&) {});
  ASSERT_TRUE(producer.Flush(std::chrono::seconds(30)));
  // Each record costs 316 bytes (value plus framing); a fourth would pass 1000.
  EXPECT_THAT(server.BatchSizes(), ElementsAre(3, 3, 3, 1));
}

TEST(ProducerTest, LingerGathersRecordsIntoFewBatches) {
  testing::FakePublishServer server;
  Client client = ClientFor(server);
  ProducerOptions options;
  options.linger = milliseconds(200);
  Producer producer(client, options);
  std::vector<std::future<Delivery>> futures;
  for (int i = 0; i < 100; ++i)
    futures.push_back(producer.Send(Record(std::to_string(i))));
  for (auto& f : futures)
    ASSERT_TRUE(f.get().ok());  // linger alone sends them: no Flush
  EXPECT_THAT(server.BatchSizes().size(), Lt(10u));
}

TEST(ProducerTest, RetriesTransientBatchErrorsWithoutReordering) {
  testing::FakePublishServer server;
  auto failure = std::make_shared<SuffixFailure>(std::set<std::uint64_t>{3, 10, 11, 40});
  server.set_policy([failure](std::uint64_t index, const v1::PublishRequest& batch) {
    return (*failure)(index, batch);
  });
  Client client = ClientFor(server);
  ProducerOptions options;
  options.max_batch_records = 7;
  options.max_in_flight = 8;
  options.retry_backoff = milliseconds(5);
  Producer producer(client, options);
  std::vector<std::future<Delivery>> futures;
  for (int i = 0; i < 1000; ++i)
    futures.push_back(producer.Send(Record(std::to_string(i))));
  ASSERT_TRUE(producer.Flush(std::chrono::seconds(60)));
  const auto log = server.Log(0);
  for (int i = 0; i < 1000; ++i) {
    Delivery d = futures[i].get();
    ASSERT_TRUE(d.ok()) << i << ": " << d.status.error_message();
    EXPECT_EQ(log.at(d.offset), std::to_string(i));
  }
  ExpectInOrderAtLeastOnce(log, 1000);
  // Each failure hits at most the batches in flight with it; resending a failed batch after
  // later ones would keep the fake failing (and the count growing) until order is restored.
  EXPECT_GT(producer.stats().batches_retried, 0u);
  EXPECT_LE(failure->failed(), 4 * 8);
}

TEST(ProducerTest, ResendsAfterTheStreamBreaksWithoutReordering) {
  testing::FakePublishServer server;
  // Index 5: the stream drops a batch unread; index 20: it appends one but the answer is
  // lost, so that batch is written twice.
  server.set_policy([](std::uint64_t index, const v1::PublishRequest&) {
    if (index == 5) return Action::kBreak;
    if (index == 20) return Action::kAppendThenBreak;
    return Action::kAppend;
  });
  Client client = ClientFor(server);
  ProducerOptions options;
  options.max_batch_records = 5;
  options.retry_backoff = milliseconds(5);
  Producer producer(client, options);
  std::vector<std::future<Delivery>> futures;
  for (int i = 0; i < 400; ++i)
    futures.push_back(producer.Send(Record(std::to_string(i))));
  ASSERT_TRUE(producer.Flush(std::chrono::seconds(60)));
  const auto log = server.Log(0);
  for (int i = 0; i < 400; ++i) {
    Delivery d = futures[i].get();
    ASSERT_TRUE(d.ok()) << i << ": " << d.status.error_message();
    EXPECT_EQ(log.at(d.offset), std::to_string(i));
  }
  ExpectInOrderAtLeastOnce(log, 400);
  EXPECT_GE(server.streams(), 3u);
  EXPECT_GT(log.size(), 400u) << "the batch whose answer was lost is written twice";
}

// Sends values 0..records-1, spread round-robin over `partitions`, while the server holds its
// answers, so the producer fills its window and then has to wait with batches to spare. The
// window must be reached and never passed, so this fails both when max_in_flight is ignored
// and when it is never used; it then checks every record lands once, with its offset.
void ExpectWindowOfMaxInFlightBatches(std::size_t max_in_flight, int records,
                                      std::uint32_t partitions) {
  testing::FakePublishServer server;
  server.HoldAnswers();
  Client client = ClientFor(server);
  ProducerOptions options;
  options.max_in_flight = max_in_flight;
  options.max_batch_records = 2;
  options.linger = milliseconds(1);
  Producer producer(client, options);
  std::vector<std::future<Delivery>> futures;
  for (int i = 0; i < records; ++i)
    futures.push_back(producer.Send(Record(std::to_string(i), i % partitions)));

  EXPECT_TRUE(server.WaitForUnanswered(max_in_flight, std::chrono::seconds(10)))
      << "the producer never filled its window of " << max_in_flight << " batches";
  // The rest is sealed and ready, so a producer that ignored the cap would pass it at once.
  EXPECT_FALSE(server.WaitForUnanswered(max_in_flight + 1, milliseconds(300)))
      << "the producer had more than " << max_in_flight << " batches outstanding";
  server.ReleaseAnswers();  // before any ASSERT, so a failure cannot leave Close waiting

  ASSERT_TRUE(producer.Flush(std::chrono::seconds(30)));
  for (int i = 0; i < records; ++i) {
    ASSERT_EQ(futures[i].wait_for(std::chrono::seconds(0)), std::future_status::ready);
    Delivery d = futures[i].get();
    ASSERT_TRUE(d.ok()) << i << ": " << d.status.error_message();
    EXPECT_EQ(d.partition, static_cast<std::uint32_t>(i) % partitions);
    EXPECT_EQ(d.offset, static_cast<std::uint64_t>(i) / partitions);
    EXPECT_EQ(server.Log(d.partition).at(d.offset), std::to_string(i));
  }
  std::size_t logged = 0;
  for (std::uint32_t p = 0; p < partitions; ++p)
    logged += server.Log(p).size();
  EXPECT_EQ(logged, static_cast<std::size_t>(records)) << "a record was written twice";
  EXPECT_GE(server.BatchSizes().size(), 10 * max_in_flight) << "too few batches to test a cap";
  EXPECT_EQ(server.max_unanswered(), max_in_flight);
  EXPECT_EQ(server.unanswered(), 0u);
  EXPECT_EQ(producer.stats().batches_retried, 0u);
}

TEST(ProducerTest, NeverHasMoreThanMaxInFlightBatchesOutstanding) {
  ExpectWindowOfMaxInFlightBatches(/*max_in_flight=*/3, /*records=*/80, /*partitions=*/1);
}

// The window belongs to the stream, not to a partition: batches of four partitions share it.
TEST(ProducerTest, MaxInFlightIsOneWindowForAllPartitions) {
  ExpectWindowOfMaxInFlightBatches(/*max_in_flight=*/2, /*records=*/80, /*partitions=*/4);
}

// Every record is acknowledged, but the server never ends the stream after the producer's
// WritesDone: Close must still return within its bound (it cancels the stream), not wait
// for the server forever.
TEST(ProducerTest, CloseKeepsItsBoundWhenTheServerNeverEndsTheStream) {
  testing::FakePublishServer server;
  server.LingerAfterWritesDone();
  Client client = ClientFor(server);
  auto producer = std::make_unique<Producer>(client, ProducerOptions{});
  auto delivered = producer->Send(Record("a"));
  ASSERT_EQ(delivered.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  ASSERT_TRUE(delivered.get().ok());

  auto closed = std::async(std::launch::async, [&] { producer->Close(milliseconds(300)); });
  const bool in_time = closed.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  server.StopLingering();  // lets a Close that waits for the server end, so the test can too
  closed.wait();
  EXPECT_TRUE(in_time) << "Close(300 ms) waited for a server that never ended the stream";
  EXPECT_EQ(server.Log(0).size(), 1u);
}

TEST(ProducerTest, PermanentErrorsFailTheirRecordsAndNothingElse) {
  testing::FakePublishServer server;
  server.set_policy([](std::uint64_t, const v1::PublishRequest& batch) {
    return batch.records(0).value() == "bad" ? Action::kFailInvalid : Action::kAppend;
  });
  Client client = ClientFor(server);
  Producer producer(client);
  auto before = producer.Send(Record("1"));
  ASSERT_TRUE(producer.Flush(std::chrono::seconds(30)));
  auto bad = producer.Send(Record("bad"));
  ASSERT_TRUE(producer.Flush(std::chrono::seconds(30)));
  auto after = producer.Send(Record("2"));
  ASSERT_TRUE(producer.Flush(std::chrono::seconds(30)));
  EXPECT_TRUE(before.get().ok());
  Delivery d = bad.get();
  EXPECT_EQ(d.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(d.status.error_message(), "bad record");
  EXPECT_TRUE(after.get().ok());
  EXPECT_THAT(server.Log(0), ElementsAre("1", "2"));
  EXPECT_EQ(producer.stats().batches_retried, 0u);
}

TEST(ProducerTest, GivesUpAfterTheDeliveryTimeout) {
  testing::FakePublishServer server;
  server.set_policy(
      [](std::uint64_t, const v1::PublishRequest&) { return Action::kFailUnavailable; });
  Client client = ClientFor(server);
  ProducerOptions options;
  options.delivery_timeout = milliseconds(300);
  options.retry_backoff = milliseconds(20);
  Producer producer(client, options);
  Delivery d = producer.Send(Record("x")).get();
  EXPECT_EQ(d.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(d.status.error_message(), ::testing::HasSubstr("shutting down"));
  EXPECT_TRUE(server.Log(0).empty());
}

TEST(ProducerTest, GivesUpWhenNoServerListens) {
  std::string address;
  {
    testing::FakePublishServer gone;  // a port that was just in use and now refuses
    address = gone.address();
  }
  ClientOptions client_options;
  client_options.address = address;
  Client client(client_options);
  ProducerOptions options;
  options.delivery_timeout = milliseconds(300);
  options.retry_backoff = milliseconds(20);
  Producer producer(client, options);
  Delivery d = producer.Send(Record("x")).get();
  EXPECT_EQ(d.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
}

TEST(ProducerTest, FullBufferFailsFastWhenAskedTo) {
  testing::FakePublishServer server;
  server.Hold();
  Client client = ClientFor(server);
  ProducerOptions options;
  options.buffer_bytes = 1000;
  options.when_full = BufferFullPolicy::kFail;
  Producer producer(client, options);
  std::vector<std::future<Delivery>> accepted;
  for (int i = 0; i < 3; ++i)
    accepted.push_back(producer.Send(Record(std::string(300, 'x'))));
  auto refused = producer.Send(Record(std::string(300, 'y')));
  ASSERT_EQ(refused.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(refused.get().status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  server.Release();
  for (auto& f : accepted)
    EXPECT_TRUE(f.get().ok());
  // Delivered records free their room.
  EXPECT_TRUE(producer.Send(Record("z")).get().ok());
}

TEST(ProducerTest, FullBufferBlocksThenRefusesAfterMaxBlock) {
  testing::FakePublishServer server;
  server.Hold();
  Client client = ClientFor(server);
  ProducerOptions options;
  options.buffer_bytes = 1000;
  options.max_block = milliseconds(100);
  Producer producer(client, options);
  auto first = producer.Send(Record(std::string(900, 'x')));
  EXPECT_EQ(producer.Send(Record(std::string(900, 'y'))).get().status.error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  server.Release();
  EXPECT_TRUE(first.get().ok());
}

TEST(ProducerTest, FullBufferBlocksUntilADeliveryMakesRoom) {
  testing::FakePublishServer server;
  server.Hold();
  Client client = ClientFor(server);
  ProducerOptions options;
  options.buffer_bytes = 1000;
  options.max_block = std::chrono::seconds(60);
  Producer producer(client, options);
  auto first = producer.Send(Record(std::string(900, 'x')));
  std::thread releaser([&] {
    std::this_thread::sleep_for(milliseconds(50));
    server.Release();
  });
  auto second = producer.Send(Record(std::string(900, 'z')));  // waits for `first`
  releaser.join();
  EXPECT_TRUE(first.get().ok());
  EXPECT_TRUE(second.get().ok());
  EXPECT_THAT(server.Log(0), ElementsAre(std::string(900, 'x'), std::string(900, 'z')));
}

TEST(ProducerTest, RecordLargerThanTheBufferIsRefused) {
  testing::FakePublishServer server;
  Client client = ClientFor(server);
  ProducerOptions options;
  options.buffer_bytes = 100;
  Producer producer(client, options);
  EXPECT_EQ(producer.Send(Record(std::string(200, 'x'))).get().status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST(ProducerTest, CloseFailsWhatTheServerNeverAnsweredAndRefusesLaterSends) {
  testing::FakePublishServer server;
  server.Hold();
  Client client = ClientFor(server);
  Producer producer(client);
  auto pending = producer.Send(Record("x"));
  producer.Close(milliseconds(200));
  ASSERT_EQ(pending.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  EXPECT_EQ(pending.get().status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(producer.Send(Record("y")).get().status.error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  producer.Close();  // again: a no-op
}

TEST(ProducerTest, CloseDeliversWhatIsBuffered) {
  testing::FakePublishServer server;
  Client client = ClientFor(server);
  ProducerOptions options;
  options.linger = std::chrono::hours(1);
  std::vector<std::future<Delivery>> futures;
  {
    Producer producer(client, options);
    for (int i = 0; i < 50; ++i)
      futures.push_back(producer.Send(Record(std::to_string(i))));
  }  // the destructor closes, which flushes
  for (auto& f : futures)
    EXPECT_TRUE(f.get().ok());
  EXPECT_EQ(server.Log(0).size(), 50u);
}

}  // namespace
}  // namespace spool
