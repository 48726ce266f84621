#include "protocol/http_server.h"

#include <future>
#include <optional>
#include <utility>  // Asio 1.74's headers use std::exchange without including it

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "common/logging.h"

namespace spool::protocol {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr std::uint64_t kBodyLimit = 1 << 20;
constexpr std::uint32_t kHeaderLimit = 16 * 1024;
constexpr auto kIdleTimeout = std::chrono::seconds(30);

spdlog::logger& Log() {
  static spdlog::logger& logger = ModuleLogger("http");
  return logger;
}

struct Shared {
  HttpServer::MetricsRenderer metrics;
  const std::atomic<bool>* ready;
};

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
  const bool known = path == "/healthz" || path == "/readyz" || path == "/metrics";
  if (!known) return reply(http::status::not_found, "not found\n", "text/plain");
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
  return reply(http::status::ok, shared.metrics(), "text/plain; version=0.0.4; charset=utf-8");
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const Shared& shared) : stream_(std::move(socket)), shared_(shared) {}

  void Run() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->Read(); });
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
    parser_->body_limit(kBodyLimit);
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
        return Write(ErrorResponse(http::status::payload_too_large, "request too large\n"),
                     /*close=*/true);
      }
      if (ec != beast::error::timeout && ec != asio::error::operation_aborted) {
        Log().debug("read: {}", ec.message());
      }
      return;
    }
    auto response = Respond(parser_->get(), shared_);
    const bool close = !response.keep_alive();
    Write(std::move(response), close);
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
    auto owned = std::make_shared<http::response<http::string_body>>(std::move(response));
    http::async_write(stream_, *owned,
                      [self = shared_from_this(), owned, close](beast::error_code ec, std::size_t) {
                        if (ec) return;
                        if (close) return self->Shutdown();
                        self->Read();
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
};

}  // namespace

struct HttpServer::Impl {
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  Shared shared;
  std::vector<std::weak_ptr<Session>> sessions;  // I/O thread only
  bool stopping = false;                         // I/O thread only
  std::promise<void> ran_out;                    // set when io.run() returns

  void Accept() {
    acceptor.async_accept(asio::make_strand(io), [this](beast::error_code ec, tcp::socket s) {
      // A connection accepted just before Stop() is dropped here (closing `s`).
      if (ec || stopping) return;
      auto session = std::make_shared<Session>(std::move(s), shared);
      std::erase_if(sessions, [](const auto& w) { return w.expired(); });
      sessions.push_back(session);
      session->Run();
      Accept();
    });
  }
};

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                      MetricsRenderer metrics) {
  std::unique_ptr<HttpServer> server(new HttpServer());
  server->impl_ = std::make_unique<Impl>();
  Impl& impl = *server->impl_;
  impl.shared = {std::move(metrics), &server->ready_};

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

void HttpServer::Stop() {
  if (!thread_.joinable()) return;
  ready_.store(false);
  asio::post(impl_->io, [impl = impl_.get()] {
    impl->stopping = true;
    beast::error_code ec;
    impl->acceptor.close(ec);
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
