#pragma once

// spool::Consumer: a member of a consumer group. The broker assigns the partitions (see
// proto/spool/v1/groups.proto); the consumer heartbeats in the background, fetches ahead
// from the partitions it owns within a memory bound, and commits the positions of the
// records Poll has returned.
//
// Threads: Poll, Commit, Seek and Close are for one user thread. A background thread sends
// heartbeats; fetches are asynchronous gRPC calls. Rebalance callbacks run inside Poll (and
// Close), on the user's thread: when the broker takes partitions away, the next Poll calls
// on_revoked, commits those partitions (with auto-commit), and only then releases them, so
// records the user has processed are committed before another member starts on them.
// Delivery is at-least-once: after a crash or a fencing, records returned since the last
// commit are delivered again (to whoever owns the partition next).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "spool/client.h"
#include "spool/v1/groups.grpc.pb.h"

namespace spool {

struct TopicPartition {
  std::string topic;
  std::uint32_t partition = 0;

  auto operator<=>(const TopicPartition&) const = default;
};

struct ConsumerOptions {
  std::string group;
  std::vector<std::string> topics;
  // Kept across rejoins; when empty the broker chooses one on the first join.
  std::string member_id;
  std::string client_id;

  // Group settings, used when this consumer is the first member of the group.
  v1::GroupAssignor assignor = v1::GROUP_ASSIGNOR_UNIFORM;
  std::chrono::milliseconds session_timeout{45'000};
  v1::OffsetReset offset_reset = v1::OFFSET_RESET_EARLIEST;
  std::int64_t offset_reset_timestamp_ms = 0;
  // How long the consumer may take (between Polls) to release revoked partitions.
  std::chrono::milliseconds rebalance_timeout{300'000};

  // Commit the positions of returned records every interval (inside Poll), on revocation
  // and on Close.
  bool auto_commit = true;
  std::chrono::milliseconds auto_commit_interval{5'000};

  std::size_t max_poll_records = 500;
  // Bytes of fetched records held for Poll across all partitions; fetching pauses above it.
  std::size_t max_buffered_bytes = 16 << 20;
  std::uint64_t fetch_max_bytes = 1 << 20;    // per fetch
  std::chrono::milliseconds fetch_wait{500};  // long-poll wait of each fetch

  std::function<void(const std::vector<TopicPartition>&)> on_assigned;
  // Before release; the consumer is still the owner and may commit.
  std::function<void(const std::vector<TopicPartition>&)> on_revoked;
  // The partitions were taken away without a chance to commit: the member was fenced, or no
  // heartbeat was answered for a session timeout (another member may own them by now).
  std::function<void(const std::vector<TopicPartition>&)> on_lost;
};

struct ConsumerRecord {
  std::string topic;
  v1::Record record;  // partition, offset, key, value, headers, timestamps
};

class Consumer {
 public:
  Consumer(const Client& client, ConsumerOptions options);
  // Close() with its errors ignored.
  ~Consumer();

  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  // Records from owned partitions, waiting up to `timeout` for the first. Also runs pending
  // rebalance callbacks and auto-commits. Fails only on a misuse (after Close) or when a
  // fetch keeps failing with a non-transient status (e.g. the topic was deleted).
  CallResult<std::vector<ConsumerRecord>> Poll(std::chrono::milliseconds timeout);

  // Commits the position after the last record Poll returned, for every owned partition
  // whose position moved (including partitions being revoked, so on_revoked may call it).
  // Synchronous; OK when there was nothing to commit.
  grpc::Status Commit();
  // The same without waiting. `done` (optional) runs on a gRPC thread, or at once on the
  // caller's thread when there is nothing to commit; it may call the consumer.
  void CommitAsync(std::function<void(grpc::Status)> done = {});

  // The next Poll returns records of `partition` (owned) from `offset`.
  grpc::Status Seek(const TopicPartition& partition, std::uint64_t offset);

  std::vector<TopicPartition> Assignment() const;
  // Empty until the first heartbeat answer when the options gave none.
  std::string member_id() const;

  // Calls on_revoked for the partitions it owns, commits (with auto-commit), leaves the group
  // and stops. Idempotent.
  grpc::Status Close();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace spool
