// Broker: the consumer-group entry points. Membership and offsets live in GroupCoordinator;
// this adds what needs the partitions: where a member starts (the reset policy, which may
// look up a time on a partition strand) and offset resets.

#include <algorithm>
#include <mutex>

#include "broker/broker.h"
#include "common/logging.h"

namespace spool::broker {
namespace {

std::string_view PolicyName(OffsetReset reset) {
  switch (reset) {
    case OffsetReset::kEarliest:
      return "earliest";
    case OffsetReset::kLatest:
      return "latest";
    case OffsetReset::kByTime:
      return "by_time";
  }
  return "earliest";
}

// Collects one result per slot and answers once every slot is filled (or at the first
// error).
template <class T>
class Join {
 public:
  Join(std::size_t n, std::function<void(Result<std::vector<T>>)> done)
      : values_(n), remaining_(n), done_(std::move(done)) {}
  void Set(std::size_t i, T value) {
    std::unique_lock lock(mu_);
    values_[i] = std::move(value);
    if (--remaining_ == 0 && !failed_) {
      lock.unlock();
      done_(std::move(values_));
    }
  }
  void Fail(Error error) {
    std::unique_lock lock(mu_);
    if (failed_) return;
    failed_ = true;
    lock.unlock();
    done_(std::move(error));
  }

 private:
  std::mutex mu_;
  std::vector<T> values_;
  std::size_t remaining_;
  bool failed_ = false;
  std::function<void(Result<std::vector<T>>)> done_;
};

}  // namespace

void Broker::ScheduleGroupChecks() {
  if (options_.group_check_interval.count() <= 0) return;
  boost::asio::post(admin_strand_, [this] {
    {
      std::lock_guard lock(inflight_mu_);
      if (stopping_) return;
    }
    group_timer_.expires_after(options_.group_check_interval);
    group_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      groups_->Expire();
      ScheduleGroupChecks();
    });
  });
}

Result<HeartbeatAnswer> Broker::GroupHeartbeat(const MemberHeartbeat& heartbeat) {
  if (!Enter()) return Unavailable("the broker is shutting down");
  auto answer = groups_->Heartbeat(heartbeat);
  Leave();
  return answer;
}

Status Broker::LeaveGroup(const std::string& group, const std::string& member_id) {
  if (!Enter()) return Unavailable("the broker is shutting down");
  Status s = groups_->Leave(group, member_id);
  Leave();
  return s;
}

void Broker::CommitOffsets(const std::string& group, const std::string& member_id,
                           std::uint32_t member_epoch, std::vector<OffsetCommit> offsets,
                           StatusCallback done) {
  if (!Enter()) return done(Unavailable("the broker is shutting down"));
  groups_->Commit(group, member_id, member_epoch, std::move(offsets),
                  [this, done = std::move(done)](Status s) {
                    done(std::move(s));
                    Leave();
                  });
}

void Broker::ResolveStarts(std::vector<PartitionPosition> positions, const GroupSettings& settings,
                           Callback<std::vector<GroupOffset>> done) {
  if (positions.empty()) return done(std::vector<GroupOffset>());
  auto join = std::make_shared<Join<GroupOffset>>(positions.size(), std::move(done));
  for (std::size_t i = 0; i < positions.size(); ++i) {
    GroupOffset out;
    out.position = std::move(positions[i]);
    const PartitionPosition& p = out.position;
    if (p.committed && p.committed->offset >= p.log_start) {
      out.start_offset = p.committed->offset;
      join->Set(i, std::move(out));
      continue;
    }
    const std::string why = p.committed
                                ? "committed offset " + std::to_string(p.committed->offset) +
                                      " is below the log start " + std::to_string(p.log_start) +
                                      " (retention); reset by policy " +
                                      std::string(PolicyName(settings.offset_reset))
                                : "no committed offset; start by policy " +
                                      std::string(PolicyName(settings.offset_reset));
    out.reset_reason = why;
    switch (settings.offset_reset) {
      case OffsetReset::kEarliest:
        out.start_offset = p.log_start;
        join->Set(i, std::move(out));
        break;
      case OffsetReset::kLatest:
        out.start_offset = p.log_end;
        join->Set(i, std::move(out));
        break;
      case OffsetReset::kByTime: {
        const std::string topic = p.tp.topic;
        const std::uint32_t partition = p.tp.partition;
        ListOffset(topic, partition, OffsetQuery::kTimestamp, settings.offset_reset_timestamp_ms,
                   [join, i, out = std::move(out)](Result<std::optional<std::uint64_t>> r) mutable {
                     if (!r) return join->Fail(r.error());
                     out.start_offset = r->value_or(out.position.log_end);
                     join->Set(i, std::move(out));
                   });
        break;
      }
    }
  }
}

void Broker::FetchGroupOffsets(const std::string& group,
                               std::map<std::string, std::vector<std::uint32_t>> filter,
                               Callback<std::vector<GroupOffset>> done) {
  auto positions = groups_->Positions(group, filter);
  if (!positions) return done(positions.error());
  ResolveStarts(std::move(*positions), groups_->Settings(group), std::move(done));
}

std::vector<GroupSummary> Broker::ListGroups(const std::string& prefix, const std::string& after,
                                             std::size_t limit) const {
  return groups_->List(prefix, after, limit);
}

Result<GroupDescription> Broker::DescribeGroup(const std::string& group) const {
  return groups_->Describe(group);
}

void Broker::DeleteGroup(const std::string& group, StatusCallback done) {
  if (!Enter()) return done(Unavailable("the broker is shutting down"));
  groups_->Delete(group, [this, done = std::move(done)](Status s) {
    done(std::move(s));
    Leave();
  });
}

std::vector<GroupCoordinator::GroupMetrics> Broker::GroupMetrics() const {
  return groups_->Metrics();
}

void Broker::ResetGroupOffsets(ResetOffsetsRequest request, Callback<ResetOffsetsOutcome> done) {
  if (Status s = ValidateTopicName(request.group); !s) {
    return done(InvalidArgument("group id: " + s.error().message));
  }
  if (Status s = ValidateTopicName(request.topic); !s) {
    return done(InvalidArgument("topic: " + s.error().message));
  }
  auto info = DescribeTopic(request.topic);
  if (!info) return done(info.error());
  const auto count = static_cast<std::uint32_t>(info->partitions.size());
  std::vector<std::uint32_t> partitions = request.partitions;
  if (partitions.empty()) {
    for (std::uint32_t p = 0; p < count; ++p)
      partitions.push_back(p);
  }
  std::sort(partitions.begin(), partitions.end());
  if (std::adjacent_find(partitions.begin(), partitions.end()) != partitions.end()) {
    return done(InvalidArgument("a partition is listed twice"));
  }
  for (std::uint32_t p : partitions) {
    if (p >= count) {
      return done(NotFound("topic '" + request.topic + "' has " + std::to_string(count) +
                           " partitions; there is no partition " + std::to_string(p)));
    }
  }
  if (!request.dry_run && !request.force && groups_->HasMembers(request.group)) {
    return done(FailedPrecondition("group '" + request.group +
                                   "' has members; stop them or reset with force"));
  }
  // Compute every new offset first; nothing is stored unless all are valid.
  std::vector<ResetOffsetResult> base;
  for (std::uint32_t p : partitions) {
    const PartitionInfo& part = info->partitions[p];
    ResetOffsetResult r;
    r.partition = p;
    if (auto c = groups_->Committed(request.group, request.topic, p)) r.previous = c->offset;
    switch (request.mode) {
      case ResetMode::kEarliest:
        r.new_offset = part.start_offset;
        break;
      case ResetMode::kLatest:
      case ResetMode::kTimestamp:  // filled below
        r.new_offset = part.end_offset;
        break;
      case ResetMode::kOffset:
        if (request.offset < part.start_offset || request.offset > part.end_offset) {
          return done(OutOfRange("offset " + std::to_string(request.offset) +
                                 " is outside partition " + std::to_string(p) + "'s [" +
                                 std::to_string(part.start_offset) + ", " +
                                 std::to_string(part.end_offset) + "]"));
        }
        r.new_offset = request.offset;
        break;
      case ResetMode::kShift: {
        if (!r.previous) {
          r.new_offset = part.end_offset;
          break;
        }
        const auto from = static_cast<std::int64_t>(*r.previous);
        const std::int64_t shifted = std::clamp<std::int64_t>(
            from + request.shift_by, static_cast<std::int64_t>(part.start_offset),
            static_cast<std::int64_t>(part.end_offset));
        r.new_offset = static_cast<std::uint64_t>(shifted);
        break;
      }
    }
    base.push_back(r);
  }
  auto store = [this, request, done](std::vector<ResetOffsetResult> results) mutable {
    ResetOffsetsOutcome outcome{std::move(results), false};
    if (request.dry_run) return done(std::move(outcome));
    std::map<std::uint32_t, std::uint64_t> offsets;
    for (const auto& r : outcome.results)
      offsets[r.partition] = r.new_offset;
    if (!Enter()) return done(Unavailable("the broker is shutting down"));
    groups_->StoreReset(request.group, request.topic, std::move(offsets), request.force,
                        [this, outcome = std::move(outcome), done](Status s) mutable {
                          if (!s) {
                            done(s.error());
                          } else {
                            outcome.applied = true;
                            done(std::move(outcome));
                          }
                          Leave();
                        });
  };
  if (request.mode != ResetMode::kTimestamp) return store(std::move(base));
  auto join = std::make_shared<Join<ResetOffsetResult>>(
      base.size(), [store](Result<std::vector<ResetOffsetResult>> r) mutable {
        if (!r) return;  // reported by the failing lookup below
        store(std::move(*r));
      });
  auto failed = std::make_shared<std::once_flag>();
  for (std::size_t i = 0; i < base.size(); ++i) {
    ListOffset(
        request.topic, base[i].partition, OffsetQuery::kTimestamp, request.timestamp_ms,
        [join, i, r = base[i], done, failed](Result<std::optional<std::uint64_t>> found) mutable {
          if (!found) {
            std::call_once(*failed, [&] { done(found.error()); });
            return join->Fail(found.error());
          }
          if (*found) r.new_offset = **found;
          join->Set(i, r);
        });
  }
}

}  // namespace spool::broker
