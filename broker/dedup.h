#pragma once

// Deduplication ids of one topic (common.proto, Record.deduplication_id): a record whose id
// was appended to the topic within the last 5 minutes is not appended again; the publish
// gets the original's partition and offset instead.
//
// The table answers "seen?" for every id of a publish before anything is appended, and
// claims the new ones, so two publishes racing with one id append it once: the second waits
// for the first (a Pending) and reports its outcome. The stored form (the `dedup` column
// family, written in the append's own batch) brings the table back after a restart.
//
// Thread-safety: thread-safe (one mutex); waiters run outside it.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"

namespace spool::broker {

inline constexpr std::int64_t kDedupWindowMs = 5 * 60 * 1000;

struct DedupHit {
  std::uint32_t partition = 0;
  std::uint64_t offset = 0;
  std::optional<std::uint64_t> sequence;  // the record's, if it has one
};

// The outcome of an append someone else is making.
class DedupPending {
 public:
  // Runs `then` with the outcome, at once if it is known.
  void Then(std::function<void(Result<DedupHit>)> then);
  void Resolve(Result<DedupHit> outcome);

 private:
  std::mutex mu_;
  std::optional<Result<DedupHit>> outcome_;
  std::vector<std::function<void(Result<DedupHit>)>> waiters_;
};

class DedupTable {
 public:
  struct Claim {
    enum class Kind { kNew, kDuplicate, kPending } kind = Kind::kNew;
    DedupHit hit;                           // kDuplicate
    std::shared_ptr<DedupPending> pending;  // kPending
  };
  // kNew claims `id` for the caller, who must call Complete or Abandon for it.
  Claim Take(const std::string& id, std::int64_t now_ms);
  // The append of `id` is durable (also for appends that did not claim it).
  void Complete(const std::string& id, DedupHit hit, std::int64_t expires_ms);
  void Abandon(const std::string& id, const Error& error);
  // An entry found in the store at startup.
  void Restore(const std::string& id, DedupHit hit, std::int64_t expires_ms);
  // Ids whose window ended, removed from the table; the caller deletes their stored form.
  std::vector<std::string> TakeExpired(std::int64_t now_ms);
  void Clear();

  static std::string EncodeValue(DedupHit hit, std::int64_t expires_ms);
  static Result<std::pair<DedupHit, std::int64_t>> DecodeValue(std::string_view in);

 private:
  struct Entry {
    std::optional<DedupHit> hit;  // absent while the append is in flight
    std::int64_t expires_ms = 0;
    std::shared_ptr<DedupPending> pending;
  };
  std::mutex mu_;
  std::map<std::string, Entry> entries_;                    // guarded by mu_
  std::deque<std::pair<std::int64_t, std::string>> order_;  // (expires, id), guarded by mu_
};

}  // namespace spool::broker
