#pragma once

// The Spool C++ client: a connection (Client), topic administration (Admin) and a simple
// partition reader (Reader). The batching producer lives in spool/producer.h.
//
// Thin by design: it speaks the spool.v1 gRPC API and returns its messages (v1::Topic,
// v1::Record) as they are, so nothing here needs to change when the server learns more.
// Every call returns a grpc::Status; none throws.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "spool/v1/admin.grpc.pb.h"
#include "spool/v1/consume.grpc.pb.h"
#include "spool/v1/groups.grpc.pb.h"
#include "spool/v1/publish.grpc.pb.h"

namespace spool {

struct ClientOptions {
  std::string address = "127.0.0.1:50051";
  // Deadline of each unary call; a long-poll Fetch gets its wait on top of this.
  std::chrono::milliseconds call_timeout{30'000};
  // Insecure (plaintext) when null.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // Largest response accepted; a Fetch may return up to its max_bytes (at most 64 MiB).
  int max_receive_message_bytes = 128 << 20;
  // Delays between reconnection attempts after the server went away: the first, and the
  // most they grow to (gRPC's defaults, 1 s growing to 120 s, are slow for a broker that
  // restarts in a second).
  std::chrono::milliseconds min_reconnect_backoff{100};
  std::chrono::milliseconds max_reconnect_backoff{5'000};
};

// The outcome of a call: `value` is meaningful only when status.ok().
template <typename T>
struct CallResult {
  grpc::Status status;
  T value{};

  bool ok() const { return status.ok(); }
  const T& operator*() const { return value; }
  const T* operator->() const { return &value; }
};

// One channel to one spoold. Cheap to share: Admin, Producer and Reader keep a reference to
// the channel, not to the Client, so the Client may go away before them.
class Client {
 public:
  explicit Client(ClientOptions options = {});

  const ClientOptions& options() const { return options_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

  // Connects now rather than on the first call; false if not connected within `timeout`.
  bool WaitForConnected(std::chrono::milliseconds timeout) const;

 private:
  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
};

struct TopicSpec {
  std::string name;
  std::uint32_t partitions = 1;
  std::optional<std::int64_t> retention_ms;  // -1: keep forever
  std::optional<std::int64_t> retention_bytes;
  std::optional<std::int64_t> max_message_bytes;
};

// Only the fields that are set change.
struct TopicUpdate {
  std::string name;
  std::optional<std::uint32_t> partitions;  // may only grow
  std::optional<std::int64_t> retention_ms;
  std::optional<std::int64_t> retention_bytes;
  std::optional<std::int64_t> max_message_bytes;
};

class Admin {
 public:
  explicit Admin(const Client& client);

  CallResult<v1::Topic> CreateTopic(const TopicSpec& spec);
  CallResult<v1::Topic> GetTopic(std::string_view name);
  // Every topic whose name starts with `prefix`, following the pages to the end.
  CallResult<std::vector<v1::TopicConfig>> ListTopics(std::string_view prefix = {});
  CallResult<v1::ListTopicsResponse> ListTopicsPage(std::string_view prefix,
                                                    std::uint32_t page_size,
                                                    std::string_view page_token);
  CallResult<v1::Topic> UpdateTopic(const TopicUpdate& update);
  // `force` also deletes the queue subscriptions that read the topic.
  grpc::Status DeleteTopic(std::string_view name, bool force = false);
  CallResult<v1::GetBrokerInfoResponse> GetBrokerInfo();

  // Consumer groups.
  // Every group whose id starts with `prefix`, following the pages to the end.
  CallResult<std::vector<v1::GroupSummary>> ListGroups(std::string_view prefix = {});
  CallResult<v1::DescribeGroupResponse> DescribeGroup(std::string_view group);
  // Only for a group without members.
  grpc::Status DeleteGroup(std::string_view group);
  CallResult<v1::ResetOffsetsResponse> ResetOffsets(const v1::ResetOffsetsRequest& request);
  CallResult<v1::FetchOffsetsResponse> FetchOffsets(const v1::FetchOffsetsRequest& request);

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<v1::AdminService::Stub> stub_;
  std::unique_ptr<v1::GroupService::Stub> groups_;
};

// Where a Reader starts.
struct StartPosition {
  enum class Kind { kEarliest, kLatest, kOffset, kTimestamp };
  Kind kind = Kind::kEarliest;
  std::uint64_t offset = 0;       // kOffset
  std::int64_t timestamp_ms = 0;  // kTimestamp: the first record appended at or after it

  static StartPosition Earliest() { return {Kind::kEarliest}; }
  static StartPosition Latest() { return {Kind::kLatest}; }
  static StartPosition AtOffset(std::uint64_t offset) { return {Kind::kOffset, offset}; }
  static StartPosition AtTime(std::int64_t timestamp_ms) {
    return {Kind::kTimestamp, 0, timestamp_ms};
  }
};

struct ReaderOptions {
  std::uint32_t max_records = 1000;   // per Poll
  std::uint64_t max_bytes = 4 << 20;  // per Poll; the first record is returned even if larger
  // When the position falls below the log start (retention deleted it), continue from the
  // log start instead of failing with OUT_OF_RANGE. skipped() counts what was lost.
  bool reset_to_earliest_on_out_of_range = false;
};

// Reads one partition in order. Not thread-safe: one thread polls it.
class Reader {
 public:
  Reader(const Client& client, std::string topic, std::uint32_t partition,
         StartPosition start = StartPosition::Earliest(), ReaderOptions options = {});

  // The next records, waiting up to `max_wait` for the first one to arrive (0: don't wait).
  // An empty result at the deadline is not an error. While the server is unreachable the
  // call waits for it, up to call_timeout, then fails with DEADLINE_EXCEEDED.
  CallResult<std::vector<v1::Record>> Poll(std::chrono::milliseconds max_wait);

  // The offset the next Poll reads from (resolves the start position if not done yet).
  CallResult<std::uint64_t> Position();
  void Seek(std::uint64_t offset) { position_ = offset; }

  // As of the last successful Poll.
  std::uint64_t log_end_offset() const { return log_end_offset_; }
  std::uint64_t skipped() const { return skipped_; }
  const std::string& topic() const { return topic_; }
  std::uint32_t partition() const { return partition_; }

 private:
  grpc::Status ResolveStart();

  std::shared_ptr<grpc::Channel> channel_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<v1::StreamService::Stub> stub_;
  std::string topic_;
  std::uint32_t partition_;
  StartPosition start_;
  ReaderOptions options_;
  std::optional<std::uint64_t> position_;
  std::uint64_t log_end_offset_ = 0;
  std::uint64_t skipped_ = 0;
};

// True for the statuses a retry may cure: the server was unreachable, restarting or
// shutting down.
bool IsTransient(const grpc::Status& status);

}  // namespace spool
