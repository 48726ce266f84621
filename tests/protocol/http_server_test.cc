// protocol::HttpServer on 127.0.0.1 port 0, with raw sockets: the built-in paths, the cap on
// open connections (503 and close beyond it, served again once one closes, both counted in
// /metrics), accepting again after running out of file descriptors, telling a waiting
// API handler that its client has gone, and letting go of a connection once its call is
// answered.

#include "protocol/http_server.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

namespace spool::protocol {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using SteadyClock = std::chrono::steady_clock;

// A blocking client socket with a receive timeout, so that no read hangs the test.
class Conn {
 public:
  explicit Conn(int port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~Conn() { Close(); }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  bool connected() const { return connected_; }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool Send(const std::string& data) {
    return ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size());
  }
  // Reads one response (headers and a Content-Length body), or what came before EOF.
  std::string ReadResponse() {
    std::string in;
    char buf[4096];
    for (;;) {
      const auto end = in.find("\r\n\r\n");
      if (end != std::string::npos) {
        const auto cl = in.find("Content-Length: ");
        const std::size_t body = cl == std::string::npos ? 0 : std::stoul(in.substr(cl + 16));
        if (in.size() >= end + 4 + body) return in;
      }
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return in;
      in.append(buf, static_cast<std::size_t>(n));
    }
  }
  std::string Get(const std::string& path) {
    if (!Send("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")) return {};
    return ReadResponse();
  }
  // True once the server has closed the connection (EOF), waiting up to 5 s.
  bool ClosedByPeer() {
    char c = 0;
    return ::recv(fd_, &c, 1, 0) == 0;
  }

 private:
  int fd_;
  bool connected_ = false;
};

std::unique_ptr<HttpServer> StartServer(HttpServerOptions options,
                                        HttpServer::ApiHandler api = nullptr) {
  options.listen = "127.0.0.1:0";
  auto server = HttpServer::Start(
      options, [] { return std::string("# metrics\n"); }, api);
  EXPECT_TRUE(server) << server.error().ToString();
  if (!server) return nullptr;
  (*server)->SetReady(true);
  return std::move(*server);
}

TEST(HttpServerTest, ServesTheBuiltInPaths) {
  auto server = StartServer({});
  ASSERT_TRUE(server);
  Conn c(server->port());
  ASSERT_TRUE(c.connected());
  EXPECT_THAT(c.Get("/healthz"), StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(c.Get("/readyz"), StartsWith("HTTP/1.1 200"));
  const std::string metrics = c.Get("/metrics");
  EXPECT_THAT(metrics, HasSubstr("# metrics\n"));
  EXPECT_THAT(metrics, HasSubstr("spool_http_connections 1\n"));
  EXPECT_THAT(c.Get("/elsewhere"), StartsWith("HTTP/1.1 404")) << "no API handler";
}

TEST(HttpServerTest, ConnectionsBeyondTheCapGetA503AndAreClosed) {
  HttpServerOptions options;
  options.max_connections = 2;
  auto server = StartServer(options);
  ASSERT_TRUE(server);
  Conn a(server->port()), b(server->port());
  ASSERT_THAT(a.Get("/healthz"), StartsWith("HTTP/1.1 200"));
  ASSERT_THAT(b.Get("/healthz"), StartsWith("HTTP/1.1 200"));
  Conn c(server->port());
  const std::string refused = c.ReadResponse();  // unasked: the server answers and closes
  EXPECT_THAT(refused, StartsWith("HTTP/1.1 503"));
  EXPECT_THAT(refused, HasSubstr("Retry-After: 1"));
  EXPECT_TRUE(c.ClosedByPeer());
  // Once one closes, a new connection is served.
  a.Close();
  const auto deadline = SteadyClock::now() + std::chrono::seconds(5);
  while (server->open_connections() > 1 && SteadyClock::now() < deadline)
    std::this_thread::sleep_for(milliseconds(10));
  Conn d(server->port());
  const std::string metrics = d.Get("/metrics");
  EXPECT_THAT(metrics, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(metrics, HasSubstr("spool_http_connections 2\n"));
  EXPECT_THAT(metrics, HasSubstr("spool_http_connections_refused_total 1\n"));
}

TEST(HttpServerTest, AcceptingResumesAfterRunningOutOfFileDescriptors) {
  // In a child process: the descriptor limit is the process's.
  EXPECT_EXIT(
      {
        auto server = StartServer({});
        if (!server) std::_Exit(2);
        // Use up every descriptor but a few, then one connection more than the server can
        // accept: its accept fails (EMFILE) while the client's connect succeeds (backlog).
        rlimit limit{};
        ::getrlimit(RLIMIT_NOFILE, &limit);
        std::vector<int> hogs;
        rlimit low = limit;
        low.rlim_cur = 256;
        ::setrlimit(RLIMIT_NOFILE, &low);
        for (int fd = ::dup(0); fd >= 0; fd = ::dup(0))
          hogs.push_back(fd);
        ::close(hogs.back());  // room for the client's socket only
        hogs.pop_back();
        Conn waiting(server->port());
        if (!waiting.connected()) std::_Exit(3);
        std::this_thread::sleep_for(milliseconds(300));  // the accept fails meanwhile
        for (int fd : hogs)
          ::close(fd);
        ::setrlimit(RLIMIT_NOFILE, &limit);
        const std::string got = waiting.Get("/healthz");
        std::_Exit(got.starts_with("HTTP/1.1 200") ? 0 : 4);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(HttpServerTest, AWaitingHandlerLearnsThatItsClientHasGone) {
  std::mutex mu;
  std::vector<std::pair<std::function<bool()>, HttpServer::Reply>> parked;
  auto server = StartServer({}, [&](HttpRequest request, HttpServer::Reply reply) {
    std::lock_guard lock(mu);
    parked.emplace_back(std::move(request.client_gone), std::move(reply));
  });
  ASSERT_TRUE(server);
  auto park = [&](Conn& c) {
    const std::size_t before = parked.size();
    EXPECT_TRUE(c.Send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"));
    const auto deadline = SteadyClock::now() + std::chrono::seconds(5);
    for (;;) {
      {
        std::lock_guard lock(mu);
        if (parked.size() > before) return parked.back();
      }
      if (SteadyClock::now() > deadline) return decltype(parked)::value_type{};
      std::this_thread::sleep_for(milliseconds(5));
    }
  };
  auto until = [](const std::function<bool()>& gone, bool want) {
    const auto deadline = SteadyClock::now() + std::chrono::seconds(5);
    while (gone() != want && SteadyClock::now() < deadline)
      std::this_thread::sleep_for(milliseconds(5));
    return gone() == want;
  };

  Conn stays(server->port());
  auto [stays_gone, stays_reply] = park(stays);
  ASSERT_TRUE(stays_gone);
  EXPECT_FALSE(stays_gone()) << "the first question starts the watch";
  Conn leaves(server->port());
  auto [leaves_gone, leaves_reply] = park(leaves);
  ASSERT_TRUE(leaves_gone);
  EXPECT_FALSE(leaves_gone());
  leaves.Close();
  EXPECT_TRUE(until(leaves_gone, true)) << "the closed connection was not noticed";
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_FALSE(stays_gone()) << "an open connection counted as gone";
  // The one still there gets its answer, and the connection goes on serving.
  stays_reply({200, {{"Content-Type", "text/plain"}}, "late\n"});
  const std::string answer = stays.ReadResponse();
  EXPECT_THAT(answer, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(answer, HasSubstr("late\n"));
  EXPECT_THAT(stays.Get("/healthz"), StartsWith("HTTP/1.1 200"));
  leaves_reply({200, {}, "nobody\n"});  // dropped quietly
}

TEST(HttpServerTest, AnAnsweredCallThatClosesFreesItsConnection) {
  // The handler asks whether the client is gone, which starts a watch; the reply (with
  // Connection: close) must end it, or it would hold the connection open until the client
  // acts, and its place under the cap with it.
  std::mutex mu;
  HttpServer::Reply reply;
  std::function<bool()> gone;
  auto server = StartServer({}, [&](HttpRequest request, HttpServer::Reply r) {
    std::lock_guard lock(mu);
    gone = std::move(request.client_gone);
    reply = std::move(r);
  });
  ASSERT_TRUE(server);
  Conn c(server->port());
  ASSERT_TRUE(
      c.Send("POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
             "Content-Length: 0\r\n\r\n"));
  const auto deadline = SteadyClock::now() + std::chrono::seconds(5);
  for (;;) {
    {
      std::lock_guard lock(mu);
      if (reply) break;
    }
    ASSERT_LT(SteadyClock::now(), deadline) << "the handler was not called";
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_FALSE(gone());
  std::this_thread::sleep_for(milliseconds(50));  // the watch is in place
  {
    std::lock_guard lock(mu);
    reply({200, {{"Content-Type", "text/plain"}}, "done\n"});
    reply = nullptr;  // as a handler drops it once used: it holds the connection
  }
  EXPECT_THAT(c.ReadResponse(), StartsWith("HTTP/1.1 200"));
  // The client keeps its socket open; the server lets go of its side.
  while (server->open_connections() > 0 && SteadyClock::now() < deadline)
    std::this_thread::sleep_for(milliseconds(10));
  EXPECT_EQ(server->open_connections(), 0u);
  EXPECT_TRUE(c.ClosedByPeer());
}

}  // namespace
}  // namespace spool::protocol
