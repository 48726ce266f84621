#pragma once

// An in-process PublishService on 127.0.0.1 for the producer's unit tests: it keeps one
// in-memory log per partition and can be told to fail, drop or hold batches, the way a real
// spoold does when it restarts, shuts down or stalls.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
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
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  void set_policy(Policy policy) {
    std::lock_guard lock(mu_);
    policy_ = std::move(policy);
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
    v1::PublishStreamRequest request;
    while (stream->Read(&request)) {
      v1::PublishStreamResponse response;
      response.set_sequence(request.sequence());
      {
        std::unique_lock lock(mu_);
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
            if (action == Action::kAppendThenBreak)
              return {grpc::StatusCode::UNAVAILABLE, "connection lost"};
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
            return {grpc::StatusCode::UNAVAILABLE, "connection lost"};
        }
      }
      if (!stream->Write(response)) break;
    }
    return grpc::Status::OK;
  }

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  Policy policy_;
  bool held_ = false;
  std::uint64_t received_ = 0;
  std::uint64_t streams_ = 0;
  std::map<std::uint32_t, std::vector<std::string>> logs_;
  std::vector<std::size_t> batch_sizes_;
};

}  // namespace spool::testing
