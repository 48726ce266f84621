#include "broker/dedup.h"

#include "common/coding.h"

namespace spool::broker {

void DedupPending::Then(std::function<void(Result<DedupHit>)> then) {
  std::unique_lock lock(mu_);
  if (!outcome_) {
    waiters_.push_back(std::move(then));
    return;
  }
  Result<DedupHit> outcome = *outcome_;
  lock.unlock();
  then(std::move(outcome));
}

void DedupPending::Resolve(Result<DedupHit> outcome) {
  std::vector<std::function<void(Result<DedupHit>)>> waiters;
  {
    std::lock_guard lock(mu_);
    if (outcome_) return;
    outcome_ = outcome;
    waiters.swap(waiters_);
  }
  for (auto& w : waiters)
    w(outcome);
}

DedupTable::Claim DedupTable::Take(const std::string& id, std::int64_t now_ms) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it != entries_.end()) {
    Entry& e = it->second;
    if (!e.hit) return {Claim::Kind::kPending, {}, e.pending};
    if (e.expires_ms > now_ms) return {Claim::Kind::kDuplicate, *e.hit, nullptr};
    entries_.erase(it);  // its window ended; the id is new again
  }
  Entry& e = entries_[id];
  e.pending = std::make_shared<DedupPending>();
  return {Claim::Kind::kNew, {}, nullptr};
}

void DedupTable::Complete(const std::string& id, DedupHit hit, std::int64_t expires_ms) {
  std::shared_ptr<DedupPending> pending;
  {
    std::lock_guard lock(mu_);
    Entry& e = entries_[id];
    pending = std::move(e.pending);
    e.pending.reset();
    e.hit = hit;
    e.expires_ms = expires_ms;
    order_.emplace_back(expires_ms, id);
  }
  if (pending) pending->Resolve(hit);
}

void DedupTable::Abandon(const std::string& id, const Error& error) {
  std::shared_ptr<DedupPending> pending;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end() || it->second.hit) return;
    pending = std::move(it->second.pending);
    entries_.erase(it);
  }
  if (pending) pending->Resolve(error);
}

void DedupTable::Restore(const std::string& id, DedupHit hit, std::int64_t expires_ms) {
  std::lock_guard lock(mu_);
  entries_[id] = Entry{hit, expires_ms, nullptr};
  order_.emplace_back(expires_ms, id);
}

std::vector<std::string> DedupTable::TakeExpired(std::int64_t now_ms) {
  std::vector<std::string> out;
  std::lock_guard lock(mu_);
  // Appends complete in about time order, so the front holds the oldest; a later entry for
  // the same id (a renewal) keeps the id alive.
  while (!order_.empty() && order_.front().first <= now_ms) {
    auto [expires, id] = std::move(order_.front());
    order_.pop_front();
    auto it = entries_.find(id);
    if (it != entries_.end() && it->second.hit && it->second.expires_ms == expires) {
      entries_.erase(it);
      out.push_back(std::move(id));
    }
  }
  return out;
}

void DedupTable::Clear() {
  std::lock_guard lock(mu_);
  for (auto it = entries_.begin(); it != entries_.end();) {
    it = it->second.hit ? entries_.erase(it) : std::next(it);  // appends in flight stay
  }
  order_.clear();
}

std::string DedupTable::EncodeValue(DedupHit hit, std::int64_t expires_ms) {
  std::string out;
  PutFixed32BE(out, hit.partition);
  PutFixed64BE(out, hit.offset);
  PutVarsint64(out, expires_ms);
  // Optional and last, so that entries written before sequence numbers existed still read.
  if (hit.sequence) PutVarint64(out, *hit.sequence);
  return out;
}

Result<std::pair<DedupHit, std::int64_t>> DedupTable::DecodeValue(std::string_view in) {
  DedupHit hit;
  std::int64_t expires = 0;
  if (!GetFixed32BE(in, &hit.partition) || !GetFixed64BE(in, &hit.offset) ||
      !GetVarsint64(in, &expires)) {
    return DataLoss("corrupt deduplication entry");
  }
  if (!in.empty()) {
    std::uint64_t sequence = 0;
    if (!GetVarint64(in, &sequence) || !in.empty()) {
      return DataLoss("corrupt deduplication entry");
    }
    hit.sequence = sequence;
  }
  return std::make_pair(hit, expires);
}

}  // namespace spool::broker
