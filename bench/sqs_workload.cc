#include "bench/sqs_workload.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

namespace spool::bench {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

// One keep-alive connection; each call is one request and its response.
class Connection {
 public:
  explicit Connection(const std::string& endpoint) : stream_(io_) {
    const auto colon = endpoint.rfind(':');
    host_ = endpoint;
    tcp::resolver resolver(io_);
    stream_.connect(resolver.resolve(endpoint.substr(0, colon), endpoint.substr(colon + 1)));
  }

  // nullopt (and a message on stderr) when the call failed.
  std::optional<json> Call(const std::string& action, const json& input) {
    http::request<http::string_body> request{http::verb::post, "/", 11};
    request.set(http::field::host, host_);
    request.set(http::field::content_type, "application/x-amz-json-1.0");
    request.set("X-Amz-Target", "AmazonSQS." + action);
    request.keep_alive(true);
    request.body() = input.dump();
    request.prepare_payload();
    http::write(stream_, request);
    http::response<http::string_body> response;
    http::read(stream_, buffer_, response);
    if (response.result() != http::status::ok) {
      std::fprintf(stderr, "%s: HTTP %d: %s\n", action.c_str(), response.result_int(),
                   response.body().c_str());
      return std::nullopt;
    }
    return json::parse(response.body(), nullptr, false);
  }

 private:
  boost::asio::io_context io_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::string host_;
};

}  // namespace

int RunSqsWorkload(const SqsWorkloadOptions& o) {
  std::string url;
  try {
    Connection admin(o.endpoint);
    // A queue of this run alone, so that nothing left by another run is counted.
    auto created =
        admin.Call("CreateQueue", {{"QueueName", o.queue + "-" + std::to_string(getpid())}});
    if (!created || !created->contains("QueueUrl")) return 1;
    url = (*created)["QueueUrl"].get<std::string>();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cannot reach %s: %s\n", o.endpoint.c_str(), e.what());
    return 1;
  }

  json batch = {{"QueueUrl", url}, {"Entries", json::array()}};
  for (int i = 0; i < 10; ++i) {
    batch["Entries"].push_back(
        {{"Id", "m" + std::to_string(i)}, {"MessageBody", std::string(o.message_size, 'x')}});
  }
  std::atomic<std::uint64_t> sent{0}, deleted{0}, failures{0};
  auto run = [&](auto body) {
    std::vector<std::thread> threads;
    for (std::size_t c = 0; c < o.connections; ++c) {
      threads.emplace_back([&] {
        try {
          Connection connection(o.endpoint);
          body(connection);
        } catch (const std::exception& e) {
          if (failures++ == 0) std::fprintf(stderr, "connection failed: %s\n", e.what());
        }
      });
    }
    for (auto& t : threads)
      t.join();
  };

  const auto send_start = Clock::now();
  const auto send_end = send_start + std::chrono::duration_cast<Clock::duration>(
                                         std::chrono::duration<double>(o.duration_s / 2));
  run([&](Connection& connection) {
    while (Clock::now() < send_end) {
      auto result = connection.Call("SendMessageBatch", batch);
      if (!result) {
        ++failures;
        return;
      }
      sent += (*result)["Successful"].size();
    }
  });
  const double send_s = std::chrono::duration<double>(Clock::now() - send_start).count();

  const auto cycle_start = Clock::now();
  const auto cycle_deadline = cycle_start + std::chrono::duration_cast<Clock::duration>(
                                                std::chrono::duration<double>(o.duration_s * 3));
  run([&](Connection& connection) {
    while (deleted.load() < sent.load() && Clock::now() < cycle_deadline) {
      auto received =
          connection.Call("ReceiveMessage",
                          {{"QueueUrl", url}, {"MaxNumberOfMessages", 10}, {"WaitTimeSeconds", 1}});
      if (!received) {
        ++failures;
        return;
      }
      if (!received->contains("Messages")) continue;
      json entries = json::array();
      int id = 0;
      for (const json& m : (*received)["Messages"]) {
        entries.push_back(
            {{"Id", "d" + std::to_string(id++)}, {"ReceiptHandle", m["ReceiptHandle"]}});
      }
      auto result =
          connection.Call("DeleteMessageBatch", {{"QueueUrl", url}, {"Entries", entries}});
      if (!result) {
        ++failures;
        return;
      }
      deleted += (*result)["Successful"].size();
    }
  });
  const double cycle_s = std::chrono::duration<double>(Clock::now() - cycle_start).count();

  std::printf(
      "sqs SendMessageBatch(10): %llu msgs in %.1f s = %.0f msgs/s; ReceiveMessage(10) + "
      "DeleteMessageBatch(10): %llu msgs in %.1f s = %.0f msgs/s; %zu connections, %zu B "
      "messages, %llu failures\n",
      static_cast<unsigned long long>(sent.load()), send_s, sent.load() / send_s,
      static_cast<unsigned long long>(deleted.load()), cycle_s, deleted.load() / cycle_s,
      o.connections, o.message_size, static_cast<unsigned long long>(failures.load()));
  try {
    Connection admin(o.endpoint);
    admin.Call("DeleteQueue", {{"QueueUrl", url}});
  } catch (const std::exception&) {
  }
  return failures.load() == 0 && deleted.load() == sent.load() ? 0 : 1;
}

}  // namespace spool::bench
