#include "spool/producer.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace spool {
namespace {

using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using Stream = grpc::ClientReaderWriter<v1::PublishStreamRequest, v1::PublishStreamResponse>;

// What a record costs the buffer: its payload plus a little for the framing around it.
std::size_t RecordBytes(const ProducerRecord& record) {
  std::size_t bytes = record.value.size() + (record.key ? record.key->size() : 0) + 16;
  for (const auto& [key, value] : record.headers)
    bytes += key.size() + value.size() + 4;
  return bytes;
}

grpc::Status FromProtoError(const v1::Error& error) {
  // spool.v1.ErrorCode values are the gRPC codes with the same names.
  const auto code = error.code() == v1::ERROR_CODE_UNSPECIFIED
                        ? grpc::StatusCode::UNKNOWN
                        : static_cast<grpc::StatusCode>(error.code());
  return {code, error.message()};
}

struct Batch {
  std::uint64_t id = 0;  // creation order; Flush waits for the ids below its mark
  std::string topic;
  std::size_t bytes = 0;
  SteadyClock::time_point opened;
  SteadyClock::time_point deadline;  // stop retrying after this
  // The message as written; its sequence number is set when it goes on a stream.
  v1::PublishStreamRequest request;
  std::vector<DeliveryCallback> callbacks;
  grpc::Status last_error;

  std::size_t records() const { return callbacks.size(); }
};
using BatchPtr = std::shared_ptr<Batch>;

struct Completion {
  DeliveryCallback callback;
  Delivery delivery;
};

// Deliveries decided under the lock and run after it is released; the batches they finish
// are released (for Flush and the buffer) only once their callbacks have run.
struct Completions {
  std::vector<Completion> calls;
  std::vector<BatchPtr> batches;

  bool empty() const { return calls.empty() && batches.empty(); }
};

}  // namespace

class Producer::Impl {
 public:
  Impl(const Client& client, ProducerOptions options)
      : channel_(client.channel()),
        stub_(v1::PublishService::NewStub(channel_)),
        options_(options) {
    options_.max_in_flight = std::max<std::size_t>(1, options_.max_in_flight);
    options_.max_batch_records = std::max<std::size_t>(1, options_.max_batch_records);
    backoff_ = options_.retry_backoff;
    sender_ = std::thread([this] { SenderLoop(); });
  }

  ~Impl() { Close(std::chrono::seconds(30)); }

  void Send(ProducerRecord record, DeliveryCallback done);
  bool Flush(std::chrono::milliseconds timeout);
  void Close(std::chrono::milliseconds timeout);
  Stats stats() const;

 private:
  // One PublishStream. The sender thread owns it and writes; `reader` reads the answers.
  struct Session {
    grpc::ClientContext context;
    std::unique_ptr<Stream> stream;
    std::thread reader;
    bool write_failed = false;  // guarded by mu_
    bool ended = false;         // guarded by mu_: Read returned false
    bool writes_done = false;   // guarded by mu_
  };
  using OpenKey = std::pair<std::string, std::optional<std::uint32_t>>;

  void SenderLoop();
  void ReaderLoop(Session* session);
  void SealLocked(std::map<OpenKey, BatchPtr>::iterator it);
  void EndSession(std::unique_lock<std::mutex>& lock);
  void RequeueLocked(SteadyClock::time_point now, Completions& completions);
  void FailLocked(const BatchPtr& batch, const grpc::Status& status, Completions& completions);
  void SucceedLocked(const BatchPtr& batch, const v1::PublishResponse& response,
                     Completions& completions);
  // Runs the callbacks, then releases their batches. Called without mu_ held.
  void Deliver(Completions& completions);
  bool IdleLocked() const {
    return open_.empty() && ready_.empty() && in_flight_.empty() && retry_.empty();
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::PublishService::Stub> stub_;
  ProducerOptions options_;

  mutable std::mutex mu_;
  std::condition_variable wake_;   // the sender
  std::condition_variable space_;  // blocked Sends
  std::condition_variable done_;   // Flush
  std::map<OpenKey, BatchPtr> open_;
  std::deque<BatchPtr> ready_;                   // sealed, in send order
  std::map<std::uint64_t, BatchPtr> in_flight_;  // by stream sequence
  std::map<std::uint64_t, BatchPtr> retry_;      // failed transiently, by stream sequence
  std::set<std::uint64_t> outstanding_ids_;
  std::unique_ptr<Session> session_;
  std::uint64_t next_batch_id_ = 1;
  std::uint64_t next_sequence_ = 1;
  std::size_t buffered_bytes_ = 0;
  SteadyClock::time_point backoff_until_{};
  std::chrono::milliseconds backoff_;
  bool closed_ = false;   // no more Sends
  bool closing_ = false;  // the sender winds down once idle
  // Close's bound: past it, a stream the server has not ended after WritesDone is cancelled.
  SteadyClock::time_point close_deadline_ = SteadyClock::time_point::max();
  bool abandon_ = false;  // the sender fails what is left
  Stats stats_;

  std::mutex close_mu_;  // serializes Close
  std::thread sender_;
};

void Producer::Impl::Send(ProducerRecord record, DeliveryCallback done) {
  const std::size_t bytes = RecordBytes(record);
  auto refuse = [&](grpc::StatusCode code, std::string message) {
    Delivery delivery;
    delivery.status = grpc::Status(code, std::move(message));
    delivery.topic = std::move(record.topic);
    done(delivery);
  };
  if (bytes > options_.buffer_bytes) {
    return refuse(grpc::StatusCode::INVALID_ARGUMENT,
                  "record of " + std::to_string(bytes) + " bytes is larger than the buffer (" +
                      std::to_string(options_.buffer_bytes) + " bytes)");
  }
  std::unique_lock lock(mu_);
  if (closed_) {
    lock.unlock();
    return refuse(grpc::StatusCode::FAILED_PRECONDITION, "producer is closed");
  }
  if (buffered_bytes_ + bytes > options_.buffer_bytes) {
    if (options_.when_full == BufferFullPolicy::kFail) {
      lock.unlock();
      return refuse(grpc::StatusCode::RESOURCE_EXHAUSTED, "producer buffer is full");
    }
    const bool room = space_.wait_for(lock, options_.max_block, [&] {
      return closed_ || buffered_bytes_ + bytes <= options_.buffer_bytes;
    });
    if (closed_) {
      lock.unlock();
      return refuse(grpc::StatusCode::FAILED_PRECONDITION, "producer is closed");
    }
    if (!room) {
      lock.unlock();
      return refuse(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          "producer buffer stayed full for " + std::to_string(options_.max_block.count()) + " ms");
    }
  }
  buffered_bytes_ += bytes;

  const auto now = SteadyClock::now();
  auto it = open_.find(OpenKey(record.topic, record.partition));
  if (it != open_.end() && it->second->bytes + bytes > options_.max_batch_bytes) {
    SealLocked(it);
    it = open_.end();
  }
  if (it == open_.end()) {
    auto batch = std::make_shared<Batch>();
    batch->id = next_batch_id_++;
    batch->topic = record.topic;
    batch->opened = now;
    batch->deadline = now + options_.delivery_timeout;
    v1::PublishRequest& request = *batch->request.mutable_batch();
    request.set_topic(record.topic);
    if (record.partition) request.set_partition(*record.partition);
    outstanding_ids_.insert(batch->id);
    it = open_.emplace(OpenKey(record.topic, record.partition), std::move(batch)).first;
    wake_.notify_one();  // its linger deadline is new to the sender
  }
  Batch& batch = *it->second;
  v1::Record& out = *batch.request.mutable_batch()->add_records();
  if (record.key) out.set_key(std::move(*record.key));
  out.set_value(std::move(record.value));
  for (auto& [key, value] : record.headers) {
    v1::Header& header = *out.add_headers();
    header.set_key(std::move(key));
    header.set_value(std::move(value));
  }
  out.set_producer_timestamp_ms(record.timestamp_ms);
  batch.bytes += bytes;
  batch.callbacks.push_back(std::move(done));
  if (batch.bytes >= options_.max_batch_bytes || batch.records() >= options_.max_batch_records) {
    SealLocked(it);
    wake_.notify_one();
  }
}

void Producer::Impl::SealLocked(std::map<OpenKey, BatchPtr>::iterator it) {
  ready_.push_back(std::move(it->second));
  open_.erase(it);
}

bool Producer::Impl::Flush(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  while (!open_.empty())
    SealLocked(open_.begin());
  const std::uint64_t mark = next_batch_id_;
  wake_.notify_one();
  return done_.wait_for(
      lock, timeout, [&] { return outstanding_ids_.empty() || *outstanding_ids_.begin() >= mark; });
}

void Producer::Impl::Close(std::chrono::milliseconds timeout) {
  std::lock_guard close_lock(close_mu_);
  if (!sender_.joinable()) return;
  // Clamped so that a huge bound cannot overflow the clock.
  const auto deadline = SteadyClock::now() +
                        std::min<std::chrono::milliseconds>(timeout, std::chrono::hours(24 * 366));
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  space_.notify_all();
  const bool flushed = Flush(timeout);
  {
    std::lock_guard lock(mu_);
    closing_ = true;
    close_deadline_ = deadline;
    if (!flushed) {
      abandon_ = true;
      // Unblocks a Write the server is not taking.
      if (session_) session_->context.TryCancel();
    }
  }
  wake_.notify_one();
  sender_.join();
}

Producer::Stats Producer::Impl::stats() const {
  std::lock_guard lock(mu_);
  Stats stats = stats_;
  stats.buffered_bytes = buffered_bytes_;
  return stats;
}

void Producer::Impl::Deliver(Completions& completions) {
  for (auto& c : completions.calls)
    c.callback(c.delivery);
  completions.calls.clear();
  if (completions.batches.empty()) return;
  {
    std::lock_guard lock(mu_);
    for (const BatchPtr& batch : completions.batches) {
      buffered_bytes_ -= batch->bytes;
      outstanding_ids_.erase(batch->id);
    }
  }
  completions.batches.clear();
  space_.notify_all();
  done_.notify_all();
}

void Producer::Impl::FailLocked(const BatchPtr& batch, const grpc::Status& status,
                                Completions& completions) {
  for (auto& callback : batch->callbacks)
    completions.calls.push_back({std::move(callback), Delivery{status, batch->topic, 0, 0}});
  stats_.records_failed += batch->records();
  completions.batches.push_back(batch);
}

void Producer::Impl::SucceedLocked(const BatchPtr& batch, const v1::PublishResponse& response,
                                   Completions& completions) {
  if (static_cast<std::size_t>(response.results_size()) != batch->records()) {
    return FailLocked(
        batch,
        grpc::Status(grpc::StatusCode::INTERNAL,
                     "server answered " + std::to_string(response.results_size()) +
                         " results for " + std::to_string(batch->records()) + " records"),
        completions);
  }
  for (std::size_t i = 0; i < batch->records(); ++i) {
    const v1::PublishResult& result = response.results(static_cast<int>(i));
    completions.calls.push_back(
        {std::move(batch->callbacks[i]),
         Delivery{grpc::Status::OK, batch->topic, result.partition(), result.offset()}});
  }
  stats_.records_sent += batch->records();
  backoff_ = options_.retry_backoff;
  completions.batches.push_back(batch);
}

// Failed batches go back to the front of the queue in their original order, once nothing
// is outstanding: only then is it certain no later batch of theirs can still land first.
void Producer::Impl::RequeueLocked(SteadyClock::time_point now, Completions& completions) {
  std::vector<BatchPtr> again;
  for (auto& [sequence, batch] : retry_) {
    if (now >= batch->deadline || abandon_) {
      const grpc::Status status = abandon_
                                      ? grpc::Status(grpc::StatusCode::CANCELLED, "producer closed")
                                      : grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                                     "delivery timeout passed; last error: " +
                                                         batch->last_error.error_message());
      FailLocked(batch, status, completions);
    } else {
      again.push_back(batch);
      ++stats_.batches_retried;
    }
  }
  retry_.clear();
  ready_.insert(ready_.begin(), again.begin(), again.end());
  backoff_until_ = now + backoff_;
  backoff_ = std::min(backoff_ * 2, options_.max_retry_backoff);
}

void Producer::Impl::SenderLoop() {
  Completions completions;
  std::unique_lock lock(mu_);
  while (true) {
    if (!completions.empty()) {
      lock.unlock();
      Deliver(completions);
      lock.lock();
    }
    const auto now = SteadyClock::now();
    if (session_ && session_->ended) {
      EndSession(lock);
      continue;
    }
    if (abandon_) {
      for (auto& batch : ready_)
        FailLocked(batch, grpc::Status(grpc::StatusCode::CANCELLED, "producer closed"),
                   completions);
      ready_.clear();
      for (auto& [key, batch] : open_)
        FailLocked(batch, grpc::Status(grpc::StatusCode::CANCELLED, "producer closed"),
                   completions);
      open_.clear();
    }
    if (!retry_.empty() && in_flight_.empty()) {
      RequeueLocked(now, completions);
      continue;
    }
    if (closing_ && IdleLocked() && completions.empty()) {
      if (!session_) break;
      if (!session_->writes_done && !session_->write_failed) {
        session_->writes_done = true;
        Session* session = session_.get();
        lock.unlock();
        session->stream->WritesDone();
        lock.lock();
      }
      if (!wake_.wait_until(lock, close_deadline_, [&] { return session_->ended; })) {
        // Every record is acknowledged; a server that does not end the stream must not
        // hold Close past its bound.
        session_->context.TryCancel();
        wake_.wait(lock, [&] { return session_->ended; });
      }
      continue;
    }
    // Records pile up in their open batch while the window is full; that is the batching.
    if (ready_.empty() && in_flight_.size() < options_.max_in_flight) {
      for (auto it = open_.begin(); it != open_.end();) {
        auto next = std::next(it);
        if (now >= it->second->opened + options_.linger) SealLocked(it);
        it = next;
      }
    }
    const bool writable = !session_ || (!session_->write_failed && !session_->writes_done);
    if (!ready_.empty() && retry_.empty() && in_flight_.size() < options_.max_in_flight &&
        now >= backoff_until_ && writable) {
      BatchPtr batch = std::move(ready_.front());
      ready_.pop_front();
      if (now >= batch->deadline) {
        FailLocked(batch,
                   grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                batch->last_error.ok()
                                    ? "delivery timeout passed before the batch was sent"
                                    : "delivery timeout passed; last error: " +
                                          batch->last_error.error_message()),
                   completions);
        continue;
      }
      if (!session_) {
        session_ = std::make_unique<Session>();
        ++stats_.streams_opened;
        Session* session = session_.get();
        lock.unlock();
        // A channel that lost its server only notices the server is back when some thread
        // polls it; waiting here does that, rather than failing fast on a stale state until
        // gRPC's 5 s backup poller runs.
        if (channel_->GetState(/*try_to_connect=*/true) != GRPC_CHANNEL_READY) {
          channel_->WaitForConnected(std::chrono::system_clock::now() +
                                     std::max(options_.max_retry_backoff, milliseconds(100)));
        }
        session->stream = stub_->PublishStream(&session->context);
        session->reader = std::thread([this, session] { ReaderLoop(session); });
        lock.lock();
      }
      const std::uint64_t sequence = next_sequence_++;
      batch->request.set_sequence(sequence);
      in_flight_.emplace(sequence, batch);
      ++stats_.batches_sent;
      Session* session = session_.get();
      lock.unlock();
      // `batch` keeps the request alive even if its answer arrives before Write returns.
      const bool written = session->stream->Write(batch->request);
      lock.lock();
      if (!written) session->write_failed = true;  // the reader will see the stream end
      continue;
    }
    if (!completions.empty()) continue;
    // Sleep until a linger or a backoff ends, or something changes.
    std::optional<SteadyClock::time_point> wake_at;
    if (!ready_.empty() && backoff_until_ > now) wake_at = backoff_until_;
    if (ready_.empty() && in_flight_.size() < options_.max_in_flight) {
      for (const auto& [key, batch] : open_) {
        const auto due = batch->opened + options_.linger;
        if (!wake_at || due < *wake_at) wake_at = due;
      }
    }
    if (wake_at) {
      wake_.wait_until(lock, *wake_at);
    } else {
      wake_.wait(lock);
    }
  }
}

void Producer::Impl::ReaderLoop(Session* session) {
  Completions completions;
  v1::PublishStreamResponse response;
  while (session->stream->Read(&response)) {
    {
      std::lock_guard lock(mu_);
      auto it = in_flight_.find(response.sequence());
      if (it == in_flight_.end()) continue;  // not ours; nothing to settle
      BatchPtr batch = std::move(it->second);
      in_flight_.erase(it);
      if (response.has_error()) {
        grpc::Status status = FromProtoError(response.error());
        if (IsTransient(status) && !abandon_) {
          batch->last_error = std::move(status);
          retry_.emplace(response.sequence(), std::move(batch));
        } else {
          FailLocked(batch, status, completions);
        }
      } else {
        SucceedLocked(batch, response.response(), completions);
      }
    }
    wake_.notify_one();
    Deliver(completions);
  }
  std::lock_guard lock(mu_);
  session->ended = true;
  wake_.notify_one();
}

// The stream has ended: collect its status and settle what it still held.
void Producer::Impl::EndSession(std::unique_lock<std::mutex>& lock) {
  std::unique_ptr<Session> session = std::move(session_);
  lock.unlock();
  session->reader.join();
  grpc::Status status = session->stream->Finish();
  lock.lock();
  if (in_flight_.empty()) return;
  // Unanswered batches may or may not have been written: retry them unless the failure is
  // one a retry cannot cure. A stream that ends OK with answers missing was cut short too.
  const bool retry = !abandon_ && (status.ok() || IsTransient(status) ||
                                   status.error_code() == grpc::StatusCode::CANCELLED ||
                                   status.error_code() == grpc::StatusCode::INTERNAL ||
                                   status.error_code() == grpc::StatusCode::UNKNOWN);
  Completions completions;
  for (auto& [sequence, batch] : in_flight_) {
    if (retry) {
      batch->last_error = status.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                                     "stream ended before the answer")
                                      : status;
      retry_.emplace(sequence, batch);
    } else {
      FailLocked(batch,
                 abandon_ ? grpc::Status(grpc::StatusCode::CANCELLED, "producer closed") : status,
                 completions);
    }
  }
  in_flight_.clear();
  if (!completions.empty()) {
    lock.unlock();
    Deliver(completions);
    lock.lock();
  }
}

Producer::Producer(const Client& client, ProducerOptions options)
    : impl_(std::make_unique<Impl>(client, options)) {}

Producer::~Producer() = default;

std::future<Delivery> Producer::Send(ProducerRecord record) {
  auto promise = std::make_shared<std::promise<Delivery>>();
  std::future<Delivery> future = promise->get_future();
  impl_->Send(std::move(record),
              [promise](const Delivery& delivery) { promise->set_value(delivery); });
  return future;
}

void Producer::Send(ProducerRecord record, DeliveryCallback done) {
  impl_->Send(std::move(record), std::move(done));
}

bool Producer::Flush(std::chrono::milliseconds timeout) {
  return impl_->Flush(timeout);
}

void Producer::Close(std::chrono::milliseconds timeout) {
  impl_->Close(timeout);
}

Producer::Stats Producer::stats() const {
  return impl_->stats();
}

}  // namespace spool
