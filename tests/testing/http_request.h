#pragma once

// A plain HTTP/1.1 request to a spoold's HTTP port on loopback, for tests that read /metrics
// or the health endpoints. Every read is bounded (10 s).

#include <cstdint>
#include <string>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

namespace spool::testing {

// One request over a fresh connection to `address` (host:port); returns the whole response,
// or an empty string if it could not connect.
inline std::string HttpRequest(const std::string& address, const std::string& method,
                               const std::string& path) {
  const auto colon = address.rfind(':');
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return {};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
  inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr);
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string request =
        method + " " + path + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buf[65536];
      for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;)
        response.append(buf, static_cast<std::size_t>(n));
    }
  }
  close(fd);
  return response;
}

// The body of a response from HttpRequest.
inline std::string BodyOf(const std::string& response) {
  const auto at = response.find("\r\n\r\n");
  return at == std::string::npos ? std::string() : response.substr(at + 4);
}

}  // namespace spool::testing
