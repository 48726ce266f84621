#pragma once

// spool::QueueClient: the queue API (SQS-style queues with leases, FIFO groups, dead-letter
// queues and redrive) as one call per QueueService rpc. proto/spool/v1/queue.proto documents
// every rpc, its defaults and its errors; this layer adds deadlines and paging, nothing else.
//
// Results are the API's own messages (v1::Queue, v1::QueueMessage, v1::SendMessageResult,
// ...). Every call returns a grpc::Status (or a CallResult holding one); none throws. Not
// retried: a send whose answer was lost may have been appended, which only a deduplication
// id makes safe to repeat.
//
// spool::ReceiveStream wraps the flow-controlled StreamingReceive: the server pushes messages
// into a window, and deletes, nacks and lease extensions go back on the same stream.

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "spool/client.h"
#include "spool/v1/queue.grpc.pb.h"

namespace spool {

struct SendOptions {
  // Unset: the queue's delivery_delay_seconds. FIFO queues accept only 0.
  std::optional<std::uint32_t> delay_seconds;
  // Required by FIFO queues; on standard queues it only picks the partition.
  std::optional<std::string> message_group_id;
  // FIFO: required unless the queue has content_based_deduplication.
  std::optional<std::string> deduplication_id;
  std::vector<std::pair<std::string, std::string>> headers;
};

// One message of SendMessageBatch.
struct SendEntry {
  // Echoed in the result; may stay empty, since results come back in entry order.
  std::string id;
  std::string body;
  SendOptions options;
};

struct ReceiveOptions {
  std::uint32_t max_messages = 1;  // at most 1,000
  std::uint64_t max_bytes = 0;     // 0: the server's default (3 MiB)
  // Unset: the queue's visibility_timeout_seconds.
  std::optional<std::uint32_t> visibility_timeout_seconds;
  // Unset: the queue's receive_wait_seconds. The call's deadline is call_timeout plus this
  // wait, or plus the longest wait a queue may have (20 s) when unset, because the client
  // does not know the queue's.
  std::optional<std::uint32_t> wait_time_seconds;
};

// One entry of ChangeMessageVisibilityBatch.
struct VisibilityChange {
  std::string receipt_handle;
  std::uint32_t visibility_timeout_seconds = 0;
};

struct ReceiveStreamOptions {
  // The most messages delivered and not yet deleted or nacked, 1-120,000; 0: 1,000.
  std::uint32_t max_outstanding_messages = 0;
  // About the most body and header bytes outstanding; 0: 100 MiB. A message larger than
  // the whole window still comes when nothing else is outstanding.
  std::uint64_t max_outstanding_bytes = 0;
  // The lease of every message delivered on the stream, 0-43,200 s. Unset: the queue's
  // visibility_timeout_seconds.
  std::optional<std::uint32_t> visibility_timeout_seconds;
};

// A received message to give back, visible again after `delay_seconds`.
struct NackEntry {
  std::string receipt_handle;
  std::uint32_t delay_seconds = 0;
};

// Deletes, nacks and visibility changes that travel in one request and are confirmed together.
struct Settlement {
  std::vector<std::string> deletes;
  std::vector<NackEntry> nacks;
  std::vector<VisibilityChange> visibility_changes;

  bool empty() const { return deletes.empty() && nacks.empty() && visibility_changes.empty(); }
};

class ReceiveStream;

class QueueClient {
 public:
  explicit QueueClient(const Client& client);

  // Queues. An empty `topic` creates a queue that owns a topic of its name; otherwise the
  // queue subscribes to that existing topic. `created` in the answer is false when the queue
  // already existed with these settings.
  CallResult<v1::CreateQueueResponse> CreateQueue(std::string_view name,
                                                  const v1::QueueAttributes& attributes = {},
                                                  std::string_view topic = {});
  // The attributes, topic, timestamps and approximate counts.
  CallResult<v1::Queue> GetQueueAttributes(std::string_view queue);
  // Only the attributes that are set change; a redrive_policy with an empty
  // dead_letter_queue removes the policy.
  CallResult<v1::Queue> SetQueueAttributes(std::string_view queue,
                                           const v1::QueueAttributes& attributes);
  // Every queue whose name starts with `prefix`, following the pages to the end.
  CallResult<std::vector<std::string>> ListQueues(std::string_view prefix = {});
  CallResult<v1::ListQueuesResponse> ListQueuesPage(std::string_view prefix,
                                                    std::uint32_t page_size,
                                                    std::string_view page_token);
  // Also deletes the queue's own topic with its messages.
  grpc::Status DeleteQueue(std::string_view queue);
  // About how many messages were deleted.
  CallResult<std::uint64_t> PurgeQueue(std::string_view queue);

  // Messages.
  CallResult<v1::SendMessageResult> SendMessage(std::string_view queue, std::string body,
                                                const SendOptions& options = {});
  // One result per entry, in entry order; an entry that failed has `error` set while the
  // others are sent. The status fails only for the batch as a whole.
  CallResult<std::vector<v1::SendMessageBatchResult>> SendMessageBatch(
      std::string_view queue, std::vector<SendEntry> entries);
  // The messages now leased to the caller; empty (and ok) when the wait ended without any.
  CallResult<std::vector<v1::QueueMessage>> ReceiveMessages(std::string_view queue,
                                                            const ReceiveOptions& options = {});
  grpc::Status DeleteMessage(std::string_view queue, std::string_view receipt_handle);
  // One result per handle, in order; `error` is set on those that failed.
  CallResult<std::vector<v1::BatchEntryResult>> DeleteMessageBatch(
      std::string_view queue, const std::vector<std::string>& receipt_handles);
  // The new end of the lease, ms since the epoch.
  CallResult<std::int64_t> ChangeMessageVisibility(std::string_view queue,
                                                   std::string_view receipt_handle,
                                                   std::uint32_t visibility_timeout_seconds);
  CallResult<std::vector<v1::BatchEntryResult>> ChangeMessageVisibilityBatch(
      std::string_view queue, const std::vector<VisibilityChange>& changes);
  // Gives a received message back, visible again after `delay_seconds`.
  grpc::Status NackMessage(std::string_view queue, std::string_view receipt_handle,
                           std::uint32_t delay_seconds = 0);

  // Opens a StreamingReceive on `queue`. It never fails here: a queue that does not exist or
  // bad options end the stream, and ReceiveStream::Receive returns that status.
  std::unique_ptr<ReceiveStream> StreamingReceive(std::string_view queue,
                                                  const ReceiveStreamOptions& options = {});

  // Dead letters and redrive. An empty destination sends each message back to the queue it
  // was dead-lettered from; unset max_messages_per_second is the server's default (500).
  CallResult<v1::RedriveTask> StartRedrive(
      std::string_view source_queue, std::string_view destination_queue = {},
      std::optional<std::uint32_t> max_messages_per_second = std::nullopt);
  // Most recent first; max_results 0 returns the latest only, at most 10.
  CallResult<std::vector<v1::RedriveTask>> ListRedriveTasks(std::string_view source_queue,
                                                            std::uint32_t max_results = 0);
  CallResult<v1::RedriveTask> CancelRedrive(std::string_view task_id);
  // The queues whose redrive policy names `queue`, following the pages to the end.
  CallResult<std::vector<std::string>> ListDeadLetterSourceQueues(std::string_view queue);

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<v1::QueueService::Stub> stub_;
};

// One StreamingReceive call. The server keeps up to the window's messages delivered to it;
// each delete or nack makes room for another, as does a lease that ends.
//
// Threads: any thread may call any method. A background thread reads the stream; settlement
// callbacks run on it, so they must be short, and must neither call Close() (or destroy the
// stream) nor wait for another settlement's future: only that thread can complete it. Handles stay
// valid beyond the stream: a message received on it may also be deleted with
// QueueClient::DeleteMessage, which is the way once the stream has ended.
class ReceiveStream {
 public:
  using Failures = std::vector<v1::ReceiptFailure>;
  using SettleCallback = std::function<void(CallResult<Failures>)>;

  ReceiveStream(std::shared_ptr<grpc::Channel> channel, std::chrono::milliseconds call_timeout,
                std::string queue, const ReceiveStreamOptions& options);
  // Close(), its status ignored; then waits for a Settle still blocked in its send. Other
  // threads must have stopped calling the stream.
  ~ReceiveStream();

  ReceiveStream(const ReceiveStream&) = delete;
  ReceiveStream& operator=(const ReceiveStream&) = delete;

  // Up to `max` of the messages delivered so far, oldest first, waiting up to `timeout` for
  // the first; empty (and ok) when none came. Once the stream has ended it returns why:
  // FAILED_PRECONDITION after Close(), else the server's status (NOT_FOUND when the queue
  // does not exist or was deleted, INVALID_ARGUMENT for bad options, UNAVAILABLE when
  // spoold shut down or could not be reached).
  CallResult<std::vector<v1::QueueMessage>> Receive(
      std::chrono::milliseconds timeout, std::size_t max = std::numeric_limits<std::size_t>::max());

  // Sends the settlement as one request. `done` gets the operations that failed (each with
  // its handle, action and error; every other one is durable), or a failed status when the
  // stream ended before the confirmation came, in which case their outcome is unknown. It
  // runs on the stream's thread, or at once on the caller's when the stream has ended or
  // the settlement is empty. The send blocks while the transport is full (a server that
  // stopped reading): until the socket drains or the connection fails, even after Close()
  // cancelled the stream, so keep settling off threads that must not stall.
  void Settle(Settlement settlement, SettleCallback done);
  std::future<CallResult<Failures>> Settle(Settlement settlement);

  // One operation each, as its own request; the future holds its outcome: OK once durable,
  // else the error the unary call would have returned (e.g. FAILED_PRECONDITION for a stale
  // receipt handle), or the stream's status as above.
  std::future<grpc::Status> Delete(std::string receipt_handle);
  std::future<grpc::Status> Nack(std::string receipt_handle, std::uint32_t delay_seconds = 0);
  std::future<grpc::Status> ChangeVisibility(std::string receipt_handle,
                                             std::uint32_t visibility_timeout_seconds);

  // Changes the window; 0 keeps a value. INVALID_ARGUMENT (and nothing sent) for more than
  // 120,000 messages; FAILED_PRECONDITION once the stream has ended.
  grpc::Status SetFlowControl(std::uint32_t max_outstanding_messages,
                              std::uint64_t max_outstanding_bytes = 0);

  // Ends the stream: waits (up to the client's call_timeout, then cancels) until every
  // settlement sent has been confirmed. Messages delivered but not yet returned by Receive
  // are made visible again at once (one more call, with its own call_timeout); those
  // Receive returned keep their lease until it ends or they are settled. Returns OK, or the
  // status the stream ended with (CANCELLED when it had to cancel). It does not wait for a
  // Settle blocked on a full transport. Idempotent. FAILED_PRECONDITION (and nothing done)
  // when called from a settlement callback.
  grpc::Status Close();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace spool
