#include "spool/client.h"

#include <utility>

namespace spool {
namespace {

void SetDeadline(grpc::ClientContext& context, std::chrono::milliseconds timeout) {
  context.set_deadline(std::chrono::system_clock::now() + timeout);
}

}  // namespace

bool IsTransient(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::ABORTED:
      return true;
    default:
      return false;
  }
}

Client::Client(ClientOptions options) : options_(std::move(options)) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options_.max_receive_message_bytes);
  args.SetMaxSendMessageSize(-1);  // the server states its own limit
  // Notice a dead peer on an idle connection instead of waiting on it forever.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(options_.min_reconnect_backoff.count()));
  // Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: gRPC also uses it as the shortest time a
  // connection attempt may take, and a slow handshake would then never complete.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(options_.max_reconnect_backoff.count()));
  auto credentials =
      options_.credentials ? options_.credentials : grpc::InsecureChannelCredentials();
  channel_ = grpc::CreateCustomChannel(options_.address, credentials, args);
}

bool Client::WaitForConnected(std::chrono::milliseconds timeout) const {
  return channel_->WaitForConnected(std::chrono::system_clock::now() + timeout);
}

Admin::Admin(const Client& client)
    : channel_(client.channel()),
      timeout_(client.options().call_timeout),
      stub_(v1::AdminService::NewStub(channel_)),
      groups_(v1::GroupService::NewStub(channel_)) {}

CallResult<v1::Topic> Admin::CreateTopic(const TopicSpec& spec) {
  v1::CreateTopicRequest request;
  v1::TopicConfig& config = *request.mutable_config();
  config.set_name(spec.name);
  config.set_partitions(spec.partitions);
  if (spec.retention_ms) config.set_retention_ms(*spec.retention_ms);
  if (spec.retention_bytes) config.set_retention_bytes(*spec.retention_bytes);
  if (spec.max_message_bytes) config.set_max_message_bytes(*spec.max_message_bytes);
  v1::CreateTopicResponse response;
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  CallResult<v1::Topic> result;
  result.status = stub_->CreateTopic(&context, request, &response);
  if (result.ok()) result.value = std::move(*response.mutable_topic());
  return result;
}

CallResult<v1::Topic> Admin::GetTopic(std::string_view name) {
  v1::GetTopicRequest request;
  request.set_name(std::string(name));
  v1::GetTopicResponse response;
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  CallResult<v1::Topic> result;
  result.status = stub_->GetTopic(&context, request, &response);
  if (result.ok()) result.value = std::move(*response.mutable_topic());
  return result;
}

CallResult<v1::ListTopicsResponse> Admin::ListTopicsPage(std::string_view prefix,
                                                         std::uint32_t page_size,
                                                         std::string_view page_token) {
  v1::ListTopicsRequest request;
  request.set_prefix(std::string(prefix));
  request.set_page_size(page_size);
  request.set_page_token(std::string(page_token));
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  CallResult<v1::ListTopicsResponse> result;
  result.status = stub_->ListTopics(&context, request, &result.value);
  return result;
}

CallResult<std::vector<v1::TopicConfig>> Admin::ListTopics(std::string_view prefix) {
  CallResult<std::vector<v1::TopicConfig>> result;
  std::string token;
  do {
    auto page = ListTopicsPage(prefix, 0, token);
    if (!page.ok()) {
      result.status = page.status;
      result.value.clear();
      return result;
    }
    for (auto& topic : *page.value.mutable_topics())
      result.value.push_back(std::move(topic));
    token = page.value.next_page_token();
  } while (!token.empty());
  return result;
}

CallResult<v1::Topic> Admin::UpdateTopic(const TopicUpdate& update) {
  v1::UpdateTopicRequest request;
  request.set_name(update.name);
  if (update.partitions) request.set_partitions(*update.partitions);
  if (update.retention_ms) request.set_retention_ms(*update.retention_ms);
  if (update.retention_bytes) request.set_retention_bytes(*update.retention_bytes);
  if (update.max_message_bytes) request.set_max_message_bytes(*update.max_message_bytes);
  v1::UpdateTopicResponse response;
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  CallResult<v1::Topic> result;
  result.status = stub_->UpdateTopic(&context, request, &response);
  if (result.ok()) result.value = std::move(*response.mutable_topic());
  return result;
}

grpc::Status Admin::DeleteTopic(std::string_view name, bool force) {
  v1::DeleteTopicRequest request;
  request.set_name(std::string(name));
  request.set_force(force);
  v1::DeleteTopicResponse response;
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  return stub_->DeleteTopic(&context, request, &response);
}

CallResult<v1::GetBrokerInfoResponse> Admin::GetBrokerInfo() {
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  CallResult<v1::GetBrokerInfoResponse> result;
  result.status = stub_->GetBrokerInfo(&context, v1::GetBrokerInfoRequest(), &result.value);
  return result;
}

CallResult<std::vector<v1::GroupSummary>> Admin::ListGroups(std::string_view prefix) {
  CallResult<std::vector<v1::GroupSummary>> result;
  std::string token;
  do {
    v1::ListGroupsRequest request;
    request.set_prefix(std::string(prefix));
    request.set_page_token(token);
    v1::ListGroupsResponse response;
    grpc::ClientContext context;
    SetDeadline(context, timeout_);
    result.status = groups_->ListGroups(&context, request, &response);
    if (!result.ok()) {
      result.value.clear();
      return result;
    }
    for (auto& group : *response.mutable_groups())
      result.value.push_back(std::move(group));
    token = response.next_page_token();
  } while (!token.empty());
  return result;
}

CallResult<v1::DescribeGroupResponse> Admin::DescribeGroup(std::string_view group) {
  v1::DescribeGroupRequest request;
  request.set_group_id(std::string(group));
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  CallResult<v1::DescribeGroupResponse> result;
  result.status = groups_->DescribeGroup(&context, request, &result.value);
  return result;
}

grpc::Status Admin::DeleteGroup(std::string_view group) {
  v1::DeleteGroupRequest request;
  request.set_group_id(std::string(group));
  v1::DeleteGroupResponse response;
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  return groups_->DeleteGroup(&context, request, &response);
}

CallResult<v1::ResetOffsetsResponse> Admin::ResetOffsets(const v1::ResetOffsetsRequest& request) {
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  CallResult<v1::ResetOffsetsResponse> result;
  result.status = groups_->ResetOffsets(&context, request, &result.value);
  return result;
}

CallResult<v1::FetchOffsetsResponse> Admin::FetchOffsets(const v1::FetchOffsetsRequest& request) {
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  CallResult<v1::FetchOffsetsResponse> result;
  result.status = groups_->FetchOffsets(&context, request, &result.value);
  return result;
}

Reader::Reader(const Client& client, std::string topic, std::uint32_t partition,
               StartPosition start, ReaderOptions options)
    : channel_(client.channel()),
      timeout_(client.options().call_timeout),
      stub_(v1::StreamService::NewStub(channel_)),
      topic_(std::move(topic)),
      partition_(partition),
      start_(start),
      options_(options) {
  if (start_.kind == StartPosition::Kind::kOffset) position_ = start_.offset;
}

grpc::Status Reader::ResolveStart() {
  v1::ListOffsetsRequest request;
  request.set_topic(topic_);
  request.set_partition(partition_);
  switch (start_.kind) {
    case StartPosition::Kind::kEarliest:
      request.set_spec(v1::OFFSET_SPEC_EARLIEST);
      break;
    case StartPosition::Kind::kLatest:
      request.set_spec(v1::OFFSET_SPEC_LATEST);
      break;
    case StartPosition::Kind::kTimestamp:
      request.set_spec(v1::OFFSET_SPEC_TIMESTAMP);
      request.set_timestamp_ms(start_.timestamp_ms);
      break;
    case StartPosition::Kind::kOffset:
      position_ = start_.offset;
      return grpc::Status::OK;
  }
  v1::ListOffsetsResponse response;
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  grpc::Status status = stub_->ListOffsets(&context, request, &response);
  if (!status.ok()) return status;
  // No record at or after the time yet: start where the next one will be appended.
  position_ = response.has_offset() ? response.offset() : response.log_end_offset();
  log_end_offset_ = response.log_end_offset();
  return grpc::Status::OK;
}

CallResult<std::uint64_t> Reader::Position() {
  CallResult<std::uint64_t> result;
  if (!position_) result.status = ResolveStart();
  if (result.ok()) result.value = *position_;
  return result;
}

CallResult<std::vector<v1::Record>> Reader::Poll(std::chrono::milliseconds max_wait) {
  CallResult<std::vector<v1::Record>> result;
  if (!position_) {
    result.status = ResolveStart();
    if (!result.ok()) return result;
  }
  v1::FetchRequest request;
  request.set_topic(topic_);
  request.set_partition(partition_);
  request.set_offset(*position_);
  request.set_max_records(options_.max_records);
  request.set_max_bytes(options_.max_bytes);
  request.set_max_wait_ms(max_wait.count());
  v1::FetchResponse response;
  grpc::ClientContext context;
  SetDeadline(context, timeout_ + max_wait);
  // A reader rides out a server restart: the call waits for the server (up to its deadline)
  // instead of failing while the channel reconnects.
  context.set_wait_for_ready(true);
  result.status = stub_->Fetch(&context, request, &response);
  if (result.status.error_code() == grpc::StatusCode::OUT_OF_RANGE &&
      options_.reset_to_earliest_on_out_of_range) {
    const StartPosition requested = start_;
    start_ = StartPosition::Earliest();
    grpc::Status status = ResolveStart();
    start_ = requested;
    if (!status.ok()) {
      result.status = status;
      return result;
    }
    if (*position_ > request.offset()) {
      skipped_ += *position_ - request.offset();
      return Poll(max_wait);
    }
    // Beyond the end instead (the topic was recreated?): that stays an error.
    position_ = request.offset();
    return result;
  }
  if (!result.ok()) return result;
  position_ = response.next_offset();
  log_end_offset_ = response.log_end_offset();
  result.value.assign(std::make_move_iterator(response.mutable_records()->begin()),
                      std::make_move_iterator(response.mutable_records()->end()));
  return result;
}

}  // namespace spool
