#pragma once

// The gRPC server: the spool.v1 services plus grpc.health.v1 and server reflection, on one
// listening address.
//
// Thread-safety: Start and Shutdown from one thread (the daemon's main).

#include <chrono>
#include <memory>
#include <string>

#include "broker/broker.h"
#include "common/error.h"
#include "protocol/grpc_services.h"

namespace grpc {
class Server;
}

namespace spool::protocol {

struct GrpcServerOptions {
  std::string listen = "127.0.0.1:50051";  // host:port; port 0 picks a free one
  // Largest request accepted; follows the broker's max batch size plus framing.
  std::size_t max_receive_bytes = 64u << 20;
  PublishStreamWindow publish_stream_window;
};

class GrpcServer {
 public:
  static Result<std::unique_ptr<GrpcServer>> Start(broker::Broker& broker,
                                                   const GrpcServerOptions& options,
                                                   ServerInfo info);
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;
  ~GrpcServer();

  // The port actually bound (useful with port 0).
  int port() const { return port_; }
  const CallCounter& calls() const { return calls_; }
  // Turns health NOT_SERVING (so load balancers stop sending), answers new calls with
  // UNAVAILABLE, gives the calls in flight up to `grace` to finish, then stops the server,
  // cancelling whatever is left. A PublishStream counts as in flight only while it has
  // batches unanswered, so an idle one does not hold the grace period.
  void Shutdown(std::chrono::milliseconds grace);

 private:
  GrpcServer() = default;

  CallCounter calls_;
  std::unique_ptr<AdminServiceImpl> admin_;
  std::unique_ptr<PublishServiceImpl> publish_;
  std::unique_ptr<StreamServiceImpl> stream_;
  std::unique_ptr<GroupServiceImpl> groups_;
  std::unique_ptr<QueueServiceImpl> queues_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace spool::protocol
