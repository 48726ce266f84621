#include "protocol/grpc_services.h"

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <functional>
#include <mutex>
#include <set>

#include <fmt/format.h>

#include "protocol/convert.h"
#include "protocol/queue_convert.h"
#include "protocol/queue_stream.h"
#include "protocol/status_mapping.h"

namespace spool::protocol {
namespace {

constexpr std::uint32_t kDefaultFetchRecords = 500;
constexpr std::uint32_t kMaxFetchRecords = 100'000;
constexpr std::uint64_t kDefaultFetchBytes = 1 << 20;
constexpr std::uint64_t kMaxFetchBytes = 64 << 20;
constexpr std::int64_t kMaxFetchWaitMs = 60'000;
constexpr std::uint32_t kDefaultPageSize = 100;
constexpr std::uint32_t kMaxPageSize = 1000;

// A unary reactor that counts itself in `calls` from creation until gRPC is done with it,
// and records how long that took under its method's name.
class CountedUnaryReactor final : public grpc::ServerUnaryReactor {
 public:
  CountedUnaryReactor(CallCounter& calls, std::string_view method)
      : calls_(calls), latency_(calls.Latency(method)), start_(std::chrono::steady_clock::now()) {
    calls_.Enter();
  }
  void OnDone() override {
    if (latency_ != nullptr) {
      latency_->Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
    }
    calls_.Leave();
    delete this;
  }
  // OnDone above is short and never blocks, so gRPC may run it on the thread that ends the
  // call instead of waking its executor thread for it: one thread hand-off fewer per call.
  // (gRPC marks this hook as not API; its own default reactor uses it the same way.)
  bool InternalInlineable() override { return true; }

 private:
  CallCounter& calls_;
  Histogram* latency_;
  std::chrono::steady_clock::time_point start_;
};

grpc::ServerUnaryReactor* FinishWith(CallCounter& calls, std::string_view method,
                                     grpc::Status status) {
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls, method);
  reactor->Finish(std::move(status));
  return reactor;
}

// A broker callback that finishes `reactor` with its status.
std::function<void(Status)> FinishOnStatus(grpc::ServerUnaryReactor* reactor) {
  return [reactor](Status s) { reactor->Finish(s ? grpc::Status::OK : ToGrpcStatus(s.error())); };
}

grpc::Status ShuttingDownStatus() {
  return ToGrpcStatus(Unavailable("spoold is shutting down"));
}

grpc::Status InvalidArgumentStatus(std::string message) {
  return ToGrpcStatus(InvalidArgument(std::move(message)));
}

// Listings page by name: the token is the last name of the previous page, so it must
// belong to the same prefix.
std::optional<grpc::Status> CheckPageToken(const std::string& prefix, const std::string& token) {
  if (token.empty()) return std::nullopt;
  if (token.rfind(prefix, 0) != 0) {
    return InvalidArgumentStatus("page_token does not belong to a listing of prefix '" + prefix +
                                 "'");
  }
  // A token is the last name of the page before (topic, group and queue names are all
  // valid topic names): anything else was never handed out.
  if (!broker::ValidateTopicName(token)) {
    return InvalidArgumentStatus("page_token '" + token + "' was not handed out by this listing");
  }
  return std::nullopt;
}

std::uint32_t PageSize(std::uint32_t requested) {
  return std::min(requested == 0 ? kDefaultPageSize : requested, kMaxPageSize);
}

// Converts a publish request's records. gRPC owns `request` until the call finishes and
// never reads it again, so the payloads are moved out rather than copied.
Result<std::vector<storage::Record>> RecordsFromRequest(const v1::PublishRequest& request,
                                                        std::int64_t now_ms) {
  auto& mutable_request = const_cast<v1::PublishRequest&>(request);
  std::vector<storage::Record> records;
  records.reserve(request.records_size());
  for (int i = 0; i < mutable_request.records_size(); ++i) {
    auto record = RecordFromProto(*mutable_request.mutable_records(i), i, now_ms);
    if (!record) return record.error();
    records.push_back(std::move(*record));
  }
  return records;
}

void FillPublishResponse(const std::vector<broker::ProducedRecord>& produced,
                         v1::PublishResponse* response) {
  response->mutable_results()->Reserve(static_cast<int>(produced.size()));
  for (const broker::ProducedRecord& p : produced) {
    v1::PublishResult* result = response->add_results();
    result->set_partition(p.partition);
    result->set_offset(p.offset);
    result->set_duplicate(p.duplicate);
  }
}

std::optional<std::uint32_t> PartitionOf(const v1::PublishRequest& request) {
  if (!request.has_partition()) return std::nullopt;
  return request.partition();
}

// One PublishStream: reads batches, keeps up to `window.batches` of them between "read" and
// "answer written" (and stops reading once their requests hold `window.bytes`; one batch
// is always taken), and writes each result, tagged with its sequence number, as soon as it
// is durable. Counting until the answer is written (not just until the broker is done) means
// a client that stops reading its answers stops being read, so memory stays bounded. An
// answer written with the buffer hint counts as written once gRPC holds it; the last of a
// run goes without the hint and waits for the transport, so that bound still holds. Results
// of different batches may overtake each other; those of one partition cannot, since the
// broker appends a partition's batches in arrival order.
//
// For shutdown, each batch (not the stream) is a call in flight, from read until its answer
// is written: the server waits for those, then cancels the streams, so a producer idling on
// a stream does not hold shutdown for the whole grace period. A batch read once draining has
// begun is answered UNAVAILABLE, which tells the producer to resend it to the next server.
//
// Broker callbacks arrive on other threads than gRPC's reactions, so every decision is made
// under mu_ and carried out after it is released, with Finish() last: once it is called
// gRPC may destroy the reactor at any moment.
class PublishStreamReactor final
    : public grpc::ServerBidiReactor<v1::PublishStreamRequest, v1::PublishStreamResponse> {
 public:
  PublishStreamReactor(broker::Broker& broker, PublishStreamWindow window, CallCounter& calls)
      : broker_(broker), window_(window), calls_(calls), latency_(calls.Latency("PublishStream")) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    Actions next;
    if (!ok) {
      {
        std::lock_guard lock(mu_);
        reading_done_ = true;
        next = NextLocked();
      }
      return Run(next);
    }
    v1::PublishStreamRequest request = std::move(request_);
    const std::size_t bytes = request.ByteSizeLong();
    calls_.Enter();  // until its answer is written or dropped
    {
      std::lock_guard lock(mu_);
      ++in_flight_;
      in_flight_bytes_ += bytes;
    }
    // Submitted before reading may resume: while paused_ is false no other thread starts a
    // read, so the next batch cannot reach the broker first (an answer written on another
    // thread would otherwise resume reading, and a partition's batches would be appended
    // out of order).
    Submit(std::move(request), bytes);
    {
      std::lock_guard lock(mu_);
      paused_ = true;  // NextLocked resumes reading while the window has room
      next = NextLocked();
    }
    Run(next);
  }

  void OnWriteDone(bool ok) override {
    Actions next;
    std::size_t settled = 1;
    std::chrono::steady_clock::time_point read_at;
    {
      std::lock_guard lock(mu_);
      writing_ = false;
      read_at = responses_.front().read_at;
      in_flight_bytes_ -= responses_.front().request_bytes;
      responses_.pop_front();
      --in_flight_;
      if (!ok) {
        // The client is gone: drop what it will never read.
        broken_ = true;
        for (const Answer& answer : responses_)
          in_flight_bytes_ -= answer.request_bytes;
        in_flight_ -= responses_.size();
        settled += responses_.size();
        responses_.clear();
      }
      next = NextLocked();
    }
    if (ok && latency_ != nullptr) {
      latency_->Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - read_at).count());
    }
    for (std::size_t i = 0; i < settled; ++i)
      calls_.Leave();
    Run(next);
  }

  void OnDone() override { delete this; }

 private:
  // An answer waiting to be written, with the size of the request it answers, which the
  // window counts until the answer is written, and when that request was read.
  struct Answer {
    v1::PublishStreamResponse response;
    std::size_t request_bytes;
    std::chrono::steady_clock::time_point read_at;
  };
  struct Actions {
    const v1::PublishStreamResponse* write = nullptr;
    bool more = false;  // answers are queued behind `write`
    bool read = false;
    bool finish = false;
  };

  void Submit(v1::PublishStreamRequest request, std::size_t bytes) {
    const std::uint64_t sequence = request.sequence();
    const auto read_at = std::chrono::steady_clock::now();
    // Read after shutdown began: refuse it so the producer resends it to the next server.
    if (calls_.draining()) {
      return Complete(sequence, Unavailable("spoold is shutting down"), bytes, read_at);
    }
    auto records = RecordsFromRequest(request.batch(), broker_.clock().WallMillis());
    if (!records) return Complete(sequence, records.error(), bytes, read_at);
    broker_.Produce(
        request.batch().topic(), PartitionOf(request.batch()), std::move(*records),
        [this, sequence, bytes, read_at](Result<std::vector<broker::ProducedRecord>> produced) {
          if (!produced) return Complete(sequence, produced.error(), bytes, read_at);
          v1::PublishStreamResponse response;
          response.set_sequence(sequence);
          FillPublishResponse(*produced, response.mutable_response());
          Complete({std::move(response), bytes, read_at});
        });
  }

  void Complete(std::uint64_t sequence, const Error& error, std::size_t bytes,
                std::chrono::steady_clock::time_point read_at) {
    v1::PublishStreamResponse response;
    response.set_sequence(sequence);
    ToProtoError(error, response.mutable_error());
    Complete({std::move(response), bytes, read_at});
  }

  void Complete(Answer answer) {
    Actions next;
    bool dropped = false;
    {
      std::lock_guard lock(mu_);
      if (broken_) {
        --in_flight_;
        in_flight_bytes_ -= answer.request_bytes;
        dropped = true;
      } else {
        responses_.push_back(std::move(answer));
      }
      next = NextLocked();
    }
    if (dropped) calls_.Leave();
    Run(next);
  }

  Actions NextLocked() {
    Actions next;
    if (!writing_ && !broken_ && !responses_.empty()) {
      writing_ = true;
      next.write = &responses_.front().response;  // deque elements stay put until popped
      next.more = responses_.size() > 1;
    }
    if (paused_ && !reading_done_ && window_.HasRoom(in_flight_, in_flight_bytes_)) {
      paused_ = false;
      next.read = true;
    }
    if (!finished_ && reading_done_ && in_flight_ == 0 && !writing_) {
      finished_ = true;
      next.finish = true;
    }
    return next;
  }

  void Run(const Actions& next) {
    if (next.write != nullptr) {
      // With more answers queued, the next write follows as soon as this one is done, so
      // gRPC may hold this one back and send both in one frame: one syscall and one wake-up
      // of the client's reader for a run of answers, not one per answer. The last of a run
      // goes without the hint, which sends everything held.
      StartWrite(next.write,
                 next.more ? grpc::WriteOptions().set_buffer_hint() : grpc::WriteOptions());
    }
    if (next.read) StartRead(&request_);
    if (next.finish) Finish(grpc::Status::OK);  // last: `this` may be gone after it
  }

  broker::Broker& broker_;
  const PublishStreamWindow window_;
  CallCounter& calls_;
  Histogram* latency_;                // each batch, from its read to its answer written
  v1::PublishStreamRequest request_;  // the read in progress
  std::mutex mu_;
  // Answers not yet written; the front one is being written while writing_.
  std::deque<Answer> responses_;     // guarded by mu_
  std::size_t in_flight_ = 0;        // guarded by mu_: read, answer not yet written or dropped
  std::size_t in_flight_bytes_ = 0;  // guarded by mu_: the requests of those
  bool paused_ = false;              // guarded by mu_: no read outstanding
  bool reading_done_ = false;        // guarded by mu_
  bool writing_ = false;             // guarded by mu_
  bool broken_ = false;              // guarded by mu_
  bool finished_ = false;            // guarded by mu_
};

}  // namespace

CallCounter::CallCounter() {
  for (const char* method : {"CreateTopic",
                             "GetTopic",
                             "ListTopics",
                             "UpdateTopic",
                             "DeleteTopic",
                             "GetBrokerInfo",
                             "Publish",
                             "PublishStream",
                             "Fetch",
                             "ListOffsets",
                             "Heartbeat",
                             "LeaveGroup",
                             "CommitOffsets",
                             "FetchOffsets",
                             "ListGroups",
                             "DescribeGroup",
                             "DeleteGroup",
                             "ResetOffsets",
                             "CreateQueue",
                             "GetQueueAttributes",
                             "ListQueues",
                             "DeleteQueue",
                             "PurgeQueue",
                             "SendMessage",
                             "SendMessageBatch",
                             "ReceiveMessages",
                             "DeleteMessage",
                             "DeleteMessageBatch",
                             "ChangeMessageVisibility",
                             "ChangeMessageVisibilityBatch",
                             "NackMessage",
                             "SetQueueAttributes",
                             "ListDeadLetterSourceQueues",
                             "StartRedrive",
                             "ListRedriveTasks",
                             "CancelRedrive"}) {
    latency_.emplace(method, std::make_unique<Histogram>(Histogram::LatencyBounds()));
  }
}

Histogram* CallCounter::Latency(std::string_view method) {
  auto it = latency_.find(method);
  return it == latency_.end() ? nullptr : it->second.get();
}

void CallCounter::Render(MetricsWriter& out) const {
  out.Family("spool_grpc_request_duration_seconds", "histogram",
             "Time from the start of a unary gRPC call to its completion, by method; for "
             "PublishStream, from the read of each batch to its answer written.");
  for (const auto& [method, histogram] : latency_) {
    out.HistogramSamples("spool_grpc_request_duration_seconds", {{"method", method}}, *histogram);
  }
}

void CallCounter::Enter() {
  std::lock_guard lock(mu_);
  ++calls_;
}

void CallCounter::Leave() {
  std::lock_guard lock(mu_);
  if (--calls_ == 0) idle_.notify_all();
}

void CallCounter::Drain() {
  draining_.store(true);
}

bool CallCounter::WaitIdle(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  return idle_.wait_until(lock, deadline, [&] { return calls_ == 0; });
}

// ---- AdminService -----------------------------------------------------------------------

grpc::ServerUnaryReactor* AdminServiceImpl::CreateTopic(grpc::CallbackServerContext* /*context*/,
                                                        const v1::CreateTopicRequest* request,
                                                        v1::CreateTopicResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  broker_.CreateTopic(TopicConfigFromProto(request->config()),
                      [reactor, response](Result<broker::TopicInfo> info) {
                        if (!info) return reactor->Finish(ToGrpcStatus(info.error()));
                        TopicToProto(*info, response->mutable_topic());
                        reactor->Finish(grpc::Status::OK);
                      });
  return reactor;
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetTopic(grpc::CallbackServerContext* /*context*/,
                                                     const v1::GetTopicRequest* request,
                                                     v1::GetTopicResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  auto info = broker_.DescribeTopic(request->name());
  if (!info) return FinishWith(calls_, __func__, ToGrpcStatus(info.error()));
  TopicToProto(*info, response->mutable_topic());
  return FinishWith(calls_, __func__, grpc::Status::OK);
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListTopics(grpc::CallbackServerContext* /*context*/,
                                                       const v1::ListTopicsRequest* request,
                                                       v1::ListTopicsResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  const std::string& prefix = request->prefix();
  const std::string& token = request->page_token();
  if (auto bad = CheckPageToken(prefix, token)) return FinishWith(calls_, __func__, *bad);
  const std::uint32_t page_size = PageSize(request->page_size());
  for (const broker::TopicMetadata& topic : broker_.ListTopics()) {
    const std::string& name = topic.config.name;
    if (name.rfind(prefix, 0) != 0 || (!token.empty() && name <= token)) continue;
    if (response->topics_size() == static_cast<int>(page_size)) {
      response->set_next_page_token(response->topics(response->topics_size() - 1).name());
      break;
    }
    TopicConfigToProto(topic.config, response->add_topics());
  }
  return FinishWith(calls_, __func__, grpc::Status::OK);
}

grpc::ServerUnaryReactor* AdminServiceImpl::UpdateTopic(grpc::CallbackServerContext* /*context*/,
                                                        const v1::UpdateTopicRequest* request,
                                                        v1::UpdateTopicResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  broker::TopicUpdate update;
  if (request->has_partitions()) update.partitions = request->partitions();
  if (request->has_retention_ms()) update.retention_ms = request->retention_ms();
  if (request->has_retention_bytes()) update.retention_bytes = request->retention_bytes();
  if (request->has_max_message_bytes()) update.max_message_bytes = request->max_message_bytes();
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  broker_.UpdateTopic(request->name(), update, [reactor, response](Result<broker::TopicInfo> info) {
    if (!info) return reactor->Finish(ToGrpcStatus(info.error()));
    TopicToProto(*info, response->mutable_topic());
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* AdminServiceImpl::DeleteTopic(grpc::CallbackServerContext* /*context*/,
                                                        const v1::DeleteTopicRequest* request,
                                                        v1::DeleteTopicResponse* /*response*/) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  broker_.DeleteTopic(request->name(), request->force(), FinishOnStatus(reactor));
  return reactor;
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetBrokerInfo(
    grpc::CallbackServerContext* /*context*/, const v1::GetBrokerInfoRequest* /*request*/,
    v1::GetBrokerInfoResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  response->set_version(info_.version);
  response->set_started_ms(info_.started_ms);
  response->set_now_ms(broker_.clock().WallMillis());
  response->set_fsync_mode(info_.fsync_always ? v1::FSYNC_MODE_ALWAYS : v1::FSYNC_MODE_INTERVAL);
  response->set_fsync_interval_ms(info_.fsync_interval_ms);
  response->set_max_batch_records(static_cast<std::uint32_t>(info_.max_batch_records));
  response->set_max_batch_bytes(info_.max_batch_bytes);
  response->set_max_grpc_message_bytes(info_.max_grpc_message_bytes);
  response->set_max_queue_batch(static_cast<std::uint32_t>(broker_.max_queue_batch()));
  response->set_topic_count(static_cast<std::uint32_t>(broker_.ListTopics().size()));
  response->set_queue_count(
      static_cast<std::uint32_t>(broker_.ListQueues("", "", SIZE_MAX).size()));
  response->set_group_count(
      static_cast<std::uint32_t>(broker_.ListGroups("", "", SIZE_MAX).size()));
  return FinishWith(calls_, __func__, grpc::Status::OK);
}

// ---- PublishService ---------------------------------------------------------------------

grpc::ServerUnaryReactor* PublishServiceImpl::Publish(grpc::CallbackServerContext* /*context*/,
                                                      const v1::PublishRequest* request,
                                                      v1::PublishResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  auto records = RecordsFromRequest(*request, broker_.clock().WallMillis());
  if (!records) return FinishWith(calls_, __func__, ToGrpcStatus(records.error()));
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  broker_.Produce(request->topic(), PartitionOf(*request), std::move(*records),
                  [reactor, response](Result<std::vector<broker::ProducedRecord>> produced) {
                    if (!produced) return reactor->Finish(ToGrpcStatus(produced.error()));
                    FillPublishResponse(*produced, response);
                    reactor->Finish(grpc::Status::OK);
                  });
  return reactor;
}

grpc::ServerBidiReactor<v1::PublishStreamRequest, v1::PublishStreamResponse>*
PublishServiceImpl::PublishStream(grpc::CallbackServerContext* /*context*/) {
  if (calls_.draining()) {
    class Refused final
        : public grpc::ServerBidiReactor<v1::PublishStreamRequest, v1::PublishStreamResponse> {
     public:
      Refused() { Finish(ShuttingDownStatus()); }
      void OnDone() override { delete this; }
    };
    return new Refused();
  }
  return new PublishStreamReactor(broker_, window_, calls_);
}

// ---- StreamService ----------------------------------------------------------------------

grpc::ServerUnaryReactor* StreamServiceImpl::Fetch(grpc::CallbackServerContext* context,
                                                   const v1::FetchRequest* request,
                                                   v1::FetchResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  if (request->max_records() > kMaxFetchRecords) {
    return FinishWith(
        calls_, __func__,
        InvalidArgumentStatus("max_records " + std::to_string(request->max_records()) +
                              " is above the limit of 100000"));
  }
  if (request->max_bytes() > kMaxFetchBytes) {
    return FinishWith(calls_, __func__,
                      InvalidArgumentStatus("max_bytes " + std::to_string(request->max_bytes()) +
                                            " is above the limit of 67108864"));
  }
  if (request->max_wait_ms() < 0 || request->max_wait_ms() > kMaxFetchWaitMs) {
    return FinishWith(
        calls_, __func__,
        InvalidArgumentStatus("max_wait_ms " + std::to_string(request->max_wait_ms()) +
                              " is out of range 0-60000"));
  }
  const std::uint32_t max_records =
      request->max_records() == 0 ? kDefaultFetchRecords : request->max_records();
  const std::uint64_t max_bytes =
      request->max_bytes() == 0 ? kDefaultFetchBytes : request->max_bytes();
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  const std::string topic = request->topic();
  const std::uint32_t partition = request->partition();
  const std::uint64_t offset = request->offset();
  // A long poll ends with an empty answer a little before the caller's deadline, rather than
  // letting the caller see DEADLINE_EXCEEDED.
  auto max_wait = std::chrono::milliseconds(request->max_wait_ms());
  const auto until_deadline = std::chrono::duration_cast<std::chrono::milliseconds>(
      context->deadline() - std::chrono::system_clock::now() - std::chrono::milliseconds(50));
  max_wait = std::clamp(until_deadline, std::chrono::milliseconds(0), max_wait);
  // The callback names the broker, not `this`: the service may be gone once Finish has run.
  broker_.Fetch(topic, partition, offset, max_records, max_bytes, max_wait,
                [&broker = broker_, reactor, response, topic, partition,
                 offset](Result<std::vector<storage::StoredRecord>> records) {
                  if (!records) return reactor->Finish(ToGrpcStatus(records.error()));
                  response->mutable_records()->Reserve(static_cast<int>(records->size()));
                  for (storage::StoredRecord& r : *records) {
                    RecordToProto(std::move(r), partition, response->add_records());
                  }
                  response->set_next_offset(records->empty() ? offset : records->back().offset + 1);
                  if (auto info = broker.DescribeTopic(topic);
                      info && partition < info->partitions.size()) {
                    response->set_log_start_offset(info->partitions[partition].start_offset);
                    response->set_log_end_offset(
                        std::max(info->partitions[partition].end_offset, response->next_offset()));
                  }
                  reactor->Finish(grpc::Status::OK);
                });
  return reactor;
}

grpc::ServerUnaryReactor* StreamServiceImpl::ListOffsets(grpc::CallbackServerContext* /*context*/,
                                                         const v1::ListOffsetsRequest* request,
                                                         v1::ListOffsetsResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  broker::OffsetQuery query = broker::OffsetQuery::kEarliest;
  switch (request->spec()) {
    case v1::OFFSET_SPEC_EARLIEST:
      query = broker::OffsetQuery::kEarliest;
      break;
    case v1::OFFSET_SPEC_LATEST:
      query = broker::OffsetQuery::kLatest;
      break;
    case v1::OFFSET_SPEC_TIMESTAMP:
      query = broker::OffsetQuery::kTimestamp;
      break;
    default:
      return FinishWith(calls_, __func__,
                        InvalidArgumentStatus("spec must be EARLIEST, LATEST or TIMESTAMP"));
  }
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  const std::string topic = request->topic();
  const std::uint32_t partition = request->partition();
  broker_.ListOffset(topic, partition, query, request->timestamp_ms(),
                     [&broker = broker_, reactor, response, topic,
                      partition](Result<std::optional<std::uint64_t>> offset) {
                       if (!offset) return reactor->Finish(ToGrpcStatus(offset.error()));
                       if (*offset) response->set_offset(**offset);
                       if (auto info = broker.DescribeTopic(topic);
                           info && partition < info->partitions.size()) {
                         response->set_log_start_offset(info->partitions[partition].start_offset);
                         response->set_log_end_offset(info->partitions[partition].end_offset);
                       }
                       reactor->Finish(grpc::Status::OK);
                     });
  return reactor;
}

// ---- GroupService -----------------------------------------------------------------------

namespace {

void PartitionsToProto(const std::vector<broker::TopicPartition>& partitions,
                       google::protobuf::RepeatedPtrField<v1::TopicPartitions>* out) {
  v1::TopicPartitions* current = nullptr;
  for (const auto& tp : partitions) {  // sorted by topic
    if (current == nullptr || current->topic() != tp.topic) {
      current = out->Add();
      current->set_topic(tp.topic);
    }
    current->add_partitions(tp.partition);
  }
}

void PositionToProto(const broker::PartitionPosition& p, v1::GroupPartitionOffset* out) {
  out->set_topic(p.tp.topic);
  out->set_partition(p.tp.partition);
  out->set_log_start_offset(p.log_start);
  out->set_log_end_offset(p.log_end);
  out->set_owner_member_id(p.owner);
  if (p.committed) {
    out->set_committed_offset(p.committed->offset);
    out->set_metadata(p.committed->metadata);
    out->set_commit_timestamp_ms(p.committed->commit_ms);
    out->set_lag(p.log_end > p.committed->offset ? p.log_end - p.committed->offset : 0);
  }
}

v1::GroupState StateToProto(broker::GroupState state) {
  switch (state) {
    case broker::GroupState::kEmpty:
      return v1::GROUP_STATE_EMPTY;
    case broker::GroupState::kReconciling:
      return v1::GROUP_STATE_RECONCILING;
    case broker::GroupState::kStable:
      return v1::GROUP_STATE_STABLE;
  }
  return v1::GROUP_STATE_UNSPECIFIED;
}

}  // namespace

grpc::ServerUnaryReactor* GroupServiceImpl::Heartbeat(grpc::CallbackServerContext* context,
                                                      const v1::HeartbeatRequest* request,
                                                      v1::HeartbeatResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  broker::MemberHeartbeat hb;
  hb.group = request->group_id();
  hb.member_id = request->member_id();
  hb.member_epoch = request->member_epoch();
  hb.subscriptions.assign(request->subscribed_topics().begin(), request->subscribed_topics().end());
  for (const auto& tps : request->owned_partitions()) {
    for (std::uint32_t p : tps.partitions())
      hb.owned.push_back({tps.topic(), p});
  }
  if (request->has_rebalance_timeout_ms())
    hb.rebalance_timeout_ms = request->rebalance_timeout_ms();
  hb.client_id = request->client_id();
  hb.client_host = context->peer();
  switch (request->assignor()) {
    case v1::GROUP_ASSIGNOR_RANGE:
      hb.settings.assignor = broker::GroupAssignor::kRange;
      break;
    case v1::GROUP_ASSIGNOR_UNSPECIFIED:
    case v1::GROUP_ASSIGNOR_UNIFORM:
      hb.settings.assignor = broker::GroupAssignor::kUniform;
      break;
    default:
      return FinishWith(calls_, __func__, InvalidArgumentStatus("unknown assignor"));
  }
  if (request->has_session_timeout_ms())
    hb.settings.session_timeout_ms = request->session_timeout_ms();
  switch (request->offset_reset()) {
    case v1::OFFSET_RESET_UNSPECIFIED:
    case v1::OFFSET_RESET_EARLIEST:
      hb.settings.offset_reset = broker::OffsetReset::kEarliest;
      break;
    case v1::OFFSET_RESET_LATEST:
      hb.settings.offset_reset = broker::OffsetReset::kLatest;
      break;
    case v1::OFFSET_RESET_BY_TIME:
      hb.settings.offset_reset = broker::OffsetReset::kByTime;
      break;
    default:
      return FinishWith(calls_, __func__, InvalidArgumentStatus("unknown offset_reset"));
  }
  hb.settings.offset_reset_timestamp_ms = request->offset_reset_timestamp_ms();
  auto answer = broker_.GroupHeartbeat(hb);
  if (!answer) return FinishWith(calls_, __func__, ToGrpcStatus(answer.error()));
  response->set_member_id(answer->member_id);
  response->set_member_epoch(answer->member_epoch);
  response->set_heartbeat_interval_ms(answer->heartbeat_interval_ms);
  response->set_session_timeout_ms(answer->session_timeout_ms);
  PartitionsToProto(answer->assignment, response->mutable_assignment());
  return FinishWith(calls_, __func__, grpc::Status::OK);
}

grpc::ServerUnaryReactor* GroupServiceImpl::LeaveGroup(grpc::CallbackServerContext* /*context*/,
                                                       const v1::LeaveGroupRequest* request,
                                                       v1::LeaveGroupResponse* /*response*/) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  Status s = broker_.LeaveGroup(request->group_id(), request->member_id());
  return FinishWith(calls_, __func__, s ? grpc::Status::OK : ToGrpcStatus(s.error()));
}

grpc::ServerUnaryReactor* GroupServiceImpl::CommitOffsets(grpc::CallbackServerContext* /*context*/,
                                                          const v1::CommitOffsetsRequest* request,
                                                          v1::CommitOffsetsResponse* /*response*/) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  std::vector<broker::OffsetCommit> offsets;
  offsets.reserve(request->offsets_size());
  for (const auto& o : request->offsets())
    offsets.push_back({o.topic(), o.partition(), o.offset(), o.metadata()});
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  broker_.CommitOffsets(request->group_id(), request->member_id(), request->member_epoch(),
                        std::move(offsets), FinishOnStatus(reactor));
  return reactor;
}

grpc::ServerUnaryReactor* GroupServiceImpl::FetchOffsets(grpc::CallbackServerContext* /*context*/,
                                                         const v1::FetchOffsetsRequest* request,
                                                         v1::FetchOffsetsResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  std::map<std::string, std::vector<std::uint32_t>> filter;
  for (const auto& tps : request->partitions()) {
    auto& partitions = filter[tps.topic()];
    partitions.insert(partitions.end(), tps.partitions().begin(), tps.partitions().end());
  }
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  broker_.FetchGroupOffsets(request->group_id(), std::move(filter),
                            [reactor, response](Result<std::vector<broker::GroupOffset>> offsets) {
                              if (!offsets) return reactor->Finish(ToGrpcStatus(offsets.error()));
                              for (const auto& o : *offsets) {
                                v1::GroupPartitionOffset* out = response->add_offsets();
                                PositionToProto(o.position, out);
                                out->set_start_offset(o.start_offset);
                                out->set_reset_reason(o.reset_reason);
                              }
                              reactor->Finish(grpc::Status::OK);
                            });
  return reactor;
}

grpc::ServerUnaryReactor* GroupServiceImpl::ListGroups(grpc::CallbackServerContext* /*context*/,
                                                       const v1::ListGroupsRequest* request,
                                                       v1::ListGroupsResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  const std::string& prefix = request->prefix();
  const std::string& token = request->page_token();
  if (auto bad = CheckPageToken(prefix, token)) return FinishWith(calls_, __func__, *bad);
  const std::uint32_t page_size = PageSize(request->page_size());
  auto groups = broker_.ListGroups(prefix, token, page_size + 1);
  for (std::size_t i = 0; i < groups.size() && i < page_size; ++i) {
    v1::GroupSummary* out = response->add_groups();
    out->set_group_id(groups[i].group);
    out->set_state(StateToProto(groups[i].state));
    out->set_member_count(groups[i].member_count);
    out->set_group_epoch(groups[i].group_epoch);
  }
  if (groups.size() > page_size) response->set_next_page_token(groups[page_size - 1].group);
  return FinishWith(calls_, __func__, grpc::Status::OK);
}

grpc::ServerUnaryReactor* GroupServiceImpl::DescribeGroup(grpc::CallbackServerContext* /*context*/,
                                                          const v1::DescribeGroupRequest* request,
                                                          v1::DescribeGroupResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  auto d = broker_.DescribeGroup(request->group_id());
  if (!d) return FinishWith(calls_, __func__, ToGrpcStatus(d.error()));
  response->set_group_id(d->group);
  response->set_state(StateToProto(d->state));
  response->set_group_epoch(d->group_epoch);
  for (const auto& m : d->members) {
    v1::GroupMember* out = response->add_members();
    out->set_member_id(m.member_id);
    out->set_client_id(m.client_id);
    out->set_client_host(m.client_host);
    out->set_member_epoch(m.member_epoch);
    for (const auto& topic : m.subscriptions)
      out->add_subscribed_topics(topic);
    PartitionsToProto(m.owned, out->mutable_assignment());
    PartitionsToProto(m.target, out->mutable_target_assignment());
    out->set_last_heartbeat_ms(m.last_heartbeat_ms);
    out->set_rebalance_timeout_ms(m.rebalance_timeout_ms);
  }
  for (const auto& p : d->partitions)
    PositionToProto(p, response->add_offsets());
  response->set_assignor(d->settings.assignor == broker::GroupAssignor::kRange
                             ? v1::GROUP_ASSIGNOR_RANGE
                             : v1::GROUP_ASSIGNOR_UNIFORM);
  response->set_session_timeout_ms(d->settings.session_timeout_ms);
  response->set_heartbeat_interval_ms(d->heartbeat_interval_ms);
  switch (d->settings.offset_reset) {
    case broker::OffsetReset::kEarliest:
      response->set_offset_reset(v1::OFFSET_RESET_EARLIEST);
      break;
    case broker::OffsetReset::kLatest:
      response->set_offset_reset(v1::OFFSET_RESET_LATEST);
      break;
    case broker::OffsetReset::kByTime:
      response->set_offset_reset(v1::OFFSET_RESET_BY_TIME);
      break;
  }
  response->set_offset_reset_timestamp_ms(d->settings.offset_reset_timestamp_ms);
  response->set_rebalance_count(d->rebalances);
  return FinishWith(calls_, __func__, grpc::Status::OK);
}

grpc::ServerUnaryReactor* GroupServiceImpl::DeleteGroup(grpc::CallbackServerContext* /*context*/,
                                                        const v1::DeleteGroupRequest* request,
                                                        v1::DeleteGroupResponse* /*response*/) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  broker_.DeleteGroup(request->group_id(), FinishOnStatus(reactor));
  return reactor;
}

grpc::ServerUnaryReactor* GroupServiceImpl::ResetOffsets(grpc::CallbackServerContext* /*context*/,
                                                         const v1::ResetOffsetsRequest* request,
                                                         v1::ResetOffsetsResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  broker::ResetOffsetsRequest r;
  r.group = request->group_id();
  r.topic = request->topic();
  r.partitions.assign(request->partitions().begin(), request->partitions().end());
  switch (request->mode()) {
    case v1::RESET_MODE_EARLIEST:
      r.mode = broker::ResetMode::kEarliest;
      break;
    case v1::RESET_MODE_LATEST:
      r.mode = broker::ResetMode::kLatest;
      break;
    case v1::RESET_MODE_TIMESTAMP:
      r.mode = broker::ResetMode::kTimestamp;
      break;
    case v1::RESET_MODE_OFFSET:
      r.mode = broker::ResetMode::kOffset;
      break;
    case v1::RESET_MODE_SHIFT:
      r.mode = broker::ResetMode::kShift;
      break;
    default:
      return FinishWith(calls_, __func__, InvalidArgumentStatus("mode is not set"));
  }
  r.timestamp_ms = request->timestamp_ms();
  r.offset = request->offset();
  r.shift_by = request->shift_by();
  r.force = request->force();
  r.dry_run = request->dry_run();
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  const std::string topic = r.topic;
  broker_.ResetGroupOffsets(
      std::move(r), [reactor, response, topic](Result<broker::ResetOffsetsOutcome> outcome) {
        if (!outcome) return reactor->Finish(ToGrpcStatus(outcome.error()));
        for (const auto& result : outcome->results) {
          v1::ResetOffsetResult* out = response->add_results();
          out->set_topic(topic);
          out->set_partition(result.partition);
          if (result.previous) out->set_previous_offset(*result.previous);
          out->set_new_offset(result.new_offset);
        }
        response->set_applied(outcome->applied);
        reactor->Finish(grpc::Status::OK);
      });
  return reactor;
}

// ---- QueueService -----------------------------------------------------------------------

namespace {

constexpr std::uint32_t kDefaultQueuePage = 1000;

// A send entry as a record, validated like a published one (ids, reserved headers).
template <class Entry>
Result<broker::QueueSend> SendFromProto(const Entry& in, std::size_t index, std::int64_t now_ms) {
  v1::Record record;
  record.set_value(in.body());
  *record.mutable_headers() = in.headers();
  if (in.has_message_group_id()) record.set_message_group_id(in.message_group_id());
  if (in.has_deduplication_id()) record.set_deduplication_id(in.deduplication_id());
  auto converted = RecordFromProto(record, index, now_ms);
  if (!converted) return converted.error();
  broker::QueueSend send;
  send.record = std::move(*converted);
  if (in.has_delay_seconds()) {
    send.delay_ms = static_cast<std::int64_t>(in.delay_seconds()) * kMsPerSecond;
  }
  return send;
}

void SentToProto(const broker::ProducedRecord& p, std::uint32_t topic_id, bool fifo,
                 v1::SendMessageResult* out) {
  out->set_message_id(MessageId(topic_id, p.partition, p.offset));
  out->set_partition(p.partition);
  out->set_offset(p.offset);
  if (fifo) out->set_sequence_number(p.sequence.value_or(p.offset));
  out->set_duplicate(p.duplicate);
}

// A malformed queue name is INVALID_ARGUMENT, not an unknown queue.
std::optional<grpc::Status> BadQueueName(const std::string& name) {
  if (Status s = broker::ValidateQueueName(name, name.ends_with(".fifo")); !s) {
    return ToGrpcStatus(s.error());
  }
  return std::nullopt;
}

}  // namespace

grpc::ServerUnaryReactor* QueueServiceImpl::CreateQueue(grpc::CallbackServerContext* /*context*/,
                                                        const v1::CreateQueueRequest* request,
                                                        v1::CreateQueueResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  const v1::QueueAttributes& in = request->attributes();
  if (!request->topic().empty() &&
      (in.has_partitions() || in.has_retention_seconds() || in.has_max_message_bytes())) {
    return FinishWith(calls_, __func__,
                      InvalidArgumentStatus("partitions, retention_seconds and max_message_bytes "
                                            "belong to the topic; they cannot be set on a queue "
                                            "that subscribes to an existing topic"));
  }
  broker::QueueAttributes defaults;
  // A FIFO queue's type follows its name unless the request says otherwise.
  defaults.fifo = request->name().ends_with(".fifo");
  // Creating an existing queue again compares only the attributes given (as SQS does).
  auto existing = broker_.FindQueueMetadata(request->name());
  auto attributes = AttributesFromProto(in, existing ? existing->attributes : defaults);
  if (!attributes) return FinishWith(calls_, __func__, ToGrpcStatus(attributes.error()));
  broker::QueueMetadata queue;
  queue.name = request->name();
  queue.topic = request->topic();
  queue.owns_topic = request->topic().empty();
  queue.attributes = std::move(*attributes);
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  broker_.CreateQueue(std::move(queue),
                      [reactor, response](Result<broker::CreateQueueResult> created) {
                        if (!created) return reactor->Finish(ToGrpcStatus(created.error()));
                        QueueToProto(created->queue, response->mutable_queue());
                        response->set_created(created->created);
                        reactor->Finish(grpc::Status::OK);
                      });
  return reactor;
}

grpc::ServerUnaryReactor* QueueServiceImpl::GetQueueAttributes(
    grpc::CallbackServerContext* /*context*/, const v1::GetQueueAttributesRequest* request,
    v1::GetQueueAttributesResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  if (auto bad = BadQueueName(request->queue())) return FinishWith(calls_, __func__, *bad);
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  broker_.DescribeQueue(request->queue(), [reactor, response](Result<broker::QueueInfo> info) {
    if (!info) return reactor->Finish(ToGrpcStatus(info.error()));
    QueueToProto(*info, response->mutable_queue());
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* QueueServiceImpl::SetQueueAttributes(
    grpc::CallbackServerContext* /*context*/, const v1::SetQueueAttributesRequest* request,
    v1::SetQueueAttributesResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  const std::string& name = request->queue();
  if (Status s = broker::ValidateQueueName(name, name.ends_with(".fifo")); !s) {
    return FinishWith(calls_, __func__, ToGrpcStatus(s.error()));
  }
  // The broker applies the change to the attributes current on its admin strand, so two
  // calls changing different attributes both take effect.
  const v1::QueueAttributes given = request->attributes();
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  broker_.SetQueueAttributes(
      name,
      [given](const broker::QueueAttributes& current) -> Result<broker::QueueAttributes> {
        auto next = AttributesFromProto(given, current);
        // An empty dead-letter queue removes the policy.
        if (next && given.has_redrive_policy() &&
            given.redrive_policy().dead_letter_queue().empty()) {
          next->redrive_policy.reset();
        }
        return next;
      },
      [reactor, response](Result<broker::QueueInfo> info) {
        if (!info) return reactor->Finish(ToGrpcStatus(info.error()));
        QueueToProto(*info, response->mutable_queue());
        reactor->Finish(grpc::Status::OK);
      });
  return reactor;
}

grpc::ServerUnaryReactor* QueueServiceImpl::ListDeadLetterSourceQueues(
    grpc::CallbackServerContext* /*context*/, const v1::ListDeadLetterSourceQueuesRequest* request,
    v1::ListDeadLetterSourceQueuesResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  const std::string& name = request->queue();
  if (Status s = broker::ValidateQueueName(name, name.ends_with(".fifo")); !s) {
    return FinishWith(calls_, __func__, ToGrpcStatus(s.error()));
  }
  // Tokens are the last name of the previous page, so they are queue names themselves.
  const std::string& token = request->page_token();
  if (!token.empty() && !broker::ValidateQueueName(token, token.ends_with(".fifo"))) {
    return FinishWith(calls_, __func__,
                      InvalidArgumentStatus("page_token was not produced by this call"));
  }
  const std::uint32_t size = std::min(
      request->page_size() == 0 ? kDefaultQueuePage : request->page_size(), kDefaultQueuePage);
  auto names = broker_.DeadLetterSourceQueues(name, token, size + 1);
  if (!names) return FinishWith(calls_, __func__, ToGrpcStatus(names.error()));
  const bool more = names->size() > size;
  if (more) names->pop_back();
  for (const auto& n : *names)
    response->add_queues(n);
  if (more) response->set_next_page_token(names->back());
  return FinishWith(calls_, __func__, grpc::Status::OK);
}

grpc::ServerBidiReactor<v1::StreamingReceiveRequest, v1::StreamingReceiveResponse>*
QueueServiceImpl::StreamingReceive(grpc::CallbackServerContext* /*context*/) {
  if (calls_.draining()) {
    class Refused final : public grpc::ServerBidiReactor<v1::StreamingReceiveRequest,
                                                         v1::StreamingReceiveResponse> {
     public:
      Refused() { Finish(ShuttingDownStatus()); }
      void OnDone() override { delete this; }
    };
    return new Refused();
  }
  return NewStreamingReceive(broker_, calls_);
}

grpc::ServerUnaryReactor* QueueServiceImpl::StartRedrive(grpc::CallbackServerContext* /*context*/,
                                                         const v1::StartRedriveRequest* request,
                                                         v1::StartRedriveResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  broker::RedriveRequest redrive;
  redrive.source = request->source_queue();
  redrive.destination = request->destination_queue();
  if (request->has_max_messages_per_second()) {
    redrive.max_per_second = request->max_messages_per_second();
  }
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  broker_.StartRedrive(std::move(redrive), [reactor, response](Result<broker::RedriveTask> task) {
    if (!task) return reactor->Finish(ToGrpcStatus(task.error()));
    RedriveTaskToProto(*task, response->mutable_task());
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* QueueServiceImpl::ListRedriveTasks(
    grpc::CallbackServerContext* /*context*/, const v1::ListRedriveTasksRequest* request,
    v1::ListRedriveTasksResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  const std::string& name = request->source_queue();
  if (Status s = broker::ValidateQueueName(name, name.ends_with(".fifo")); !s) {
    return FinishWith(calls_, __func__, ToGrpcStatus(s.error()));
  }
  if (request->max_results() > broker::kRedriveTasksKept) {
    return FinishWith(calls_, __func__,
                      InvalidArgumentStatus("max_results must be at most " +
                                            std::to_string(broker::kRedriveTasksKept)));
  }
  auto tasks =
      broker_.ListRedriveTasks(name, request->max_results() == 0 ? 1 : request->max_results());
  if (!tasks) return FinishWith(calls_, __func__, ToGrpcStatus(tasks.error()));
  for (const auto& t : *tasks)
    RedriveTaskToProto(t, response->add_tasks());
  return FinishWith(calls_, __func__, grpc::Status::OK);
}

grpc::ServerUnaryReactor* QueueServiceImpl::CancelRedrive(grpc::CallbackServerContext* /*context*/,
                                                          const v1::CancelRedriveRequest* request,
                                                          v1::CancelRedriveResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  auto id = ParseTaskId(request->task_id());
  if (!id) return FinishWith(calls_, __func__, ToGrpcStatus(id.error()));
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  broker_.CancelRedrive(*id, [reactor, response](Result<broker::RedriveTask> task) {
    if (!task) return reactor->Finish(ToGrpcStatus(task.error()));
    RedriveTaskToProto(*task, response->mutable_task());
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* QueueServiceImpl::ListQueues(grpc::CallbackServerContext* /*context*/,
                                                       const v1::ListQueuesRequest* request,
                                                       v1::ListQueuesResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  if (auto bad = CheckPageToken(request->prefix(), request->page_token())) {
    return FinishWith(calls_, __func__, *bad);
  }
  const std::uint32_t size = std::min(
      request->page_size() == 0 ? kDefaultQueuePage : request->page_size(), kDefaultQueuePage);
  auto names = broker_.ListQueues(request->prefix(), request->page_token(), size + 1);
  const bool more = names.size() > size;
  if (more) names.pop_back();
  for (const auto& n : names)
    response->add_queues(n);
  if (more) response->set_next_page_token(names.back());
  return FinishWith(calls_, __func__, grpc::Status::OK);
}

grpc::ServerUnaryReactor* QueueServiceImpl::DeleteQueue(grpc::CallbackServerContext* /*context*/,
                                                        const v1::DeleteQueueRequest* request,
                                                        v1::DeleteQueueResponse* /*response*/) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  if (auto bad = BadQueueName(request->queue())) return FinishWith(calls_, __func__, *bad);
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  broker_.DeleteQueue(request->queue(), FinishOnStatus(reactor));
  return reactor;
}

grpc::ServerUnaryReactor* QueueServiceImpl::PurgeQueue(grpc::CallbackServerContext* /*context*/,
                                                       const v1::PurgeQueueRequest* request,
                                                       v1::PurgeQueueResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  if (auto bad = BadQueueName(request->queue())) return FinishWith(calls_, __func__, *bad);
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  broker_.PurgeQueue(request->queue(), [reactor, response](Result<std::uint64_t> purged) {
    if (!purged) return reactor->Finish(ToGrpcStatus(purged.error()));
    response->set_approximate_messages_purged(*purged);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* QueueServiceImpl::SendMessage(grpc::CallbackServerContext* /*context*/,
                                                        const v1::SendMessageRequest* request,
                                                        v1::SendMessageResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  auto ids = IdsOf(broker_, request->queue());
  if (!ids) return FinishWith(calls_, __func__, ToGrpcStatus(ids.error()));
  auto send = SendFromProto(*request, 0, broker_.clock().WallMillis());
  if (!send) return FinishWith(calls_, __func__, ToGrpcStatus(send.error()));
  std::vector<broker::QueueSend> sends;
  sends.push_back(std::move(*send));
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  broker_.SendMessages(
      request->queue(), std::move(sends),
      [reactor, response, ids = *ids](Result<std::vector<broker::ProducedRecord>> sent) {
        if (!sent) return reactor->Finish(ToGrpcStatus(sent.error()));
        SentToProto(sent->at(0), ids.topic_id, ids.fifo, response->mutable_result());
        reactor->Finish(grpc::Status::OK);
      });
  return reactor;
}

namespace {

constexpr std::size_t kMaxBatchEntryId = 80;

// Checks a batch's shape: entries present, at most `max` (the broker's max_queue_batch), ids
// of at most 80 characters and unique.
template <class Entries>
std::optional<grpc::Status> CheckBatch(const Entries& entries, std::size_t max) {
  if (entries.empty()) return InvalidArgumentStatus("no entries");
  if (static_cast<std::size_t>(entries.size()) > max) {
    return ToGrpcStatus(ResourceExhausted("more than " + std::to_string(max) + " entries"));
  }
  std::set<std::string> seen;
  for (const auto& e : entries) {
    if (e.id().size() > kMaxBatchEntryId) {
      return InvalidArgumentStatus("an entry id is " + std::to_string(e.id().size()) +
                                   " characters; the limit is " + std::to_string(kMaxBatchEntryId));
    }
    if (!e.id().empty() && !seen.insert(e.id()).second) {
      return InvalidArgumentStatus("entry id '" + e.id() + "' is used twice");
    }
  }
  return std::nullopt;
}

}  // namespace

grpc::ServerUnaryReactor* QueueServiceImpl::SendMessageBatch(
    grpc::CallbackServerContext* /*context*/, const v1::SendMessageBatchRequest* request,
    v1::SendMessageBatchResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  if (auto bad = CheckBatch(request->entries(), broker_.max_queue_batch()))
    return FinishWith(calls_, __func__, *bad);
  const int n = request->entries_size();
  auto ids = IdsOf(broker_, request->queue());
  if (!ids) return FinishWith(calls_, __func__, ToGrpcStatus(ids.error()));
  auto queue = broker_.FindQueueMetadata(request->queue());
  if (!queue)
    return FinishWith(calls_, __func__,
                      ToGrpcStatus(NotFound("queue '" + request->queue() + "' does not exist")));
  // Entries that fail validation get their own error; the rest are sent together.
  std::vector<broker::QueueSend> sends;
  std::vector<int> sent_index;
  const std::int64_t now = broker_.clock().WallMillis();
  for (int i = 0; i < n; ++i) {
    v1::SendMessageBatchResult* result = response->add_results();
    result->set_id(request->entries(i).id());
    auto send = SendFromProto(request->entries(i), static_cast<std::size_t>(i), now);
    if (!send) {
      ToProtoError(send.error(), result->mutable_error());
      continue;
    }
    if (Status valid = broker::CheckQueueSend(queue->attributes, *send); !valid) {
      ToProtoError(valid.error(), result->mutable_error());
      continue;
    }
    sends.push_back(std::move(*send));
    sent_index.push_back(i);
  }
  if (sends.empty()) return FinishWith(calls_, __func__, grpc::Status::OK);
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  broker_.SendMessages(request->queue(), std::move(sends),
                       [reactor, response, ids = *ids, sent_index = std::move(sent_index)](
                           Result<std::vector<broker::ProducedRecord>> sent) {
                         // The valid entries are one append: its failure (over max_batch_bytes,
                         // shutting down, a store error) is the call's, not an entry's.
                         if (!sent) return reactor->Finish(ToGrpcStatus(sent.error()));
                         for (std::size_t k = 0; k < sent_index.size(); ++k) {
                           SentToProto(sent->at(k), ids.topic_id, ids.fifo,
                                       response->mutable_results(sent_index[k])->mutable_sent());
                         }
                         reactor->Finish(grpc::Status::OK);
                       });
  return reactor;
}

grpc::ServerUnaryReactor* QueueServiceImpl::ReceiveMessages(
    grpc::CallbackServerContext* context, const v1::ReceiveMessagesRequest* request,
    v1::ReceiveMessagesResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  auto ids = IdsOf(broker_, request->queue());
  if (!ids) return FinishWith(calls_, __func__, ToGrpcStatus(ids.error()));
  broker::QueueReceive receive;
  receive.queue = request->queue();
  receive.max_messages = request->max_messages() == 0 ? 1 : request->max_messages();
  if (request->has_visibility_timeout_seconds()) {
    receive.visibility_ms =
        static_cast<std::int64_t>(request->visibility_timeout_seconds()) * kMsPerSecond;
  }
  receive.wait_ms = request->has_wait_time_seconds()
                        ? static_cast<std::int64_t>(request->wait_time_seconds()) * kMsPerSecond
                        : ids->receive_wait_ms;
  // End the wait (the request's or the queue's) shortly before the caller's deadline, with
  // what there is, so nothing is leased to a caller that has gone.
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        context->deadline() - std::chrono::system_clock::now())
                        .count();
  if (*receive.wait_ms <= broker::kMaxReceiveWaitMs && left - 500 < *receive.wait_ms) {
    receive.wait_ms = std::max<std::int64_t>(0, left - 500);
  }
  // The context lives until Finish, which comes only after the broker's last question.
  receive.cancelled = [context] { return context->IsCancelled(); };
  const std::uint64_t max_bytes = request->max_bytes() == 0 ? 3 << 20 : request->max_bytes();
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  broker_.ReceiveMessagesWithLimit(
      std::move(receive), [this, context, reactor, response, ids = *ids, max_bytes,
                           queue = request->queue()](Result<broker::QueueReceived> got) {
        if (!got) return reactor->Finish(ToGrpcStatus(got.error()));
        response->set_in_flight_limit_reached(got->in_flight_limit);
        // All of them are leased; those beyond max_bytes, or all if the caller has gone, are
        // released at once for others.
        const bool gone = context->IsCancelled();
        std::uint64_t bytes = 0;
        for (auto& m : got->messages) {
          bytes += m.message.record.value.size();
          if (gone || (response->messages_size() > 0 && bytes > max_bytes)) {
            broker_.ChangeMessageVisibility(
                queue, {m.partition, m.message.offset, m.message.generation}, 0, [](Status) {});
            continue;
          }
          MessageToProto(std::move(m), ids.topic_id, ids.subscription, ids.fifo,
                         response->add_messages());
        }
        reactor->Finish(grpc::Status::OK);
      });
  return reactor;
}

grpc::ServerUnaryReactor* QueueServiceImpl::DeleteMessage(grpc::CallbackServerContext* /*context*/,
                                                          const v1::DeleteMessageRequest* request,
                                                          v1::DeleteMessageResponse* /*response*/) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  auto ids = IdsOf(broker_, request->queue());
  if (!ids) return FinishWith(calls_, __func__, ToGrpcStatus(ids.error()));
  auto receipt = DecodeReceipt(request->receipt_handle(), ids->subscription);
  if (!receipt) return FinishWith(calls_, __func__, ToGrpcStatus(receipt.error()));
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  broker_.DeleteMessage(request->queue(), *receipt, FinishOnStatus(reactor));
  return reactor;
}

namespace {

// Answers a batch of per-receipt operations once every entry has its outcome.
class BatchAnswer {
 public:
  BatchAnswer(grpc::ServerUnaryReactor* reactor,
              google::protobuf::RepeatedPtrField<v1::BatchEntryResult>* results, int pending)
      : reactor_(reactor), results_(results), pending_(pending) {}
  void Done(int index, const Status& s) {
    if (!s) ToProtoError(s.error(), results_->Mutable(index)->mutable_error());
    if (pending_.fetch_sub(1) == 1) {
      reactor_->Finish(grpc::Status::OK);
      delete this;
    }
  }

 private:
  grpc::ServerUnaryReactor* reactor_;
  google::protobuf::RepeatedPtrField<v1::BatchEntryResult>* results_;
  std::atomic<int> pending_;
};

}  // namespace

grpc::ServerUnaryReactor* QueueServiceImpl::DeleteMessageBatch(
    grpc::CallbackServerContext* /*context*/, const v1::DeleteMessageBatchRequest* request,
    v1::DeleteMessageBatchResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  if (auto bad = CheckBatch(request->entries(), broker_.max_queue_batch()))
    return FinishWith(calls_, __func__, *bad);
  auto ids = IdsOf(broker_, request->queue());
  if (!ids) return FinishWith(calls_, __func__, ToGrpcStatus(ids.error()));
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  for (const auto& e : request->entries())
    response->add_results()->set_id(e.id());
  // The last callback may finish the call (and free `request`) while this loop still runs:
  // everything it needs is read first.
  const int n = request->entries_size();
  std::vector<Result<broker::QueueReceipt>> receipts;
  for (int i = 0; i < n; ++i)
    receipts.push_back(DecodeReceipt(request->entries(i).receipt_handle(), ids->subscription));
  const std::string queue = request->queue();
  auto* answer = new BatchAnswer(reactor, response->mutable_results(), n);
  // The well-formed receipts go to the broker together: one write per partition.
  std::vector<broker::QueueReceipt> valid;
  std::vector<int> valid_index;
  for (int i = 0; i < n; ++i) {
    auto& receipt = receipts[static_cast<std::size_t>(i)];
    if (!receipt) {
      answer->Done(i, receipt.error());
      continue;
    }
    valid.push_back(*receipt);
    valid_index.push_back(i);
  }
  if (valid.empty()) return reactor;
  broker_.DeleteMessages(queue, std::move(valid),
                         [answer, valid_index](Result<std::vector<Status>> done) {
                           for (std::size_t k = 0; k < valid_index.size(); ++k) {
                             answer->Done(valid_index[k], done ? (*done)[k] : Status(done.error()));
                           }
                         });
  return reactor;
}

grpc::ServerUnaryReactor* QueueServiceImpl::ChangeMessageVisibility(
    grpc::CallbackServerContext* /*context*/, const v1::ChangeMessageVisibilityRequest* request,
    v1::ChangeMessageVisibilityResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  auto ids = IdsOf(broker_, request->queue());
  if (!ids) return FinishWith(calls_, __func__, ToGrpcStatus(ids.error()));
  auto receipt = DecodeReceipt(request->receipt_handle(), ids->subscription);
  if (!receipt) return FinishWith(calls_, __func__, ToGrpcStatus(receipt.error()));
  const std::int64_t in_ms =
      static_cast<std::int64_t>(request->visibility_timeout_seconds()) * kMsPerSecond;
  const std::int64_t deadline = broker_.clock().WallMillis() + in_ms;
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  broker_.ChangeMessageVisibility(request->queue(), *receipt, in_ms,
                                  [reactor, response, deadline](Status s) {
                                    if (!s) return reactor->Finish(ToGrpcStatus(s.error()));
                                    response->set_visibility_deadline_ms(deadline);
                                    reactor->Finish(grpc::Status::OK);
                                  });
  return reactor;
}

grpc::ServerUnaryReactor* QueueServiceImpl::ChangeMessageVisibilityBatch(
    grpc::CallbackServerContext* /*context*/,
    const v1::ChangeMessageVisibilityBatchRequest* request,
    v1::ChangeMessageVisibilityBatchResponse* response) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  if (auto bad = CheckBatch(request->entries(), broker_.max_queue_batch()))
    return FinishWith(calls_, __func__, *bad);
  auto ids = IdsOf(broker_, request->queue());
  if (!ids) return FinishWith(calls_, __func__, ToGrpcStatus(ids.error()));
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  for (const auto& e : request->entries())
    response->add_results()->set_id(e.id());
  // As in DeleteMessageBatch: nothing of `request` is read once the first call is made.
  const int n = request->entries_size();
  std::vector<std::pair<Result<broker::QueueReceipt>, std::int64_t>> changes;
  for (int i = 0; i < n; ++i) {
    const auto& e = request->entries(i);
    changes.emplace_back(DecodeReceipt(e.receipt_handle(), ids->subscription),
                         static_cast<std::int64_t>(e.visibility_timeout_seconds()) * kMsPerSecond);
  }
  const std::string queue = request->queue();
  auto* answer = new BatchAnswer(reactor, response->mutable_results(), n);
  for (int i = 0; i < n; ++i) {
    auto& [receipt, in_ms] = changes[static_cast<std::size_t>(i)];
    if (!receipt) {
      answer->Done(i, receipt.error());
      continue;
    }
    broker_.ChangeMessageVisibility(queue, *receipt, in_ms,
                                    [answer, i](Status s) { answer->Done(i, s); });
  }
  return reactor;
}

grpc::ServerUnaryReactor* QueueServiceImpl::NackMessage(grpc::CallbackServerContext* /*context*/,
                                                        const v1::NackMessageRequest* request,
                                                        v1::NackMessageResponse* /*response*/) {
  if (calls_.draining()) return FinishWith(calls_, __func__, ShuttingDownStatus());
  auto ids = IdsOf(broker_, request->queue());
  if (!ids) return FinishWith(calls_, __func__, ToGrpcStatus(ids.error()));
  auto receipt = DecodeReceipt(request->receipt_handle(), ids->subscription);
  if (!receipt) return FinishWith(calls_, __func__, ToGrpcStatus(receipt.error()));
  grpc::ServerUnaryReactor* reactor = new CountedUnaryReactor(calls_, __func__);
  broker_.NackMessage(request->queue(), *receipt,
                      static_cast<std::int64_t>(request->delay_seconds()) * kMsPerSecond,
                      FinishOnStatus(reactor));
  return reactor;
}

}  // namespace spool::protocol
