#include "protocol/queue_stream.h"

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>

#include <grpcpp/alarm.h>

#include "protocol/queue_convert.h"
#include "protocol/status_mapping.h"

namespace spool::protocol {
namespace {

using Request = v1::StreamingReceiveRequest;
using Response = v1::StreamingReceiveResponse;
using Reactor = grpc::ServerBidiReactor<Request, Response>;

constexpr std::uint32_t kDefaultOutstandingMessages = 1'000;
constexpr std::uint32_t kMaxOutstandingMessages = 120'000;
constexpr std::uint64_t kDefaultOutstandingBytes = 100ULL << 20;
constexpr std::uint32_t kMaxVisibilitySeconds = 43'200;
// One long poll asks for at most this many, so the byte window is overshot by little.
constexpr std::size_t kMaxPerReceive = 100;
constexpr std::int64_t kLongPollMs = 20'000;
constexpr std::size_t kMaxResponseBytes = 3 << 20;

grpc::Status Invalid(std::string message) {
  return ToGrpcStatus(InvalidArgument(std::move(message)));
}

// The stream's state; broker callbacks and the alarm hold it, so it outlives the reactor.
class Stream : public std::enable_shared_from_this<Stream> {
 public:
  Stream(broker::Broker& broker, CallCounter& calls) : broker_(broker), calls_(calls) {}

  void Attach(Reactor* reactor) {
    {
      std::lock_guard lock(mu_);
      reactor_ = reactor;
      ++read_starts_;
    }
    reactor->StartRead(&request_);
    ReadStarted();
  }

  void OnReadDone(bool ok) {
    if (!ok) {
      Actions next;
      {
        std::lock_guard lock(mu_);
        reading_done_ = true;
        next = NextLocked();
      }
      return Run(next);
    }
    Request request = std::move(request_);
    Actions next;
    std::vector<Op> ops;
    {
      std::lock_guard lock(mu_);
      if (grpc::Status bad = ApplyLocked(request); !bad.ok()) {
        end_status_ = bad;
      } else {
        ops = OpsOf(request);
        if (!ops.empty()) {
          ++pending_confirmations_;
          calls_.Enter();  // until the confirmation is written or dropped
        }
      }
      if (!end_status_ && !reading_done_) {
        ++read_starts_;
        next.read = reactor_;
      }
      next = Merge(next, NextLocked());
    }
    if (!ops.empty()) Execute(request.sequence(), std::move(ops));
    Run(next);
  }

  void OnWriteDone(bool ok) {
    Actions next;
    std::vector<broker::QueueReceipt> unsent;
    {
      std::lock_guard lock(mu_);
      writing_ = false;
      Settle(responses_.front());
      responses_.pop_front();
      if (!ok) {
        // The client is gone: what it will never read is given back at once.
        broken_ = true;
        for (const Response& r : responses_) {
          for (const auto& m : r.messages())
            unsent.push_back({m.partition(), m.offset(), 0});
          Settle(r);
        }
        responses_.clear();
      }
      next = NextLocked();
    }
    Release(std::move(unsent));
    Run(next);
  }

  void OnDone() {
    std::lock_guard lock(mu_);
    if (alarm_) alarm_->Cancel();
  }

 private:
  struct Actions {
    Reactor* read = nullptr;
    Reactor* write_to = nullptr;
    const Response* write = nullptr;
    Reactor* finish = nullptr;
    grpc::Status status;
    std::optional<broker::QueueReceive> receive;
    std::optional<std::int64_t> alarm_at_ms;
  };

  static Actions Merge(Actions a, const Actions& b) {
    if (b.write != nullptr) {
      a.write_to = b.write_to;
      a.write = b.write;
    }
    if (b.finish != nullptr) {
      a.finish = b.finish;
      a.status = b.status;
    }
    if (b.receive) a.receive = b.receive;
    if (b.alarm_at_ms) a.alarm_at_ms = b.alarm_at_ms;
    return a;
  }

  enum class Kind { kDelete, kNack, kChange };
  struct Op {
    Kind kind;
    std::string handle;
    std::int64_t ms = 0;  // nack delay or new visibility
  };

  struct Outstanding {
    std::uint64_t generation = 0;
    std::uint64_t bytes = 0;
    std::int64_t deadline_ms = 0;
  };
  using Key = std::pair<std::uint32_t, std::uint64_t>;  // partition, offset

  // The first request sets up the stream; later ones may change the window.
  grpc::Status ApplyLocked(const Request& r) {
    if (r.max_outstanding_messages() > kMaxOutstandingMessages) {
      return Invalid("max_outstanding_messages must be within 1-120000");
    }
    if (started_) {
      if (!r.queue().empty() && r.queue() != queue_) {
        return Invalid("this stream receives from '" + queue_ + "', not '" + r.queue() + "'");
      }
      if (r.has_visibility_timeout_seconds()) {
        return Invalid("visibility_timeout_seconds is for the first request only");
      }
      if (r.max_outstanding_messages() != 0) max_messages_ = r.max_outstanding_messages();
      if (r.max_outstanding_bytes() != 0) max_bytes_ = r.max_outstanding_bytes();
      return grpc::Status::OK;
    }
    if (r.queue().empty()) return Invalid("the first request must name the queue");
    auto ids = IdsOf(broker_, r.queue());
    if (!ids) return ToGrpcStatus(ids.error());
    if (r.has_visibility_timeout_seconds()) {
      if (r.visibility_timeout_seconds() > kMaxVisibilitySeconds) {
        return Invalid("visibility_timeout_seconds must be within 0-43200");
      }
      visibility_ms_ = static_cast<std::int64_t>(r.visibility_timeout_seconds()) * kMsPerSecond;
    }
    started_ = true;
    queue_ = r.queue();
    ids_ = *ids;
    max_messages_ = r.max_outstanding_messages() == 0 ? kDefaultOutstandingMessages
                                                      : r.max_outstanding_messages();
    max_bytes_ =
        r.max_outstanding_bytes() == 0 ? kDefaultOutstandingBytes : r.max_outstanding_bytes();
    return grpc::Status::OK;
  }

  static std::vector<Op> OpsOf(const Request& r) {
    std::vector<Op> ops;
    for (const auto& handle : r.deletes())
      ops.push_back({Kind::kDelete, handle, 0});
    for (const auto& nack : r.nacks()) {
      ops.push_back({Kind::kNack, nack.receipt_handle(),
                     static_cast<std::int64_t>(nack.delay_seconds()) * kMsPerSecond});
    }
    for (const auto& change : r.visibility_changes()) {
      ops.push_back(
          {Kind::kChange, change.receipt_handle(),
           static_cast<std::int64_t>(change.visibility_timeout_seconds()) * kMsPerSecond});
    }
    return ops;
  }

  // Carries out one request's deletes, nacks and visibility changes; confirms them together.
  void Execute(std::uint64_t sequence, std::vector<Op> ops) {
    struct Confirm {
      std::mutex mu;
      std::size_t remaining;
      Response response;
    };
    auto confirm = std::make_shared<Confirm>();
    confirm->remaining = ops.size();
    confirm->response.mutable_confirmation()->set_sequence(sequence);
    auto self = shared_from_this();
    for (Op& op : ops) {
      auto finish = [self, confirm, op](Status s) {
        bool last = false;
        {
          std::lock_guard lock(confirm->mu);
          if (!s) {
            auto* failure = confirm->response.mutable_confirmation()->add_failures();
            failure->set_receipt_handle(op.handle);
            failure->set_action(op.kind == Kind::kDelete ? v1::RECEIPT_ACTION_DELETE
                                : op.kind == Kind::kNack ? v1::RECEIPT_ACTION_NACK
                                                         : v1::RECEIPT_ACTION_CHANGE_VISIBILITY);
            ToProtoError(s.error(), failure->mutable_error());
          }
          last = --confirm->remaining == 0;
        }
        if (last) self->Confirmed(std::move(confirm->response));
      };
      auto receipt = DecodeReceipt(op.handle, ids_.subscription);
      if (!receipt) {
        finish(receipt.error());
        continue;
      }
      const Key key{receipt->partition, receipt->offset};
      const std::uint64_t generation = receipt->generation;
      auto applied = [self, key, generation, op, finish](Status s) {
        if (s) self->Applied(key, generation, op.kind, op.ms);
        finish(std::move(s));
      };
      if (op.kind == Kind::kDelete) {
        broker_.DeleteMessage(queue_, *receipt, applied);
      } else if (op.kind == Kind::kNack) {
        broker_.NackMessage(queue_, *receipt, op.ms, applied);
      } else {
        broker_.ChangeMessageVisibility(queue_, *receipt, op.ms, applied);
      }
    }
  }

  // A delete or nack frees its place in the window; a visibility change moves its lease end.
  void Applied(Key key, std::uint64_t generation, Kind kind, std::int64_t ms) {
    const std::int64_t now = broker_.clock().WallMillis();
    Actions next;
    {
      std::lock_guard lock(mu_);
      auto it = outstanding_.find(key);
      if (it == outstanding_.end() || it->second.generation != generation) return;
      if (kind == Kind::kChange && ms > 0) {
        deadlines_.erase({it->second.deadline_ms, key});
        it->second.deadline_ms = now + ms;
        deadlines_.insert({it->second.deadline_ms, key});
        return;
      }
      Forget(it);
      next = NextLocked();
    }
    Run(next);
  }

  void Confirmed(Response response) {
    Actions next;
    bool dropped = false;
    {
      std::lock_guard lock(mu_);
      if (broken_ || finished_) {
        --pending_confirmations_;
        dropped = true;
      } else {
        responses_.push_back(std::move(response));
      }
      next = NextLocked();
    }
    if (dropped) calls_.Leave();
    Run(next);
  }

  void OnReceived(Result<std::vector<broker::QueueMessage>> got) {
    Actions next;
    std::vector<broker::QueueReceipt> unwanted;
    {
      std::lock_guard lock(mu_);
      receiving_ = false;
      if (!got) {
        if (!end_status_) end_status_ = ToGrpcStatus(got.error());
      } else if (DoneDeliveringLocked()) {
        for (const auto& m : *got) {
          unwanted.push_back({m.partition, m.message.offset, m.message.generation});
        }
      } else {
        Deliver(*got);
      }
      next = NextLocked();
    }
    calls_.Leave();
    Release(std::move(unwanted));
    Run(next);
  }

  // Adds messages to the window and queues them for writing, about 3 MiB per response.
  void Deliver(std::vector<broker::QueueMessage>& messages) {
    Response* response = nullptr;
    std::size_t response_bytes = 0;
    for (auto& m : messages) {
      std::uint64_t bytes = m.message.record.value.size();
      for (const auto& [key, value] : m.message.record.headers)
        bytes += key.size() + value.size();
      const Key key{m.partition, m.message.offset};
      const std::uint64_t generation = m.message.generation;
      const std::int64_t deadline_ms = m.message.visibility_deadline_ms;
      v1::QueueMessage proto;
      MessageToProto(std::move(m), ids_.topic_id, ids_.subscription, ids_.fifo, &proto);
      const std::size_t size = proto.ByteSizeLong();
      if (response == nullptr || response_bytes + size > kMaxResponseBytes) {
        response = &responses_.emplace_back();
        response_bytes = 0;
      }
      response_bytes += size;
      if (auto old = outstanding_.find(key); old != outstanding_.end()) Forget(old);
      outstanding_[key] = {generation, bytes, deadline_ms};
      deadlines_.insert({deadline_ms, key});
      outstanding_bytes_ += bytes;
      *response->add_messages() = std::move(proto);
    }
  }

  // Gives back leased messages nobody will process (generation 0: any receive).
  void Release(std::vector<broker::QueueReceipt> receipts) {
    for (auto& r : receipts) {
      if (r.generation == 0) {
        // Unsent deliveries: their generation is in the window.
        std::lock_guard lock(mu_);
        auto it = outstanding_.find({r.partition, r.offset});
        if (it == outstanding_.end()) continue;
        r.generation = it->second.generation;
        Forget(it);
      }
      broker_.ChangeMessageVisibility(queue_, r, 0, [](Status) {});
    }
  }

  void Forget(std::map<Key, Outstanding>::iterator it) {
    deadlines_.erase({it->second.deadline_ms, it->first});
    outstanding_bytes_ -= it->second.bytes;
    outstanding_.erase(it);
  }

  // A written (or dropped) response: a confirmation settles its call.
  void Settle(const Response& r) {
    if (r.has_confirmation()) {
      --pending_confirmations_;
      calls_.Leave();
    }
  }

  void OnAlarm() {
    Actions next;
    {
      std::lock_guard lock(mu_);
      alarm_at_ms_.reset();
      next = NextLocked();
    }
    Run(next);
  }

  void ReadStarted() {
    Actions next;
    {
      std::lock_guard lock(mu_);
      --read_starts_;
      next = NextLocked();
    }
    Run(next);
  }

  // Nothing more is delivered: the stream ended or will, or the client half-closed or left.
  bool DoneDeliveringLocked() const {
    return finished_ || broken_ || reading_done_ || end_status_.has_value();
  }

  // Decides what to do next; the caller does it after unlocking.
  Actions NextLocked() {
    Actions next;
    if (finished_) return next;
    if (!end_status_ && (calls_.draining() || broker_.waiters_released())) {
      end_status_ = ToGrpcStatus(Unavailable("spoold is shutting down"));
    }
    const bool ending = DoneDeliveringLocked();
    if (started_ && !ending && !receiving_) {
      // Leases that ended leave the window.
      const std::int64_t now = broker_.clock().WallMillis();
      while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
        Forget(outstanding_.find(deadlines_.begin()->second));
      }
      std::optional<std::int64_t> earliest;
      if (!deadlines_.empty()) earliest = deadlines_.begin()->first;
      const std::size_t room =
          outstanding_.size() < max_messages_ ? max_messages_ - outstanding_.size() : 0;
      if (room > 0 && (outstanding_bytes_ < max_bytes_ || outstanding_.empty())) {
        receiving_ = true;
        calls_.Enter();  // until it answers, so shutdown waits for it
        // Within the broker's own receive limit (queue_max_batch), which may be below ours.
        const std::size_t per_receive = std::min({room, kMaxPerReceive, broker_.max_queue_batch()});
        next.receive = broker::QueueReceive{queue_, per_receive, visibility_ms_, kLongPollMs};
      } else if (earliest && (!alarm_at_ms_ || *earliest < *alarm_at_ms_)) {
        // A full window reopens when a lease ends, if nothing frees it before.
        alarm_at_ms_ = earliest;
        next.alarm_at_ms = earliest;
      }
    }
    if (!writing_ && !broken_ && !responses_.empty()) {
      writing_ = true;
      next.write_to = reactor_;
      next.write = &responses_.front();  // deque elements stay put until popped
    }
    if (ending && !writing_ && responses_.empty() && pending_confirmations_ == 0 &&
        read_starts_ == 0) {
      finished_ = true;
      next.finish = reactor_;
      next.status = end_status_.value_or(grpc::Status::OK);
      reactor_ = nullptr;
    }
    return next;
  }

  void Run(const Actions& next) {
    if (next.receive) {
      broker::QueueReceive receive = *next.receive;
      // A long poll outlives a stream that ends: once nothing more is wanted it must not
      // lease what arrives. The broker asks this with none of the stream's locks held.
      receive.cancelled = [weak = weak_from_this()] {
        auto self = weak.lock();
        if (!self) return true;
        std::lock_guard lock(self->mu_);
        return self->DoneDeliveringLocked();
      };
      broker_.ReceiveMessages(
          std::move(receive),
          [self = shared_from_this()](Result<std::vector<broker::QueueMessage>> got) {
            self->OnReceived(std::move(got));
          });
    }
    if (next.alarm_at_ms) {
      std::lock_guard lock(mu_);
      if (!finished_) {
        alarm_ = std::make_unique<grpc::Alarm>();
        alarm_->Set(
            std::chrono::system_clock::time_point(std::chrono::milliseconds(*next.alarm_at_ms + 1)),
            [self = shared_from_this()](bool ok) {
              if (ok) self->OnAlarm();
            });
      }
    }
    if (next.write != nullptr) next.write_to->StartWrite(next.write);
    if (next.read != nullptr) {
      next.read->StartRead(&request_);
      ReadStarted();
    }
    if (next.finish != nullptr) {
      {
        std::lock_guard lock(mu_);
        if (alarm_) alarm_->Cancel();
      }
      next.finish->Finish(next.status);  // last: the reactor may be gone after it
    }
  }

  broker::Broker& broker_;
  CallCounter& calls_;
  Request request_;  // the read in progress
  std::mutex mu_;
  // Everything below is guarded by mu_.
  Reactor* reactor_ = nullptr;  // null once Finish is decided
  bool started_ = false;
  std::string queue_;
  QueueIds ids_;
  std::optional<std::int64_t> visibility_ms_;
  std::size_t max_messages_ = kDefaultOutstandingMessages;
  std::uint64_t max_bytes_ = kDefaultOutstandingBytes;
  std::map<Key, Outstanding> outstanding_;
  std::set<std::pair<std::int64_t, Key>> deadlines_;  // lease ends of outstanding_
  std::uint64_t outstanding_bytes_ = 0;
  bool receiving_ = false;
  std::deque<Response> responses_;  // the front one is being written while writing_
  bool writing_ = false;
  // Reads decided but not yet started: Finish must not overtake a StartRead.
  int read_starts_ = 0;
  bool reading_done_ = false;
  std::size_t pending_confirmations_ = 0;  // requests whose confirmation is not yet written
  std::optional<grpc::Status> end_status_;
  bool broken_ = false;
  bool finished_ = false;
  std::unique_ptr<grpc::Alarm> alarm_;
  std::optional<std::int64_t> alarm_at_ms_;
};

class StreamingReceiveReactor final : public Reactor {
 public:
  StreamingReceiveReactor(broker::Broker& broker, CallCounter& calls)
      : stream_(std::make_shared<Stream>(broker, calls)) {
    stream_->Attach(this);
  }
  void OnReadDone(bool ok) override { stream_->OnReadDone(ok); }
  void OnWriteDone(bool ok) override { stream_->OnWriteDone(ok); }
  void OnDone() override {
    stream_->OnDone();
    delete this;
  }

 private:
  std::shared_ptr<Stream> stream_;
};

}  // namespace

Reactor* NewStreamingReceive(broker::Broker& broker, CallCounter& calls) {
  return new StreamingReceiveReactor(broker, calls);
}

}  // namespace spool::protocol
