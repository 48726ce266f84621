#pragma once

// An in-process PublishService on 127.0.0.1 for the producer's unit tests: it keeps one
// in-memory log per partition and can be told to fail, drop or hold batches, the way a real
// spoold does when it restarts, shuts down or stalls.
//
// Each stream is read on the handler's thread and answered on a thread of its own, so that
// answers can be held while later batches are still read: that is what lets a test see how
// many batches the producer has outstanding at once.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "spool/v1/publish.grpc.pb.h"

namespace spool::testing {

class FakePublishServer final : public v1::PublishService::Service {
 public:
  enum class Action {
    kAppend,           // append and answer
    kFailUnavailable,  // answer ERROR_CODE_UNAVAILABLE, append nothing
    kFailInvalid,      // answer ERROR_CODE_INVALID_ARGUMENT, append nothing
    kAppendThenBreak,  // append, then end the stream before answering (the answer is lost)
    kBreak,            // end the stream without appending or answering
  };
  // Decides what happens to each batch received (counted from 0 over all streams).
  using Policy = std::function<Action(std::uint64_t index, const v1::PublishRequest& batch)>;

  FakePublishServer() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~FakePublishServer() override { Stop(); }

  void Stop() {
    Release();
    ReleaseAnswers();
    StopLingering();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  void set_policy(Policy policy) {
    std::lock_guard lock(mu_);
    policy_ = std::move(policy);
  }
  // While set, a stream the producer half-closes (WritesDone) is not ended until the producer
  // cancels it or StopLingering() is called: a server that never finishes a call.
  void LingerAfterWritesDone() {
    std::lock_guard lock(mu_);
    linger_ = true;
  }
  void StopLingering() {
    std::lock_guard lock(mu_);
    linger_ = false;
    cv_.notify_all();
  }
  // While held, batches are read but not answered (nor appended) until Release().
  void Hold() {
    std::lock_guard lock(mu_);
    held_ = true;
  }
  void Release() {
    std::lock_guard lock(mu_);
    held_ = false;
    cv_.notify_all();
  }
  // Unlike Hold(), batches keep being read and appended while answers are held; only their
  // answers wait, in order, until ReleaseAnswers().
  void HoldAnswers() {
    std::lock_guard lock(mu_);
    answers_held_ = true;
  }
  void ReleaseAnswers() {
    std::lock_guard lock(mu_);
    answers_held_ = false;
    cv_.notify_all();
  }

  // Batches read (over all streams) and not answered yet; a batch whose stream ended without
  // its answer stops counting then.
  std::size_t unanswered() const {
    std::lock_guard lock(mu_);
    return unanswered_;
  }
  // The most unanswered() has ever been.
  std::size_t max_unanswered() const {
    std::lock_guard lock(mu_);
    return max_unanswered_;
  }
  // True once unanswered() reaches `count`; false if `timeout` passes first.
  bool WaitForUnanswered(std::size_t count, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return unanswered_ >= count; });
  }

  // Values in each partition's log, in append order.
  std::vector<std::string> Log(std::uint32_t partition) const {
    std::lock_guard lock(mu_);
    auto it = logs_.find(partition);
    return it == logs_.end() ? std::vector<std::string>{} : it->second;
  }
  // Record counts of every batch received, in arrival order.
  std::vector<std::size_t> BatchSizes() const {
    std::lock_guard lock(mu_);
    return batch_sizes_;
  }
  std::uint64_t streams() const {
    std::lock_guard lock(mu_);
    return streams_;
  }

  grpc::Status PublishStream(grpc::ServerContext* context,
                             grpc::ServerReaderWriter<v1::PublishStreamResponse,
                                                      v1::PublishStreamRequest>* stream) override {
    {
      std::lock_guard lock(mu_);
      ++streams_;
    }
    Outbox outbox;
    std::thread answerer([&] { Answer(context, stream, outbox); });
    const grpc::Status status = Serve(context, stream, outbox);
    if (status.ok()) {
      std::unique_lock lock(mu_);
      // Polls because cancellation does not notify cv_.
      while (linger_ && !context->IsCancelled())
        cv_.wait_for(lock, std::chrono::milliseconds(10));
    }
    {
      std::lock_guard lock(mu_);
      outbox.reading = false;
      cv_.notify_all();
    }
    // The stream must outlive every Write, so the answerer finishes before the handler returns.
    answerer.join();
    std::lock_guard lock(mu_);
    unanswered_ -= outbox.unanswered;  // their answers are lost with the stream
    cv_.notify_all();
    return status;
  }

 private:
  // One stream's answers on their way out; guarded by mu_.
  struct Outbox {
    std::deque<v1::PublishStreamResponse> answers;
    std::size_t unanswered = 0;  // read on this stream and not yet answered
    bool reading = true;         // the handler is still reading
    bool broken = false;         // the handler ends the stream with an error
    bool write_failed = false;
  };

  // Reads and settles the batches; a non-OK status ends the stream the way a dying server does.
  grpc::Status Serve(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::PublishStreamResponse, v1::PublishStreamRequest>* stream,
      Outbox& outbox) {
    v1::PublishStreamRequest request;
    while (stream->Read(&request)) {
      v1::PublishStreamResponse response;
      response.set_sequence(request.sequence());
      std::unique_lock lock(mu_);
      if (outbox.write_failed) break;
      ++outbox.unanswered;
      max_unanswered_ = std::max(max_unanswered_, ++unanswered_);
      cv_.notify_all();
      while (held_ && !context->IsCancelled())
        cv_.wait_for(lock, std::chrono::milliseconds(10));
      if (context->IsCancelled()) return grpc::Status::CANCELLED;
      const v1::PublishRequest& batch = request.batch();
      batch_sizes_.push_back(static_cast<std::size_t>(batch.records_size()));
      const Action action = policy_ ? policy_(received_++, batch) : Action::kAppend;
      switch (action) {
        case Action::kAppend:
        case Action::kAppendThenBreak: {
          const std::uint32_t partition = batch.has_partition() ? batch.partition() : 0;
          auto& log = logs_[partition];
          for (const auto& record : batch.records()) {
            auto* result = response.mutable_response()->add_results();
            result->set_partition(partition);
            result->set_offset(log.size());
            log.push_back(record.value());
          }
          if (action == Action::kAppendThenBreak) {
            outbox.broken = true;
            return {grpc::StatusCode::UNAVAILABLE, "connection lost"};
          }
          break;
        }
        case Action::kFailUnavailable:
          response.mutable_error()->set_code(v1::ERROR_CODE_UNAVAILABLE);
          response.mutable_error()->set_message("shutting down");
          break;
        case Action::kFailInvalid:
          response.mutable_error()->set_code(v1::ERROR_CODE_INVALID_ARGUMENT);
          response.mutable_error()->set_message("bad record");
          break;
        case Action::kBreak:
          outbox.broken = true;
          return {grpc::StatusCode::UNAVAILABLE, "connection lost"};
      }
      outbox.answers.push_back(std::move(response));
      cv_.notify_all();
    }
    return grpc::Status::OK;
  }

  // Writes the stream's answers in order, whenever they are not held, until the handler has
  // stopped reading and nothing it may still send is left (or the call is cancelled).
  void Answer(grpc::ServerContext* context,
              grpc::ServerReaderWriter<v1::PublishStreamResponse, v1::PublishStreamRequest>* stream,
              Outbox& outbox) {
    while (true) {
      std::unique_lock lock(mu_);
      if (context->IsCancelled()) return;
      // A breaking stream still sends the answers it is free to send, as it did before the
      // break; held ones are lost with it.
      const bool done =
          !outbox.reading && (outbox.answers.empty() || (outbox.broken && answers_held_));
      if (done) return;
      if (answers_held_ || outbox.answers.empty()) {
        // Polls because cancellation does not notify cv_.
        cv_.wait_for(lock, std::chrono::milliseconds(10));
        continue;
      }
      v1::PublishStreamResponse response = std::move(outbox.answers.front());
      outbox.answers.pop_front();
      // Counted as answered before the Write: once the producer sees the answer it may send
      // the next batch, which must not find this one still counted.
      --outbox.unanswered;
      --unanswered_;
      cv_.notify_all();
      lock.unlock();
      if (!stream->Write(response)) {
        lock.lock();
        outbox.write_failed = true;
        return;
      }
    }
  }

  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  Policy policy_;
  bool held_ = false;
  bool answers_held_ = false;
  bool linger_ = false;
  std::size_t unanswered_ = 0;
  std::size_t max_unanswered_ = 0;
  std::uint64_t received_ = 0;
  std::uint64_t streams_ = 0;
  std::map<std::uint32_t, std::vector<std::string>> logs_;
  std::vector<std::size_t> batch_sizes_;
};

}  // namespace spool::testing
