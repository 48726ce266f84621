// spoold: opens the store and the broker, serves the gRPC API, and runs until SIGTERM or
// SIGINT.
//
// Shutdown order reverses construction: parked long polls are answered, the gRPC server
// stops accepting and lets calls in flight finish (bounded by --shutdown-grace-ms), the
// broker finishes what it still has, and the store completes pending writes and closes
// RocksDB. Nothing acknowledged is lost.

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <string>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <unistd.h>

#include "broker/broker.h"
#include "common/clock.h"
#include "common/logging.h"
#include "protocol/grpc_server.h"
#include "storage/store.h"

namespace {

constexpr const char* kVersion = "0.1.0";

struct Flags {
  std::string data_dir = "./data";
  std::string grpc_listen = "127.0.0.1:50051";
  std::string fsync = "always";
  int fsync_interval_ms = 50;
  int shutdown_grace_ms = 10'000;
  std::size_t max_batch_bytes = 64u << 20;
  std::string log_level = "info";
};

// Host part of a host:port listen address, for the startup line.
std::string HostOf(const std::string& listen) {
  const auto colon = listen.rfind(':');
  return colon == std::string::npos ? listen : listen.substr(0, colon);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"spoold - the Spool message broker daemon"};
  Flags flags;
  app.add_option("--data-dir", flags.data_dir, "Directory of the RocksDB store")
      ->capture_default_str();
  app.add_option("--grpc-listen", flags.grpc_listen, "gRPC listen address host:port (port 0: any)")
      ->capture_default_str();
  app.add_option("--fsync", flags.fsync,
                 "always: acknowledge after fsync; interval: fsync every --fsync-interval-ms")
      ->check(CLI::IsMember({"always", "interval"}))
      ->capture_default_str();
  app.add_option("--fsync-interval-ms", flags.fsync_interval_ms, "fsync period in interval mode")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  app.add_option("--max-batch-bytes", flags.max_batch_bytes,
                 "Largest publish batch in bytes; also bounds gRPC request size")
      ->check(CLI::Range(std::size_t{1024}, std::size_t{256} << 20))
      ->capture_default_str();
  app.add_option("--shutdown-grace-ms", flags.shutdown_grace_ms,
                 "How long calls in flight may take to finish on SIGTERM")
      ->check(CLI::Range(0, 600000))
      ->capture_default_str();
  app.add_option("--log-level", flags.log_level, "trace, debug, info, warn, error, critical or off")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (!spool::SetLogLevel(flags.log_level)) {
    spdlog::error("unknown --log-level '{}'", flags.log_level);
    return 2;
  }
  auto& log = spool::ModuleLogger("server");
  const auto& clock = spool::SystemClock::Instance();
  const std::int64_t started_ms = clock.WallMillis();

  spool::storage::StoreOptions store_options;
  store_options.fsync = flags.fsync == "always" ? spool::storage::FsyncMode::kAlways
                                                : spool::storage::FsyncMode::kInterval;
  store_options.fsync_interval = std::chrono::milliseconds(flags.fsync_interval_ms);
  auto store = spool::storage::Store::Open(flags.data_dir, store_options);
  if (!store) {
    log.error("cannot open the store: {}", store.error().message);
    return 1;
  }
  spool::broker::BrokerOptions broker_options;
  broker_options.max_batch_bytes = flags.max_batch_bytes;
  auto broker = spool::broker::Broker::Open(**store, clock, broker_options);
  if (!broker) {
    log.error("cannot load the broker state: {}", broker.error().ToString());
    return 1;
  }

  spool::protocol::GrpcServerOptions grpc_options;
  grpc_options.listen = flags.grpc_listen;
  // Framing and headers on top of the largest batch.
  grpc_options.max_receive_bytes = flags.max_batch_bytes + (1u << 20);
  spool::protocol::ServerInfo info;
  info.version = kVersion;
  info.started_ms = started_ms;
  info.fsync_always = store_options.fsync == spool::storage::FsyncMode::kAlways;
  info.fsync_interval_ms = flags.fsync_interval_ms;
  info.max_batch_records = broker_options.max_batch_records;
  info.max_batch_bytes = broker_options.max_batch_bytes;
  info.max_grpc_message_bytes = grpc_options.max_receive_bytes;
  auto grpc_server = spool::protocol::GrpcServer::Start(**broker, grpc_options, info);
  if (!grpc_server) {
    log.error("{}", grpc_server.error().message);
    (*broker)->Shutdown();
    return 1;
  }

  boost::asio::io_context io;
  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](boost::system::error_code, int signal) {
    log.info("received signal {}, shutting down", signal);
  });
  // One line that scripts and tests parse for the bound addresses (port 0 picks one).
  log.info("spoold ready: grpc={}:{} data_dir={} fsync={} pid={}", HostOf(flags.grpc_listen),
           (*grpc_server)->port(), flags.data_dir, flags.fsync, getpid());
  io.run();

  (*broker)->ReleaseWaiters();
  (*grpc_server)->Shutdown(std::chrono::milliseconds(flags.shutdown_grace_ms));
  grpc_server->reset();
  (*broker)->Shutdown();
  broker->reset();
  if (spool::Status s = (*store)->Close(); !s) {
    log.error("closing the store: {}", s.error().ToString());
    return 1;
  }
  log.info("stopped cleanly");
  return EXIT_SUCCESS;
}
