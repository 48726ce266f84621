// The C++ client library against a real spoold on 127.0.0.1: topic administration, the
// producer and reader round trip across partitions, start positions, long polling,
// retention, and producers that ride through a daemon restart (SIGTERM and SIGKILL)
// without losing or reordering an acknowledged record.

#include "spool/client.h"

#include <chrono>
#include <future>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "spool/producer.h"
#include "tests/testing/spoold_process.h"
#include "tests/testing/temp_dir.h"

namespace spool {
namespace {

using std::chrono::milliseconds;
using ::testing::ElementsAre;
using testing::SpooldProcess;
using testing::TempDir;

ProducerRecord Rec(std::string topic, std::string value) {
  ProducerRecord record;
  record.topic = std::move(topic);
  record.partition = 0;
  record.value = std::move(value);
  return record;
}

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(Start()) << daemon_.output(); }

  bool Start(std::vector<std::string> extra = {}) {
    if (!daemon_.Start(SPOOLD_BINARY, dir_.Sub("data"), std::move(extra))) return false;
    ClientOptions options;
    options.address = daemon_.address();
    options.call_timeout = std::chrono::seconds(20);
    client_ = std::make_unique<Client>(options);
    return true;
  }

  // Restarts on the same port, so that clients already pointed at it reconnect.
  bool Restart(bool kill) {
    const std::string address = daemon_.address();
    if (kill) {
      daemon_.Kill();
    } else if (daemon_.Stop() != 0) {
      return false;
    }
    daemon_.set_grpc_listen(address);
    return daemon_.Start(SPOOLD_BINARY, dir_.Sub("data"));
  }

  void CreateTopic(const std::string& name, std::uint32_t partitions) {
    Admin admin(*client_);
    TopicSpec spec;
    spec.name = name;
    spec.partitions = partitions;
    auto created = admin.CreateTopic(spec);
    ASSERT_TRUE(created.ok()) << created.status.error_message();
  }

  // Everything in a partition, from its start to its end now.
  std::vector<v1::Record> ReadAll(const std::string& topic, std::uint32_t partition) {
    Reader reader(*client_, topic, partition);
    std::vector<v1::Record> out;
    for (int polls = 0; polls < 100'000; ++polls) {
      auto records = reader.Poll(milliseconds(0));
      EXPECT_TRUE(records.ok()) << records.status.error_message();
      if (!records.ok() || records->empty()) break;
      out.insert(out.end(), records->begin(), records->end());
    }
    return out;
  }

  TempDir dir_;
  SpooldProcess daemon_;
  std::unique_ptr<Client> client_;
};

TEST_F(ClientTest, AdminCreatesListsUpdatesAndDeletesTopics) {
  Admin admin(*client_);
  ASSERT_TRUE(client_->WaitForConnected(std::chrono::seconds(10)));
  TopicSpec spec;
  spec.name = "orders";
  spec.partitions = 2;
  spec.retention_ms = 3'600'000;
  spec.retention_bytes = 1 << 20;
  auto created = admin.CreateTopic(spec);
  ASSERT_TRUE(created.ok()) << created.status.error_message();
  EXPECT_EQ(created->config().partitions(), 2u);
  EXPECT_EQ(created->config().retention_ms(), 3'600'000);
  EXPECT_EQ(created->partitions_size(), 2);

  EXPECT_EQ(admin.CreateTopic(spec).status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  TopicSpec bad = spec;
  bad.name = "no spaces";
  EXPECT_EQ(admin.CreateTopic(bad).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  bad = spec;
  bad.name = "zero";
  bad.partitions = 0;
  EXPECT_EQ(admin.CreateTopic(bad).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  for (const char* name : {"orders.eu", "orders.us", "orders.asia", "payments"}) {
    spec.name = name;
    ASSERT_TRUE(admin.CreateTopic(spec).ok());
  }
  // ListTopics follows every page; a small page size shows there are several.
  auto page = admin.ListTopicsPage("orders", 2, "");
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->topics_size(), 2);
  EXPECT_FALSE(page->next_page_token().empty());
  auto listed = admin.ListTopics("orders");
  ASSERT_TRUE(listed.ok());
  std::vector<std::string> names;
  for (const auto& t : *listed)
    names.push_back(t.name());
  EXPECT_THAT(names, ElementsAre("orders", "orders.asia", "orders.eu", "orders.us"));

  TopicUpdate update;
  update.name = "orders";
  update.partitions = 4;
  update.retention_ms = -1;
  auto updated = admin.UpdateTopic(update);
  ASSERT_TRUE(updated.ok()) << updated.status.error_message();
  EXPECT_EQ(updated->config().partitions(), 4u);
  EXPECT_EQ(updated->config().retention_ms(), -1);
  EXPECT_EQ(updated->config().retention_bytes(), 1 << 20);  // untouched
  update.partitions = 3;
  EXPECT_EQ(admin.UpdateTopic(update).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  ASSERT_TRUE(admin.DeleteTopic("orders").ok());
  EXPECT_EQ(admin.GetTopic("orders").status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(admin.DeleteTopic("orders").error_code(), grpc::StatusCode::NOT_FOUND);

  auto info = admin.GetBrokerInfo();
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->version().empty());
  EXPECT_EQ(info->fsync_mode(), v1::FSYNC_MODE_ALWAYS);
  EXPECT_EQ(info->topic_count(), 4u);
}

TEST_F(ClientTest, ProducerAndReaderRoundTripAcrossPartitionsKeepingKeyOrder) {
  CreateTopic("events", 4);
  Producer producer(*client_);
  constexpr int kKeys = 20;
  constexpr int kPerKey = 100;
  std::vector<std::future<Delivery>> futures;
  for (int i = 0; i < kPerKey; ++i) {
    for (int k = 0; k < kKeys; ++k) {
      ProducerRecord record;
      record.topic = "events";
      record.key = "key-" + std::to_string(k);
      record.value = std::to_string(k) + ":" + std::to_string(i);
      record.headers = {{"n", std::to_string(i)}};
      record.timestamp_ms = 1000 + i;
      futures.push_back(producer.Send(std::move(record)));
    }
  }
  ASSERT_TRUE(producer.Flush(std::chrono::seconds(60)));
  std::map<std::pair<std::uint32_t, std::uint64_t>, std::string> delivered;
  for (std::size_t n = 0; n < futures.size(); ++n) {
    Delivery d = futures[n].get();
    ASSERT_TRUE(d.ok()) << d.status.error_message();
    const int k = static_cast<int>(n % kKeys), i = static_cast<int>(n / kKeys);
    delivered[{d.partition, d.offset}] = std::to_string(k) + ":" + std::to_string(i);
  }

  std::map<int, std::uint32_t> partition_of_key;
  std::map<int, int> next_of_key;
  std::set<std::uint32_t> used;
  std::size_t total = 0;
  for (std::uint32_t p = 0; p < 4; ++p) {
    for (const v1::Record& record : ReadAll("events", p)) {
      ++total;
      EXPECT_EQ(record.partition(), p);
      EXPECT_EQ(delivered.at({p, record.offset()}), record.value());
      const int k = std::stoi(record.key().substr(4));
      const int i = std::stoi(record.value().substr(record.value().find(':') + 1));
      // One partition per key, and its records in the order they were sent.
      auto [it, fresh] = partition_of_key.emplace(k, p);
      EXPECT_EQ(it->second, p) << "key " << k << " in two partitions";
      EXPECT_EQ(i, next_of_key[k]++) << "key " << k << " out of order";
      EXPECT_EQ(record.headers(0).value(), std::to_string(i));
      EXPECT_EQ(record.producer_timestamp_ms(), 1000 + i);
      used.insert(p);
    }
  }
  EXPECT_EQ(total, static_cast<std::size_t>(kKeys * kPerKey));
  EXPECT_GT(used.size(), 1u) << "20 keys should hash to more than one of 4 partitions";
}

TEST_F(ClientTest, ReaderStartsAtEarliestLatestOffsetOrTime) {
  CreateTopic("t", 1);
  Producer producer(*client_);
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(producer.Send(Rec("t", "a" + std::to_string(i))).get().ok());
  std::this_thread::sleep_for(milliseconds(20));  // append times differ from the next ten
  const auto middle =
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  std::this_thread::sleep_for(milliseconds(20));
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(producer.Send(Rec("t", "b" + std::to_string(i))).get().ok());

  Reader earliest(*client_, "t", 0, StartPosition::Earliest());
  EXPECT_EQ(*earliest.Position(), 0u);
  Reader latest(*client_, "t", 0, StartPosition::Latest());
  EXPECT_EQ(*latest.Position(), 20u);
  auto none = latest.Poll(milliseconds(0));
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(latest.log_end_offset(), 20u);

  Reader at_offset(*client_, "t", 0, StartPosition::AtOffset(15));
  auto records = at_offset.Poll(milliseconds(0));
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 5u);
  EXPECT_EQ(records->front().value(), "b5");
  EXPECT_EQ(*at_offset.Position(), 20u);

  Reader at_time(*client_, "t", 0, StartPosition::AtTime(middle));
  EXPECT_EQ(*at_time.Position(), 10u);
  Reader future_time(*client_, "t", 0, StartPosition::AtTime(middle + 3'600'000));
  EXPECT_EQ(*future_time.Position(), 20u);

  Reader beyond(*client_, "t", 0, StartPosition::AtOffset(21));
  EXPECT_EQ(beyond.Poll(milliseconds(0)).status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  Reader missing(*client_, "nope", 0);
  EXPECT_EQ(missing.Poll(milliseconds(0)).status.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ClientTest, ReaderLongPollWakesOnPublish) {
  CreateTopic("t", 1);
  Reader reader(*client_, "t", 0, StartPosition::Latest());
  ASSERT_TRUE(reader.Position().ok());
  std::thread publisher([&] {
    std::this_thread::sleep_for(milliseconds(200));
    Producer producer(*client_);
    producer.Send(Rec("t", "wake")).get();
  });
  const auto start = std::chrono::steady_clock::now();
  auto records = reader.Poll(std::chrono::seconds(30));
  const auto waited = std::chrono::steady_clock::now() - start;
  publisher.join();
  ASSERT_TRUE(records.ok()) << records.status.error_message();
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ(records->front().value(), "wake");
  // It returned because the record arrived, not because the 30 s wait ran out.
  EXPECT_LT(waited, std::chrono::seconds(15));
}

TEST_F(ClientTest, ReaderBelowTheLogStartFailsOrResetsByOption) {
  daemon_.Stop();
  ASSERT_TRUE(Start({"--retention-check-interval-ms", "100"})) << daemon_.output();
  Admin admin(*client_);
  TopicSpec spec{"small", 1, std::nullopt, 4096, std::nullopt};
  ASSERT_TRUE(admin.CreateTopic(spec).ok());
  ProducerOptions options;
  options.max_batch_records = 50;  // many small appends, so retention has ranges to drop
  Producer producer(*client_, options);
  for (int i = 0; i < 2000; ++i)
    producer.Send(Rec("small", std::string(100, 'x')), [](const Delivery&) {});
  ASSERT_TRUE(producer.Flush(std::chrono::seconds(60)));
  std::uint64_t start = 0;
  for (int i = 0; i < 200 && start == 0; ++i) {
    std::this_thread::sleep_for(milliseconds(50));
    start = admin.GetTopic("small")->partitions(0).start_offset();
  }
  ASSERT_GT(start, 0u) << "retention did not run";

  Reader strict(*client_, "small", 0, StartPosition::AtOffset(0));
  EXPECT_EQ(strict.Poll(milliseconds(0)).status.error_code(), grpc::StatusCode::OUT_OF_RANGE);

  ReaderOptions reset;
  reset.reset_to_earliest_on_out_of_range = true;
  Reader lenient(*client_, "small", 0, StartPosition::AtOffset(0), reset);
  auto records = lenient.Poll(milliseconds(0));
  ASSERT_TRUE(records.ok()) << records.status.error_message();
  ASSERT_FALSE(records->empty());
  EXPECT_GE(records->front().offset(), start);
  EXPECT_EQ(lenient.skipped(), records->front().offset());
}

// Sends numbered records on a few keys from one producer while `disrupt` runs, then checks
// that every record was acknowledged, that each acknowledged offset holds that record, and
// that no key's records appear out of order (a retried batch may appear twice).
void ProduceThrough(Client& client, const std::function<void()>& disrupt,
                    const std::function<std::vector<v1::Record>(std::uint32_t)>& read_all) {
  ProducerOptions options;
  options.max_batch_records = 20;
  options.delivery_timeout = std::chrono::seconds(90);
  options.retry_backoff = milliseconds(50);
  Producer producer(client, options);
  constexpr int kKeys = 3;
  constexpr int kRecords = 6000;
  std::vector<std::future<Delivery>> futures;
  std::thread disruptor;
  for (int i = 0; i < kRecords; ++i) {
    ProducerRecord record;
    record.topic = "load";
    record.key = "k" + std::to_string(i % kKeys);
    record.value = std::to_string(i);
    futures.push_back(producer.Send(std::move(record)));
    if (i == kRecords / 3) disruptor = std::thread(disrupt);
    if (i % 100 == 0) std::this_thread::sleep_for(milliseconds(5));  // spread over time
  }
  disruptor.join();
  ASSERT_TRUE(producer.Flush(std::chrono::seconds(120)));
  std::map<std::pair<std::uint32_t, std::uint64_t>, int> acked;
  for (int i = 0; i < kRecords; ++i) {
    Delivery d = futures[i].get();
    ASSERT_TRUE(d.ok()) << "record " << i << ": " << d.status.error_message();
    acked[{d.partition, d.offset}] = i;
  }
  EXPECT_GE(producer.stats().streams_opened, 2u) << "the restart should have cut the stream";
  std::map<std::pair<std::uint32_t, std::uint64_t>, int> found;
  for (std::uint32_t p = 0; p < 2; ++p) {
    std::map<std::string, int> last_first_seen;
    std::set<int> seen;
    for (const v1::Record& record : read_all(p)) {
      const int i = std::stoi(record.value());
      found[{p, record.offset()}] = i;
      if (!seen.insert(i).second) continue;  // duplicate from a retry
      auto [it, fresh] = last_first_seen.emplace(record.key(), i);
      if (!fresh) {
        EXPECT_GT(i, it->second) << "key " << record.key() << ": " << i << " after " << it->second;
        it->second = i;
      }
    }
  }
  for (const auto& [where, i] : acked)
    ASSERT_EQ(found.count(where) ? found.at(where) : -1, i) << "acknowledged record lost";
}

TEST_F(ClientTest, ProducerRidesThroughAGracefulRestart) {
  CreateTopic("load", 2);
  ProduceThrough(
      *client_, [&] { ASSERT_TRUE(Restart(/*kill=*/false)) << daemon_.output(); },
      [&](std::uint32_t p) { return ReadAll("load", p); });
}

TEST_F(ClientTest, ProducerRidesThroughACrashAndLosesNoAcknowledgedRecord) {
  CreateTopic("load", 2);
  ProduceThrough(
      *client_, [&] { ASSERT_TRUE(Restart(/*kill=*/true)) << daemon_.output(); },
      [&](std::uint32_t p) { return ReadAll("load", p); });
}

}  // namespace
}  // namespace spool
