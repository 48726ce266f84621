#include <algorithm>
#include <condition_variable>
#include <deque>
#include <iterator>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "spool/queue.h"

namespace spool {
namespace {

using Request = v1::StreamingReceiveRequest;
using Response = v1::StreamingReceiveResponse;
using Failures = ReceiveStream::Failures;

// StreamingReceiveRequest.max_outstanding_messages allows at most this.
constexpr std::uint32_t kMaxOutstandingMessages = 120'000;
// ChangeMessageVisibilityBatch takes at most this many entries.
constexpr std::size_t kMaxBatchEntries = 1'000;

grpc::Status Closed() {
  return {grpc::StatusCode::FAILED_PRECONDITION,
          "the receive stream is closed; settle its messages with QueueClient instead"};
}

// Per-operation errors carry the gRPC code's number.
grpc::Status StatusOf(const v1::Error& error) {
  return {static_cast<grpc::StatusCode>(error.code()), error.message()};
}

}  // namespace

class ReceiveStream::Impl {
 public:
  Impl(std::shared_ptr<grpc::Channel> channel, std::chrono::milliseconds call_timeout,
       std::string queue, const ReceiveStreamOptions& options)
      : stub_(v1::QueueService::NewStub(std::move(channel))),
        timeout_(call_timeout),
        queue_(std::move(queue)) {
    stream_ = stub_->StreamingReceive(&context_);
    Request first;
    first.set_queue(queue_);
    first.set_max_outstanding_messages(options.max_outstanding_messages);
    first.set_max_outstanding_bytes(options.max_outstanding_bytes);
    if (options.visibility_timeout_seconds)
      first.set_visibility_timeout_seconds(*options.visibility_timeout_seconds);
    // A failed write shows as the end of the stream, with the server's status, in ReadLoop.
    stream_->Write(first);
    reader_ = std::thread([this] { ReadLoop(); });
    reader_id_ = reader_.get_id();
  }

  ~Impl() {
    Close();
    // A Settle still blocked in its Write (see Close) uses the call and this object.
    std::unique_lock lock(mu_);
    write_cv_.wait(lock, [&] { return !writing_; });
  }

  CallResult<std::vector<v1::QueueMessage>> Receive(std::chrono::milliseconds timeout,
                                                    std::size_t max) {
    CallResult<std::vector<v1::QueueMessage>> result;
    if (max == 0) {
      result.status = {grpc::StatusCode::INVALID_ARGUMENT, "max must be at least 1"};
      return result;
    }
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return closing_ || ended_ || !delivered_.empty(); });
    if (closing_) {
      result.status = Closed();
    } else if (!delivered_.empty()) {
      const std::size_t n = std::min(max, delivered_.size());
      result.value.assign(std::make_move_iterator(delivered_.begin()),
                          std::make_move_iterator(delivered_.begin() + static_cast<long>(n)));
      delivered_.erase(delivered_.begin(), delivered_.begin() + static_cast<long>(n));
    } else if (ended_) {
      result.status = EndedStatusLocked();
    }
    return result;
  }

  void Settle(Settlement settlement, SettleCallback done) {
    if (settlement.empty()) {
      done({});
      return;
    }
    Request request;
    for (auto& handle : settlement.deletes)
      request.add_deletes(std::move(handle));
    for (auto& nack : settlement.nacks) {
      v1::StreamingNack* out = request.add_nacks();
      out->set_receipt_handle(std::move(nack.receipt_handle));
      out->set_delay_seconds(nack.delay_seconds);
    }
    for (auto& change : settlement.visibility_changes) {
      v1::StreamingVisibilityChange* out = request.add_visibility_changes();
      out->set_receipt_handle(std::move(change.receipt_handle));
      out->set_visibility_timeout_seconds(change.visibility_timeout_seconds);
    }
    std::uint64_t sequence = 0;
    {
      std::unique_lock lock(mu_);
      if (closing_ || ended_) {
        const grpc::Status status = closing_ ? Closed() : EndedStatusLocked();
        lock.unlock();
        done({status, {}});
        return;
      }
      sequence = next_sequence_++;
      if (!ClaimWriteLocked(lock)) {
        // Closed, or the stream ended, while this waited to write.
        const grpc::Status status = NoMoreWritesLocked();
        lock.unlock();
        done({status, {}});
        return;
      }
      pending_.emplace(sequence, std::move(done));
    }
    request.set_sequence(sequence);
    // A failed write means the stream broke: ReadLoop answers every pending settlement with
    // the stream's status.
    stream_->Write(request);
    ReleaseWrite();
  }

  grpc::Status SetFlowControl(std::uint32_t max_messages, std::uint64_t max_bytes) {
    if (max_messages > kMaxOutstandingMessages) {
      return {grpc::StatusCode::INVALID_ARGUMENT,
              "max_outstanding_messages must be within 1-120000 (0 keeps the current value)"};
    }
    {
      std::lock_guard lock(mu_);
      if (closing_) return Closed();
      if (ended_) return EndedStatusLocked();
    }
    if (max_messages == 0 && max_bytes == 0) return grpc::Status::OK;
    Request request;
    request.set_max_outstanding_messages(max_messages);
    request.set_max_outstanding_bytes(max_bytes);
    {
      std::unique_lock lock(mu_);
      if (!ClaimWriteLocked(lock)) return NoMoreWritesLocked();
    }
    const bool written = stream_->Write(request);
    ReleaseWrite();
    if (!written) return {grpc::StatusCode::UNAVAILABLE, "the stream has ended"};
    return grpc::Status::OK;
  }

  grpc::Status Close() {
    if (std::this_thread::get_id() == reader_id_) {
      // It would wait for itself.
      return {grpc::StatusCode::FAILED_PRECONDITION,
              "ReceiveStream::Close called from a settlement callback"};
    }
    {
      std::lock_guard lock(mu_);
      closing_ = true;
    }
    cv_.notify_all();
    // The server ends the stream once it has confirmed every settlement it read. Past the
    // deadline it is cancelled. The watch runs on its own thread because this one may wait
    // for the write slot behind a Settle whose Write a server that stopped reading holds up.
    std::thread watchdog([this, deadline = std::chrono::steady_clock::now() + timeout_] {
      std::unique_lock lock(mu_);
      if (cv_.wait_until(lock, deadline, [&] { return ended_.has_value(); })) return;
      cancelled_ = true;
      lock.unlock();
      write_cv_.notify_all();
      context_.TryCancel();
    });
    bool send_writes_done = false;
    {
      // A cancel does not end a Write whose bytes the transport already took: it returns
      // only when the socket drains or the connection fails. Once the call is
      // cancelled or over, WritesDone is moot, so Close stops waiting for that Write.
      std::unique_lock lock(mu_);
      write_cv_.wait(lock, [&] { return !writing_ || cancelled_ || ended_; });
      send_writes_done = !writing_ && !writes_done_ && !finished_;
      if (send_writes_done) writing_ = writes_done_ = true;
    }
    write_cv_.notify_all();  // Settles waiting for the slot give up
    if (send_writes_done) {
      stream_->WritesDone();
      ReleaseWrite();
    }
    {
      std::lock_guard lock(join_mu_);
      if (reader_.joinable()) reader_.join();
    }
    watchdog.join();
    std::lock_guard lock(mu_);
    return ended_->ok() ? grpc::Status::OK : *ended_;
  }

 private:
  grpc::Status EndedStatusLocked() const {
    if (!ended_->ok()) return *ended_;
    return closing_ ? Closed()
                    : grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server ended the stream");
  }

  void ReadLoop() {
    Response response;
    while (stream_->Read(&response)) {
      SettleCallback done;
      CallResult<Failures> outcome;
      {
        std::lock_guard lock(mu_);
        for (auto& m : *response.mutable_messages())
          delivered_.push_back(std::move(m));
        if (response.has_confirmation()) {
          auto it = pending_.find(response.confirmation().sequence());
          if (it != pending_.end()) {
            done = std::move(it->second);
            pending_.erase(it);
            auto& failures = *response.mutable_confirmation()->mutable_failures();
            outcome.value.assign(std::make_move_iterator(failures.begin()),
                                 std::make_move_iterator(failures.end()));
          }
        }
      }
      if (!response.messages().empty()) cv_.notify_all();
      if (done) done(std::move(outcome));
      response.Clear();
    }
    {
      // After a cancel, Finish goes ahead beside a Write that the cancel could not end (see
      // Close): gRPC allows a send and the status receive at once. No Write starts after it.
      std::unique_lock lock(mu_);
      write_cv_.wait(lock, [&] { return !writing_ || cancelled_; });
      finished_ = true;
    }
    write_cv_.notify_all();
    const grpc::Status status = stream_->Finish();
    std::deque<v1::QueueMessage> unreturned;
    std::map<std::uint64_t, SettleCallback> unconfirmed;
    {
      std::lock_guard lock(mu_);
      ended_ = status;
      unreturned.swap(delivered_);
      unconfirmed.swap(pending_);
    }
    cv_.notify_all();
    write_cv_.notify_all();
    const grpc::Status lost =
        status.ok() ? grpc::Status(grpc::StatusCode::ABORTED,
                                   "the stream ended before confirming the settlement")
                    : status;
    for (auto& [sequence, done] : unconfirmed)
      done({lost, {}});
    Release(unreturned);
  }

  // Messages nobody will see are made visible again rather than left hidden until their
  // lease ends. Best effort: if spoold is gone, the lease ends anyway.
  void Release(const std::deque<v1::QueueMessage>& messages) {
    for (std::size_t i = 0; i < messages.size(); i += kMaxBatchEntries) {
      v1::ChangeMessageVisibilityBatchRequest request;
      request.set_queue(queue_);
      for (std::size_t j = i; j < std::min(messages.size(), i + kMaxBatchEntries); ++j) {
        auto* entry = request.add_entries();
        entry->set_receipt_handle(messages[j].receipt_handle());
        entry->set_visibility_timeout_seconds(0);
      }
      v1::ChangeMessageVisibilityBatchResponse response;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + timeout_);
      if (!stub_->ChangeMessageVisibilityBatch(&context, request, &response).ok()) return;
    }
  }

  std::unique_ptr<v1::QueueService::Stub> stub_;
  const std::chrono::milliseconds timeout_;
  const std::string queue_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<Request, Response>> stream_;

  // Claims the one write slot (writing_) for a Write or WritesDone: false, without waiting,
  // once WritesDone was sent or Finish called. gRPC allows one write at a time; reads run on
  // reader_ alongside. The slot is state under mu_ rather than a mutex so that Close and
  // ReadLoop can stop waiting for it once the call is cancelled.
  bool ClaimWriteLocked(std::unique_lock<std::mutex>& lock) {
    write_cv_.wait(lock, [&] { return !writing_ || writes_done_ || finished_; });
    if (writes_done_ || finished_) return false;
    writing_ = true;
    return true;
  }

  // Notifies under the lock: the destructor may be waiting to free write_cv_.
  void ReleaseWrite() {
    std::lock_guard lock(mu_);
    writing_ = false;
    write_cv_.notify_all();
  }

  grpc::Status NoMoreWritesLocked() const {
    if (closing_) return Closed();
    if (ended_) return EndedStatusLocked();
    return {grpc::StatusCode::UNAVAILABLE, "the stream has ended"};  // Finish is running
  }

  std::mutex mu_;
  std::condition_variable cv_;
  // Everything below is guarded by mu_.
  std::deque<v1::QueueMessage> delivered_;  // not yet returned by Receive
  std::uint64_t next_sequence_ = 1;
  std::map<std::uint64_t, SettleCallback> pending_;  // by sequence
  bool closing_ = false;
  bool cancelled_ = false;  // by Close's watchdog
  std::condition_variable write_cv_;
  bool writing_ = false;               // a Write or WritesDone runs
  bool writes_done_ = false;           // WritesDone was sent
  bool finished_ = false;              // Finish was called: no more writes
  std::optional<grpc::Status> ended_;  // the stream's final status

  std::mutex join_mu_;
  std::thread reader_;         // last: it starts once everything above exists
  std::thread::id reader_id_;  // set once; reader_ itself changes when joined
};

ReceiveStream::ReceiveStream(std::shared_ptr<grpc::Channel> channel,
                             std::chrono::milliseconds call_timeout, std::string queue,
                             const ReceiveStreamOptions& options)
    : impl_(std::make_unique<Impl>(std::move(channel), call_timeout, std::move(queue), options)) {}

ReceiveStream::~ReceiveStream() = default;

CallResult<std::vector<v1::QueueMessage>> ReceiveStream::Receive(std::chrono::milliseconds timeout,
                                                                 std::size_t max) {
  return impl_->Receive(timeout, max);
}

void ReceiveStream::Settle(Settlement settlement, SettleCallback done) {
  impl_->Settle(std::move(settlement), std::move(done));
}

std::future<CallResult<ReceiveStream::Failures>> ReceiveStream::Settle(Settlement settlement) {
  auto promise = std::make_shared<std::promise<CallResult<Failures>>>();
  auto future = promise->get_future();
  impl_->Settle(std::move(settlement), [promise](CallResult<Failures> outcome) {
    promise->set_value(std::move(outcome));
  });
  return future;
}

namespace {

// The outcome of a settlement of one operation.
std::future<grpc::Status> SettleOne(ReceiveStream& stream, Settlement settlement) {
  auto promise = std::make_shared<std::promise<grpc::Status>>();
  auto future = promise->get_future();
  stream.Settle(std::move(settlement), [promise](CallResult<Failures> outcome) {
    if (!outcome.ok()) {
      promise->set_value(outcome.status);
    } else if (!outcome.value.empty()) {
      promise->set_value(StatusOf(outcome.value.front().error()));
    } else {
      promise->set_value(grpc::Status::OK);
    }
  });
  return future;
}

}  // namespace

std::future<grpc::Status> ReceiveStream::Delete(std::string receipt_handle) {
  Settlement settlement;
  settlement.deletes.push_back(std::move(receipt_handle));
  return SettleOne(*this, std::move(settlement));
}

std::future<grpc::Status> ReceiveStream::Nack(std::string receipt_handle,
                                              std::uint32_t delay_seconds) {
  Settlement settlement;
  settlement.nacks.push_back({std::move(receipt_handle), delay_seconds});
  return SettleOne(*this, std::move(settlement));
}

std::future<grpc::Status> ReceiveStream::ChangeVisibility(
    std::string receipt_handle, std::uint32_t visibility_timeout_seconds) {
  Settlement settlement;
  settlement.visibility_changes.push_back({std::move(receipt_handle), visibility_timeout_seconds});
  return SettleOne(*this, std::move(settlement));
}

grpc::Status ReceiveStream::SetFlowControl(std::uint32_t max_outstanding_messages,
                                           std::uint64_t max_outstanding_bytes) {
  return impl_->SetFlowControl(max_outstanding_messages, max_outstanding_bytes);
}

grpc::Status ReceiveStream::Close() {
  return impl_->Close();
}

}  // namespace spool
