#pragma once

// Consumer groups: membership with server-side assignment (KIP-848 style), and committed
// offsets kept in the store's `offsets` column family.
//
// One mutex guards every group; each operation is short and in memory, and a write is only
// handed to the store (never waited for) under it, so commits of one partition reach the
// store, and their callbacks run, in the order they were accepted.
//
// Ownership protocol. Per member the coordinator keeps `owned`: every partition the member
// may be consuming (what it was granted, until it reports it released). A heartbeat's
// reported set can only shrink that (a member cannot own what it was never given). A target
// partition is granted only when no other member owns it, so no partition is ever owned by
// two live members. The answer lists owned ∩ target: the member keeps or takes those and
// releases the rest, then heartbeats again at once.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "broker/assignor.h"
#include "common/clock.h"
#include "common/error.h"
#include "storage/store.h"

namespace spool::broker {

enum class GroupAssignor { kUniform, kRange };
enum class OffsetReset { kEarliest, kLatest, kByTime };
enum class GroupState { kEmpty, kReconciling, kStable };

// Chosen by the member that joins a group with no members.
struct GroupSettings {
  GroupAssignor assignor = GroupAssignor::kUniform;
  std::int64_t session_timeout_ms = 45'000;
  OffsetReset offset_reset = OffsetReset::kEarliest;
  std::int64_t offset_reset_timestamp_ms = 0;  // kByTime
};

struct GroupLimits {
  std::int64_t min_session_timeout_ms = 1'000;
  std::int64_t max_session_timeout_ms = 1'800'000;
  std::int64_t max_heartbeat_interval_ms = 3'000;
  std::size_t max_members = 1'000;
  // A group with no members and no commit for this long is deleted with its offsets.
  std::int64_t offsets_retention_ms = 7LL * 24 * 3'600'000;
};

// What the coordinator needs to know about topics (the broker provides it).
class TopicDirectory {
 public:
  struct Topic {
    std::uint32_t id = 0;
    std::uint32_t partitions = 0;
  };
  struct Bounds {
    std::uint64_t start = 0;
    std::uint64_t end = 0;
  };
  virtual ~TopicDirectory() = default;
  virtual std::optional<Topic> FindTopic(const std::string& name) const = 0;
  virtual std::optional<std::string> TopicName(std::uint32_t id) const = 0;
  virtual std::optional<Bounds> PartitionBounds(const std::string& topic,
                                                std::uint32_t partition) const = 0;
};

struct MemberHeartbeat {
  std::string group;
  std::string member_id;
  std::uint32_t member_epoch = 0;
  std::vector<std::string> subscriptions;
  std::vector<TopicPartition> owned;
  std::optional<std::int64_t> rebalance_timeout_ms;
  std::string client_id;
  std::string client_host;
  GroupSettings settings;  // applied when this member joins a group without members
};

struct HeartbeatAnswer {
  std::string member_id;
  std::uint32_t member_epoch = 0;
  std::int64_t heartbeat_interval_ms = 0;
  std::int64_t session_timeout_ms = 0;
  std::vector<TopicPartition> assignment;  // sorted
};

struct OffsetCommit {
  std::string topic;
  std::uint32_t partition = 0;
  std::uint64_t offset = 0;
  std::string metadata;
};

struct CommittedOffset {
  std::uint64_t offset = 0;
  std::string metadata;
  std::int64_t commit_ms = 0;
};

struct PartitionPosition {
  TopicPartition tp;
  std::optional<CommittedOffset> committed;
  std::uint64_t log_start = 0;
  std::uint64_t log_end = 0;
  std::string owner;  // member id, empty if none
};

struct MemberDescription {
  std::string member_id;
  std::string client_id;
  std::string client_host;
  std::uint32_t member_epoch = 0;
  std::vector<std::string> subscriptions;  // sorted
  std::vector<TopicPartition> owned;       // sorted
  std::vector<TopicPartition> target;      // sorted
  std::int64_t last_heartbeat_ms = 0;
  std::int64_t rebalance_timeout_ms = 0;
};

struct GroupDescription {
  std::string group;
  GroupState state = GroupState::kEmpty;
  std::uint32_t group_epoch = 0;
  GroupSettings settings;
  std::int64_t heartbeat_interval_ms = 0;
  std::uint64_t rebalances = 0;
  std::vector<MemberDescription> members;
  // Every partition of the subscribed topics and every partition with a committed offset.
  std::vector<PartitionPosition> partitions;
};

struct GroupSummary {
  std::string group;
  GroupState state = GroupState::kEmpty;
  std::uint32_t member_count = 0;
  std::uint32_t group_epoch = 0;
};

// Stable words at the start of error messages that share a status code.
inline constexpr const char* kStaleEpochReason = "STALE_MEMBER_EPOCH";
inline constexpr const char* kNotOwnedReason = "PARTITION_NOT_OWNED";

class GroupCoordinator {
 public:
  GroupCoordinator(storage::Store& store, const Clock& clock, const TopicDirectory& topics,
                   GroupLimits limits = {});

  // Reads every group's settings and committed offsets. Members are not persisted. For one
  // session timeout after a restart a group hands out no partition, because a member of the
  // previous incarnation that has not been heard from may still be reading it (a consumer
  // drops its partitions once a session timeout passes without a heartbeat answer). A member
  // that heartbeats in that time with its old id and epoch is taken back with the partitions
  // it reports (those nobody else claimed first).
  Status Load();

  Result<HeartbeatAnswer> Heartbeat(const MemberHeartbeat& heartbeat);
  // Idempotent; the member's partitions are free at once.
  Status Leave(const std::string& group, const std::string& member_id);

  // Validates, then writes; `done` runs once the offsets are durable (or failed).
  void Commit(const std::string& group, const std::string& member_id, std::uint32_t member_epoch,
              std::vector<OffsetCommit> offsets, std::function<void(Status)> done);

  // Positions of the partitions named in `filter` (a topic with no partitions: all of its
  // partitions), or of every committed partition when `filter` is empty.
  Result<std::vector<PartitionPosition>> Positions(
      const std::string& group, const std::map<std::string, std::vector<std::uint32_t>>& filter);
  // The settings of a group; defaults for an unknown one.
  GroupSettings Settings(const std::string& group) const;

  // Sorted by id, after `after` (exclusive), at most `limit`.
  std::vector<GroupSummary> List(const std::string& prefix, const std::string& after,
                                 std::size_t limit) const;
  Result<GroupDescription> Describe(const std::string& group) const;
  void Delete(const std::string& group, std::function<void(Status)> done);

  // Stores `offsets` (topic partition -> new offset) for one topic. With members it needs
  // `force`, which removes every member (they must rejoin and read the new offsets); no
  // partition is handed out again until each of them has heard so or a session timeout has
  // passed.
  void StoreReset(const std::string& group, const std::string& topic,
                  std::map<std::uint32_t, std::uint64_t> offsets, bool force,
                  std::function<void(Status)> done);
  bool HasMembers(const std::string& group) const;
  std::optional<CommittedOffset> Committed(const std::string& group, const std::string& topic,
                                           std::uint32_t partition) const;

  // Removes members past their session or rebalance timeout and deletes groups whose
  // offsets expired. Called on a timer.
  void Expire();

  // Per group: members, rebalances, and committed offset and lag per partition.
  struct GroupMetrics {
    std::string group;
    std::uint32_t members = 0;
    std::uint64_t rebalances = 0;
    std::vector<PartitionPosition> partitions;  // committed ones only
  };
  std::vector<GroupMetrics> Metrics() const;

 private:
  struct Member {
    std::string id;
    std::uint32_t epoch = 0;
    std::uint32_t previous_epoch = 0;
    std::set<std::string> subscriptions;
    PartitionSet owned;
    std::int64_t rebalance_timeout_ms = 300'000;
    std::string client_id;
    std::string client_host;
    std::int64_t last_heartbeat_ms = 0;
    std::optional<std::int64_t> releasing_since_ms;  // owns something outside its target
  };
  struct Group {
    std::string id;
    GroupSettings settings;
    std::uint32_t epoch = 0;
    std::uint64_t rebalances = 0;
    std::map<std::string, Member> members;
    Assignment target;
    std::map<std::string, std::uint32_t> partition_counts;  // what `target` was computed from
    // (topic id, partition) -> committed
    std::map<std::pair<std::uint32_t, std::uint32_t>, CommittedOffset> offsets;
    std::int64_t emptied_ms = 0;  // when it last had no members (persisted with settings)
    // No grants before hold_until_ms: after a restart (`restored`, when old members may come
    // back) or while members removed by a forced reset have not heard so (`fenced`).
    std::int64_t hold_until_ms = 0;
    bool restored = false;
    std::set<std::string> fenced;
    bool persisted = false;  // settings stored
  };

  std::int64_t HeartbeatIntervalLocked(const Group& group) const;
  bool HoldingLocked(const Group& group, std::int64_t now) const;
  // Takes back a member of the previous incarnation (see Load) with the partitions it reports.
  Member& AdoptLocked(Group& group, const MemberHeartbeat& hb, const std::string& member_id,
                      std::int64_t rebalance_timeout_ms);
  // A group that did not exist: created empty now (so expiry counts from now).
  Group& CreateLocked(const std::string& group_id);
  void RecomputeLocked(Group& group);
  bool TopologyChangedLocked(const Group& group) const;
  void RemoveMemberLocked(Group& group, const std::string& member_id);
  GroupState StateLocked(const Group& group) const;
  std::optional<std::string> OwnerLocked(const Group& group, const TopicPartition& tp) const;
  std::vector<PartitionPosition> PositionsLocked(const Group& group,
                                                 const std::set<TopicPartition>& which) const;
  std::string EncodeSettings(const Group& group) const;
  void PersistSettingsLocked(Group& group);
  using OffsetKey = std::pair<std::uint32_t, std::uint32_t>;  // topic id, partition
  using OffsetValues = std::vector<std::pair<OffsetKey, CommittedOffset>>;
  // Writes `batch` (holding `values`); once durable, applies `values` to the group in memory
  // and runs `done`. Called under mu_, so writes reach the store in accepted order.
  void WriteOffsetsLocked(const std::string& group_id, storage::WriteBatch batch,
                          OffsetValues values, std::function<void(Status)> done);

  storage::Store& store_;
  const Clock& clock_;
  const TopicDirectory& topics_;
  const GroupLimits limits_;
  mutable std::mutex mu_;
  std::map<std::string, Group> groups_;  // guarded by mu_
};

}  // namespace spool::broker
