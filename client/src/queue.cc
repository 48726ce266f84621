#include "spool/queue.h"

#include <iterator>
#include <utility>

namespace spool {
namespace {

// ReceiveMessagesRequest.wait_time_seconds allows at most this.
constexpr std::uint32_t kMaxReceiveWaitSeconds = 20;

void SetDeadline(grpc::ClientContext& context, std::chrono::milliseconds timeout) {
  context.set_deadline(std::chrono::system_clock::now() + timeout);
}

// SendMessageRequest and SendMessageBatchEntry share these fields.
template <class Message>
void ApplySendOptions(const SendOptions& options, Message& out) {
  for (const auto& [key, value] : options.headers) {
    v1::Header* header = out.add_headers();
    header->set_key(key);
    header->set_value(value);
  }
  if (options.delay_seconds) out.set_delay_seconds(*options.delay_seconds);
  if (options.message_group_id) out.set_message_group_id(*options.message_group_id);
  if (options.deduplication_id) out.set_deduplication_id(*options.deduplication_id);
}

template <class T>
std::vector<T> Take(google::protobuf::RepeatedPtrField<T>& items) {
  return std::vector<T>(std::make_move_iterator(items.begin()),
                        std::make_move_iterator(items.end()));
}

}  // namespace

QueueClient::QueueClient(const Client& client)
    : channel_(client.channel()),
      timeout_(client.options().call_timeout),
      stub_(v1::QueueService::NewStub(channel_)) {}

CallResult<v1::CreateQueueResponse> QueueClient::CreateQueue(std::string_view name,
                                                             const v1::QueueAttributes& attributes,
                                                             std::string_view topic) {
  v1::CreateQueueRequest request;
  request.set_name(std::string(name));
  request.set_topic(std::string(topic));
  *request.mutable_attributes() = attributes;
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  CallResult<v1::CreateQueueResponse> result;
  result.status = stub_->CreateQueue(&context, request, &result.value);
  return result;
}

CallResult<v1::Queue> QueueClient::GetQueueAttributes(std::string_view queue) {
  v1::GetQueueAttributesRequest request;
  request.set_queue(std::string(queue));
  v1::GetQueueAttributesResponse response;
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  CallResult<v1::Queue> result;
  result.status = stub_->GetQueueAttributes(&context, request, &response);
  if (result.ok()) result.value = std::move(*response.mutable_queue());
  return result;
}

CallResult<v1::Queue> QueueClient::SetQueueAttributes(std::string_view queue,
                                                      const v1::QueueAttributes& attributes) {
  v1::SetQueueAttributesRequest request;
  request.set_queue(std::string(queue));
  *request.mutable_attributes() = attributes;
  v1::SetQueueAttributesResponse response;
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  CallResult<v1::Queue> result;
  result.status = stub_->SetQueueAttributes(&context, request, &response);
  if (result.ok()) result.value = std::move(*response.mutable_queue());
  return result;
}

CallResult<v1::ListQueuesResponse> QueueClient::ListQueuesPage(std::string_view prefix,
                                                               std::uint32_t page_size,
                                                               std::string_view page_token) {
  v1::ListQueuesRequest request;
  request.set_prefix(std::string(prefix));
  request.set_page_size(page_size);
  request.set_page_token(std::string(page_token));
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  CallResult<v1::ListQueuesResponse> result;
  result.status = stub_->ListQueues(&context, request, &result.value);
  return result;
}

CallResult<std::vector<std::string>> QueueClient::ListQueues(std::string_view prefix) {
  CallResult<std::vector<std::string>> result;
  std::string token;
  do {
    auto page = ListQueuesPage(prefix, 0, token);
    if (!page.ok()) {
      result.status = page.status;
      result.value.clear();
      return result;
    }
    for (auto& name : *page.value.mutable_queues())
      result.value.push_back(std::move(name));
    token = page.value.next_page_token();
  } while (!token.empty());
  return result;
}

grpc::Status QueueClient::DeleteQueue(std::string_view queue) {
  v1::DeleteQueueRequest request;
  request.set_queue(std::string(queue));
  v1::DeleteQueueResponse response;
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  return stub_->DeleteQueue(&context, request, &response);
}

CallResult<std::uint64_t> QueueClient::PurgeQueue(std::string_view queue) {
  v1::PurgeQueueRequest request;
  request.set_queue(std::string(queue));
  v1::PurgeQueueResponse response;
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  CallResult<std::uint64_t> result;
  result.status = stub_->PurgeQueue(&context, request, &response);
  if (result.ok()) result.value = response.approximate_messages_purged();
  return result;
}

CallResult<v1::SendMessageResult> QueueClient::SendMessage(std::string_view queue, std::string body,
                                                           const SendOptions& options) {
  v1::SendMessageRequest request;
  request.set_queue(std::string(queue));
  request.set_body(std::move(body));
  ApplySendOptions(options, request);
  v1::SendMessageResponse response;
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  CallResult<v1::SendMessageResult> result;
  result.status = stub_->SendMessage(&context, request, &response);
  if (result.ok()) result.value = std::move(*response.mutable_result());
  return result;
}

CallResult<std::vector<v1::SendMessageBatchResult>> QueueClient::SendMessageBatch(
    std::string_view queue, std::vector<SendEntry> entries) {
  v1::SendMessageBatchRequest request;
  request.set_queue(std::string(queue));
  for (auto& entry : entries) {
    v1::SendMessageBatchEntry* out = request.add_entries();
    out->set_id(std::move(entry.id));
    out->set_body(std::move(entry.body));
    ApplySendOptions(entry.options, *out);
  }
  v1::SendMessageBatchResponse response;
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  CallResult<std::vector<v1::SendMessageBatchResult>> result;
  result.status = stub_->SendMessageBatch(&context, request, &response);
  if (result.ok()) result.value = Take(*response.mutable_results());
  return result;
}

CallResult<std::vector<v1::QueueMessage>> QueueClient::ReceiveMessages(
    std::string_view queue, const ReceiveOptions& options) {
  v1::ReceiveMessagesRequest request;
  request.set_queue(std::string(queue));
  request.set_max_messages(options.max_messages);
  request.set_max_bytes(options.max_bytes);
  if (options.visibility_timeout_seconds)
    request.set_visibility_timeout_seconds(*options.visibility_timeout_seconds);
  if (options.wait_time_seconds) request.set_wait_time_seconds(*options.wait_time_seconds);
  // The server ends its wait shortly before the deadline, so a deadline of call_timeout alone
  // would cut every long poll longer than that short.
  const std::uint32_t wait = options.wait_time_seconds.value_or(kMaxReceiveWaitSeconds);
  v1::ReceiveMessagesResponse response;
  grpc::ClientContext context;
  SetDeadline(context, timeout_ + std::chrono::seconds(wait));
  CallResult<std::vector<v1::QueueMessage>> result;
  result.status = stub_->ReceiveMessages(&context, request, &response);
  if (result.ok()) result.value = Take(*response.mutable_messages());
  return result;
}

grpc::Status QueueClient::DeleteMessage(std::string_view queue, std::string_view receipt_handle) {
  v1::DeleteMessageRequest request;
  request.set_queue(std::string(queue));
  request.set_receipt_handle(std::string(receipt_handle));
  v1::DeleteMessageResponse response;
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  return stub_->DeleteMessage(&context, request, &response);
}

CallResult<std::vector<v1::BatchEntryResult>> QueueClient::DeleteMessageBatch(
    std::string_view queue, const std::vector<std::string>& receipt_handles) {
  v1::DeleteMessageBatchRequest request;
  request.set_queue(std::string(queue));
  // Entry ids stay empty: results come back in entry order.
  for (const auto& handle : receipt_handles)
    request.add_entries()->set_receipt_handle(handle);
  v1::DeleteMessageBatchResponse response;
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  CallResult<std::vector<v1::BatchEntryResult>> result;
  result.status = stub_->DeleteMessageBatch(&context, request, &response);
  if (result.ok()) result.value = Take(*response.mutable_results());
  return result;
}

CallResult<std::int64_t> QueueClient::ChangeMessageVisibility(
    std::string_view queue, std::string_view receipt_handle,
    std::uint32_t visibility_timeout_seconds) {
  v1::ChangeMessageVisibilityRequest request;
  request.set_queue(std::string(queue));
  request.set_receipt_handle(std::string(receipt_handle));
  request.set_visibility_timeout_seconds(visibility_timeout_seconds);
  v1::ChangeMessageVisibilityResponse response;
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  CallResult<std::int64_t> result;
  result.status = stub_->ChangeMessageVisibility(&context, request, &response);
  if (result.ok()) result.value = response.visibility_deadline_ms();
  return result;
}

CallResult<std::vector<v1::BatchEntryResult>> QueueClient::ChangeMessageVisibilityBatch(
    std::string_view queue, const std::vector<VisibilityChange>& changes) {
  v1::ChangeMessageVisibilityBatchRequest request;
  request.set_queue(std::string(queue));
  for (const auto& change : changes) {
    v1::ChangeMessageVisibilityBatchEntry* entry = request.add_entries();
    entry->set_receipt_handle(change.receipt_handle);
    entry->set_visibility_timeout_seconds(change.visibility_timeout_seconds);
  }
  v1::ChangeMessageVisibilityBatchResponse response;
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  CallResult<std::vector<v1::BatchEntryResult>> result;
  result.status = stub_->ChangeMessageVisibilityBatch(&context, request, &response);
  if (result.ok()) result.value = Take(*response.mutable_results());
  return result;
}

grpc::Status QueueClient::NackMessage(std::string_view queue, std::string_view receipt_handle,
                                      std::uint32_t delay_seconds) {
  v1::NackMessageRequest request;
  request.set_queue(std::string(queue));
  request.set_receipt_handle(std::string(receipt_handle));
  request.set_delay_seconds(delay_seconds);
  v1::NackMessageResponse response;
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  return stub_->NackMessage(&context, request, &response);
}

std::unique_ptr<ReceiveStream> QueueClient::StreamingReceive(std::string_view queue,
                                                             const ReceiveStreamOptions& options) {
  return std::make_unique<ReceiveStream>(channel_, timeout_, std::string(queue), options);
}

CallResult<v1::RedriveTask> QueueClient::StartRedrive(
    std::string_view source_queue, std::string_view destination_queue,
    std::optional<std::uint32_t> max_messages_per_second) {
  v1::StartRedriveRequest request;
  request.set_source_queue(std::string(source_queue));
  request.set_destination_queue(std::string(destination_queue));
  if (max_messages_per_second) request.set_max_messages_per_second(*max_messages_per_second);
  v1::StartRedriveResponse response;
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  CallResult<v1::RedriveTask> result;
  result.status = stub_->StartRedrive(&context, request, &response);
  if (result.ok()) result.value = std::move(*response.mutable_task());
  return result;
}

CallResult<std::vector<v1::RedriveTask>> QueueClient::ListRedriveTasks(
    std::string_view source_queue, std::uint32_t max_results) {
  v1::ListRedriveTasksRequest request;
  request.set_source_queue(std::string(source_queue));
  request.set_max_results(max_results);
  v1::ListRedriveTasksResponse response;
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  CallResult<std::vector<v1::RedriveTask>> result;
  result.status = stub_->ListRedriveTasks(&context, request, &response);
  if (result.ok()) result.value = Take(*response.mutable_tasks());
  return result;
}

CallResult<v1::RedriveTask> QueueClient::CancelRedrive(std::string_view task_id) {
  v1::CancelRedriveRequest request;
  request.set_task_id(std::string(task_id));
  v1::CancelRedriveResponse response;
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  CallResult<v1::RedriveTask> result;
  result.status = stub_->CancelRedrive(&context, request, &response);
  if (result.ok()) result.value = std::move(*response.mutable_task());
  return result;
}

CallResult<std::vector<std::string>> QueueClient::ListDeadLetterSourceQueues(
    std::string_view queue) {
  CallResult<std::vector<std::string>> result;
  std::string token;
  do {
    v1::ListDeadLetterSourceQueuesRequest request;
    request.set_queue(std::string(queue));
    request.set_page_token(token);
    v1::ListDeadLetterSourceQueuesResponse response;
    grpc::ClientContext context;
    SetDeadline(context, timeout_);
    result.status = stub_->ListDeadLetterSourceQueues(&context, request, &response);
    if (!result.ok()) {
      result.value.clear();
      return result;
    }
    for (auto& name : *response.mutable_queues())
      result.value.push_back(std::move(name));
    token = response.next_page_token();
  } while (!token.empty());
  return result;
}

}  // namespace spool
