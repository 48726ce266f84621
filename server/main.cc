// spoold: opens the store and the broker, serves the gRPC API, and runs until SIGTERM or
// SIGINT.
//
// Shutdown order reverses construction: parked long polls are answered, the gRPC server
// stops accepting and lets calls in flight finish (bounded by --shutdown-grace-ms), the
// broker finishes what it still has, and the store completes pending writes and closes
// RocksDB. Nothing acknowledged is lost.

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "broker/broker.h"
#include "common/clock.h"
#include "common/logging.h"
#include "protocol/grpc_server.h"
#include "protocol/http_server.h"
#include "protocol/metrics_endpoint.h"
#include "protocol/sqs/api.h"
#include "server/config.h"
#include "storage/store.h"

namespace {

// Host part of a host:port listen address, for the startup line.
std::string HostOf(const std::string& listen) {
  const auto colon = listen.rfind(':');
  return colon == std::string::npos ? listen : listen.substr(0, colon);
}

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host.starts_with("127.") || host == "::1" || host == "[::1]";
}

std::string ReadFile(const std::string& path, bool* ok) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  *ok = static_cast<bool>(in);
  return text.str();
}

}  // namespace

int main(int argc, char** argv) {
  using spool::server::ConfigKeys;
  CLI::App app{
      "spoold - the Spool message broker daemon\n\n"
      "Every option can also be set in the --config YAML file (key as shown in\n"
      "brackets) or by a SPOOL_<KEY> environment variable; flags win over the\n"
      "environment, which wins over the file. Any other SPOOL_ variable (but\n"
      "SPOOL_CONFIG and the CLI's SPOOL_SERVER) stops startup, so that a\n"
      "misspelled one is not ignored."};
  std::string config_file;
  app.add_option("--config", config_file, "YAML configuration file [SPOOL_CONFIG]");
  spool::server::Config defaults;
  std::map<std::string, std::string> flag_values;
  for (const spool::server::ConfigKey& key : ConfigKeys()) {
    app.add_option(
        key.Flag(), flag_values[key.name],
        key.help + " [" + key.name + ", " + key.EnvVar() + "; default " + key.get(defaults) + "]");
  }
  CLI11_PARSE(app, argc, argv);

  // Defaults, then the file, then the environment, then flags.
  spool::server::Config config;
  if (config_file.empty()) {
    if (const char* from_env = std::getenv("SPOOL_CONFIG")) config_file = from_env;
  }
  if (!config_file.empty()) {
    bool ok = false;
    const std::string text = ReadFile(config_file, &ok);
    if (!ok) {
      spdlog::error("cannot read the config file {}", config_file);
      return 2;
    }
    if (spool::Status s = spool::server::ApplyYaml(text, config_file, config); !s) {
      spdlog::error("{}", s.error().message);
      return 2;
    }
  }
  std::vector<std::string> env_names;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view variable(*entry);
    env_names.emplace_back(variable.substr(0, variable.find('=')));
  }
  if (spool::Status s = spool::server::CheckEnvironmentNames(env_names); !s) {
    spdlog::error("{}", s.error().message);
    return 2;
  }
  if (spool::Status s = spool::server::ApplyEnvironment(
          [](const char* name) { return std::getenv(name); }, config);
      !s) {
    spdlog::error("{}", s.error().message);
    return 2;
  }
  std::map<std::string, std::string> given;
  for (const spool::server::ConfigKey& key : ConfigKeys()) {
    if (app.count(key.Flag()) > 0) given[key.name] = flag_values[key.name];
  }
  if (spool::Status s = spool::server::ApplyValues(given, "flag", config); !s) {
    spdlog::error("{}", s.error().message);
    return 2;
  }
  if (spool::Status s = spool::server::CheckConfig(config); !s) {
    spdlog::error("{}", s.error().message);
    return 2;
  }
  if (!spool::SetLogLevel(config.log_level)) {
    spdlog::error("unknown --log-level '{}'", config.log_level);
    return 2;
  }
  auto& log = spool::ModuleLogger("server");
  const auto& clock = spool::SystemClock::Instance();
  const std::int64_t started_ms = clock.WallMillis();

  spool::storage::StoreOptions store_options;
  store_options.fsync = config.fsync == "always" ? spool::storage::FsyncMode::kAlways
                                                 : spool::storage::FsyncMode::kInterval;
  store_options.fsync_interval = std::chrono::milliseconds(config.fsync_interval_ms);
  auto store = spool::storage::Store::Open(config.data_dir, store_options);
  if (!store) {
    log.error("cannot open the store: {}", store.error().message);
    return 1;
  }
  spool::broker::BrokerOptions broker_options;
  broker_options.max_batch_bytes = static_cast<std::size_t>(config.max_batch_bytes);
  broker_options.max_batch_records = static_cast<std::size_t>(config.max_batch_records);
  broker_options.worker_threads = static_cast<std::size_t>(config.worker_threads);
  broker_options.defer_receive_fsync = config.receive_fsync == "deferred";
  broker_options.max_queue_batch = static_cast<std::size_t>(config.queue_max_batch);
  broker_options.retention_check_interval =
      std::chrono::milliseconds(config.retention_check_interval_ms);
  broker_options.groups.min_session_timeout_ms = config.group_min_session_timeout_ms;
  broker_options.groups.max_session_timeout_ms = config.group_max_session_timeout_ms;
  broker_options.groups.max_members = static_cast<std::size_t>(config.group_max_members);
  broker_options.groups.offsets_retention_ms = config.group_offsets_retention_ms;
  auto broker = spool::broker::Broker::Open(**store, clock, broker_options);
  if (!broker) {
    log.error("cannot load the broker state: {}", broker.error().ToString());
    return 1;
  }

  spool::protocol::GrpcServerOptions grpc_options;
  grpc_options.listen = config.grpc_listen;
  // Framing and headers on top of the largest batch.
  grpc_options.max_receive_bytes = static_cast<std::size_t>(config.max_batch_bytes) + (1u << 20);
  grpc_options.publish_stream_window.batches =
      static_cast<std::size_t>(config.publish_stream_window);
  grpc_options.publish_stream_window.bytes = static_cast<std::size_t>(config.max_batch_bytes);
  spool::protocol::ServerInfo info;
  info.version = SPOOL_VERSION;
  info.started_ms = started_ms;
  info.fsync_always = store_options.fsync == spool::storage::FsyncMode::kAlways;
  info.fsync_interval_ms = config.fsync_interval_ms;
  info.max_batch_records = broker_options.max_batch_records;
  info.max_batch_bytes = broker_options.max_batch_bytes;
  info.max_grpc_message_bytes = grpc_options.max_receive_bytes;
  auto grpc_server = spool::protocol::GrpcServer::Start(**broker, grpc_options, info);
  if (!grpc_server) {
    log.error("{}", grpc_server.error().message);
    (*broker)->Shutdown();
    return 1;
  }

  spool::protocol::HttpServerOptions http_options;
  http_options.listen = config.http_listen;
  http_options.max_connections = static_cast<std::size_t>(config.http_max_connections);
  // A full SQS batch (1 MiB of messages) percent-encoded by the Query protocol.
  http_options.max_body_bytes = 4u << 20;
  // The SQS API needs the bound port for its queue URLs, so it is made once the port is
  // bound; until then (and never, in practice, since readiness comes after) it answers 503.
  std::unique_ptr<spool::protocol::sqs::SqsApi> sqs_api;
  std::atomic<spool::protocol::sqs::SqsApi*> sqs{nullptr};
  auto http_server = spool::protocol::HttpServer::Start(
      http_options,
      [&broker, &store, &grpc_server, &sqs] {
        std::string text =
            spool::protocol::RenderMetrics(**broker, **store, (*grpc_server)->calls());
        if (const auto* api = sqs.load()) {
          spool::MetricsWriter out;
          api->RenderMetrics(out);
          text += out.Take();
        }
        return text;
      },
      [&sqs](spool::protocol::HttpRequest request, spool::protocol::HttpServer::Reply reply) {
        if (auto* api = sqs.load()) return api->Handle(std::move(request), std::move(reply));
        reply({503, {{"Content-Type", "text/plain"}}, "starting\n"});
      });
  if (!http_server) {
    log.error("{}", http_server.error().message);
    (*grpc_server)->Shutdown(std::chrono::milliseconds(0));
    (*broker)->Shutdown();
    return 1;
  }
  spool::protocol::sqs::SqsOptions sqs_options;
  sqs_options.advertised_url = spool::server::AdvertisedUrl(config, (*http_server)->port());
  sqs_options.account_id = config.sqs_account_id;
  sqs_options.region = config.sqs_region;
  sqs_options.verify_signatures = config.sqs_auth == "sigv4";
  sqs_options.access_keys = *spool::server::ParseAccessKeys(config.sqs_access_keys);
  sqs_options.purge_interval_ms = config.sqs_purge_interval_s * 1000;
  sqs_options.recreate_wait_ms = config.sqs_recreate_wait_s * 1000;
  if (!sqs_options.verify_signatures && !IsLoopback(HostOf(config.http_listen))) {
    log.warn(
        "the SQS API on {} accepts requests without checking signatures; set sqs_auth: "
        "sigv4 with sqs_access_keys for a port other hosts can reach",
        config.http_listen);
  }
  sqs_api = std::make_unique<spool::protocol::sqs::SqsApi>(**broker, sqs_options);
  sqs.store(sqs_api.get());
  (*http_server)->SetReady(true);

  boost::asio::io_context io;
  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](boost::system::error_code, int signal) {
    log.info("received signal {}, shutting down", signal);
  });
  // One line that scripts and tests parse for the bound addresses (port 0 picks one).
  log.info("spoold ready: grpc={}:{} http={}:{} data_dir={} fsync={} pid={}",
           HostOf(config.grpc_listen), (*grpc_server)->port(), HostOf(config.http_listen),
           (*http_server)->port(), config.data_dir, config.fsync, getpid());
  // Under systemd (Type=notify) this reports readiness; elsewhere it does nothing.
  sd_notifyf(0, "READY=1\nSTATUS=serving gRPC on %s:%d", HostOf(config.grpc_listen).c_str(),
             (*grpc_server)->port());
  io.run();
  sd_notify(0, "STOPPING=1");

  (*http_server)->SetReady(false);
  (*broker)->ReleaseWaiters();
  (*grpc_server)->Shutdown(std::chrono::milliseconds(config.shutdown_grace_ms));
  (*http_server)->Stop(std::chrono::milliseconds(config.shutdown_grace_ms));
  grpc_server->reset();
  (*broker)->Shutdown();
  // After the broker: its last callbacks may still call into the SQS API.
  sqs_api.reset();
  broker->reset();
  if (spool::Status s = (*store)->Close(); !s) {
    log.error("closing the store: {}", s.error().ToString());
    return 1;
  }
  log.info("stopped cleanly");
  return EXIT_SUCCESS;
}
