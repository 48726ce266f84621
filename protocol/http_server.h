#pragma once

// The HTTP port: /healthz (the process is up), /readyz (it serves: 503 before startup
// finishes and once shutdown begins), /metrics (Prometheus text format), and every other
// request goes to the API handler (the SQS-compatible API), which answers asynchronously so
// that a long poll parks without holding the I/O thread.
//
// Boost.Beast over Asio, as in Beast's async server example: one I/O thread, a strand per
// connection, keep-alive, bounded request and header sizes, idle timeouts, and a bound on
// open connections. /metrics ends with the server's own series (open and refused
// connections). An accept that fails (e.g. out of file descriptors) is retried shortly.
//
// Thread-safety: Start/Stop from one thread; SetReady from any; an API handler's reply
// callback may be called from any thread, once.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "common/error.h"

namespace spool::protocol {

struct HttpServerOptions {
  std::string listen = "127.0.0.1:9324";  // host:port; port 0 picks a free one
  // A request body above this is refused with 413 before it is read.
  std::uint64_t max_body_bytes = 1 << 20;
  // Connections open at once; one more gets a 503 (Retry-After: 1) and is closed, so that a
  // flood of clients cannot use up the file descriptors the store needs.
  std::size_t max_connections = 10'000;
};

// An API request as read off the wire; header names keep the case the client sent.
struct HttpRequest {
  std::string method;
  std::string target;  // path and query string
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // For a handler that waits (a long poll); callable from any thread, until the reply. True
  // once the client has closed the connection (or only its sending side: a half-close is
  // taken as leaving). The first call starts watching it, so calls that never ask cost
  // nothing; a client that sends its next request early (pipelining) ends the watch, and
  // the answer stays false.
  std::function<bool()> client_gone;
  std::string_view Header(std::string_view name) const;  // case-insensitive; "" if absent
};

struct HttpResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;  // Content-Type among them
  std::string body;
};

class HttpServer {
 public:
  using MetricsRenderer = std::function<std::string()>;
  using Reply = std::function<void(HttpResponse)>;
  // Answers a request by calling `reply`, at once or later. Called on the I/O thread.
  using ApiHandler = std::function<void(HttpRequest request, Reply reply)>;

  // Without `api`, paths other than the three above answer 404.
  static Result<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                   MetricsRenderer metrics,
                                                   ApiHandler api = nullptr);
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  ~HttpServer();

  int port() const { return port_; }
  std::size_t open_connections() const;
  void SetReady(bool ready) { ready_.store(ready); }
  // Closes the listener, waits up to `grace` for API calls being answered, then closes every
  // connection and joins the I/O thread. Replies that come later are dropped.
  void Stop(std::chrono::milliseconds grace = std::chrono::milliseconds(2000));

 private:
  struct Impl;
  HttpServer() = default;

  std::unique_ptr<Impl> impl_;
  std::thread thread_;
  std::atomic<bool> ready_{false};
  int port_ = 0;
};

}  // namespace spool::protocol
