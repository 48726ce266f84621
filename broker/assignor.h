#pragma once

// Partition assignors for consumer groups: pure functions from members, their subscriptions
// and the topics' partition counts (and, for the sticky one, the previous assignment) to a
// target assignment. The group coordinator decides when partitions actually move.

#include <compare>
#include <cstdint>
#include <map>
#include <set>
#include <string>

namespace spool::broker {

struct TopicPartition {
  std::string topic;
  std::uint32_t partition = 0;

  auto operator<=>(const TopicPartition&) const = default;
};

using PartitionSet = std::set<TopicPartition>;
// member id -> its partitions. Every member of the input appears, possibly with none.
using Assignment = std::map<std::string, PartitionSet>;

struct AssignorInput {
  // member id -> subscribed topic names.
  std::map<std::string, std::set<std::string>> subscriptions;
  // topic name -> partition count; topics missing here (not created yet) get no partitions.
  std::map<std::string, std::uint32_t> partitions;
  // The previous target assignment (the uniform assignor keeps what it can of it).
  Assignment previous;
};

// Uniform and sticky: every partition of a subscribed topic goes to one of its subscribers;
// loads differ by at most one among members that could take each other's partitions; and a
// partition stays with its previous owner unless balance requires moving it, so adding or
// removing one member moves only the partitions that must move.
Assignment AssignUniform(const AssignorInput& input);

// Kafka's range assignor: per topic, the members subscribed to it (sorted by id) get
// contiguous ranges of partitions, the first ones one extra when it does not divide evenly.
// Deterministic, but not sticky: a membership change can shift every range.
Assignment AssignRange(const AssignorInput& input);

}  // namespace spool::broker
