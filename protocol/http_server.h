#pragma once

// The HTTP port: /healthz (the process is up), /readyz (it serves: 503 before startup
// finishes and once shutdown begins) and /metrics (Prometheus text format). The
// SQS-compatible API will share this port.
//
// Boost.Beast over Asio, as in Beast's async server example: one I/O thread, a strand per
// connection, keep-alive, bounded request and header sizes, and idle timeouts.
//
// Thread-safety: Start/Stop from one thread; SetReady from any.

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/error.h"

namespace spool::protocol {

struct HttpServerOptions {
  std::string listen = "127.0.0.1:9324";  // host:port; port 0 picks a free one
};

class HttpServer {
 public:
  using MetricsRenderer = std::function<std::string()>;

  static Result<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                   MetricsRenderer metrics);
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  ~HttpServer();

  int port() const { return port_; }
  void SetReady(bool ready) { ready_.store(ready); }
  // Closes the listener and every connection, and joins the I/O thread.
  void Stop();

 private:
  struct Impl;
  HttpServer() = default;

  std::unique_ptr<Impl> impl_;
  std::thread thread_;
  std::atomic<bool> ready_{false};
  int port_ = 0;
};

}  // namespace spool::protocol
