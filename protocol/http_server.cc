#include "protocol/http_server.h"

#include <array>
#include <cerrno>
#include <condition_variable>
#include <future>
#include <mutex>
#include <optional>
#include <utility>  // Asio 1.74's headers use std::exchange without including it

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <strings.h>
#include <sys/socket.h>

#include "common/logging.h"

namespace spool::protocol {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr std::uint32_t kHeaderLimit = 16 * 1024;
constexpr auto kIdleTimeout = std::chrono::seconds(30);

spdlog::logger& Log() {
  static spdlog::logger& logger = ModuleLogger("http");
  return logger;
}

// Tracks API calls awaiting their reply so that Stop can wait for them, and drops replies
// that come after Stop, when the connections and the I/O context are gone.
struct Gate {
  std::mutex mu;
  std::condition_variable idle;
  std::size_t pending = 0;
  bool closed = false;
};

// Shared with the sessions, which may outlive Shared while the I/O context winds down.
struct Connections {
  std::atomic<std::size_t> open{0};
  std::atomic<std::uint64_t> refused{0};
};

struct Shared {
  HttpServer::MetricsRenderer metrics;
  HttpServer::ApiHandler api;
  const std::atomic<bool>* ready;
  std::uint64_t body_limit = 1 << 20;
  std::size_t max_connections = 10'000;
  std::shared_ptr<Gate> gate = std::make_shared<Gate>();
  std::shared_ptr<Connections> connections = std::make_shared<Connections>();
};

std::string ConnectionMetrics(const Connections& c) {
  return "# HELP spool_http_connections HTTP connections open now.\n"
         "# TYPE spool_http_connections gauge\n"
         "spool_http_connections " +
         std::to_string(c.open.load()) +
         "\n# HELP spool_http_connections_refused_total HTTP connections refused with 503 "
         "because http_max_connections were open.\n"
         "# TYPE spool_http_connections_refused_total counter\n"
         "spool_http_connections_refused_total " +
         std::to_string(c.refused.load()) + "\n";
}

// Whether the client of a pending API call has closed its connection.
struct ClientWatch {
  std::atomic<bool> started{false};
  std::atomic<bool> gone{false};
};

bool IsBuiltIn(std::string_view path) {
  return path == "/healthz" || path == "/readyz" || path == "/metrics";
}

http::response<http::string_body> Respond(const http::request<http::string_body>& request,
                                          const Shared& shared) {
  auto reply = [&](http::status status, std::string body, std::string_view type) {
    http::response<http::string_body> response{status, request.version()};
    response.set(http::field::content_type, beast::string_view(type.data(), type.size()));
    response.keep_alive(request.keep_alive());
    response.body() = std::move(body);
    response.prepare_payload();
    if (request.method() == http::verb::head) response.body().clear();
    return response;
  };
  const std::string_view target(request.target().data(), request.target().size());
  const std::string_view path = target.substr(0, target.find('?'));
  if (!IsBuiltIn(path)) return reply(http::status::not_found, "not found\n", "text/plain");
  if (request.method() != http::verb::get && request.method() != http::verb::head) {
    auto response = reply(http::status::method_not_allowed, "use GET\n", "text/plain");
    response.set(http::field::allow, "GET, HEAD");
    return response;
  }
  if (path == "/healthz") return reply(http::status::ok, "ok\n", "text/plain");
  if (path == "/readyz") {
    return shared.ready->load()
               ? reply(http::status::ok, "ready\n", "text/plain")
               : reply(http::status::service_unavailable, "not ready\n", "text/plain");
  }
  return reply(http::status::ok, shared.metrics() + ConnectionMetrics(*shared.connections),
               "text/plain; version=0.0.4; charset=utf-8");
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const Shared& shared)
      : stream_(std::move(socket)), shared_(shared), connections_(shared.connections) {
    connections_->open.fetch_add(1);
  }
  ~Session() { Uncount(); }

  void Run() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->Read(); });
  }

  // Answers 503 without reading the request, and closes.
  void Refuse() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      auto response = ErrorResponse(http::status::service_unavailable, "too many connections\n");
      response.set(http::field::retry_after, "1");
      // The request is never read: closing with it unread would send a reset, which can
      // reach the client before the 503 does.
      self->drain_on_close_ = true;
      self->Write(std::move(response), /*close=*/true);
    });
  }

  void Close() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      beast::error_code ec;
      self->stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
      self->stream_.close();
    });
  }

 private:
  void Read() {
    parser_.emplace();
    parser_->body_limit(shared_.body_limit);
    parser_->header_limit(kHeaderLimit);
    stream_.expires_after(kIdleTimeout);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream) return Shutdown();
    if (ec) {
      if (ec == http::error::body_limit || ec == http::error::header_limit) {
        drain_on_close_ = true;  // the rest of the request is unread
        return Write(ErrorResponse(http::status::payload_too_large, "request too large\n"),
                     /*close=*/true);
      }
      if (ec != beast::error::timeout && ec != asio::error::operation_aborted) {
        Log().debug("read: {}", ec.message());
      }
      return;
    }
    const auto& request = parser_->get();
    const std::string_view target(request.target().data(), request.target().size());
    if (!shared_.api || IsBuiltIn(target.substr(0, target.find('?')))) {
      auto response = Respond(request, shared_);
      const bool close = !response.keep_alive();
      return Write(std::move(response), close);
    }
    if (!shared_.ready->load()) {
      // Stopping (or not started): new API calls would hold shutdown up; clients retry 503s.
      auto response = ErrorResponse(http::status::service_unavailable, "not serving\n");
      response.set(http::field::retry_after, "1");
      return Write(std::move(response), /*close=*/true);
    }
    CallApi(parser_->release());
  }

  void CallApi(http::request<http::string_body> request) {
    HttpRequest call;
    call.method = std::string(request.method_string());
    call.target = std::string(request.target());
    for (const auto& field : request) {
      call.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    call.body = std::move(request.body());
    const unsigned version = request.version();
    const bool keep_alive = request.keep_alive();
    {
      std::lock_guard lock(shared_.gate->mu);
      ++shared_.gate->pending;
    }
    awaiting_reply_ = true;
    auto answered = std::make_shared<std::atomic<bool>>(false);
    auto watch = std::make_shared<ClientWatch>();
    call.client_gone = [weak = weak_from_this(), watch] {
      if (!watch->started.exchange(true)) {
        if (auto self = weak.lock()) {
          asio::post(self->stream_.get_executor(), [self, watch] { self->Watch(watch); });
        }
      }
      return watch->gone.load();
    };
    shared_.api(std::move(call), [self = shared_from_this(), gate = shared_.gate, version,
                                  keep_alive, answered](HttpResponse reply) {
      if (answered->exchange(true)) return;
      std::lock_guard lock(gate->mu);
      if (!gate->closed) {
        http::response<http::string_body> response{static_cast<http::status>(reply.status),
                                                   version};
        for (auto& [name, value] : reply.headers)
          response.set(name, value);
        response.keep_alive(keep_alive);
        response.body() = std::move(reply.body);
        response.prepare_payload();
        asio::post(self->stream_.get_executor(),
                   [self, response = std::move(response), keep_alive]() mutable {
                     self->awaiting_reply_ = false;
                     self->Write(std::move(response), !keep_alive);
                   });
      }
      if (--gate->pending == 0) gate->idle.notify_all();
    });
  }

  // Waits for the socket to turn readable while the API call is pending: end of stream
  // or an error means the client has gone; data is its next request, which Read takes
  // once the reply is written.
  void Watch(const std::shared_ptr<ClientWatch>& watch) {
    if (!awaiting_reply_ || watching_) return;  // asked first after the reply was written
    watching_ = true;
    stream_.socket().async_wait(
        tcp::socket::wait_read, [self = shared_from_this(), watch](beast::error_code ec) {
          self->watching_ = false;
          if (ec) return;  // closed by Stop, or cancelled once the reply was written
          char byte = 0;
          const ssize_t n =
              ::recv(self->stream_.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
          if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            watch->gone.store(true);
          }
        });
  }

  static http::response<http::string_body> ErrorResponse(http::status status, std::string body) {
    http::response<http::string_body> response{status, 11};
    response.set(http::field::content_type, "text/plain");
    response.keep_alive(false);
    response.body() = std::move(body);
    response.prepare_payload();
    return response;
  }

  void Write(http::response<http::string_body> response, bool close) {
    stream_.expires_after(kIdleTimeout);
    auto owned = std::make_shared<http::response<http::string_body>>(std::move(response));
    http::async_write(stream_, *owned,
                      [self = shared_from_this(), owned, close](beast::error_code ec, std::size_t) {
                        if (self->watching_) {
                          // Answered: the watch would otherwise hold the session (and its
                          // place under the connection cap) until the client acts.
                          self->watching_ = false;
                          beast::error_code ignored;
                          self->stream_.socket().cancel(ignored);
                        }
                        if (ec) return;
                        if (close) {
                          self->Shutdown();
                          if (self->drain_on_close_) self->Drain();
                          return;
                        }
                        self->Read();
                      });
  }

  // Reads and drops what the client sends until it closes, for at most a second. A draining
  // connection is done with: it no longer counts against the cap.
  void Drain() {
    Uncount();
    stream_.expires_after(std::chrono::seconds(1));
    DrainSome();
  }
  void Uncount() {
    if (counted_) connections_->open.fetch_sub(1);
    counted_ = false;
  }
  void DrainSome() {
    stream_.async_read_some(asio::buffer(drain_buffer_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t) {
                              if (!ec) self->DrainSome();
                            });
  }

  void Shutdown() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  const Shared& shared_;
  const std::shared_ptr<Connections> connections_;
  bool counted_ = true;          // in connections_->open
  bool awaiting_reply_ = false;  // an API call is being answered; strand only
  bool watching_ = false;        // a client-gone watch is pending; strand only
  bool drain_on_close_ = false;  // strand only
  std::array<char, 1024> drain_buffer_{};
};

}  // namespace

struct HttpServer::Impl {
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  asio::steady_timer retry{io};
  Shared shared;
  std::vector<std::weak_ptr<Session>> sessions;  // I/O thread only
  bool stopping = false;                         // I/O thread only
  bool accept_failing = false;                   // I/O thread only
  std::promise<void> ran_out;                    // set when io.run() returns

  void Accept() {
    acceptor.async_accept(asio::make_strand(io), [this](beast::error_code ec, tcp::socket s) {
      // A connection accepted just before Stop() is dropped here (closing `s`).
      if (stopping || ec == asio::error::operation_aborted) return;
      if (ec) {
        // Out of file descriptors, say: the connection waits in the backlog. Accepting again
        // at once would spin; giving up would leave the port dead for good.
        if (!accept_failing) {
          Log().warn("accepting HTTP connections: {}; trying again every 100 ms", ec.message());
        }
        accept_failing = true;
        retry.expires_after(std::chrono::milliseconds(100));
        retry.async_wait([this](beast::error_code wait) {
          if (!wait && !stopping) Accept();
        });
        return;
      }
      if (accept_failing) Log().info("accepting HTTP connections again");
      accept_failing = false;
      // Against the sessions open before this one; a refused one counts while it answers.
      const bool full = shared.connections->open.load() >= shared.max_connections;
      auto session = std::make_shared<Session>(std::move(s), shared);
      std::erase_if(sessions, [](const auto& w) { return w.expired(); });
      sessions.push_back(session);
      if (full) {
        shared.connections->refused.fetch_add(1);
        session->Refuse();
      } else {
        session->Run();
      }
      Accept();
    });
  }
};

std::size_t HttpServer::open_connections() const {
  return impl_->shared.connections->open.load();
}

std::string_view HttpRequest::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key.size() == name.size() && strncasecmp(key.data(), name.data(), key.size()) == 0) {
      return value;
    }
  }
  return {};
}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                      MetricsRenderer metrics, ApiHandler api) {
  std::unique_ptr<HttpServer> server(new HttpServer());
  server->impl_ = std::make_unique<Impl>();
  Impl& impl = *server->impl_;
  impl.shared.metrics = std::move(metrics);
  impl.shared.api = std::move(api);
  impl.shared.ready = &server->ready_;
  impl.shared.body_limit = options.max_body_bytes;
  impl.shared.max_connections = options.max_connections;

  const auto colon = options.listen.rfind(':');
  if (colon == std::string::npos) {
    return InvalidArgument("http_listen '" + options.listen + "' is not host:port");
  }
  beast::error_code ec;
  tcp::resolver resolver(impl.io);
  auto endpoints =
      resolver.resolve(options.listen.substr(0, colon), options.listen.substr(colon + 1),
                       tcp::resolver::numeric_service, ec);
  if (ec || endpoints.empty()) {
    return Unavailable("cannot resolve http_listen '" + options.listen + "': " + ec.message());
  }
  const tcp::endpoint endpoint = *endpoints.begin();
  impl.acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl.acceptor.bind(endpoint, ec);
  if (!ec) impl.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Unavailable("cannot listen for HTTP on " + options.listen + ": " + ec.message());
  }
  server->port_ = impl.acceptor.local_endpoint().port();
  impl.Accept();
  server->thread_ = std::thread([&impl] {
    impl.io.run();
    impl.ran_out.set_value();
  });
  return server;
}

HttpServer::~HttpServer() {
  Stop();
}

void HttpServer::Stop(std::chrono::milliseconds grace) {
  if (!thread_.joinable()) return;
  ready_.store(false);
  asio::post(impl_->io, [impl = impl_.get()] {
    impl->stopping = true;
    beast::error_code ec;
    impl->acceptor.close(ec);
    impl->retry.cancel();
  });
  {
    Gate& gate = *impl_->shared.gate;
    std::unique_lock lock(gate.mu);
    gate.idle.wait_for(lock, grace, [&] { return gate.pending == 0; });
    gate.closed = true;
  }
  asio::post(impl_->io, [impl = impl_.get()] {
    for (auto& weak : impl->sessions) {
      if (auto session = weak.lock()) session->Close();
    }
  });
  // Connections normally close at once; a slow peer mid-write gets two seconds, then is
  // abandoned.
  if (impl_->ran_out.get_future().wait_for(std::chrono::seconds(2)) != std::future_status::ready) {
    impl_->io.stop();
  }
  thread_.join();
}

}  // namespace spool::protocol
