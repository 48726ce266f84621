#include "spool/consumer.h"

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

bool Fenced(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::NOT_FOUND ||
         (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION &&
          s.error_message().rfind("STALE_MEMBER_EPOCH", 0) == 0);
}

// The broker may be restarting or the network away: worth another try.
bool Transient(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE ||
         s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
         s.error_code() == grpc::StatusCode::ABORTED;
}

std::chrono::system_clock::time_point Deadline(milliseconds timeout) {
  return std::chrono::system_clock::now() + timeout;
}

}  // namespace

class Consumer::Impl {
 public:
  Impl(const Client& client, ConsumerOptions options)
      : channel_(client.channel()),
        call_timeout_(client.options().call_timeout),
        groups_(v1::GroupService::NewStub(channel_)),
        stream_(v1::StreamService::NewStub(channel_)),
        options_(std::move(options)) {
    member_id_ = options_.member_id;  // empty: the broker chooses one on join
    last_commit_ = SteadyClock::now();
    heartbeater_ = std::thread([this] { HeartbeatLoop(); });
  }

  ~Impl() { Close(); }

  CallResult<std::vector<ConsumerRecord>> Poll(milliseconds timeout);
  grpc::Status Commit();
  void CommitAsync(std::function<void(grpc::Status)> done);
  grpc::Status Seek(const TopicPartition& tp, std::uint64_t offset);
  std::vector<TopicPartition> Assignment() const;
  std::string member_id() const {
    std::lock_guard lock(mu_);
    return member_id_;
  }
  grpc::Status Close();

 private:
  struct FetchCall {
    grpc::ClientContext context;
    v1::FetchRequest request;
    v1::FetchResponse response;
    TopicPartition tp;
    std::uint64_t generation = 0;
  };
  struct CommitCall {
    grpc::ClientContext context;
    v1::CommitOffsetsRequest request;
    v1::CommitOffsetsResponse response;
    std::map<TopicPartition, std::uint64_t> positions;
    std::function<void(grpc::Status)> done;
  };
  struct Partition {
    std::uint64_t fetch_position = 0;     // next offset to fetch
    std::uint64_t consumed_position = 0;  // after the last record Poll returned
    std::optional<std::uint64_t> committed;
    std::deque<v1::Record> buffer;
    std::size_t buffered_bytes = 0;
    std::uint64_t generation = 0;  // bumped by Seek: older fetch results are dropped
    FetchCall* fetching = nullptr;
    SteadyClock::time_point retry_at{};
    bool revoking = false;     // the broker took it; released at the next Poll
    bool needs_reset = false;  // its position fell below the log start
    bool announced = false;    // on_assigned ran
  };

  void HeartbeatLoop();
  // Adds newly assigned partitions (reads where to start), marks the rest for revocation.
  void Reconcile(const v1::HeartbeatResponse& response);
  void LoseAllLocked(std::unique_lock<std::mutex>& lock);
  void MaybeFetchLocked(const TopicPartition& tp, Partition& p);
  void OnFetched(FetchCall* call, grpc::Status status);
  void RunRebalanceCallbacks(std::unique_lock<std::mutex>& lock);
  // Moves positions that fell below the log start by the offset reset policy.
  void ResolveResets(std::unique_lock<std::mutex>& lock);
  // Positions to commit: owned partitions (optionally only `which`) whose position moved.
  std::map<TopicPartition, std::uint64_t> DirtyLocked(const std::set<TopicPartition>* which) const;
  grpc::Status CommitPositions(const std::map<TopicPartition, std::uint64_t>& positions);
  // Commits on revocation, retrying transient failures for a bounded time.
  void CommitRevoked(const std::map<TopicPartition, std::uint64_t>& positions);
  void ReleaseCallLocked();
  void CollectGarbage(std::unique_lock<std::mutex>& lock);

  std::shared_ptr<grpc::Channel> channel_;
  milliseconds call_timeout_;
  std::unique_ptr<v1::GroupService::Stub> groups_;
  std::unique_ptr<v1::StreamService::Stub> stream_;
  ConsumerOptions options_;

  mutable std::mutex mu_;
  std::condition_variable data_;       // Poll: records or rebalance work arrived
  std::condition_variable heartbeat_;  // the heartbeat thread: wake early or stop
  std::condition_variable calls_done_;
  std::map<TopicPartition, Partition> partitions_;
  std::vector<TopicPartition> lost_;  // to announce with on_lost
  std::size_t buffered_bytes_ = 0;
  std::uint32_t epoch_ = 0;
  std::string member_id_;  // guarded by mu_
  bool wake_heartbeat_ = false;
  bool stopping_ = false;
  bool closed_ = false;
  std::size_t calls_in_flight_ = 0;
  std::vector<std::unique_ptr<FetchCall>> dead_fetches_;  // freed outside gRPC callbacks
  std::vector<std::unique_ptr<CommitCall>> dead_commits_;
  grpc::Status fetch_error_;  // a non-transient fetch or heartbeat failure, for Poll
  SteadyClock::time_point last_commit_;
  std::size_t rr_ = 0;  // round-robin start for Poll
  std::mutex close_mu_;
  std::thread heartbeater_;
};

void Consumer::Impl::HeartbeatLoop() {
  std::unique_lock lock(mu_);
  milliseconds interval(500);
  milliseconds session = options_.session_timeout;
  // When the last answered heartbeat was sent: the broker's session clock started later.
  SteadyClock::time_point last_answered = SteadyClock::now();
  while (!stopping_) {
    v1::HeartbeatRequest request;
    request.set_group_id(options_.group);
    request.set_member_id(member_id_);
    request.set_member_epoch(epoch_);
    for (const auto& topic : options_.topics)
      request.add_subscribed_topics(topic);
    v1::TopicPartitions* owned = nullptr;
    for (const auto& [tp, p] : partitions_) {
      if (owned == nullptr || owned->topic() != tp.topic) {
        owned = request.add_owned_partitions();
        owned->set_topic(tp.topic);
      }
      owned->add_partitions(tp.partition);
    }
    request.set_rebalance_timeout_ms(options_.rebalance_timeout.count());
    request.set_client_id(options_.client_id);
    request.set_assignor(options_.assignor);
    request.set_session_timeout_ms(options_.session_timeout.count());
    request.set_offset_reset(options_.offset_reset);
    request.set_offset_reset_timestamp_ms(options_.offset_reset_timestamp_ms);
    lock.unlock();
    v1::HeartbeatResponse response;
    grpc::ClientContext context;
    // A heartbeat that hangs must not outlast the session it is meant to keep.
    context.set_deadline(Deadline(std::min(call_timeout_, session / 2)));
    const auto sent = SteadyClock::now();
    grpc::Status status = groups_->Heartbeat(&context, request, &response);
    if (status.ok()) Reconcile(response);
    lock.lock();
    if (status.ok()) {
      member_id_ = response.member_id();  // kept for rejoins
      epoch_ = response.member_epoch();
      interval = milliseconds(std::max<std::int64_t>(50, response.heartbeat_interval_ms()));
      if (response.session_timeout_ms() > 0) session = milliseconds(response.session_timeout_ms());
      last_answered = sent;
    } else if (Fenced(status)) {
      // Whatever we held may already be someone else's: drop it without committing.
      LoseAllLocked(lock);
      epoch_ = 0;
      continue;
    } else {
      if (!partitions_.empty() && SteadyClock::now() - last_answered >= session) {
        // The broker has (or, after a restart, will have) given our partitions away by now.
        LoseAllLocked(lock);
        epoch_ = 0;
      }
      if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
          status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
        fetch_error_ = status;  // the user's to fix; Poll reports it
        data_.notify_all();
      }
      interval = milliseconds(500);  // the broker is away; try again soon
    }
    heartbeat_.wait_for(lock, interval, [&] { return stopping_ || wake_heartbeat_; });
    wake_heartbeat_ = false;
  }
}

void Consumer::Impl::Reconcile(const v1::HeartbeatResponse& response) {
  std::set<TopicPartition> assigned;
  for (const auto& tps : response.assignment()) {
    for (std::uint32_t p : tps.partitions())
      assigned.insert({tps.topic(), p});
  }
  std::vector<TopicPartition> fresh;
  {
    std::lock_guard lock(mu_);
    for (auto& [tp, p] : partitions_) {
      if (!assigned.count(tp) && !p.revoking) {
        p.revoking = true;
        data_.notify_all();
      }
    }
    for (const auto& tp : assigned) {
      if (!partitions_.count(tp)) fresh.push_back(tp);
    }
  }
  if (fresh.empty()) return;
  // Where to start: the committed offset or the group's reset policy (the broker decides).
  v1::FetchOffsetsRequest request;
  request.set_group_id(options_.group);
  std::map<std::string, v1::TopicPartitions*> by_topic;
  for (const auto& tp : fresh) {
    auto& entry = by_topic[tp.topic];
    if (entry == nullptr) {
      entry = request.add_partitions();
      entry->set_topic(tp.topic);
    }
    entry->add_partitions(tp.partition);
  }
  v1::FetchOffsetsResponse offsets;
  grpc::ClientContext context;
  context.set_deadline(Deadline(call_timeout_));
  if (!groups_->FetchOffsets(&context, request, &offsets).ok()) return;  // next heartbeat retries
  std::lock_guard lock(mu_);
  if (stopping_) return;
  for (const auto& o : offsets.offsets()) {
    TopicPartition tp{o.topic(), o.partition()};
    if (partitions_.count(tp)) continue;
    Partition& p = partitions_[tp];
    p.fetch_position = p.consumed_position = o.start_offset();
    if (o.has_committed_offset()) p.committed = o.committed_offset();
    MaybeFetchLocked(tp, p);
  }
  data_.notify_all();
}

void Consumer::Impl::LoseAllLocked(std::unique_lock<std::mutex>& /*lock*/) {
  for (auto& [tp, p] : partitions_) {
    if (p.fetching != nullptr) p.fetching->context.TryCancel();
    if (p.announced) lost_.push_back(tp);
  }
  partitions_.clear();
  buffered_bytes_ = 0;
  data_.notify_all();
}

void Consumer::Impl::MaybeFetchLocked(const TopicPartition& tp, Partition& p) {
  if (p.fetching != nullptr || p.revoking || p.needs_reset || stopping_ || closed_) return;
  if (buffered_bytes_ >= options_.max_buffered_bytes) return;
  if (SteadyClock::now() < p.retry_at) return;
  auto call = std::make_unique<FetchCall>();
  call->tp = tp;
  call->generation = p.generation;
  call->request.set_topic(tp.topic);
  call->request.set_partition(tp.partition);
  call->request.set_offset(p.fetch_position);
  call->request.set_max_records(static_cast<std::uint32_t>(options_.max_poll_records));
  call->request.set_max_bytes(options_.fetch_max_bytes);
  call->request.set_max_wait_ms(options_.fetch_wait.count());
  call->context.set_deadline(Deadline(call_timeout_ + options_.fetch_wait));
  FetchCall* raw = call.release();
  p.fetching = raw;
  ++calls_in_flight_;
  stream_->async()->Fetch(&raw->context, &raw->request, &raw->response,
                          [this, raw](grpc::Status s) { OnFetched(raw, std::move(s)); });
}

void Consumer::Impl::OnFetched(FetchCall* call, grpc::Status status) {
  std::lock_guard lock(mu_);
  auto it = partitions_.find(call->tp);
  if (it != partitions_.end() && it->second.fetching == call) {
    Partition& p = it->second;
    p.fetching = nullptr;
    if (call->generation == p.generation && !p.revoking) {
      if (status.ok()) {
        for (auto& record : *call->response.mutable_records()) {
          const std::size_t bytes = record.value().size() + record.key().size() + 32;
          p.buffered_bytes += bytes;
          buffered_bytes_ += bytes;
          p.buffer.push_back(std::move(record));
        }
        p.fetch_position = call->response.next_offset();
        MaybeFetchLocked(it->first, p);
      } else if (status.error_code() == grpc::StatusCode::OUT_OF_RANGE) {
        // Retention passed the position: Poll moves it by the reset policy.
        p.needs_reset = true;
      } else if (status.error_code() == grpc::StatusCode::NOT_FOUND ||
                 status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
        fetch_error_ = status;  // e.g. the topic was deleted; Poll reports it
        p.retry_at = SteadyClock::now() + milliseconds(1'000);
      } else {
        p.retry_at = SteadyClock::now() + milliseconds(200);
      }
    }
    data_.notify_all();
  }
  dead_fetches_.emplace_back(call);
  ReleaseCallLocked();
}

void Consumer::Impl::ReleaseCallLocked() {
  if (--calls_in_flight_ == 0) calls_done_.notify_all();
}

void Consumer::Impl::CollectGarbage(std::unique_lock<std::mutex>& lock) {
  if (dead_fetches_.empty() && dead_commits_.empty()) return;
  auto fetches = std::move(dead_fetches_);
  auto commits = std::move(dead_commits_);
  dead_fetches_.clear();
  dead_commits_.clear();
  lock.unlock();
  fetches.clear();
  commits.clear();
  lock.lock();
}

std::map<TopicPartition, std::uint64_t> Consumer::Impl::DirtyLocked(
    const std::set<TopicPartition>* which) const {
  std::map<TopicPartition, std::uint64_t> out;
  for (const auto& [tp, p] : partitions_) {
    if (which != nullptr && !which->count(tp)) continue;
    if (!p.committed || *p.committed != p.consumed_position) out[tp] = p.consumed_position;
  }
  return out;
}

void Consumer::Impl::CommitRevoked(const std::map<TopicPartition, std::uint64_t>& positions) {
  // The broker waits for the release up to the rebalance timeout; use part of it to ride out
  // a broker that is briefly away, so processed records are not delivered again.
  const auto deadline = SteadyClock::now() + std::min(options_.rebalance_timeout / 2,
                                                      milliseconds(options_.session_timeout));
  milliseconds backoff(100);
  while (true) {
    grpc::Status status = CommitPositions(positions);
    if (status.ok() || Fenced(status) || !Transient(status)) return;  // fenced: not ours now
    if (SteadyClock::now() + backoff >= deadline) return;
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, milliseconds(2'000));
  }
}

grpc::Status Consumer::Impl::CommitPositions(
    const std::map<TopicPartition, std::uint64_t>& positions) {
  if (positions.empty()) return grpc::Status::OK;
  v1::CommitOffsetsRequest request;
  request.set_group_id(options_.group);
  {
    std::lock_guard lock(mu_);
    request.set_member_id(member_id_);
    request.set_member_epoch(epoch_);
  }
  for (const auto& [tp, offset] : positions) {
    v1::CommitOffset* o = request.add_offsets();
    o->set_topic(tp.topic);
    o->set_partition(tp.partition);
    o->set_offset(offset);
  }
  v1::CommitOffsetsResponse response;
  grpc::ClientContext context;
  context.set_deadline(Deadline(call_timeout_));
  grpc::Status status = groups_->CommitOffsets(&context, request, &response);
  if (status.ok()) {
    std::lock_guard lock(mu_);
    for (const auto& [tp, offset] : positions) {
      auto it = partitions_.find(tp);
      if (it != partitions_.end()) it->second.committed = offset;
    }
    last_commit_ = SteadyClock::now();
  }
  return status;
}

void Consumer::Impl::RunRebalanceCallbacks(std::unique_lock<std::mutex>& lock) {
  // Lost partitions: announce; nothing to commit.
  if (!lost_.empty()) {
    auto lost = std::move(lost_);
    lost_.clear();
    lock.unlock();
    if (options_.on_lost) options_.on_lost(lost);
    lock.lock();
  }
  // Revoked: the user may commit in the callback; then the consumer commits and releases.
  std::vector<TopicPartition> revoking;
  for (const auto& [tp, p] : partitions_) {
    if (p.revoking) revoking.push_back(tp);
  }
  if (!revoking.empty()) {
    std::vector<TopicPartition> announced;
    for (const auto& tp : revoking) {
      if (partitions_[tp].announced) announced.push_back(tp);
    }
    lock.unlock();
    if (options_.on_revoked && !announced.empty()) options_.on_revoked(announced);
    if (options_.auto_commit) {
      std::set<TopicPartition> which(revoking.begin(), revoking.end());
      std::map<TopicPartition, std::uint64_t> positions;
      {
        std::lock_guard relock(mu_);
        positions = DirtyLocked(&which);
      }
      CommitRevoked(positions);
    }
    lock.lock();
    for (const auto& tp : revoking) {
      auto it = partitions_.find(tp);
      if (it == partitions_.end() || !it->second.revoking) continue;
      if (it->second.fetching != nullptr) it->second.fetching->context.TryCancel();
      buffered_bytes_ -= it->second.buffered_bytes;
      partitions_.erase(it);
    }
    wake_heartbeat_ = true;  // report the release now
    heartbeat_.notify_all();
  }
  // Newly assigned.
  std::vector<TopicPartition> assigned;
  for (auto& [tp, p] : partitions_) {
    if (!p.announced && !p.revoking) {
      p.announced = true;
      assigned.push_back(tp);
    }
  }
  if (!assigned.empty() && options_.on_assigned) {
    lock.unlock();
    options_.on_assigned(assigned);
    lock.lock();
  }
}

void Consumer::Impl::ResolveResets(std::unique_lock<std::mutex>& lock) {
  std::vector<TopicPartition> which;
  for (const auto& [tp, p] : partitions_) {
    if (p.needs_reset && !p.revoking) which.push_back(tp);
  }
  if (which.empty()) return;
  lock.unlock();
  std::map<TopicPartition, std::uint64_t> found;
  for (const auto& tp : which) {
    v1::ListOffsetsRequest request;
    request.set_topic(tp.topic);
    request.set_partition(tp.partition);
    switch (options_.offset_reset) {
      case v1::OFFSET_RESET_LATEST:
        request.set_spec(v1::OFFSET_SPEC_LATEST);
        break;
      case v1::OFFSET_RESET_BY_TIME:
        request.set_spec(v1::OFFSET_SPEC_TIMESTAMP);
        request.set_timestamp_ms(options_.offset_reset_timestamp_ms);
        break;
      default:
        request.set_spec(v1::OFFSET_SPEC_EARLIEST);
        break;
    }
    v1::ListOffsetsResponse response;
    grpc::ClientContext context;
    context.set_deadline(Deadline(call_timeout_));
    if (!stream_->ListOffsets(&context, request, &response).ok()) continue;  // retried later
    found[tp] = response.has_offset() ? response.offset() : response.log_end_offset();
  }
  lock.lock();
  for (const auto& [tp, offset] : found) {
    auto it = partitions_.find(tp);
    if (it == partitions_.end() || !it->second.needs_reset) continue;
    it->second.needs_reset = false;
    it->second.fetch_position = it->second.consumed_position = offset;
  }
}

CallResult<std::vector<ConsumerRecord>> Consumer::Impl::Poll(milliseconds timeout) {
  CallResult<std::vector<ConsumerRecord>> result;
  std::unique_lock lock(mu_);
  if (closed_) {
    result.status = grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "consumer is closed");
    return result;
  }
  const auto deadline = SteadyClock::now() + timeout;
  while (true) {
    CollectGarbage(lock);
    RunRebalanceCallbacks(lock);
    ResolveResets(lock);
    if (!fetch_error_.ok()) {
      result.status = fetch_error_;
      fetch_error_ = grpc::Status::OK;
      return result;
    }
    if (options_.auto_commit &&
        SteadyClock::now() - last_commit_ >= options_.auto_commit_interval) {
      last_commit_ = SteadyClock::now();
      lock.unlock();
      CommitAsync({});
      lock.lock();
    }
    for (auto& [tp, p] : partitions_)
      MaybeFetchLocked(tp, p);
    // Take records round-robin over the partitions, for fairness.
    std::vector<std::pair<const TopicPartition*, Partition*>> ready;
    for (auto& [tp, p] : partitions_) {
      if (!p.revoking && p.announced && !p.buffer.empty()) ready.push_back({&tp, &p});
    }
    if (!ready.empty()) {
      std::size_t i = rr_++ % ready.size();
      while (result.value.size() < options_.max_poll_records && !ready.empty()) {
        auto [tp, p] = ready[i % ready.size()];
        v1::Record& record = p->buffer.front();
        const std::size_t bytes = record.value().size() + record.key().size() + 32;
        p->buffered_bytes -= bytes;
        buffered_bytes_ -= bytes;
        p->consumed_position = record.offset() + 1;
        result.value.push_back({tp->topic, std::move(record)});
        p->buffer.pop_front();
        if (p->buffer.empty()) {
          ready.erase(ready.begin() + static_cast<std::ptrdiff_t>(i % ready.size()));
        } else {
          ++i;
        }
      }
      for (auto& [tp, p] : partitions_)
        MaybeFetchLocked(tp, p);
      return result;
    }
    if (SteadyClock::now() >= deadline) return result;
    // Wake for records or rebalance work, and at least every 100 ms to retry fetches.
    data_.wait_until(lock, std::min(deadline, SteadyClock::now() + milliseconds(100)));
  }
}

grpc::Status Consumer::Impl::Commit() {
  // Partitions being revoked are included: they are still ours until released, and
  // on_revoked commits them this way.
  std::map<TopicPartition, std::uint64_t> positions;
  {
    std::lock_guard lock(mu_);
    positions = DirtyLocked(nullptr);
  }
  return CommitPositions(positions);
}

void Consumer::Impl::CommitAsync(std::function<void(grpc::Status)> done) {
  auto call = std::make_unique<CommitCall>();
  {
    std::unique_lock lock(mu_);
    call->positions = DirtyLocked(nullptr);
    if (call->positions.empty() || closed_) {
      lock.unlock();
      if (done) done(grpc::Status::OK);
      return;
    }
    call->request.set_group_id(options_.group);
    call->request.set_member_id(member_id_);
    call->request.set_member_epoch(epoch_);
    ++calls_in_flight_;
  }
  for (const auto& [tp, offset] : call->positions) {
    v1::CommitOffset* o = call->request.add_offsets();
    o->set_topic(tp.topic);
    o->set_partition(tp.partition);
    o->set_offset(offset);
  }
  call->done = std::move(done);
  call->context.set_deadline(Deadline(call_timeout_));
  CommitCall* raw = call.release();
  groups_->async()->CommitOffsets(&raw->context, &raw->request, &raw->response,
                                  [this, raw](grpc::Status s) {
                                    {
                                      std::lock_guard lock(mu_);
                                      if (s.ok()) {
                                        for (const auto& [tp, offset] : raw->positions) {
                                          auto it = partitions_.find(tp);
                                          if (it != partitions_.end())
                                            it->second.committed = offset;
                                        }
                                      }
                                    }
                                    if (raw->done) raw->done(s);
                                    std::lock_guard lock(mu_);
                                    dead_commits_.emplace_back(raw);
                                    ReleaseCallLocked();
                                  });
}

grpc::Status Consumer::Impl::Seek(const TopicPartition& tp, std::uint64_t offset) {
  std::lock_guard lock(mu_);
  auto it = partitions_.find(tp);
  if (it == partitions_.end() || it->second.revoking) {
    return {grpc::StatusCode::FAILED_PRECONDITION,
            tp.topic + "/" + std::to_string(tp.partition) + " is not assigned to this consumer"};
  }
  Partition& p = it->second;
  ++p.generation;
  if (p.fetching != nullptr) p.fetching->context.TryCancel();
  buffered_bytes_ -= p.buffered_bytes;
  p.buffered_bytes = 0;
  p.buffer.clear();
  p.fetch_position = p.consumed_position = offset;
  return grpc::Status::OK;
}

std::vector<TopicPartition> Consumer::Impl::Assignment() const {
  std::lock_guard lock(mu_);
  std::vector<TopicPartition> out;
  for (const auto& [tp, p] : partitions_) {
    if (!p.revoking) out.push_back(tp);
  }
  return out;
}

grpc::Status Consumer::Impl::Close() {
  std::lock_guard close_lock(close_mu_);
  {
    std::lock_guard lock(mu_);
    if (closed_) return grpc::Status::OK;
  }
  // Leaving revokes everything: the user gets its last chance to commit, as in a rebalance.
  std::vector<TopicPartition> owned;
  {
    std::lock_guard lock(mu_);
    for (const auto& [tp, p] : partitions_) {
      if (p.announced) owned.push_back(tp);  // also those a rebalance is taking away
    }
  }
  if (options_.on_revoked && !owned.empty()) options_.on_revoked(owned);
  grpc::Status status = options_.auto_commit ? Commit() : grpc::Status::OK;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    stopping_ = true;
    heartbeat_.notify_all();
  }
  heartbeater_.join();
  grpc::Status left = grpc::Status::OK;
  if (const std::string id = member_id(); !id.empty()) {  // empty: it never joined
    v1::LeaveGroupRequest request;
    request.set_group_id(options_.group);
    request.set_member_id(id);
    v1::LeaveGroupResponse response;
    grpc::ClientContext context;
    context.set_deadline(Deadline(call_timeout_));
    left = groups_->LeaveGroup(&context, request, &response);
  }
  std::unique_lock lock(mu_);
  for (auto& [tp, p] : partitions_) {
    if (p.fetching != nullptr) p.fetching->context.TryCancel();
  }
  calls_done_.wait(lock, [&] { return calls_in_flight_ == 0; });
  partitions_.clear();
  CollectGarbage(lock);
  return status.ok() ? left : status;
}

Consumer::Consumer(const Client& client, ConsumerOptions options)
    : impl_(std::make_unique<Impl>(client, std::move(options))) {}
Consumer::~Consumer() = default;
CallResult<std::vector<ConsumerRecord>> Consumer::Poll(std::chrono::milliseconds timeout) {
  return impl_->Poll(timeout);
}
grpc::Status Consumer::Commit() {
  return impl_->Commit();
}
void Consumer::CommitAsync(std::function<void(grpc::Status)> done) {
  impl_->CommitAsync(std::move(done));
}
grpc::Status Consumer::Seek(const TopicPartition& tp, std::uint64_t offset) {
  return impl_->Seek(tp, offset);
}
std::vector<TopicPartition> Consumer::Assignment() const {
  return impl_->Assignment();
}
std::string Consumer::member_id() const {
  return impl_->member_id();
}
grpc::Status Consumer::Close() {
  return impl_->Close();
}

}  // namespace spool
