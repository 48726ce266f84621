#pragma once

// The gRPC services of spool.v1 implemented so far: AdminService (topics), PublishService
// (unary and streaming), StreamService (Fetch with long polling, ListOffsets), GroupService
// (consumer groups) and most of QueueService.
//
// Threads: every handler is a gRPC callback reaction. Reactions never block: each hands the
// request to the Broker and finishes the RPC from the broker's completion callback, which
// runs on a broker worker or the store's syncer thread (Finish is safe from any thread).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "broker/broker.h"
#include "common/metrics.h"
#include "protocol/arena_allocator.h"
#include "spool/v1/admin.grpc.pb.h"
#include "spool/v1/consume.grpc.pb.h"
#include "spool/v1/groups.grpc.pb.h"
#include "spool/v1/publish.grpc.pb.h"
#include "spool/v1/queue.grpc.pb.h"

namespace spool::protocol {

// Counts the calls the services are working on, so that shutdown can wait for them before
// closing the server (gRPC's own deadline-based shutdown also waits on idle connections),
// and times every unary call (and each PublishStream batch) per method for /metrics.
class CallCounter {
 public:
  CallCounter();
  // The latency histogram of a method (by its bare name, e.g. "Publish"); null for one that
  // is not timed.
  Histogram* Latency(std::string_view method);
  // spool_grpc_request_duration_seconds{method=...}
  void Render(MetricsWriter& out) const;

  void Enter();
  void Leave();
  // From now on the services answer new calls with UNAVAILABLE.
  void Drain();
  bool draining() const { return draining_.load(); }
  // True once no call is in flight; false if `deadline` came first.
  bool WaitIdle(std::chrono::steady_clock::time_point deadline);

 private:
  std::mutex mu_;
  std::condition_variable idle_;
  std::int64_t calls_ = 0;  // guarded by mu_
  std::atomic<bool> draining_{false};
  // Filled in the constructor and never changed, so lookups need no lock.
  std::map<std::string, std::unique_ptr<Histogram>, std::less<>> latency_;
};

// What GetBrokerInfo reports besides live counts.
struct ServerInfo {
  std::string version;
  std::int64_t started_ms = 0;
  bool fsync_always = true;
  std::int64_t fsync_interval_ms = 0;
  std::size_t max_batch_records = 0;
  std::size_t max_batch_bytes = 0;
  std::size_t max_grpc_message_bytes = 0;
};

class AdminServiceImpl final : public v1::AdminService::CallbackService {
 public:
  AdminServiceImpl(broker::Broker& broker, ServerInfo info, CallCounter& calls)
      : broker_(broker), info_(std::move(info)), calls_(calls) {}

  grpc::ServerUnaryReactor* CreateTopic(grpc::CallbackServerContext* context,
                                        const v1::CreateTopicRequest* request,
                                        v1::CreateTopicResponse* response) override;
  grpc::ServerUnaryReactor* GetTopic(grpc::CallbackServerContext* context,
                                     const v1::GetTopicRequest* request,
                                     v1::GetTopicResponse* response) override;
  grpc::ServerUnaryReactor* ListTopics(grpc::CallbackServerContext* context,
                                       const v1::ListTopicsRequest* request,
                                       v1::ListTopicsResponse* response) override;
  grpc::ServerUnaryReactor* UpdateTopic(grpc::CallbackServerContext* context,
                                        const v1::UpdateTopicRequest* request,
                                        v1::UpdateTopicResponse* response) override;
  grpc::ServerUnaryReactor* DeleteTopic(grpc::CallbackServerContext* context,
                                        const v1::DeleteTopicRequest* request,
                                        v1::DeleteTopicResponse* response) override;
  grpc::ServerUnaryReactor* GetBrokerInfo(grpc::CallbackServerContext* context,
                                          const v1::GetBrokerInfoRequest* request,
                                          v1::GetBrokerInfoResponse* response) override;

 private:
  broker::Broker& broker_;
  const ServerInfo info_;
  CallCounter& calls_;
};

// How much one PublishStream may hold between reading a batch and writing its answer; past
// it the stream stops reading, which pushes back on the client through gRPC flow control.
// The batch count lets one producer's pipelined single-record batches share an fsync (the
// broker appends whatever is read); the byte bound keeps a stream of large batches from
// holding that many of them in memory. One batch is always let in, however large.
struct PublishStreamWindow {
  std::size_t batches = 1024;
  std::size_t bytes = 64u << 20;

  bool HasRoom(std::size_t held_batches, std::size_t held_bytes) const {
    if (held_batches == 0) return true;
    return held_batches < batches && held_bytes < bytes;
  }
};

class PublishServiceImpl final : public v1::PublishService::CallbackService {
 public:
  PublishServiceImpl(broker::Broker& broker, PublishStreamWindow window, CallCounter& calls)
      : broker_(broker), window_(window), calls_(calls) {
    SetMessageAllocatorFor_Publish(&publish_messages_);
  }

  grpc::ServerUnaryReactor* Publish(grpc::CallbackServerContext* context,
                                    const v1::PublishRequest* request,
                                    v1::PublishResponse* response) override;
  grpc::ServerBidiReactor<v1::PublishStreamRequest, v1::PublishStreamResponse>* PublishStream(
      grpc::CallbackServerContext* context) override;

 private:
  broker::Broker& broker_;
  const PublishStreamWindow window_;
  CallCounter& calls_;
  ArenaMessageAllocator<v1::PublishRequest, v1::PublishResponse> publish_messages_;
};

class StreamServiceImpl final : public v1::StreamService::CallbackService {
 public:
  StreamServiceImpl(broker::Broker& broker, CallCounter& calls) : broker_(broker), calls_(calls) {
    SetMessageAllocatorFor_Fetch(&fetch_messages_);
  }

  grpc::ServerUnaryReactor* Fetch(grpc::CallbackServerContext* context,
                                  const v1::FetchRequest* request,
                                  v1::FetchResponse* response) override;
  grpc::ServerUnaryReactor* ListOffsets(grpc::CallbackServerContext* context,
                                        const v1::ListOffsetsRequest* request,
                                        v1::ListOffsetsResponse* response) override;

 private:
  broker::Broker& broker_;
  CallCounter& calls_;
  ArenaMessageAllocator<v1::FetchRequest, v1::FetchResponse> fetch_messages_;
};

// Consumer groups (proto/spool/v1/groups.proto); the protocol is in broker::GroupCoordinator.
// QueueService: queues, sends, receives (with long polling and as a stream), deletes,
// visibility and redrive tasks.
class QueueServiceImpl final : public v1::QueueService::CallbackService {
 public:
  QueueServiceImpl(broker::Broker& broker, CallCounter& calls) : broker_(broker), calls_(calls) {
    SetMessageAllocatorFor_SendMessage(&send_messages_);
    SetMessageAllocatorFor_SendMessageBatch(&send_batch_messages_);
    SetMessageAllocatorFor_ReceiveMessages(&receive_messages_);
    SetMessageAllocatorFor_DeleteMessage(&delete_messages_);
    SetMessageAllocatorFor_DeleteMessageBatch(&delete_batch_messages_);
  }

  grpc::ServerUnaryReactor* CreateQueue(grpc::CallbackServerContext* context,
                                        const v1::CreateQueueRequest* request,
                                        v1::CreateQueueResponse* response) override;
  grpc::ServerUnaryReactor* GetQueueAttributes(grpc::CallbackServerContext* context,
                                               const v1::GetQueueAttributesRequest* request,
                                               v1::GetQueueAttributesResponse* response) override;
  grpc::ServerUnaryReactor* SetQueueAttributes(grpc::CallbackServerContext* context,
                                               const v1::SetQueueAttributesRequest* request,
                                               v1::SetQueueAttributesResponse* response) override;
  grpc::ServerUnaryReactor* ListQueues(grpc::CallbackServerContext* context,
                                       const v1::ListQueuesRequest* request,
                                       v1::ListQueuesResponse* response) override;
  grpc::ServerUnaryReactor* ListDeadLetterSourceQueues(
      grpc::CallbackServerContext* context, const v1::ListDeadLetterSourceQueuesRequest* request,
      v1::ListDeadLetterSourceQueuesResponse* response) override;
  grpc::ServerUnaryReactor* DeleteQueue(grpc::CallbackServerContext* context,
                                        const v1::DeleteQueueRequest* request,
                                        v1::DeleteQueueResponse* response) override;
  grpc::ServerUnaryReactor* PurgeQueue(grpc::CallbackServerContext* context,
                                       const v1::PurgeQueueRequest* request,
                                       v1::PurgeQueueResponse* response) override;
  grpc::ServerUnaryReactor* SendMessage(grpc::CallbackServerContext* context,
                                        const v1::SendMessageRequest* request,
                                        v1::SendMessageResponse* response) override;
  grpc::ServerUnaryReactor* SendMessageBatch(grpc::CallbackServerContext* context,
                                             const v1::SendMessageBatchRequest* request,
                                             v1::SendMessageBatchResponse* response) override;
  grpc::ServerUnaryReactor* ReceiveMessages(grpc::CallbackServerContext* context,
                                            const v1::ReceiveMessagesRequest* request,
                                            v1::ReceiveMessagesResponse* response) override;
  grpc::ServerUnaryReactor* DeleteMessage(grpc::CallbackServerContext* context,
                                          const v1::DeleteMessageRequest* request,
                                          v1::DeleteMessageResponse* response) override;
  grpc::ServerUnaryReactor* DeleteMessageBatch(grpc::CallbackServerContext* context,
                                               const v1::DeleteMessageBatchRequest* request,
                                               v1::DeleteMessageBatchResponse* response) override;
  grpc::ServerUnaryReactor* ChangeMessageVisibility(
      grpc::CallbackServerContext* context, const v1::ChangeMessageVisibilityRequest* request,
      v1::ChangeMessageVisibilityResponse* response) override;
  grpc::ServerUnaryReactor* ChangeMessageVisibilityBatch(
      grpc::CallbackServerContext* context, const v1::ChangeMessageVisibilityBatchRequest* request,
      v1::ChangeMessageVisibilityBatchResponse* response) override;
  grpc::ServerUnaryReactor* NackMessage(grpc::CallbackServerContext* context,
                                        const v1::NackMessageRequest* request,
                                        v1::NackMessageResponse* response) override;
  grpc::ServerBidiReactor<v1::StreamingReceiveRequest, v1::StreamingReceiveResponse>*
  StreamingReceive(grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* StartRedrive(grpc::CallbackServerContext* context,
                                         const v1::StartRedriveRequest* request,
                                         v1::StartRedriveResponse* response) override;
  grpc::ServerUnaryReactor* ListRedriveTasks(grpc::CallbackServerContext* context,
                                             const v1::ListRedriveTasksRequest* request,
                                             v1::ListRedriveTasksResponse* response) override;
  grpc::ServerUnaryReactor* CancelRedrive(grpc::CallbackServerContext* context,
                                          const v1::CancelRedriveRequest* request,
                                          v1::CancelRedriveResponse* response) override;

 private:
  broker::Broker& broker_;
  CallCounter& calls_;
  // The calls of the send, receive and delete loops (ArenaMessageAllocator says why).
  ArenaMessageAllocator<v1::SendMessageRequest, v1::SendMessageResponse> send_messages_;
  ArenaMessageAllocator<v1::SendMessageBatchRequest, v1::SendMessageBatchResponse>
      send_batch_messages_;
  ArenaMessageAllocator<v1::ReceiveMessagesRequest, v1::ReceiveMessagesResponse> receive_messages_;
  ArenaMessageAllocator<v1::DeleteMessageRequest, v1::DeleteMessageResponse> delete_messages_;
  ArenaMessageAllocator<v1::DeleteMessageBatchRequest, v1::DeleteMessageBatchResponse>
      delete_batch_messages_;
};

class GroupServiceImpl final : public v1::GroupService::CallbackService {
 public:
  GroupServiceImpl(broker::Broker& broker, CallCounter& calls) : broker_(broker), calls_(calls) {}

  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) override;
  grpc::ServerUnaryReactor* LeaveGroup(grpc::CallbackServerContext* context,
                                       const v1::LeaveGroupRequest* request,
                                       v1::LeaveGroupResponse* response) override;
  grpc::ServerUnaryReactor* CommitOffsets(grpc::CallbackServerContext* context,
                                          const v1::CommitOffsetsRequest* request,
                                          v1::CommitOffsetsResponse* response) override;
  grpc::ServerUnaryReactor* FetchOffsets(grpc::CallbackServerContext* context,
                                         const v1::FetchOffsetsRequest* request,
                                         v1::FetchOffsetsResponse* response) override;
  grpc::ServerUnaryReactor* ListGroups(grpc::CallbackServerContext* context,
                                       const v1::ListGroupsRequest* request,
                                       v1::ListGroupsResponse* response) override;
  grpc::ServerUnaryReactor* DescribeGroup(grpc::CallbackServerContext* context,
                                          const v1::DescribeGroupRequest* request,
                                          v1::DescribeGroupResponse* response) override;
  grpc::ServerUnaryReactor* DeleteGroup(grpc::CallbackServerContext* context,
                                        const v1::DeleteGroupRequest* request,
                                        v1::DeleteGroupResponse* response) override;
  grpc::ServerUnaryReactor* ResetOffsets(grpc::CallbackServerContext* context,
                                         const v1::ResetOffsetsRequest* request,
                                         v1::ResetOffsetsResponse* response) override;

 private:
  broker::Broker& broker_;
  CallCounter& calls_;
};

}  // namespace spool::protocol
