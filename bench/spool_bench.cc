// spool-bench: a load generator for a running spoold, over gRPC.
//
//   spool-bench produce --address 127.0.0.1:50051 --batch 100 --inflight 8 --producers 2
//   spool-bench produce --unary --batch 1 --inflight 64
//   spool-bench latency --rate 10000 --duration 10
//
// produce: each producer keeps --inflight batches of --batch records in flight, on one
// PublishStream (default) or as unary Publish calls (--unary), for --duration seconds, and
// reports acknowledged (durable) records per second.
// latency: publishes single records at a fixed --rate, each carrying its send time, as unary
// calls or (--stream) each its own request on one PublishStream, while a consumer long-polls
// Fetch; reports publish-to-delivery percentiles computed from every sample (no bucketing).
// group: --consumers members of one group (spool::Consumer) read a topic of --partitions
// that the batching producer writes at --rate (0: unthrottled); reports consumed records/s,
// produce-to-consume latency, and how long the group takes to own every partition again
// after one member leaves.
//   spool-bench --duration 10 group --consumers 3 --partitions 6 --rate 10000
// queue-send: --producers threads each keep one SendMessageBatch of --batch messages going.
// queue-cycle: fills a queue with --messages, then --consumers threads receive up to --batch
// and delete them with one DeleteMessageBatch, until it is empty; reports the cycle rate.
// queue-latency: sends single messages at a fixed --rate while --consumers receive and
// delete; reports send-to-deleted percentiles.
//   spool-bench queue-cycle --consumers 8 --batch 10 --messages 200000
// queue-cycle --groups N: the same on a FIFO queue whose messages spread over N groups;
// fails if a group's messages arrive out of order.
// read: fills a topic with --messages records, then times reading it from the start with
// Fetch (--fetch-records per call), one reader per partition.
//   spool-bench read --messages 1000000 --partitions 1
// sqs: the SQS API over HTTP (AWS JSON 1.0): --connections each SendMessageBatch of 10 for
// half the duration, then receive 10 and DeleteMessageBatch until the queue is empty.
//   spool-bench --duration 10 sqs --endpoint 127.0.0.1:9324 --connections 16

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include "bench/sqs_workload.h"
#include "spool/client.h"
#include "spool/consumer.h"
#include "spool/producer.h"
#include "spool/v1/admin.grpc.pb.h"
#include "spool/v1/consume.grpc.pb.h"
#include "spool/v1/publish.grpc.pb.h"
#include "spool/v1/queue.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace v1 = spool::v1;

struct Options {
  std::string address = "127.0.0.1:50051";
  std::string topic = "bench";
  std::uint32_t partitions = 1;
  std::size_t record_size = 256;
  std::size_t batch = 100;
  std::size_t inflight = 8;
  std::size_t producers = 1;
  double duration_s = 10;
  // produce: stop after this many acknowledged records, or at --duration (0: time only).
  std::uint64_t max_records = 0;
  bool unary = false;
  bool stream = false;  // latency: on a PublishStream
  double rate = 10'000;
  std::size_t consumers = 3;
  std::size_t messages = 100'000;
  // queue-cycle: a FIFO queue with messages spread over this many groups (0: standard).
  std::size_t groups = 0;
  // queue-cycle and queue-latency --stream: max_outstanding_messages of each StreamingReceive.
  std::size_t outstanding = 1000;
  // read: records per Fetch.
  std::uint32_t fetch_records = 1000;
};

// The q-quantile of sorted samples (0 when there are none).
double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  return sorted[std::min(sorted.size() - 1, static_cast<std::size_t>(q * sorted.size()))];
}

// `seconds` after `from`.
Clock::time_point After(Clock::time_point from, double seconds) {
  return from + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// A channel of its own for worker `id`, as separate client processes would have: channels
// with equal arguments share one connection.
std::shared_ptr<grpc::Channel> OwnChannel(const std::string& address, std::size_t id) {
  grpc::ChannelArguments args;
  args.SetInt("grpc.channel_id", static_cast<int>(id));
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

bool EnsureTopic(const std::shared_ptr<grpc::Channel>& channel, const Options& o) {
  auto admin = v1::AdminService::NewStub(channel);
  v1::CreateTopicRequest request;
  request.mutable_config()->set_name(o.topic);
  request.mutable_config()->set_partitions(o.partitions);
  v1::CreateTopicResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  grpc::Status s = admin->CreateTopic(&context, request, &response);
  if (s.ok() || s.error_code() == grpc::StatusCode::ALREADY_EXISTS) return true;
  std::fprintf(stderr, "cannot create topic %s: %s\n", o.topic.c_str(), s.error_message().c_str());
  return false;
}

v1::PublishRequest MakeBatch(const Options& o, std::mt19937_64& rng) {
  v1::PublishRequest request;
  request.set_topic(o.topic);
  for (std::size_t i = 0; i < o.batch; ++i) {
    std::string value(o.record_size, '\0');
    for (char& c : value)
      c = static_cast<char>(rng());
    request.add_records()->set_value(std::move(value));
  }
  return request;
}

// One producer on a PublishStream: a writer keeps `inflight` batches outstanding, the
// reader counts acknowledged records.
std::uint64_t ProduceOnStream(const std::shared_ptr<grpc::Channel>& channel, const Options& o,
                              Clock::time_point end, std::uint64_t limit = UINT64_MAX) {
  auto stub = v1::PublishService::NewStub(channel);
  grpc::ClientContext context;
  auto stream = stub->PublishStream(&context);
  std::mutex mu;
  std::condition_variable cv;
  std::size_t outstanding = 0;
  std::uint64_t acked = 0;
  bool reader_done = false;
  std::atomic<bool> failed{false};
  std::thread reader([&] {
    v1::PublishStreamResponse response;
    while (stream->Read(&response)) {
      std::lock_guard lock(mu);
      if (response.has_error()) {
        failed = true;
        std::fprintf(stderr, "batch failed: %s\n", response.error().message().c_str());
      } else {
        acked += response.response().results_size();
      }
      // The writer only ever waits for a full window to open.
      if (outstanding-- == o.inflight) cv.notify_one();
    }
    // The stream ended (spoold gone, or the call failed): a writer waiting for room would
    // otherwise wait forever.
    std::lock_guard lock(mu);
    reader_done = true;
    cv.notify_one();
  });
  std::mt19937_64 rng(std::random_device{}());
  const v1::PublishRequest batch = MakeBatch(o, rng);
  std::uint64_t sequence = 0;
  while (Clock::now() < end && !failed && sequence * o.batch < limit) {
    bool more = false;
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return reader_done || outstanding < o.inflight; });
      if (reader_done) break;
      more = ++outstanding < o.inflight;
    }
    v1::PublishStreamRequest request;
    request.set_sequence(sequence++);
    *request.mutable_batch() = batch;
    // While the window has room the next batch follows at once, so gRPC may send this one
    // with it, as a pipelining client of any broker does; the batch that fills the window
    // goes without the hint, which sends everything held. WritesDone sends the rest.
    const auto options = more ? grpc::WriteOptions().set_buffer_hint() : grpc::WriteOptions();
    if (!stream->Write(request, options)) break;
  }
  stream->WritesDone();
  reader.join();
  grpc::Status s = stream->Finish();
  if (!s.ok()) std::fprintf(stderr, "stream ended: %s\n", s.error_message().c_str());
  return acked;
}

// One producer with unary calls, `inflight` of them outstanding. One thread starts the calls
// and reaps their completions from a completion queue, starting the next call right away:
// no thread is woken per call to hand work to another, so the client costs little next to
// the server it measures.
std::uint64_t ProduceUnary(const std::shared_ptr<grpc::Channel>& channel, const Options& o,
                           Clock::time_point end, std::uint64_t limit) {
  auto stub = v1::PublishService::NewStub(channel);
  std::mt19937_64 rng(std::random_device{}());
  const v1::PublishRequest batch = MakeBatch(o, rng);
  struct Call {
    grpc::ClientContext context;
    v1::PublishResponse response;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<v1::PublishResponse>> rpc;
  };
  grpc::CompletionQueue cq;
  auto start = [&] {
    auto* call = new Call;
    call->rpc = stub->AsyncPublish(&call->context, batch, &cq);
    call->rpc->Finish(&call->response, &call->status, call);
  };
  // Calls are started while fewer than `limit` records are asked for.
  std::uint64_t asked = 0;
  std::size_t outstanding = 0;
  for (; outstanding < o.inflight && asked < limit; ++outstanding, asked += o.batch)
    start();
  std::uint64_t acked = 0;
  std::uint64_t failed = 0;
  void* tag = nullptr;
  bool ok = false;
  while (outstanding > 0 && cq.Next(&tag, &ok)) {
    std::unique_ptr<Call> call(static_cast<Call*>(tag));
    if (ok && call->status.ok()) {
      acked += call->response.results_size();
    } else if (failed++ == 0) {
      std::fprintf(stderr, "publish failed: %s\n", call->status.error_message().c_str());
    }
    if (Clock::now() < end && asked < limit) {
      start();
      asked += o.batch;
    } else {
      --outstanding;
    }
  }
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return acked;
}

int RunProduce(const Options& o) {
  auto channel = grpc::CreateChannel(o.address, grpc::InsecureChannelCredentials());
  if (!EnsureTopic(channel, o)) return 1;
  const auto start = Clock::now();
  const auto end = After(start, o.duration_s);
  std::vector<std::thread> threads;
  std::atomic<std::uint64_t> total{0};
  for (std::size_t p = 0; p < o.producers; ++p) {
    // The count bound is shared out: the first producers take one more of the remainder.
    const std::uint64_t limit =
        o.max_records == 0 ? UINT64_MAX
                           : o.max_records / o.producers + (p < o.max_records % o.producers);
    threads.emplace_back([&, p, limit] {
      // A channel per producer, as separate client processes would have.
      auto own = OwnChannel(o.address, p);
      total += o.unary ? ProduceUnary(own, o, end, limit) : ProduceOnStream(own, o, end, limit);
    });
  }
  for (auto& t : threads)
    t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const double rate = static_cast<double>(total) / seconds;
  std::printf(
      "produce %s: record %zu B, batch %zu, in flight %zu, producers %zu: %llu records in "
      "%.1f s = %.0f msgs/s, %.1f MB/s\n",
      o.unary ? "unary" : "stream", o.record_size, o.batch, o.inflight, o.producers,
      static_cast<unsigned long long>(total.load()), seconds, rate,
      rate * static_cast<double>(o.record_size) / 1e6);
  return total > 0 ? 0 : 1;
}

// Each of the `expected` records (the i-th due `interval` * i after `base`) still missing from
// `latencies_us` counts at the time it has waited so far, a lower bound: dropping them would
// report a saturated broker's latency from the lucky few. They are given the latest due times,
// which keeps every figure a lower bound even when records land out of order. Then sorts the
// samples for Percentile, and returns how many records arrived.
std::size_t CountMissingAndSort(std::vector<double>& latencies_us, std::uint64_t expected,
                                Clock::time_point base, std::chrono::duration<double> interval) {
  const std::size_t received = latencies_us.size();
  if (received < expected) {
    std::fprintf(stderr, "latency: received %zu of %llu records; the figures are lower bounds\n",
                 received, static_cast<unsigned long long>(expected));
    const auto now = Clock::now();
    for (std::uint64_t i = received; i < expected; ++i) {
      const auto due = base + std::chrono::duration_cast<Clock::duration>(interval * i);
      latencies_us.push_back(std::chrono::duration<double, std::micro>(now - due).count());
    }
  }
  std::sort(latencies_us.begin(), latencies_us.end());
  return received;
}

// The i-th record of a latency run: it waits until it is due (`interval` * i after `base`)
// and carries that due time in its first 8 bytes, not the moment it went out, so a publisher
// that falls behind (a slow answer, a full stream) counts the delay as latency, as the peer
// clients in bench/peers do.
v1::PublishRequest ScheduledRecord(const std::string& topic, std::size_t size, std::uint64_t i,
                                   Clock::time_point base, std::chrono::duration<double> interval) {
  const auto due = std::chrono::duration_cast<Clock::duration>(interval * i);
  std::this_thread::sleep_until(base + due);
  v1::PublishRequest request;
  request.set_topic(topic);
  std::string value(std::max<std::size_t>(size, 8), '\0');
  const std::int64_t sent_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(due).count();
  std::memcpy(value.data(), &sent_ns, sizeof sent_ns);
  request.add_records()->set_value(std::move(value));
  return request;
}

// Publishes `expected` scheduled records to `topic`, each its own request on one
// PublishStream, answered one by one: pipelined like a Redis client's XADDs on one
// connection, not batched. A publisher a second behind the end of the schedule stops (the
// missing records then count as CountMissingAndSort says), as the peer clients do.
void PublishOnSchedule(v1::PublishService::Stub& stub, const std::string& topic, const Options& o,
                       std::uint64_t expected, Clock::time_point base,
                       std::chrono::duration<double> interval) {
  const auto give_up = After(base, static_cast<double>(expected) / o.rate + 1);
  grpc::ClientContext context;
  auto stream = stub.PublishStream(&context);
  std::thread answers([&] {
    v1::PublishStreamResponse response;
    while (stream->Read(&response)) {
      if (response.has_error()) {
        std::fprintf(stderr, "publish failed: %s\n", response.error().message().c_str());
      }
    }
  });
  for (std::uint64_t i = 0; i < expected && Clock::now() < give_up; ++i) {
    v1::PublishStreamRequest request;
    request.set_sequence(i);
    *request.mutable_batch() = ScheduledRecord(topic, o.record_size, i, base, interval);
    if (!stream->Write(request)) break;
  }
  stream->WritesDone();
  answers.join();
  if (grpc::Status s = stream->Finish(); !s.ok()) {
    std::fprintf(stderr, "stream ended: %s\n", s.error_message().c_str());
  }
}

int RunLatency(Options o) {
  o.partitions = 1;
  auto channel = grpc::CreateChannel(o.address, grpc::InsecureChannelCredentials());
  if (!EnsureTopic(channel, o)) return 1;
  auto stream_stub = v1::StreamService::NewStub(channel);
  // Start reading at the current end, so earlier runs' records do not count.
  std::uint64_t offset = 0;
  {
    v1::ListOffsetsRequest request;
    request.set_topic(o.topic);
    request.set_spec(v1::OFFSET_SPEC_LATEST);
    v1::ListOffsetsResponse response;
    grpc::ClientContext context;
    if (!stream_stub->ListOffsets(&context, request, &response).ok()) return 1;
    offset = response.offset();
  }
  const auto base = Clock::now();
  const auto duration =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.duration_s));
  const auto expected = static_cast<std::uint64_t>(o.rate * o.duration_s);
  std::vector<double> latencies_us;
  latencies_us.reserve(expected);
  // When the slowest record was sent, to line a stall up with the server's logs.
  double worst_us = -1;
  double worst_sent_s = 0;
  std::thread consumer([&] {
    const auto give_up = base + duration + std::chrono::seconds(10);
    while (latencies_us.size() < expected && Clock::now() < give_up) {
      v1::FetchRequest request;
      request.set_topic(o.topic);
      request.set_offset(offset);
      request.set_max_wait_ms(500);
      v1::FetchResponse response;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      if (!stream_stub->Fetch(&context, request, &response).ok()) continue;
      const auto now = Clock::now();
      for (const auto& r : response.records()) {
        std::int64_t sent_ns = 0;
        std::memcpy(&sent_ns, r.value().data(), sizeof sent_ns);
        latencies_us.push_back(std::chrono::duration<double, std::micro>(
                                   now - (base + std::chrono::nanoseconds(sent_ns)))
                                   .count());
        if (latencies_us.back() > worst_us) {
          worst_us = latencies_us.back();
          worst_sent_s = static_cast<double>(sent_ns) / 1e9;
        }
      }
      offset = response.next_offset();
    }
  });
  auto publish = v1::PublishService::NewStub(channel);
  const auto interval = std::chrono::duration<double>(1.0 / o.rate);
  if (o.stream) {
    PublishOnSchedule(*publish, o.topic, o, expected, base, interval);
    consumer.join();
  } else {
    std::atomic<std::size_t> outstanding{0};
    for (std::uint64_t i = 0; i < expected; ++i) {
      struct Call {
        grpc::ClientContext context;
        v1::PublishRequest request;
        v1::PublishResponse response;
      };
      auto call = std::make_shared<Call>();
      call->request = ScheduledRecord(o.topic, o.record_size, i, base, interval);
      ++outstanding;
      publish->async()->Publish(&call->context, &call->request, &call->response,
                                [call, &outstanding](grpc::Status) { --outstanding; });
    }
    consumer.join();
    while (outstanding > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (latencies_us.empty()) return 1;
  const std::size_t received = CountMissingAndSort(latencies_us, expected, base, interval);
  auto at = [&](double q) { return Percentile(latencies_us, q); };
  std::printf(
      "latency publish->fetch at %.0f msgs/s, record %zu B: %zu samples, p50 %.0f us, p99 %.0f "
      "us, p999 %.0f us, max %.0f us (sent %.2f s after the start)\n",
      o.rate, o.record_size, latencies_us.size(), at(0.5), at(0.99), at(0.999), latencies_us.back(),
      worst_sent_s);
  return received == expected ? 0 : 1;
}

// group: `consumers` members of one group read a topic while a producer writes it at
// `rate` (0: as fast as it goes); reports consumed records/s and produce-to-consume
// latency. Then one member leaves and the time until the others own every partition again
// (the group stable) is measured.
int RunGroup(Options o) {
  spool::ClientOptions client_options;
  client_options.address = o.address;
  spool::Client client(client_options);
  spool::Admin admin(client);
  o.topic += "-group-" + std::to_string(::getpid());
  if (!admin.CreateTopic({o.topic, o.partitions, std::nullopt, std::nullopt, std::nullopt}).ok()) {
    std::fprintf(stderr, "cannot create topic %s\n", o.topic.c_str());
    return 1;
  }
  const std::string group = o.topic;
  std::atomic<bool> stop_consumers{false};
  std::atomic<std::uint64_t> consumed{0};
  std::mutex samples_mu;
  std::vector<double> latencies_us;
  std::vector<std::unique_ptr<spool::Consumer>> consumers;
  for (std::size_t i = 0; i < o.consumers; ++i) {
    spool::ConsumerOptions options;
    options.group = group;
    options.topics = {o.topic};
    options.session_timeout = std::chrono::seconds(10);
    consumers.push_back(std::make_unique<spool::Consumer>(client, options));
  }
  std::vector<std::thread> readers;
  for (auto& consumer : consumers) {
    readers.emplace_back([&, c = consumer.get()] {
      std::vector<double> mine;
      while (!stop_consumers) {
        auto records = c->Poll(std::chrono::milliseconds(100));
        if (!records.ok()) break;
        const auto now = Clock::now().time_since_epoch().count();
        for (const auto& r : *records) {
          std::int64_t sent = 0;
          std::memcpy(&sent, r.record.value().data(), sizeof sent);
          mine.push_back(static_cast<double>(now - sent) / 1e3);
        }
        consumed += records->size();
      }
      std::lock_guard lock(samples_mu);
      latencies_us.insert(latencies_us.end(), mine.begin(), mine.end());
    });
  }
  // Wait until the group owns every partition before producing.
  auto stable = [&](std::size_t members) {
    for (int i = 0; i < 600; ++i) {
      auto d = admin.DescribeGroup(group);
      std::size_t owned = 0;
      if (d.ok()) {
        for (const auto& m : d->members())
          for (const auto& tps : m.assignment())
            owned += static_cast<std::size_t>(tps.partitions_size());
      }
      if (d.ok() && d->state() == v1::GROUP_STATE_STABLE &&
          static_cast<std::size_t>(d->members_size()) == members && owned == o.partitions) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  if (!stable(o.consumers)) {
    std::fprintf(stderr, "the group did not settle\n");
    return 1;
  }
  std::uint64_t produced = 0;
  const auto start = Clock::now();
  {
    spool::Producer producer(client);
    const auto end = After(start, o.duration_s);
    std::string padding(std::max<std::size_t>(o.record_size, 8) - 8, 'x');
    while (Clock::now() < end) {
      spool::ProducerRecord record;
      record.topic = o.topic;
      const std::int64_t now = Clock::now().time_since_epoch().count();
      record.value.assign(reinterpret_cast<const char*>(&now), sizeof now);
      record.value += padding;
      producer.Send(std::move(record), [](const spool::Delivery&) {});
      ++produced;
      if (o.rate > 0) {
        std::this_thread::sleep_until(After(start, static_cast<double>(produced) / o.rate));
      }
    }
    producer.Flush();
  }
  for (int i = 0; i < 3000 && consumed < produced; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const std::uint64_t got = consumed.load();

  // Rebalance: one member leaves; the rest own every partition again.
  const auto leave = Clock::now();
  consumers.back()->Close();
  const bool settled = stable(o.consumers - 1);
  const double rebalance_ms =
      std::chrono::duration<double, std::milli>(Clock::now() - leave).count();
  stop_consumers = true;
  for (auto& t : readers)
    t.join();
  for (auto& c : consumers)
    c->Close();
  admin.DeleteGroup(group);
  admin.DeleteTopic(o.topic);

  std::sort(latencies_us.begin(), latencies_us.end());
  auto at = [&](double q) { return Percentile(latencies_us, q); };
  std::printf(
      "group: %zu consumers, %u partitions, record %zu B, produce rate %s: consumed %llu of %llu "
      "in %.1f s = %.0f records/s; latency p50 %.0f us, p99 %.0f us, p999 %.0f us; rebalance "
      "after a leave %.0f ms%s\n",
      o.consumers, o.partitions, o.record_size,
      o.rate > 0 ? (std::to_string(static_cast<long long>(o.rate)) + "/s").c_str() : "max",
      static_cast<unsigned long long>(got), static_cast<unsigned long long>(produced), seconds,
      static_cast<double>(got) / seconds, at(0.5), at(0.99), at(0.999), rebalance_ms,
      settled ? "" : " (did not settle)");
  return got >= produced && settled ? 0 : 1;
}

// Fills a fresh topic with --messages records (batches of 100, 8 in flight), then reads it
// from the start with Fetch, one reader per partition, and times the read alone.
int RunRead(Options o) {
  auto channel = grpc::CreateChannel(o.address, grpc::InsecureChannelCredentials());
  o.topic += "-read-" + std::to_string(::getpid());
  if (!EnsureTopic(channel, o)) return 1;
  Options fill = o;
  fill.batch = 100;
  fill.inflight = 8;
  const std::uint64_t filled =
      ProduceOnStream(channel, fill, Clock::now() + std::chrono::minutes(10), o.messages);
  std::atomic<std::uint64_t> read{0};
  std::atomic<bool> failed{false};
  const auto start = Clock::now();
  const auto end = After(start, o.duration_s);
  std::vector<std::thread> readers;
  for (std::uint32_t p = 0; p < o.partitions; ++p) {
    readers.emplace_back([&, p] {
      auto own = OwnChannel(o.address, p);
      auto stub = v1::StreamService::NewStub(own);
      v1::FetchRequest request;
      request.set_topic(o.topic);
      request.set_partition(p);
      request.set_max_records(o.fetch_records);
      request.set_max_bytes(64u << 20);
      while (Clock::now() < end) {
        v1::FetchResponse response;
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
        grpc::Status s = stub->Fetch(&context, request, &response);
        if (!s.ok()) {
          std::fprintf(stderr, "fetch failed: %s\n", s.error_message().c_str());
          failed = true;
          return;
        }
        if (response.records_size() == 0) return;  // the end: nothing is produced meanwhile
        read += static_cast<std::uint64_t>(response.records_size());
        request.set_offset(response.next_offset());
      }
    });
  }
  for (auto& t : readers)
    t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf(
      "read (Fetch of a filled topic): record %zu B, %u partitions, %u per fetch: %llu of %llu "
      "in %.2f s = %.0f msgs/s, %.1f MB/s\n",
      o.record_size, o.partitions, o.fetch_records, static_cast<unsigned long long>(read.load()),
      static_cast<unsigned long long>(filled), seconds, static_cast<double>(read) / seconds,
      static_cast<double>(read) * static_cast<double>(o.record_size) / seconds / 1e6);
  spool::ClientOptions client_options;
  client_options.address = o.address;
  spool::Client client(client_options);
  spool::Admin(client).DeleteTopic(o.topic);
  return !failed && read.load() == filled && filled > 0 ? 0 : 1;
}

// ---- queues -----------------------------------------------------------------------------

std::unique_ptr<grpc::ClientContext> QueueContext(std::chrono::seconds timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + timeout);
  return context;
}

// A fresh queue per run, so earlier runs' messages do not count.
std::string NewQueue(v1::QueueService::Stub& stub, const Options& o, const std::string& kind) {
  const std::string name =
      o.topic + "-" + kind + "-" + std::to_string(::getpid()) + (o.groups > 0 ? ".fifo" : "");
  v1::CreateQueueRequest request;
  request.set_name(name);
  request.mutable_attributes()->set_partitions(o.partitions);
  if (o.groups > 0) request.mutable_attributes()->set_fifo(true);
  v1::CreateQueueResponse response;
  grpc::Status s =
      stub.CreateQueue(QueueContext(std::chrono::seconds(20)).get(), request, &response);
  if (!s.ok()) {
    std::fprintf(stderr, "cannot create queue %s: %s\n", name.c_str(), s.error_message().c_str());
    return "";
  }
  return name;
}

void DeleteQueue(v1::QueueService::Stub& stub, const std::string& name) {
  v1::DeleteQueueRequest request;
  request.set_queue(name);
  v1::DeleteQueueResponse response;
  stub.DeleteQueue(QueueContext(std::chrono::seconds(60)).get(), request, &response);
}

// Sends batches of `o.batch` from `threads` threads until `end` or `limit` messages.
std::uint64_t SendFor(const std::shared_ptr<grpc::Channel>& channel, const Options& o,
                      const std::string& queue, std::size_t threads, Clock::time_point end,
                      std::uint64_t limit) {
  std::atomic<std::uint64_t> sent{0};
  std::vector<std::thread> senders;
  for (std::size_t t = 0; t < threads; ++t) {
    senders.emplace_back([&, t] {
      auto stub = v1::QueueService::NewStub(channel);
      std::uint64_t n = 0;  // FIFO: this sender's messages, for unique deduplication ids
      v1::SendMessageBatchRequest request;
      request.set_queue(queue);
      for (std::size_t i = 0; i < o.batch; ++i) {
        auto* entry = request.add_entries();
        entry->set_id(std::to_string(i));
        entry->set_body(std::string(o.record_size, 'q'));
      }
      while (Clock::now() < end && sent.load() < limit) {
        if (o.groups > 0) {
          // Each batch spreads over the groups, so every group fills at the same pace.
          for (auto& entry : *request.mutable_entries()) {
            entry.set_message_group_id("g" + std::to_string(n % o.groups));
            entry.set_deduplication_id(std::to_string(t) + "-" + std::to_string(n));
            ++n;
          }
        }
        v1::SendMessageBatchResponse response;
        grpc::Status s = stub->SendMessageBatch(QueueContext(std::chrono::seconds(30)).get(),
                                                request, &response);
        if (!s.ok()) {
          std::fprintf(stderr, "send failed: %s\n", s.error_message().c_str());
          return;
        }
        sent += static_cast<std::uint64_t>(response.results_size());
      }
    });
  }
  for (auto& t : senders)
    t.join();
  return sent.load();
}

int RunQueueSend(const Options& o) {
  auto channel = grpc::CreateChannel(o.address, grpc::InsecureChannelCredentials());
  auto stub = v1::QueueService::NewStub(channel);
  const std::string queue = NewQueue(*stub, o, "send");
  if (queue.empty()) return 1;
  const auto start = Clock::now();
  const auto end = After(start, o.duration_s);
  const std::uint64_t sent = SendFor(channel, o, queue, o.producers, end, UINT64_MAX);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf(
      "queue send: message %zu B, batch %zu, senders %zu, %u partitions: %llu in %.1f s = %.0f "
      "msgs/s\n",
      o.record_size, o.batch, o.producers, o.partitions, static_cast<unsigned long long>(sent),
      seconds, static_cast<double>(sent) / seconds);
  DeleteQueue(*stub, queue);
  return sent > 0 ? 0 : 1;
}

// One consumer: receive up to `batch`, delete them in one call; `on_deleted` gets each body.
using Messages = google::protobuf::RepeatedPtrField<v1::QueueMessage>;

// `on_received` (optional) sees each answer before its delete.
void ConsumeQueue(const std::shared_ptr<grpc::Channel>& channel, const Options& o,
                  const std::string& queue, const std::atomic<bool>& stop,
                  const std::function<bool(const v1::QueueMessage&)>& on_deleted,
                  std::atomic<std::uint64_t>& deleted,
                  const std::function<void(const Messages&)>& on_received = {}) {
  auto stub = v1::QueueService::NewStub(channel);
  while (!stop) {
    v1::ReceiveMessagesRequest receive;
    receive.set_queue(queue);
    receive.set_max_messages(static_cast<std::uint32_t>(o.batch));
    receive.set_wait_time_seconds(1);
    v1::ReceiveMessagesResponse received;
    if (!stub->ReceiveMessages(QueueContext(std::chrono::seconds(10)).get(), receive, &received)
             .ok() ||
        received.messages_size() == 0) {
      continue;
    }
    if (on_received) on_received(received.messages());
    v1::DeleteMessageBatchRequest del;
    del.set_queue(queue);
    for (int i = 0; i < received.messages_size(); ++i) {
      auto* entry = del.add_entries();
      entry->set_id(std::to_string(i));
      entry->set_receipt_handle(received.messages(i).receipt_handle());
    }
    v1::DeleteMessageBatchResponse response;
    if (!stub->DeleteMessageBatch(QueueContext(std::chrono::seconds(10)).get(), del, &response)
             .ok()) {
      continue;
    }
    for (const auto& m : received.messages())
      if (!on_deleted(m)) return;
    deleted += static_cast<std::uint64_t>(received.messages_size());
  }
}

// One consumer on a StreamingReceive stream of its own channel: the broker pushes up to
// `outstanding` messages; each response's messages go to `on_messages`, then are deleted by
// one request on the same stream. confirmed() counts the deletes the broker confirmed
// durable.
class StreamingConsumer {
 public:
  StreamingConsumer(const std::string& address, std::size_t id, std::string queue,
                    std::uint32_t outstanding, std::function<void(const Messages&)> on_messages)
      : stub_(v1::QueueService::NewStub(OwnChannel(address, id))),
        stream_(stub_->StreamingReceive(&context_)),
        on_messages_(std::move(on_messages)),
        thread_([this, queue = std::move(queue), outstanding] { Run(queue, outstanding); }) {}
  ~StreamingConsumer() { Stop(); }

  bool attached() const { return attached_; }
  std::uint64_t confirmed() const { return confirmed_; }
  // Ends the stream (CANCELLED); deletes not confirmed by then are not counted.
  void Stop() {
    if (!thread_.joinable()) return;
    context_.TryCancel();
    thread_.join();
    stream_->Finish();
  }

 private:
  void Run(const std::string& queue, std::uint32_t outstanding) {
    v1::StreamingReceiveRequest first;
    first.set_queue(queue);
    first.set_max_outstanding_messages(outstanding);
    if (!stream_->Write(first)) return;
    attached_ = true;
    std::map<std::uint64_t, int> unconfirmed;  // request sequence -> its deletes
    std::uint64_t sequence = 0;
    v1::StreamingReceiveResponse response;
    while (stream_->Read(&response)) {
      if (response.has_confirmation()) {
        const auto& c = response.confirmation();
        if (auto it = unconfirmed.find(c.sequence()); it != unconfirmed.end()) {
          confirmed_ += static_cast<std::uint64_t>(it->second - c.failures_size());
          unconfirmed.erase(it);
        }
      }
      if (response.messages_size() == 0) continue;
      on_messages_(response.messages());
      v1::StreamingReceiveRequest acks;
      acks.set_sequence(++sequence);
      for (const auto& m : response.messages())
        acks.add_deletes(m.receipt_handle());
      unconfirmed.emplace(sequence, response.messages_size());
      if (!stream_->Write(acks)) break;
    }
  }

  grpc::ClientContext context_;
  std::unique_ptr<v1::QueueService::Stub> stub_;
  std::unique_ptr<
      grpc::ClientReaderWriter<v1::StreamingReceiveRequest, v1::StreamingReceiveResponse>>
      stream_;
  std::function<void(const Messages&)> on_messages_;
  std::atomic<bool> attached_{false};
  std::atomic<std::uint64_t> confirmed_{0};
  std::thread thread_;  // last: it uses every member above
};

int RunQueueCycle(const Options& o) {
  auto channel = grpc::CreateChannel(o.address, grpc::InsecureChannelCredentials());
  auto stub = v1::QueueService::NewStub(channel);
  const std::string queue = NewQueue(*stub, o, "cycle");
  if (queue.empty()) return 1;
  Options fill = o;
  fill.batch = std::max<std::size_t>(o.batch, 100);
  const std::uint64_t filled =
      SendFor(channel, fill, queue, 4, Clock::now() + std::chrono::minutes(10), o.messages);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> deleted{0};
  // FIFO: a group's next message is delivered only after the previous one was deleted, so
  // checking at receive time sees each group's messages in delivery order.
  std::mutex order_mu;
  std::map<std::string, std::uint64_t> last_sequence;
  std::uint64_t out_of_order = 0;
  auto check_order = [&](const Messages& received) {
    std::lock_guard lock(order_mu);
    for (const auto& m : received) {
      auto [it, fresh] = last_sequence.try_emplace(m.message_group_id(), m.sequence_number());
      if (!fresh) {
        // Equal is the same message again (its delete failed and its lease ran out).
        if (m.sequence_number() < it->second) ++out_of_order;
        it->second = m.sequence_number();
      }
    }
  };
  const auto start = Clock::now();
  const auto end = After(start, o.duration_s);
  const std::function<void(const Messages&)> on_received =
      o.groups > 0 ? std::function<void(const Messages&)>(check_order) : [](const Messages&) {};
  std::vector<std::thread> consumers;
  std::vector<std::unique_ptr<StreamingConsumer>> streams;
  for (std::size_t c = 0; c < o.consumers; ++c) {
    if (o.stream) {
      streams.push_back(std::make_unique<StreamingConsumer>(
          o.address, c, queue, static_cast<std::uint32_t>(o.outstanding), on_received));
      continue;
    }
    consumers.emplace_back([&, c] {
      auto own = OwnChannel(o.address, c);
      ConsumeQueue(
          own, o, queue, stop, [](const v1::QueueMessage&) { return true; }, deleted, on_received);
    });
  }
  auto done_so_far = [&] {
    std::uint64_t n = deleted.load();
    for (const auto& s : streams)
      n += s->confirmed();
    return n;
  };
  while (done_so_far() < filled && Clock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const std::uint64_t done = done_so_far();
  stop = true;
  for (auto& t : consumers)
    t.join();
  for (auto& s : streams)
    s->Stop();
  const std::string kind =
      o.groups > 0 ? "FIFO, " + std::to_string(o.groups) + " groups" : std::string("standard");
  const std::string how =
      o.stream ? "StreamingReceive, " + std::to_string(o.outstanding) + " outstanding"
               : "receive + delete batch of " + std::to_string(o.batch);
  std::printf(
      "queue cycle (%s): %s, message %zu B, consumers %zu, %u partitions: %llu of %llu in %.1f "
      "s = %.0f msgs/s\n",
      how.c_str(), kind.c_str(), o.record_size, o.consumers, o.partitions,
      static_cast<unsigned long long>(done), static_cast<unsigned long long>(filled), seconds,
      static_cast<double>(done) / seconds);
  DeleteQueue(*stub, queue);
  if (out_of_order > 0) {
    std::fprintf(stderr, "FIFO order broken: %llu messages came before an earlier one\n",
                 static_cast<unsigned long long>(out_of_order));
    return 1;
  }
  return done > 0 ? 0 : 1;
}

int RunQueueLatency(const Options& o) {
  auto channel = grpc::CreateChannel(o.address, grpc::InsecureChannelCredentials());
  auto stub = v1::QueueService::NewStub(channel);
  const std::string queue = NewQueue(*stub, o, "latency");
  if (queue.empty()) return 1;
  const auto expected = static_cast<std::uint64_t>(o.rate * o.duration_s);
  // Set once the consumers are polling, so their connecting does not count as latency.
  std::atomic<Clock::rep> base_ticks{0};
  std::mutex mu;
  std::vector<double> latencies_us;
  latencies_us.reserve(expected);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> deleted{0};
  std::vector<std::thread> consumers;
  for (std::size_t c = 0; c < o.consumers; ++c) {
    consumers.emplace_back([&] {
      std::vector<double> mine;
      ConsumeQueue(
          channel, o, queue, stop,
          [&](const v1::QueueMessage& m) {
            std::int64_t sent_ns = 0;
            std::memcpy(&sent_ns, m.body().data(), sizeof sent_ns);
            const Clock::time_point base{Clock::duration(base_ticks.load())};
            mine.push_back(std::chrono::duration<double, std::micro>(
                               Clock::now() - (base + std::chrono::nanoseconds(sent_ns)))
                               .count());
            return true;
          },
          deleted);
      std::lock_guard lock(mu);
      latencies_us.insert(latencies_us.end(), mine.begin(), mine.end());
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const auto base = Clock::now();
  base_ticks = base.time_since_epoch().count();
  std::atomic<std::size_t> outstanding{0};
  const auto interval = std::chrono::duration<double>(1.0 / o.rate);
  for (std::uint64_t i = 0; i < expected; ++i) {
    std::this_thread::sleep_until(base + std::chrono::duration_cast<Clock::duration>(interval * i));
    struct Call {
      grpc::ClientContext context;
      v1::SendMessageRequest request;
      v1::SendMessageResponse response;
    };
    auto call = std::make_shared<Call>();
    call->request.set_queue(queue);
    std::string body(std::max<std::size_t>(o.record_size, 8), '\0');
    const std::int64_t sent_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - base).count();
    std::memcpy(body.data(), &sent_ns, sizeof sent_ns);
    call->request.set_body(std::move(body));
    ++outstanding;
    stub->async()->SendMessage(&call->context, &call->request, &call->response,
                               [call, &outstanding](grpc::Status) { --outstanding; });
  }
  for (int i = 0; i < 1000 && deleted.load() < expected; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  stop = true;
  for (auto& t : consumers)
    t.join();
  while (outstanding > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  DeleteQueue(*stub, queue);
  if (latencies_us.empty()) return 1;
  std::sort(latencies_us.begin(), latencies_us.end());
  auto at = [&](double q) { return Percentile(latencies_us, q); };
  std::printf(
      "queue latency send->deleted at %.0f msgs/s, message %zu B, %zu consumers, batch %zu: %zu "
      "samples, p50 %.0f us, p99 %.0f us, p999 %.0f us, max %.0f us\n",
      o.rate, o.record_size, o.consumers, o.batch, latencies_us.size(), at(0.5), at(0.99),
      at(0.999), latencies_us.back());
  return latencies_us.size() == expected ? 0 : 1;
}

// queue-latency --stream: one PublishStream into the queue's topic (PublishOnSchedule) and
// `consumers` StreamingReceive streams that delete what they get on the same stream. The
// latency is publish (its due time) to delivery, as the peers' queue clients measure it
// (RabbitMQ's basic.consume, beanstalkd's reserve): pushed deliveries and pipelined sends on
// both sides, as those clients have.
int RunQueueLatencyStream(const Options& o) {
  auto channel = grpc::CreateChannel(o.address, grpc::InsecureChannelCredentials());
  auto stub = v1::QueueService::NewStub(channel);
  const std::string queue = NewQueue(*stub, o, "latency");
  if (queue.empty()) return 1;
  const auto expected = static_cast<std::uint64_t>(o.rate * o.duration_s);
  std::atomic<Clock::rep> base_ticks{0};  // set just before the first send
  std::mutex mu;
  std::vector<double> latencies_us;
  latencies_us.reserve(expected);
  std::atomic<std::uint64_t> delivered{0};
  // Timed at delivery, before the delete goes back on the stream.
  auto on_messages = [&](const Messages& messages) {
    const auto now = Clock::now();
    const Clock::time_point base{Clock::duration(base_ticks.load())};
    std::lock_guard lock(mu);
    for (const auto& m : messages) {
      std::int64_t sent_ns = 0;
      std::memcpy(&sent_ns, m.body().data(), std::min(sizeof sent_ns, m.body().size()));
      latencies_us.push_back(std::chrono::duration<double, std::micro>(
                                 now - (base + std::chrono::nanoseconds(sent_ns)))
                                 .count());
    }
    delivered += static_cast<std::uint64_t>(messages.size());
  };
  std::vector<std::unique_ptr<StreamingConsumer>> consumers;
  for (std::size_t c = 0; c < o.consumers; ++c) {
    consumers.push_back(std::make_unique<StreamingConsumer>(
        o.address, c, queue, static_cast<std::uint32_t>(o.outstanding), on_messages));
  }
  // The first request only says the stream is there; give the broker a moment to attach it,
  // so that connecting does not count as latency.
  auto attached = [&] {
    return std::all_of(consumers.begin(), consumers.end(),
                       [](const auto& c) { return c->attached(); });
  };
  for (int i = 0; i < 500 && !attached(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const auto base = Clock::now();
  base_ticks = base.time_since_epoch().count();
  const auto interval = std::chrono::duration<double>(1.0 / o.rate);
  auto publish = v1::PublishService::NewStub(channel);
  PublishOnSchedule(*publish, queue, o, expected, base, interval);
  // Deliveries still on their way get as long as the schedule took (at least 2 s), as the
  // peer clients wait.
  const auto drain_until = After(Clock::now(), std::max(2.0, o.duration_s));
  while (delivered.load() < expected && Clock::now() < drain_until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  for (auto& c : consumers)
    c->Stop();
  DeleteQueue(*stub, queue);
  if (latencies_us.empty()) return 1;
  const std::size_t received = CountMissingAndSort(latencies_us, expected, base, interval);
  auto at = [&](double q) { return Percentile(latencies_us, q); };
  std::printf(
      "queue latency publish->delivery (streams) at %.0f msgs/s, message %zu B, %zu consumers: "
      "%zu samples, p50 %.0f us, p99 %.0f us, p999 %.0f us, max %.0f us\n",
      o.rate, o.record_size, o.consumers, latencies_us.size(), at(0.5), at(0.99), at(0.999),
      latencies_us.back());
  return received == expected ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"spool-bench - load generator for spoold"};
  Options o;
  app.add_option("--address", o.address, "spoold gRPC address")->capture_default_str();
  app.add_option("--topic", o.topic, "Topic (created if missing)")->capture_default_str();
  app.add_option("--record-size", o.record_size, "Record value bytes")->capture_default_str();
  app.add_option("--duration", o.duration_s, "Seconds to run")->capture_default_str();
  auto* produce = app.add_subcommand("produce", "Durable publish throughput");
  produce->add_option("--partitions", o.partitions, "Partitions of a new topic")
      ->capture_default_str();
  produce->add_option("--batch", o.batch, "Records per batch")->capture_default_str();
  produce->add_option("--inflight", o.inflight, "Batches in flight per producer")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}));
  produce->add_option("--producers", o.producers, "Producer threads")->capture_default_str();
  produce->add_flag("--unary", o.unary, "Unary Publish calls instead of a PublishStream");
  produce
      ->add_option("--messages", o.max_records,
                   "Stop after this many records, or at --duration (0: at --duration only)")
      ->capture_default_str();
  auto* latency = app.add_subcommand("latency", "Publish-to-fetch latency at a fixed rate");
  latency->add_option("--rate", o.rate, "Records per second")->capture_default_str();
  latency->add_flag("--stream", o.stream,
                    "Publish each record as its own request on a PublishStream instead of a "
                    "unary call");
  auto* group = app.add_subcommand("group", "Consumer group throughput, latency and rebalance");
  group->add_option("--consumers", o.consumers, "Members of the group")->capture_default_str();
  group->add_option("--partitions", o.partitions, "Partitions of the topic")->capture_default_str();
  group->add_option("--rate", o.rate, "Records per second produced (0: as fast as it goes)");
  auto* queue_send = app.add_subcommand("queue-send", "Durable queue send throughput (batches)");
  auto* queue_cycle =
      app.add_subcommand("queue-cycle", "Queue receive + delete throughput with N consumers");
  auto* queue_latency =
      app.add_subcommand("queue-latency", "Queue send-to-deleted latency at a fixed rate");
  for (auto* sub : {queue_send, queue_cycle, queue_latency}) {
    sub->add_option("--partitions", o.partitions, "Partitions of the queue")->capture_default_str();
    sub->add_option("--batch", o.batch, "Messages per send batch, or per receive")
        ->capture_default_str();
  }
  queue_send->add_option("--producers", o.producers, "Sender threads")->capture_default_str();
  queue_cycle->add_option("--consumers", o.consumers, "Consumer threads")->capture_default_str();
  queue_cycle->add_option("--messages", o.messages, "Messages to fill the queue with")
      ->capture_default_str();
  queue_cycle
      ->add_option("--groups", o.groups,
                   "FIFO queue with messages spread over this many groups (0: standard); "
                   "fails if a group's order is broken")
      ->capture_default_str();
  queue_cycle->add_flag("--stream", o.stream,
                        "Consume on StreamingReceive streams (deletes on the same stream) "
                        "instead of ReceiveMessages + DeleteMessageBatch");
  queue_cycle
      ->add_option("--outstanding", o.outstanding,
                   "--stream: messages each stream may have outstanding (1-120000)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{120'000}));
  queue_latency->add_option("--consumers", o.consumers, "Consumer threads")->capture_default_str();
  queue_latency
      ->add_option("--outstanding", o.outstanding,
                   "--stream: messages each stream may have outstanding (1-120000)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{120'000}));
  queue_latency->add_flag("--stream", o.stream,
                          "Publish on a PublishStream to the queue's topic and receive on "
                          "StreamingReceive streams (latency to delivery), instead of unary "
                          "sends and ReceiveMessages (latency to the delete)");
  auto* read = app.add_subcommand("read", "Sequential Fetch of a topic filled beforehand");
  read->add_option("--partitions", o.partitions, "Partitions (one reader each)")
      ->capture_default_str();
  read->add_option("--messages", o.messages, "Records to fill the topic with")
      ->capture_default_str();
  read->add_option("--fetch-records", o.fetch_records, "Records per Fetch")->capture_default_str();
  queue_latency->add_option("--rate", o.rate, "Messages per second")->capture_default_str();
  spool::bench::SqsWorkloadOptions sqs_options;
  auto* sqs = app.add_subcommand("sqs", "SQS API send, then receive + delete, in batches of 10");
  sqs->add_option("--endpoint", sqs_options.endpoint, "spoold HTTP address host:port")
      ->capture_default_str();
  sqs->add_option("--connections", sqs_options.connections, "HTTP connections (one thread each)")
      ->capture_default_str();
  sqs->add_option("--queue", sqs_options.queue, "Queue (created if missing, deleted after)")
      ->capture_default_str();
  app.require_subcommand(1);
  CLI11_PARSE(app, argc, argv);
  if (sqs->parsed()) {
    sqs_options.message_size = o.record_size;
    sqs_options.duration_s = o.duration_s;
    return spool::bench::RunSqsWorkload(sqs_options);
  }
  if (group->parsed()) return RunGroup(o);
  if (read->parsed()) return RunRead(o);
  if (queue_send->parsed()) return RunQueueSend(o);
  if (queue_cycle->parsed()) return RunQueueCycle(o);
  if (queue_latency->parsed()) return o.stream ? RunQueueLatencyStream(o) : RunQueueLatency(o);
  return produce->parsed() ? RunProduce(o) : RunLatency(o);
}
