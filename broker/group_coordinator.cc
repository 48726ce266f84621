#include "broker/group_coordinator.h"

#include <algorithm>
#include <mutex>
#include <random>

#include "broker/topic.h"
#include "common/coding.h"
#include "common/logging.h"
#include "storage/keys.h"

namespace spool::broker {
namespace {

constexpr std::uint8_t kSettingsVersion = 1;
constexpr std::size_t kMaxCommitOffsets = 10'000;
constexpr std::size_t kMaxMetadataBytes = 4'096;
constexpr std::int64_t kMinRebalanceTimeoutMs = 1'000;
constexpr std::int64_t kMaxRebalanceTimeoutMs = 1'800'000;

spdlog::logger& GroupLog() {
  static spdlog::logger& logger = ModuleLogger("groups");
  return logger;
}

std::string EncodeOffset(const CommittedOffset& c) {
  std::string out;
  PutFixed64BE(out, c.offset);
  PutVarsint64(out, c.commit_ms);
  out.append(c.metadata);
  return out;
}

std::optional<CommittedOffset> DecodeOffset(std::string_view in) {
  CommittedOffset c;
  if (!GetFixed64BE(in, &c.offset) || !GetVarsint64(in, &c.commit_ms)) return std::nullopt;
  c.metadata.assign(in);
  return c;
}

std::vector<TopicPartition> Sorted(const PartitionSet& set) {
  return {set.begin(), set.end()};
}

// A random id in UUID form, for members that let the broker choose.
std::string NewMemberId() {
  static std::mutex mu;
  static std::mt19937_64 rng(std::random_device{}());
  std::lock_guard lock(mu);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 32; ++i) {
    id += kHex[rng() % 16];
    if (i == 7 || i == 11 || i == 15 || i == 19) id += '-';
  }
  return id;
}

bool PrintableId(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return c >= 0x21 && c <= 0x7e; });
}

}  // namespace

GroupCoordinator::GroupCoordinator(storage::Store& store, const Clock& clock,
                                   const TopicDirectory& topics, GroupLimits limits)
    : store_(store), clock_(clock), topics_(topics), limits_(limits) {}

std::string GroupCoordinator::EncodeSettings(const Group& group) const {
  std::string out;
  out.push_back(static_cast<char>(kSettingsVersion));
  out.push_back(static_cast<char>(group.settings.assignor));
  PutVarsint64(out, group.settings.session_timeout_ms);
  out.push_back(static_cast<char>(group.settings.offset_reset));
  PutVarsint64(out, group.settings.offset_reset_timestamp_ms);
  PutVarsint64(out, group.emptied_ms);
  return out;
}

Status GroupCoordinator::Load() {
  std::lock_guard lock(mu_);
  // Expiry counts from now: whether a group had members before the restart is unknown.
  const std::int64_t now = clock_.WallMillis();
  // Settings.
  {
    auto it =
        store_.NewIterator(storage::ColumnFamily::kOffsets, std::string(1, storage::kGroupMetaTag),
                           std::string(1, storage::kGroupMetaTag + 1));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string_view key = it->key().substr(1);
      if (key.empty() || key.back() != '\0') return DataLoss("bad group settings key");
      const std::string id(key.substr(0, key.size() - 1));
      std::string_view v = it->value();
      Group group;
      group.id = id;
      std::int64_t session = 0, reset_ts = 0, emptied = 0;
      if (v.size() < 2 || static_cast<std::uint8_t>(v[0]) != kSettingsVersion) {
        return DataLoss("group '" + id + "': unknown settings version");
      }
      const auto assignor = static_cast<std::uint8_t>(v[1]);
      v.remove_prefix(2);
      if (!GetVarsint64(v, &session) || v.empty()) return DataLoss("group '" + id + "': settings");
      const auto reset = static_cast<std::uint8_t>(v[0]);
      v.remove_prefix(1);
      if (!GetVarsint64(v, &reset_ts) || !GetVarsint64(v, &emptied) || assignor > 1 || reset > 2) {
        return DataLoss("group '" + id + "': settings");
      }
      group.settings = {static_cast<GroupAssignor>(assignor), session,
                        static_cast<OffsetReset>(reset), reset_ts};
      group.emptied_ms = std::max(emptied, now);
      group.persisted = true;
      group.restored = true;
      group.hold_until_ms = now + session;
      groups_[id] = std::move(group);
    }
    if (Status s = it->status(); !s) return s;
  }
  // Offsets.
  auto it =
      store_.NewIterator(storage::ColumnFamily::kOffsets, std::string(1, storage::kGroupOffsetTag),
                         std::string(1, storage::kGroupOffsetTag + 1));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view key = it->key().substr(1);
    const auto zero = key.find('\0');
    if (zero == std::string_view::npos || key.size() != zero + 9) {
      return DataLoss("bad committed offset key");
    }
    const std::string id(key.substr(0, zero));
    const std::uint32_t topic = DecodeFixed32BE(key.data() + zero + 1);
    const std::uint32_t partition = DecodeFixed32BE(key.data() + zero + 5);
    auto committed = DecodeOffset(it->value());
    if (!committed) return DataLoss("group '" + id + "': bad committed offset");
    Group& group = groups_[id];
    if (group.id.empty()) {
      group.id = id;
      group.emptied_ms = now;
      group.restored = true;
      group.hold_until_ms = now + group.settings.session_timeout_ms;
    }
    group.offsets[{topic, partition}] = std::move(*committed);
  }
  if (Status s = it->status(); !s) return s;
  GroupLog().info("loaded {} consumer groups", groups_.size());
  return {};
}

bool GroupCoordinator::HoldingLocked(const Group& group, std::int64_t now) const {
  return now < group.hold_until_ms && (group.restored || !group.fenced.empty());
}

GroupCoordinator::Group& GroupCoordinator::CreateLocked(const std::string& group_id) {
  Group& group = groups_[group_id];
  group.id = group_id;
  group.emptied_ms = clock_.WallMillis();
  return group;
}

GroupCoordinator::Member& GroupCoordinator::AdoptLocked(Group& group, const MemberHeartbeat& hb,
                                                        const std::string& member_id,
                                                        std::int64_t rebalance_timeout_ms) {
  Member m;
  m.id = member_id;
  m.epoch = hb.member_epoch;
  m.subscriptions = {hb.subscriptions.begin(), hb.subscriptions.end()};
  m.rebalance_timeout_ms = rebalance_timeout_ms;
  m.client_id = hb.client_id;
  for (const auto& tp : hb.owned) {
    auto topic = topics_.FindTopic(tp.topic);
    if (!m.subscriptions.count(tp.topic) || !topic || tp.partition >= topic->partitions) continue;
    if (OwnerLocked(group, tp)) continue;  // someone else claimed it first: not this one's
    m.owned.insert(tp);
  }
  GroupLog().info("group '{}': member '{}' came back after a restart with {} partitions", group.id,
                  member_id, m.owned.size());
  group.epoch = std::max(group.epoch, hb.member_epoch);
  group.target[member_id] = m.owned;  // so the assignor keeps them where they are
  Member& member = group.members[member_id] = std::move(m);
  RecomputeLocked(group);
  return member;
}

std::int64_t GroupCoordinator::HeartbeatIntervalLocked(const Group& group) const {
  return std::max<std::int64_t>(
      100, std::min(limits_.max_heartbeat_interval_ms, group.settings.session_timeout_ms / 3));
}

bool GroupCoordinator::TopologyChangedLocked(const Group& group) const {
  std::set<std::string> topics;
  for (const auto& [id, member] : group.members)
    topics.insert(member.subscriptions.begin(), member.subscriptions.end());
  std::map<std::string, std::uint32_t> counts;
  for (const auto& topic : topics) {
    if (auto t = topics_.FindTopic(topic)) counts[topic] = t->partitions;
  }
  return counts != group.partition_counts;
}

void GroupCoordinator::RecomputeLocked(Group& group) {
  AssignorInput input;
  for (const auto& [id, member] : group.members)
    input.subscriptions[id] = member.subscriptions;
  for (const auto& [id, member] : group.members) {
    for (const auto& topic : member.subscriptions) {
      if (auto t = topics_.FindTopic(topic)) input.partitions[topic] = t->partitions;
    }
  }
  input.previous = group.target;
  group.partition_counts = input.partitions;
  group.target =
      group.settings.assignor == GroupAssignor::kRange ? AssignRange(input) : AssignUniform(input);
  ++group.epoch;
  ++group.rebalances;
}

std::optional<std::string> GroupCoordinator::OwnerLocked(const Group& group,
                                                         const TopicPartition& tp) const {
  for (const auto& [id, member] : group.members) {
    if (member.owned.count(tp)) return id;
  }
  return std::nullopt;
}

void GroupCoordinator::RemoveMemberLocked(Group& group, const std::string& member_id) {
  group.members.erase(member_id);
  if (group.members.empty()) {
    group.target.clear();
    group.partition_counts.clear();
    ++group.epoch;
    group.emptied_ms = clock_.WallMillis();
    PersistSettingsLocked(group);
  } else {
    RecomputeLocked(group);
  }
}

void GroupCoordinator::PersistSettingsLocked(Group& group) {
  storage::WriteBatch batch;
  batch.Put(storage::ColumnFamily::kOffsets, storage::GroupMetaKey(group.id),
            EncodeSettings(group));
  group.persisted = true;
  // Settings are advisory (retention of an empty group, the reset policy): written in the
  // background, with the next commit's fsync or the store's own.
  store_.Write(std::move(batch), [id = group.id](Status s) {
    if (!s) GroupLog().warn("group '{}': storing settings failed: {}", id, s.error().ToString());
  });
}

GroupState GroupCoordinator::StateLocked(const Group& group) const {
  if (group.members.empty()) return GroupState::kEmpty;
  for (const auto& [id, member] : group.members) {
    auto target = group.target.find(id);
    const PartitionSet empty;
    if (member.owned != (target == group.target.end() ? empty : target->second)) {
      return GroupState::kReconciling;
    }
  }
  return GroupState::kStable;
}

Result<HeartbeatAnswer> GroupCoordinator::Heartbeat(const MemberHeartbeat& hb) {
  if (Status s = ValidateTopicName(hb.group); !s) {
    return InvalidArgument("group id: " + s.error().message);
  }
  // An empty member_id on join asks the broker to choose one (returned in the answer).
  std::string member_id = hb.member_id;
  if (member_id.empty() && hb.member_epoch == 0) {
    member_id = NewMemberId();
  } else if (!PrintableId(member_id)) {
    return InvalidArgument("member_id must be 1-128 printable ASCII characters");
  }
  if (hb.subscriptions.empty()) {
    return InvalidArgument("subscribed_topics is empty (use LeaveGroup to stop consuming)");
  }
  for (const auto& topic : hb.subscriptions) {
    if (Status s = ValidateTopicName(topic); !s) {
      return InvalidArgument("subscribed topic: " + s.error().message);
    }
  }
  const PartitionSet reported(hb.owned.begin(), hb.owned.end());
  if (reported.size() != hb.owned.size()) {
    return InvalidArgument("owned_partitions lists a partition twice");
  }
  if (hb.client_id.size() > 255) return InvalidArgument("client_id is longer than 255 bytes");
  const std::int64_t rebalance_timeout = hb.rebalance_timeout_ms.value_or(300'000);
  if (rebalance_timeout < kMinRebalanceTimeoutMs || rebalance_timeout > kMaxRebalanceTimeoutMs) {
    return InvalidArgument("rebalance_timeout_ms must be within 1000-1800000");
  }

  std::lock_guard lock(mu_);
  const std::int64_t now = clock_.WallMillis();
  auto git = groups_.find(hb.group);
  Group* group = git == groups_.end() ? nullptr : &git->second;
  Member* member = nullptr;
  if (group != nullptr) {
    auto mit = group->members.find(member_id);
    if (mit != group->members.end()) member = &mit->second;
  }

  if (hb.member_epoch == 0) {
    // Join, or rejoin: the old incarnation's partitions count as released.
    const bool creates = group == nullptr || group->members.empty();
    if (creates) {
      const auto& s = hb.settings;
      if (s.session_timeout_ms < limits_.min_session_timeout_ms ||
          s.session_timeout_ms > limits_.max_session_timeout_ms) {
        return InvalidArgument("session_timeout_ms must be within " +
                               std::to_string(limits_.min_session_timeout_ms) + "-" +
                               std::to_string(limits_.max_session_timeout_ms));
      }
    }
    if (member == nullptr && group != nullptr && group->members.size() >= limits_.max_members) {
      return ResourceExhausted("group '" + hb.group + "' already has " +
                               std::to_string(limits_.max_members) + " members");
    }
    if (group == nullptr) group = &CreateLocked(hb.group);
    if (creates) {
      group->settings = hb.settings;
      PersistSettingsLocked(*group);
    }
    Member fresh;
    fresh.id = member_id;
    fresh.subscriptions = {hb.subscriptions.begin(), hb.subscriptions.end()};
    fresh.rebalance_timeout_ms = rebalance_timeout;
    fresh.client_id = hb.client_id;
    group->members[member_id] = std::move(fresh);
    member = &group->members[member_id];
    RecomputeLocked(*group);
  } else {
    if (member == nullptr && group != nullptr && group->restored && now < group->hold_until_ms &&
        group->members.size() < limits_.max_members) {
      member = &AdoptLocked(*group, hb, member_id, rebalance_timeout);
    }
    if (member == nullptr) {
      if (group != nullptr) group->fenced.erase(member_id);
      return NotFound("member '" + member_id + "' is not in group '" + hb.group +
                      "' (it left, timed out or the group was reset); rejoin with epoch 0");
    }
    const bool current = hb.member_epoch == member->epoch;
    bool previous = false;
    if (!current && hb.member_epoch == member->previous_epoch) {
      // The previous answer was lost: fine as long as it claims nothing beyond it.
      previous = std::includes(member->owned.begin(), member->owned.end(), reported.begin(),
                               reported.end());
    }
    if (!current && !previous) {
      return FailedPrecondition(std::string(kStaleEpochReason) + ": member epoch " +
                                std::to_string(hb.member_epoch) + " is stale (current " +
                                std::to_string(member->epoch) + "); rejoin with epoch 0");
    }
    // A member can only hold what it was granted; what it stopped reporting is released.
    PartitionSet still;
    std::set_intersection(member->owned.begin(), member->owned.end(), reported.begin(),
                          reported.end(), std::inserter(still, still.end()));
    member->owned = std::move(still);
    const std::set<std::string> subscriptions(hb.subscriptions.begin(), hb.subscriptions.end());
    if (subscriptions != member->subscriptions) {
      member->subscriptions = subscriptions;
      RecomputeLocked(*group);
    }
  }
  member->last_heartbeat_ms = now;
  member->client_host = hb.client_host;
  if (TopologyChangedLocked(*group)) RecomputeLocked(*group);

  const PartitionSet& target = group->target[member->id];
  // Grant target partitions nobody else holds (not while an unknown member may hold them).
  const bool holding = HoldingLocked(*group, now);
  if (!holding) {
    for (const auto& tp : target) {
      if (member->owned.count(tp)) continue;
      auto owner = OwnerLocked(*group, tp);
      if (!owner) member->owned.insert(tp);
    }
  }
  // Still holding partitions the target took away?
  const bool releasing =
      !std::includes(target.begin(), target.end(), member->owned.begin(), member->owned.end());
  if (releasing) {
    if (!member->releasing_since_ms) member->releasing_since_ms = now;
  } else {
    member->releasing_since_ms.reset();
    if (member->epoch != group->epoch) {
      member->previous_epoch = member->epoch;
      member->epoch = group->epoch;
    }
  }
  HeartbeatAnswer answer;
  answer.member_id = member->id;
  answer.member_epoch = member->epoch;
  answer.session_timeout_ms = group->settings.session_timeout_ms;
  answer.heartbeat_interval_ms = holding
                                     ? std::min<std::int64_t>(500, HeartbeatIntervalLocked(*group))
                                     : HeartbeatIntervalLocked(*group);
  for (const auto& tp : member->owned) {
    if (target.count(tp)) answer.assignment.push_back(tp);
  }
  return answer;
}

Status GroupCoordinator::Leave(const std::string& group_id, const std::string& member_id) {
  if (Status s = ValidateTopicName(group_id); !s) {
    return InvalidArgument("group id: " + s.error().message);
  }
  if (!PrintableId(member_id)) {
    return InvalidArgument("member_id must be 1-128 printable ASCII characters");
  }
  std::lock_guard lock(mu_);
  auto it = groups_.find(group_id);
  if (it == groups_.end() || !it->second.members.count(member_id)) return {};
  RemoveMemberLocked(it->second, member_id);
  GroupLog().info("group '{}': member '{}' left", group_id, member_id);
  return {};
}

void GroupCoordinator::Commit(const std::string& group_id, const std::string& member_id,
                              std::uint32_t member_epoch, std::vector<OffsetCommit> offsets,
                              std::function<void(Status)> done) {
  if (Status s = ValidateTopicName(group_id); !s) {
    return done(InvalidArgument("group id: " + s.error().message));
  }
  if (offsets.empty()) return done(InvalidArgument("no offsets to commit"));
  if (offsets.size() > kMaxCommitOffsets) {
    return done(ResourceExhausted("more than " + std::to_string(kMaxCommitOffsets) +
                                  " offsets in one commit"));
  }
  if (member_id.empty() && member_epoch != 0) {
    return done(InvalidArgument("member_epoch must be 0 without a member_id"));
  }
  // Resolve and check every offset before anything is written.
  struct Resolved {
    TopicPartition tp;
    std::uint32_t topic_id;
  };
  std::vector<Resolved> resolved;
  std::set<TopicPartition> seen;
  for (const auto& o : offsets) {
    if (Status s = ValidateTopicName(o.topic); !s) {
      return done(InvalidArgument("topic: " + s.error().message));
    }
    if (!seen.insert({o.topic, o.partition}).second) {
      return done(InvalidArgument("partition " + o.topic + "/" + std::to_string(o.partition) +
                                  " is listed twice"));
    }
    if (o.metadata.size() > kMaxMetadataBytes) {
      return done(ResourceExhausted("metadata of " + o.topic + "/" + std::to_string(o.partition) +
                                    " is above 4096 bytes"));
    }
    auto topic = topics_.FindTopic(o.topic);
    if (!topic) return done(NotFound("topic '" + o.topic + "' does not exist"));
    if (o.partition >= topic->partitions) {
      return done(NotFound("topic '" + o.topic + "' has " + std::to_string(topic->partitions) +
                           " partitions; there is no partition " + std::to_string(o.partition)));
    }
    auto bounds = topics_.PartitionBounds(o.topic, o.partition);
    if (bounds && o.offset > bounds->end) {
      return done(OutOfRange("offset " + std::to_string(o.offset) + " of " + o.topic + "/" +
                             std::to_string(o.partition) + " is beyond the log end " +
                             std::to_string(bounds->end)));
    }
    resolved.push_back({{o.topic, o.partition}, topic->id});
  }

  std::lock_guard lock(mu_);
  auto git = groups_.find(group_id);
  Group* group = git == groups_.end() ? nullptr : &git->second;
  if (!member_id.empty()) {
    const Member* member = nullptr;
    if (group != nullptr) {
      auto mit = group->members.find(member_id);
      if (mit != group->members.end()) member = &mit->second;
    }
    if (member == nullptr) {
      if (group != nullptr) group->fenced.erase(member_id);
      return done(NotFound("member '" + member_id + "' is not in group '" + group_id + "'"));
    }
    if (member_epoch != member->epoch && member_epoch != member->previous_epoch) {
      return done(FailedPrecondition(std::string(kStaleEpochReason) + ": member epoch " +
                                     std::to_string(member_epoch) + " is stale (current " +
                                     std::to_string(member->epoch) + ")"));
    }
    for (const auto& r : resolved) {
      if (!member->owned.count(r.tp)) {
        return done(FailedPrecondition(std::string(kNotOwnedReason) + ": member '" + member_id +
                                       "' does not own " + r.tp.topic + "/" +
                                       std::to_string(r.tp.partition)));
      }
    }
  } else if (group != nullptr && !group->members.empty()) {
    return done(FailedPrecondition("group '" + group_id +
                                   "' has members; only they may commit (give member_id)"));
  }
  if (group == nullptr) group = &CreateLocked(group_id);
  const std::int64_t now = clock_.WallMillis();
  storage::WriteBatch batch;
  OffsetValues values;
  for (std::size_t i = 0; i < offsets.size(); ++i) {
    CommittedOffset c{offsets[i].offset, std::move(offsets[i].metadata), now};
    batch.Put(storage::ColumnFamily::kOffsets,
              storage::GroupOffsetKey(group_id, resolved[i].topic_id, resolved[i].tp.partition),
              EncodeOffset(c));
    values.push_back({{resolved[i].topic_id, resolved[i].tp.partition}, std::move(c)});
  }
  if (!group->persisted) {
    batch.Put(storage::ColumnFamily::kOffsets, storage::GroupMetaKey(group_id),
              EncodeSettings(*group));
    group->persisted = true;
  }
  WriteOffsetsLocked(group_id, std::move(batch), std::move(values), std::move(done));
}

std::vector<PartitionPosition> GroupCoordinator::PositionsLocked(
    const Group& group, const std::set<TopicPartition>& which) const {
  std::vector<PartitionPosition> out;
  for (const auto& tp : which) {
    PartitionPosition p;
    p.tp = tp;
    if (auto topic = topics_.FindTopic(tp.topic)) {
      auto it = group.offsets.find({topic->id, tp.partition});
      if (it != group.offsets.end()) p.committed = it->second;
    }
    if (auto bounds = topics_.PartitionBounds(tp.topic, tp.partition)) {
      p.log_start = bounds->start;
      p.log_end = bounds->end;
    }
    if (auto owner = OwnerLocked(group, tp)) p.owner = *owner;
    out.push_back(std::move(p));
  }
  return out;
}

Result<std::vector<PartitionPosition>> GroupCoordinator::Positions(
    const std::string& group_id, const std::map<std::string, std::vector<std::uint32_t>>& filter) {
  if (Status s = ValidateTopicName(group_id); !s) {
    return InvalidArgument("group id: " + s.error().message);
  }
  std::set<TopicPartition> which;
  for (const auto& [topic, partitions] : filter) {
    if (Status s = ValidateTopicName(topic); !s)
      return InvalidArgument("topic: " + s.error().message);
    auto t = topics_.FindTopic(topic);
    if (!t) return NotFound("topic '" + topic + "' does not exist");
    if (partitions.empty()) {
      for (std::uint32_t p = 0; p < t->partitions; ++p)
        which.insert({topic, p});
    }
    for (std::uint32_t p : partitions) {
      if (p >= t->partitions) {
        return NotFound("topic '" + topic + "' has no partition " + std::to_string(p));
      }
      which.insert({topic, p});
    }
  }
  std::lock_guard lock(mu_);
  auto it = groups_.find(group_id);
  if (it == groups_.end()) {
    static const Group kNone;
    return PositionsLocked(kNone, which);
  }
  if (filter.empty()) {
    for (const auto& [key, committed] : it->second.offsets) {
      if (auto name = topics_.TopicName(key.first)) which.insert({*name, key.second});
    }
  }
  return PositionsLocked(it->second, which);
}

GroupSettings GroupCoordinator::Settings(const std::string& group) const {
  std::lock_guard lock(mu_);
  auto it = groups_.find(group);
  return it == groups_.end() ? GroupSettings{} : it->second.settings;
}

bool GroupCoordinator::HasMembers(const std::string& group) const {
  std::lock_guard lock(mu_);
  auto it = groups_.find(group);
  return it != groups_.end() && !it->second.members.empty();
}

std::optional<CommittedOffset> GroupCoordinator::Committed(const std::string& group,
                                                           const std::string& topic,
                                                           std::uint32_t partition) const {
  auto t = topics_.FindTopic(topic);
  if (!t) return std::nullopt;
  std::lock_guard lock(mu_);
  auto it = groups_.find(group);
  if (it == groups_.end()) return std::nullopt;
  auto o = it->second.offsets.find({t->id, partition});
  if (o == it->second.offsets.end()) return std::nullopt;
  return o->second;
}

std::vector<GroupSummary> GroupCoordinator::List(const std::string& prefix,
                                                 const std::string& after,
                                                 std::size_t limit) const {
  std::lock_guard lock(mu_);
  std::vector<GroupSummary> out;
  for (auto it = after.empty() ? groups_.lower_bound(prefix) : groups_.upper_bound(after);
       it != groups_.end() && out.size() < limit; ++it) {
    if (it->first.compare(0, prefix.size(), prefix) != 0) break;
    out.push_back({it->first, StateLocked(it->second),
                   static_cast<std::uint32_t>(it->second.members.size()), it->second.epoch});
  }
  return out;
}

Result<GroupDescription> GroupCoordinator::Describe(const std::string& group_id) const {
  if (Status s = ValidateTopicName(group_id); !s) {
    return InvalidArgument("group id: " + s.error().message);
  }
  std::lock_guard lock(mu_);
  auto it = groups_.find(group_id);
  if (it == groups_.end() || (it->second.members.empty() && it->second.offsets.empty())) {
    return NotFound("group '" + group_id + "' does not exist");
  }
  const Group& group = it->second;
  GroupDescription d;
  d.group = group_id;
  d.state = StateLocked(group);
  d.group_epoch = group.epoch;
  d.settings = group.settings;
  d.heartbeat_interval_ms = HeartbeatIntervalLocked(group);
  d.rebalances = group.rebalances;
  std::set<TopicPartition> which;
  for (const auto& [id, member] : group.members) {
    MemberDescription m;
    m.member_id = id;
    m.client_id = member.client_id;
    m.client_host = member.client_host;
    m.member_epoch = member.epoch;
    m.subscriptions = {member.subscriptions.begin(), member.subscriptions.end()};
    m.owned = Sorted(member.owned);
    auto target = group.target.find(id);
    if (target != group.target.end()) m.target = Sorted(target->second);
    m.last_heartbeat_ms = member.last_heartbeat_ms;
    m.rebalance_timeout_ms = member.rebalance_timeout_ms;
    d.members.push_back(std::move(m));
    for (const auto& topic : member.subscriptions) {
      if (auto t = topics_.FindTopic(topic)) {
        for (std::uint32_t p = 0; p < t->partitions; ++p)
          which.insert({topic, p});
      }
    }
  }
  for (const auto& [key, committed] : group.offsets) {
    if (auto name = topics_.TopicName(key.first)) which.insert({*name, key.second});
  }
  d.partitions = PositionsLocked(group, which);
  return d;
}

void GroupCoordinator::Delete(const std::string& group_id, std::function<void(Status)> done) {
  if (Status s = ValidateTopicName(group_id); !s) {
    return done(InvalidArgument("group id: " + s.error().message));
  }
  std::lock_guard lock(mu_);
  auto it = groups_.find(group_id);
  if (it == groups_.end() ||
      (it->second.members.empty() && it->second.offsets.empty() && !it->second.persisted)) {
    return done(NotFound("group '" + group_id + "' does not exist"));
  }
  if (!it->second.members.empty()) {
    return done(FailedPrecondition("group '" + group_id + "' has " +
                                   std::to_string(it->second.members.size()) +
                                   " members; it can be deleted once they have left"));
  }
  groups_.erase(it);
  storage::WriteBatch batch;
  batch.Delete(storage::ColumnFamily::kOffsets, storage::GroupMetaKey(group_id));
  batch.DeleteRange(storage::ColumnFamily::kOffsets, storage::GroupOffsetsBegin(group_id),
                    storage::GroupOffsetsEnd(group_id));
  store_.Write(std::move(batch), std::move(done));
}

void GroupCoordinator::StoreReset(const std::string& group_id, const std::string& topic,
                                  std::map<std::uint32_t, std::uint64_t> offsets, bool force,
                                  std::function<void(Status)> done) {
  auto t = topics_.FindTopic(topic);
  if (!t) return done(NotFound("topic '" + topic + "' does not exist"));
  std::lock_guard lock(mu_);
  auto existing = groups_.find(group_id);
  Group& group = existing == groups_.end() ? CreateLocked(group_id) : existing->second;
  if (!group.members.empty()) {
    if (!force) {
      return done(FailedPrecondition("group '" + group_id + "' has " +
                                     std::to_string(group.members.size()) +
                                     " members; stop them or reset with force"));
    }
    // Fence everyone: their next heartbeat or commit is refused and they rejoin, reading the
    // new offsets.
    GroupLog().warn("group '{}': offsets reset with force; removing {} members", group_id,
                    group.members.size());
    group.fenced.clear();
    for (const auto& [id, member] : group.members)
      group.fenced.insert(id);
    group.restored = false;  // fenced members are not taken back
    group.hold_until_ms = clock_.WallMillis() + group.settings.session_timeout_ms;
    group.members.clear();
    group.target.clear();
    group.partition_counts.clear();
    ++group.epoch;
    ++group.rebalances;
    group.emptied_ms = clock_.WallMillis();
  }
  const std::int64_t now = clock_.WallMillis();
  storage::WriteBatch batch;
  OffsetValues values;
  for (const auto& [partition, offset] : offsets) {
    CommittedOffset c{offset, "", now};
    batch.Put(storage::ColumnFamily::kOffsets, storage::GroupOffsetKey(group_id, t->id, partition),
              EncodeOffset(c));
    values.push_back({{t->id, partition}, std::move(c)});
  }
  batch.Put(storage::ColumnFamily::kOffsets, storage::GroupMetaKey(group_id),
            EncodeSettings(group));
  group.persisted = true;
  WriteOffsetsLocked(group_id, std::move(batch), std::move(values), std::move(done));
}

void GroupCoordinator::WriteOffsetsLocked(const std::string& group_id, storage::WriteBatch batch,
                                          OffsetValues values, std::function<void(Status)> done) {
  store_.Write(std::move(batch), [this, group_id, values = std::move(values),
                                  done = std::move(done)](Status s) mutable {
    if (s) {
      std::lock_guard lock(mu_);
      auto it = groups_.find(group_id);
      if (it != groups_.end()) {
        for (auto& [key, value] : values)
          it->second.offsets[key] = std::move(value);
      }
    }
    done(std::move(s));
  });
}

void GroupCoordinator::Expire() {
  std::lock_guard lock(mu_);
  const std::int64_t now = clock_.WallMillis();
  for (auto git = groups_.begin(); git != groups_.end();) {
    Group& group = git->second;
    std::vector<std::string> gone;
    for (const auto& [id, member] : group.members) {
      if (now - member.last_heartbeat_ms > group.settings.session_timeout_ms) {
        GroupLog().info("group '{}': member '{}' missed its session ({} ms); removing it", group.id,
                        id, group.settings.session_timeout_ms);
        gone.push_back(id);
      } else if (member.releasing_since_ms &&
                 now - *member.releasing_since_ms > member.rebalance_timeout_ms) {
        GroupLog().info(
            "group '{}': member '{}' kept revoked partitions past its rebalance "
            "timeout; removing it",
            group.id, id);
        gone.push_back(id);
      }
    }
    for (const auto& id : gone)
      RemoveMemberLocked(group, id);
    // Offsets of a group that stayed empty for the retention period expire.
    std::int64_t last_activity = group.emptied_ms;
    for (const auto& [key, committed] : group.offsets)
      last_activity = std::max(last_activity, committed.commit_ms);
    if (group.members.empty() && now - last_activity > limits_.offsets_retention_ms) {
      GroupLog().info("group '{}': empty since {} ms; its offsets expired", group.id,
                      now - last_activity);
      storage::WriteBatch batch;
      batch.Delete(storage::ColumnFamily::kOffsets, storage::GroupMetaKey(group.id));
      batch.DeleteRange(storage::ColumnFamily::kOffsets, storage::GroupOffsetsBegin(group.id),
                        storage::GroupOffsetsEnd(group.id));
      store_.Write(std::move(batch), [id = group.id](Status s) {
        if (!s) GroupLog().warn("group '{}': deleting expired offsets failed", id);
      });
      git = groups_.erase(git);
      continue;
    }
    ++git;
  }
}

std::vector<GroupCoordinator::GroupMetrics> GroupCoordinator::Metrics() const {
  std::lock_guard lock(mu_);
  std::vector<GroupMetrics> out;
  for (const auto& [id, group] : groups_) {
    GroupMetrics m;
    m.group = id;
    m.members = static_cast<std::uint32_t>(group.members.size());
    m.rebalances = group.rebalances;
    std::set<TopicPartition> which;
    for (const auto& [key, committed] : group.offsets) {
      if (auto name = topics_.TopicName(key.first)) which.insert({*name, key.second});
    }
    m.partitions = PositionsLocked(group, which);
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace spool::broker
