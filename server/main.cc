// spoold: opens the store and the broker, then serves until SIGTERM or SIGINT.
//
// Shutdown order reverses construction: the broker stops taking calls and finishes the ones
// in flight, then the store completes pending writes and closes RocksDB.

#include <csignal>
#include <cstdlib>
#include <string>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "broker/broker.h"
#include "common/clock.h"
#include "common/logging.h"
#include "storage/store.h"

int main(int argc, char** argv) {
  CLI::App app{"spoold - the Spool message broker daemon"};
  std::string data_dir = "./data";
  std::string fsync = "always";
  int fsync_interval_ms = 50;
  std::string log_level = "info";
  app.add_option("--data-dir", data_dir, "Directory of the RocksDB store")->capture_default_str();
  app.add_option("--fsync", fsync, "always: acknowledge after fsync; interval: fsync every N ms")
      ->check(CLI::IsMember({"always", "interval"}))
      ->capture_default_str();
  app.add_option("--fsync-interval-ms", fsync_interval_ms, "fsync period in interval mode")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, critical or off")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (!spool::SetLogLevel(log_level)) {
    spdlog::error("unknown --log-level '{}'", log_level);
    return 2;
  }
  auto& log = spool::ModuleLogger("server");

  spool::storage::StoreOptions store_options;
  store_options.fsync =
      fsync == "always" ? spool::storage::FsyncMode::kAlways : spool::storage::FsyncMode::kInterval;
  store_options.fsync_interval = std::chrono::milliseconds(fsync_interval_ms);
  auto store = spool::storage::Store::Open(data_dir, store_options);
  if (!store) {
    log.error("cannot open the store: {}", store.error().message);
    return 1;
  }
  auto broker = spool::broker::Broker::Open(**store, spool::SystemClock::Instance());
  if (!broker) {
    log.error("cannot load the broker state: {}", broker.error().ToString());
    return 1;
  }

  boost::asio::io_context io;
  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](boost::system::error_code, int signal) {
    log.info("received signal {}, shutting down", signal);
  });
  log.info("spoold ready: data_dir={} topics={}", data_dir, (*broker)->ListTopics().size());
  io.run();

  (*broker)->Shutdown();
  broker->reset();
  if (spool::Status s = (*store)->Close(); !s) {
    log.error("closing the store: {}", s.error().ToString());
    return 1;
  }
  log.info("stopped cleanly");
  return EXIT_SUCCESS;
}
