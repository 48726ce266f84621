#include "protocol/grpc_server.h"

#include <absl/synchronization/mutex.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include "common/logging.h"

namespace spool::protocol {
namespace {
spdlog::logger& ProtocolLog() {
  static spdlog::logger& logger = ModuleLogger("grpc");
  return logger;
}
}  // namespace

Result<std::unique_ptr<GrpcServer>> GrpcServer::Start(broker::Broker& broker,
                                                      const GrpcServerOptions& options,
                                                      ServerInfo info) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  // Debian builds Abseil with mutex deadlock detection on, and gRPC takes an absl::Mutex
  // several times per call: the lock-graph bookkeeping cost several percent of the server's
  // CPU under unary load. It is a debugging aid; the server runs without it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  std::unique_ptr<GrpcServer> server(new GrpcServer());
  server->admin_ = std::make_unique<AdminServiceImpl>(broker, std::move(info), server->calls_);
  server->publish_ =
      std::make_unique<PublishServiceImpl>(broker, options.publish_stream_window, server->calls_);
  server->stream_ = std::make_unique<StreamServiceImpl>(broker, server->calls_);
  server->groups_ = std::make_unique<GroupServiceImpl>(broker, server->calls_);
  server->queues_ = std::make_unique<QueueServiceImpl>(broker, server->calls_);

  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &server->port_);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_receive_bytes));
  // Fetch answers carry up to 64 MiB of records plus per-record fields; the client's own
  // receive limit is the one that matters, so the server does not add one.
  builder.SetMaxSendMessageSize(-1);
  builder.RegisterService(server->admin_.get());
  builder.RegisterService(server->publish_.get());
  builder.RegisterService(server->stream_.get());
  builder.RegisterService(server->groups_.get());
  builder.RegisterService(server->queues_.get());
  server->server_ = builder.BuildAndStart();
  if (!server->server_ || server->port_ == 0) {
    return Unavailable("cannot listen for gRPC on " + options.listen +
                       " (address in use, or not a host:port this machine has)");
  }
  return server;
}

GrpcServer::~GrpcServer() {
  Shutdown(std::chrono::milliseconds(0));
}

void GrpcServer::Shutdown(std::chrono::milliseconds grace) {
  if (!server_) return;
  if (auto* health = server_->GetHealthCheckService()) health->Shutdown();
  calls_.Drain();
  // Let the calls in flight finish, then close at once: a deadline passed to gRPC would also
  // be spent waiting on idle client connections.
  if (!calls_.WaitIdle(std::chrono::steady_clock::now() + grace)) {
    ProtocolLog().warn("{} ms grace over; cancelling the calls still in flight", grace.count());
  }
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
  server_.reset();
}

}  // namespace spool::protocol
