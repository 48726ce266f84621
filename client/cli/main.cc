// spool: the command line for a Spool broker.
//
//   spool topic create orders --partitions 6 --retention 7d
//   spool produce orders --key-separator : < lines.txt
//   spool consume orders --from -15m --follow
//   spool queue send jobs 'hello' && spool queue receive jobs --wait 20 --delete
//
// Exit codes: 0 ok, 1 the server refused or could not be reached, 2 bad usage. Errors go to
// stderr; results to stdout, as aligned tables or (--json) JSON.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <unistd.h>

#include "client/cli/output.h"
#include "client/cli/parse.h"
#include "spool/client.h"
#include "spool/consumer.h"
#include "spool/producer.h"
#include "spool/queue.h"

namespace {

using spool::cli::ProtoJson;
using spool::cli::StatusCodeName;
using Json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

constexpr int kExitOk = 0;
constexpr int kExitServer = 1;
constexpr int kExitUsage = 2;

// A bad value found after CLI11 accepted the command line.
struct UsageError {
  std::string message;
};

struct Global {
  std::string server = "127.0.0.1:50051";
  std::string timeout = "30s";
  bool json = false;
};

std::int64_t DurationOrThrow(const std::string& flag, const std::string& text) {
  auto ms = spool::cli::ParseDurationMs(text);
  if (!ms)
    throw UsageError{flag + ": '" + text + "' is not a duration (like 30s, 15m, 7d, forever)"};
  return *ms;
}

std::int64_t BytesOrThrow(const std::string& flag, const std::string& text) {
  auto bytes = spool::cli::ParseBytes(text);
  if (!bytes) throw UsageError{flag + ": '" + text + "' is not a size (like 512, 64KiB, 10GiB)"};
  return *bytes;
}

int Fail(const grpc::Status& status, const std::string& what) {
  std::cerr << "spool: " << what << ": " << StatusCodeName(status.error_code()) << ": "
            << status.error_message() << "\n";
  return kExitServer;
}

spool::Client Connect(const Global& global) {
  spool::ClientOptions options;
  options.address = global.server;
  const std::int64_t timeout = DurationOrThrow("--timeout", global.timeout);
  if (timeout <= 0) throw UsageError{"--timeout must be positive"};
  options.call_timeout = std::chrono::milliseconds(timeout);
  return spool::Client(options);
}

void PrintJson(const Json& json) {
  std::cout << json.dump(2) << "\n";
}

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---- topic ------------------------------------------------------------------------------

struct TopicArgs {
  std::string name;
  std::optional<std::uint32_t> partitions;
  std::string retention, retention_bytes, max_message_bytes;
  std::string prefix;
  bool force = false;
};

void ApplyLimits(const TopicArgs& args, std::optional<std::int64_t>& retention_ms,
                 std::optional<std::int64_t>& retention_bytes,
                 std::optional<std::int64_t>& max_message_bytes) {
  if (!args.retention.empty()) retention_ms = DurationOrThrow("--retention", args.retention);
  if (!args.retention_bytes.empty())
    retention_bytes = BytesOrThrow("--retention-bytes", args.retention_bytes);
  if (!args.max_message_bytes.empty())
    max_message_bytes = BytesOrThrow("--max-message-bytes", args.max_message_bytes);
}

int PrintTopic(const Global& global, const spool::v1::Topic& topic) {
  if (global.json) {
    PrintJson(spool::cli::TopicJson(topic));
  } else {
    std::cout << spool::cli::FormatTopic(topic);
  }
  return kExitOk;
}

int TopicCreate(const Global& global, const TopicArgs& args) {
  spool::TopicSpec spec;
  spec.name = args.name;
  spec.partitions = args.partitions.value_or(1);
  ApplyLimits(args, spec.retention_ms, spec.retention_bytes, spec.max_message_bytes);
  spool::Admin admin(Connect(global));
  auto topic = admin.CreateTopic(spec);
  if (!topic.ok()) return Fail(topic.status, "cannot create topic " + args.name);
  return PrintTopic(global, *topic);
}

int TopicUpdate(const Global& global, const TopicArgs& args) {
  spool::TopicUpdate update;
  update.name = args.name;
  update.partitions = args.partitions;
  ApplyLimits(args, update.retention_ms, update.retention_bytes, update.max_message_bytes);
  if (!update.partitions && !update.retention_ms && !update.retention_bytes &&
      !update.max_message_bytes) {
    throw UsageError{
        "topic update: nothing to change (give --partitions, --retention, "
        "--retention-bytes or --max-message-bytes)"};
  }
  spool::Admin admin(Connect(global));
  auto topic = admin.UpdateTopic(update);
  if (!topic.ok()) return Fail(topic.status, "cannot update topic " + args.name);
  return PrintTopic(global, *topic);
}

int TopicDescribe(const Global& global, const TopicArgs& args) {
  spool::Admin admin(Connect(global));
  auto topic = admin.GetTopic(args.name);
  if (!topic.ok()) return Fail(topic.status, "cannot describe topic " + args.name);
  return PrintTopic(global, *topic);
}

int TopicList(const Global& global, const TopicArgs& args) {
  spool::Admin admin(Connect(global));
  auto topics = admin.ListTopics(args.prefix);
  if (!topics.ok()) return Fail(topics.status, "cannot list topics");
  if (global.json) {
    Json out = Json::array();
    for (const auto& config : *topics)
      out.push_back(spool::cli::TopicConfigJson(config));
    PrintJson(out);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& c : *topics) {
    rows.push_back(
        {c.name(), std::to_string(c.partitions()),
         c.has_retention_ms() ? spool::cli::FormatDurationMs(c.retention_ms()) : "-",
         c.has_retention_bytes() ? spool::cli::FormatBytes(c.retention_bytes()) : "-",
         c.has_max_message_bytes() ? spool::cli::FormatBytes(c.max_message_bytes()) : "-"});
  }
  std::cout << spool::cli::FormatTable(
      {"NAME", "PARTITIONS", "RETENTION", "RETENTION BYTES", "MAX MESSAGE"}, rows);
  return kExitOk;
}

int TopicDelete(const Global& global, const TopicArgs& args) {
  spool::Admin admin(Connect(global));
  grpc::Status status = admin.DeleteTopic(args.name, args.force);
  if (!status.ok()) return Fail(status, "cannot delete topic " + args.name);
  if (global.json) {
    PrintJson({{"deleted", args.name}});
  } else {
    std::cout << "deleted topic " << args.name << "\n";
  }
  return kExitOk;
}

// ---- produce ----------------------------------------------------------------------------

struct ProduceArgs {
  std::string topic;
  std::optional<std::string> key;
  std::string key_separator;
  std::optional<std::uint32_t> partition;
  std::string file;
  std::vector<std::string> headers;
  std::string linger = "5ms";
  bool quiet = false;
};

std::vector<std::pair<std::string, std::string>> HeadersOrThrow(
    const std::vector<std::string>& texts) {
  std::vector<std::pair<std::string, std::string>> headers;
  for (const auto& header : texts) {
    const auto eq = header.find('=');
    if (eq == std::string::npos || eq == 0)
      throw UsageError{"--header: '" + header + "' is not KEY=VALUE"};
    headers.emplace_back(header.substr(0, eq), header.substr(eq + 1));
  }
  return headers;
}

int Produce(const Global& global, const ProduceArgs& args) {
  const auto headers = HeadersOrThrow(args.headers);
  if (args.key && !args.key_separator.empty())
    throw UsageError{"--key and --key-separator cannot be used together"};
  const std::int64_t linger = DurationOrThrow("--linger", args.linger);
  if (linger < 0) throw UsageError{"--linger cannot be negative"};
  std::ifstream file;
  if (!args.file.empty() && args.file != "-") {
    file.open(args.file, std::ios::binary);
    if (!file) throw UsageError{"--file: cannot open " + args.file};
  }
  std::istream& in = file.is_open() ? static_cast<std::istream&>(file) : std::cin;

  spool::Client client = Connect(global);
  {
    // Fail before reading any input when the topic is not there.
    spool::Admin admin(client);
    auto topic = admin.GetTopic(args.topic);
    if (!topic.ok()) return Fail(topic.status, "cannot produce to " + args.topic);
  }
  spool::ProducerOptions options;
  options.linger = std::chrono::milliseconds(linger);
  spool::Producer producer(client, options);

  std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> failed{0};
  std::mutex error_mu;
  grpc::Status first_error;
  auto on_delivery = [&](const spool::Delivery& delivery) {
    if (delivery.ok()) {
      delivered.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    failed.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lock(error_mu);
    if (first_error.ok()) first_error = delivery.status;
  };

  const auto start = SteadyClock::now();
  auto last_progress = start;
  const bool tty = isatty(STDERR_FILENO) != 0;
  bool progress_shown = false;
  std::uint64_t lines = 0;
  std::string line;
  while (std::getline(in, line)) {
    spool::ProducerRecord record;
    record.topic = args.topic;
    record.partition = args.partition;
    record.headers = headers;
    if (!args.key_separator.empty()) {
      const auto at = line.find(args.key_separator);
      if (at != std::string::npos) {
        record.key = line.substr(0, at);
        line.erase(0, at + args.key_separator.size());
      }
    } else {
      record.key = args.key;
    }
    record.value = std::move(line);
    producer.Send(std::move(record), on_delivery);
    ++lines;
    const auto now = SteadyClock::now();
    if (!args.quiet && now - last_progress >= std::chrono::seconds(1)) {
      last_progress = now;
      const double seconds = std::chrono::duration<double>(now - start).count();
      std::fprintf(stderr, "%sread %llu lines, %llu durable (%.0f records/s)%s", tty ? "\r" : "",
                   static_cast<unsigned long long>(lines),
                   static_cast<unsigned long long>(delivered.load()),
                   static_cast<double>(delivered.load()) / seconds, tty ? "" : "\n");
      progress_shown = true;
    }
  }
  producer.Flush();
  producer.Close();
  if (progress_shown && tty) std::fprintf(stderr, "\n");
  const double seconds =
      std::max(1e-9, std::chrono::duration<double>(SteadyClock::now() - start).count());
  const std::uint64_t ok = delivered.load();
  const std::uint64_t bad = failed.load();
  if (global.json) {
    PrintJson({{"topic", args.topic},
               {"records", ok},
               {"failed", bad},
               {"seconds", seconds},
               {"records_per_second", static_cast<double>(ok) / seconds}});
  } else if (!args.quiet) {
    std::printf("produced %llu records to %s in %.2f s (%.0f records/s)\n",
                static_cast<unsigned long long>(ok), args.topic.c_str(), seconds,
                static_cast<double>(ok) / seconds);
  }
  if (bad > 0) {
    return Fail(first_error, std::to_string(bad) + " of " + std::to_string(lines) +
                                 " records were not produced; the first error");
  }
  return kExitOk;
}

// ---- consume ----------------------------------------------------------------------------

struct ConsumeArgs {
  std::string topic;
  std::optional<std::uint32_t> partition;
  std::string from = "earliest";
  bool follow = false;
  std::optional<std::uint64_t> max;
  bool value_only = false;
  std::string wait = "1s";
  std::string group;
};

std::atomic<bool> g_interrupted{false};

std::int64_t WaitMsOrThrow(const std::string& text) {
  const std::int64_t ms = DurationOrThrow("--wait", text);
  if (ms <= 0 || ms > 60'000) throw UsageError{"--wait must be within 1ms..60s"};
  return ms;
}

void PrintRecord(const Global& global, const ConsumeArgs& args, const std::string& topic,
                 const spool::v1::Record& record) {
  if (global.json) {
    std::cout << spool::cli::RecordJson(topic, record).dump() << "\n";
  } else if (args.value_only) {
    std::cout << record.value() << "\n";
  } else {
    std::cout << spool::cli::FormatRecordLine(record) << "\n";
  }
}

// consume --group: a group member that commits after each batch it prints and leaves the
// group on exit (end of input, --max, or Ctrl-C).
int ConsumeGroup(const Global& global, const ConsumeArgs& args) {
  if (args.partition) throw UsageError{"--partition cannot be used with --group"};
  const std::int64_t now_ms = NowMs();
  auto start = spool::cli::ParseStartPosition(args.from, now_ms);
  if (!start || start->kind == spool::StartPosition::Kind::kOffset) {
    throw UsageError{
        "--from with --group: earliest, latest, a time or a time ago (the reset policy "
        "of the group, set when it has no members yet)"};
  }
  const std::int64_t wait_ms = WaitMsOrThrow(args.wait);
  if (args.max && *args.max == 0) return kExitOk;

  spool::Client client = Connect(global);
  {
    spool::Admin admin(client);
    auto topic = admin.GetTopic(args.topic);
    if (!topic.ok()) return Fail(topic.status, "cannot consume " + args.topic);
  }
  spool::ConsumerOptions options;
  options.group = args.group;
  options.topics = {args.topic};
  options.client_id = "spool-cli";
  switch (start->kind) {
    case spool::StartPosition::Kind::kLatest:
      options.offset_reset = spool::v1::OFFSET_RESET_LATEST;
      break;
    case spool::StartPosition::Kind::kTimestamp:
      options.offset_reset = spool::v1::OFFSET_RESET_BY_TIME;
      options.offset_reset_timestamp_ms = start->timestamp_ms;
      break;
    default:
      options.offset_reset = spool::v1::OFFSET_RESET_EARLIEST;
      break;
  }
  bool assigned = false;
  options.on_assigned = [&](const std::vector<spool::TopicPartition>&) { assigned = true; };
  spool::Consumer consumer(client, options);
  std::signal(SIGINT, [](int) { g_interrupted = true; });
  std::signal(SIGTERM, [](int) { g_interrupted = true; });

  std::uint64_t printed = 0;
  const auto started = SteadyClock::now();
  auto last_record = started;
  grpc::Status error;
  while (!g_interrupted) {
    auto records = consumer.Poll(std::chrono::milliseconds(200));
    if (!records.ok()) {
      error = records.status;
      break;
    }
    std::map<spool::TopicPartition, std::uint64_t> unprinted;  // first record --max cut off
    for (const auto& r : *records) {
      if (args.max && printed >= *args.max) {
        unprinted.emplace(spool::TopicPartition{r.topic, r.record.partition()}, r.record.offset());
        continue;
      }
      PrintRecord(global, args, r.topic, r.record);
      ++printed;
    }
    // Only what was printed counts as consumed (and is committed).
    for (const auto& [tp, offset] : unprinted)
      consumer.Seek(tp, offset);
    std::cout.flush();
    const auto now = SteadyClock::now();
    if (!records->empty()) {
      last_record = now;
      grpc::Status committed = consumer.Commit();
      if (!committed.ok()) std::cerr << "spool: commit: " << committed.error_message() << "\n";
    }
    if (args.max && printed >= *args.max) break;
    // Without --follow: stop once nothing came for --wait after the partitions arrived (or
    // after 10 s without any).
    if (!args.follow) {
      const auto idle = now - (assigned ? std::max(last_record, started) : started);
      if ((assigned && idle >= std::chrono::milliseconds(wait_ms)) ||
          (!assigned && idle >= std::chrono::seconds(10))) {
        break;
      }
    }
  }
  grpc::Status closed = consumer.Close();
  if (!error.ok()) return Fail(error, "cannot consume " + args.topic);
  if (!closed.ok()) return Fail(closed, "leaving group " + args.group);
  return kExitOk;
}

int Consume(const Global& global, const ConsumeArgs& args) {
  if (!args.group.empty()) return ConsumeGroup(global, args);
  const std::int64_t now_ms = NowMs();
  auto start = spool::cli::ParseStartPosition(args.from, now_ms);
  if (!start) {
    throw UsageError{"--from: '" + args.from +
                     "' is not earliest, latest, an offset, a time (2026-11-28T10:00:00Z) or "
                     "a time ago (-15m)"};
  }
  const std::int64_t wait_ms = WaitMsOrThrow(args.wait);
  if (args.max && *args.max == 0) return kExitOk;

  spool::Client client = Connect(global);
  spool::Admin admin(client);
  auto topic = admin.GetTopic(args.topic);
  if (!topic.ok()) return Fail(topic.status, "cannot consume " + args.topic);
  // Without --follow, read up to where each partition ends now.
  std::vector<std::pair<std::uint32_t, std::uint64_t>> partitions;
  for (const auto& p : topic->partitions()) {
    if (!args.partition || *args.partition == p.partition())
      partitions.emplace_back(p.partition(), p.end_offset());
  }
  if (partitions.empty()) {
    return Fail(
        grpc::Status(grpc::StatusCode::NOT_FOUND, "topic " + args.topic + " has no partition " +
                                                      std::to_string(*args.partition)),
        "cannot consume " + args.topic);
  }

  std::mutex out_mu;
  std::uint64_t printed = 0;  // guarded by out_mu
  std::atomic<bool> stop{false};
  grpc::Status error;  // guarded by out_mu
  auto read_partition = [&](std::uint32_t partition, std::uint64_t end) {
    spool::Reader reader(client, args.topic, partition, *start);
    bool first = true;
    while (!stop.load()) {
      if (!args.follow) {
        auto position = reader.Position();
        if (!position.ok()) {
          std::lock_guard lock(out_mu);
          if (error.ok()) error = position.status;
          stop = true;
          return;
        }
        // An explicit offset past the end is the server's to refuse (OUT_OF_RANGE).
        const bool ask_anyway =
            first && *position > end && start->kind == spool::StartPosition::Kind::kOffset;
        if (*position >= end && !ask_anyway) return;
      }
      first = false;
      auto records = reader.Poll(args.follow ? std::chrono::milliseconds(wait_ms)
                                             : std::chrono::milliseconds(0));
      std::lock_guard lock(out_mu);
      if (!records.ok()) {
        if (error.ok()) error = records.status;
        stop = true;
        return;
      }
      for (const auto& record : *records) {
        if (args.max && printed >= *args.max) break;
        if (!args.follow && record.offset() >= end) break;
        PrintRecord(global, args, args.topic, record);
        ++printed;
      }
      if (args.follow) std::cout.flush();
      if (args.max && printed >= *args.max) stop = true;
    }
  };
  std::vector<std::thread> threads;
  for (const auto& [partition, end] : partitions)
    threads.emplace_back(read_partition, partition, end);
  for (auto& thread : threads)
    thread.join();
  std::cout.flush();
  if (!error.ok()) return Fail(error, "cannot consume " + args.topic);
  return kExitOk;
}

// ---- group ------------------------------------------------------------------------------

struct GroupArgs {
  std::string group;
  std::string prefix;
  std::string topic;
  std::string to;
  std::optional<std::int64_t> shift_by;
  std::vector<std::uint32_t> partitions;
  bool force = false;
  bool dry_run = false;
};

std::string_view GroupStateName(spool::v1::GroupState state) {
  switch (state) {
    case spool::v1::GROUP_STATE_EMPTY:
      return "Empty";
    case spool::v1::GROUP_STATE_RECONCILING:
      return "Reconciling";
    case spool::v1::GROUP_STATE_STABLE:
      return "Stable";
    default:
      return "Unknown";
  }
}

std::string PartitionList(
    const google::protobuf::RepeatedPtrField<spool::v1::TopicPartitions>& assignment) {
  std::string out;
  for (const auto& tps : assignment) {
    for (std::uint32_t p : tps.partitions())
      out += (out.empty() ? "" : ",") + tps.topic() + "/" + std::to_string(p);
  }
  return out.empty() ? "-" : out;
}

int GroupList(const Global& global, const GroupArgs& args) {
  spool::Admin admin(Connect(global));
  auto groups = admin.ListGroups(args.prefix);
  if (!groups.ok()) return Fail(groups.status, "cannot list groups");
  if (global.json) {
    Json out = Json::array();
    for (const auto& g : *groups)
      out.push_back(ProtoJson(g));
    PrintJson(out);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& g : *groups) {
    rows.push_back({g.group_id(), std::string(GroupStateName(g.state())),
                    std::to_string(g.member_count()), std::to_string(g.group_epoch())});
  }
  std::cout << spool::cli::FormatTable({"GROUP", "STATE", "MEMBERS", "EPOCH"}, rows);
  return kExitOk;
}

int GroupDescribe(const Global& global, const GroupArgs& args) {
  spool::Admin admin(Connect(global));
  auto d = admin.DescribeGroup(args.group);
  if (!d.ok()) return Fail(d.status, "cannot describe group " + args.group);
  if (global.json) {
    PrintJson(ProtoJson(*d));
    return kExitOk;
  }
  std::string policy = d->offset_reset() == spool::v1::OFFSET_RESET_LATEST    ? "latest"
                       : d->offset_reset() == spool::v1::OFFSET_RESET_BY_TIME ? "by time "
                                                                              : "earliest";
  if (d->offset_reset() == spool::v1::OFFSET_RESET_BY_TIME)
    policy += spool::cli::FormatTimestampMs(d->offset_reset_timestamp_ms());
  std::cout << "Group:              " << d->group_id() << "\n"
            << "State:              " << GroupStateName(d->state()) << " (epoch "
            << d->group_epoch() << ", " << d->rebalance_count() << " rebalances)\n"
            << "Assignor:           "
            << (d->assignor() == spool::v1::GROUP_ASSIGNOR_RANGE ? "range" : "uniform") << "\n"
            << "Session timeout:    " << spool::cli::FormatDurationMs(d->session_timeout_ms())
            << " (heartbeat every " << spool::cli::FormatDurationMs(d->heartbeat_interval_ms())
            << ")\n"
            << "Offset reset:       " << policy << "\n\n";
  std::vector<std::vector<std::string>> members;
  for (const auto& m : d->members()) {
    members.push_back({m.member_id(), m.client_id().empty() ? "-" : m.client_id(), m.client_host(),
                       PartitionList(m.assignment())});
  }
  if (!members.empty()) {
    std::cout << spool::cli::FormatTable({"MEMBER", "CLIENT", "HOST", "PARTITIONS"}, members)
              << "\n";
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& o : d->offsets()) {
    rows.push_back({o.topic(), std::to_string(o.partition()),
                    o.owner_member_id().empty() ? "-" : o.owner_member_id(),
                    o.has_committed_offset() ? std::to_string(o.committed_offset()) : "-",
                    std::to_string(o.log_end_offset()),
                    o.has_lag() ? std::to_string(o.lag()) : "-"});
  }
  std::cout << spool::cli::FormatTable({"TOPIC", "PARTITION", "OWNER", "COMMITTED", "END", "LAG"},
                                       rows);
  return kExitOk;
}

int GroupDelete(const Global& global, const GroupArgs& args) {
  spool::Admin admin(Connect(global));
  grpc::Status status = admin.DeleteGroup(args.group);
  if (!status.ok()) return Fail(status, "cannot delete group " + args.group);
  if (global.json) {
    PrintJson({{"deleted", args.group}});
  } else {
    std::cout << "deleted group " << args.group << "\n";
  }
  return kExitOk;
}

int GroupResetOffsets(const Global& global, const GroupArgs& args) {
  spool::v1::ResetOffsetsRequest request;
  request.set_group_id(args.group);
  request.set_topic(args.topic);
  for (std::uint32_t p : args.partitions)
    request.add_partitions(p);
  request.set_force(args.force);
  request.set_dry_run(args.dry_run);
  if (args.shift_by && !args.to.empty()) throw UsageError{"give --to or --shift-by, not both"};
  if (args.shift_by) {
    request.set_mode(spool::v1::RESET_MODE_SHIFT);
    request.set_shift_by(*args.shift_by);
  } else {
    if (args.to.empty()) throw UsageError{"give --to earliest|latest|OFFSET|TIME or --shift-by N"};
    const std::int64_t now_ms = NowMs();
    auto to = spool::cli::ParseStartPosition(args.to, now_ms);
    if (!to) {
      throw UsageError{"--to: '" + args.to +
                       "' is not earliest, latest, an offset, a time or a time ago (-1h)"};
    }
    switch (to->kind) {
      case spool::StartPosition::Kind::kEarliest:
        request.set_mode(spool::v1::RESET_MODE_EARLIEST);
        break;
      case spool::StartPosition::Kind::kLatest:
        request.set_mode(spool::v1::RESET_MODE_LATEST);
        break;
      case spool::StartPosition::Kind::kOffset:
        request.set_mode(spool::v1::RESET_MODE_OFFSET);
        request.set_offset(to->offset);
        break;
      case spool::StartPosition::Kind::kTimestamp:
        request.set_mode(spool::v1::RESET_MODE_TIMESTAMP);
        request.set_timestamp_ms(to->timestamp_ms);
        break;
    }
  }
  spool::Admin admin(Connect(global));
  auto reset = admin.ResetOffsets(request);
  if (!reset.ok()) return Fail(reset.status, "cannot reset offsets of group " + args.group);
  if (global.json) {
    PrintJson(ProtoJson(*reset));
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : reset->results()) {
    rows.push_back({r.topic(), std::to_string(r.partition()),
                    r.has_previous_offset() ? std::to_string(r.previous_offset()) : "-",
                    std::to_string(r.new_offset())});
  }
  std::cout << spool::cli::FormatTable({"TOPIC", "PARTITION", "PREVIOUS", "NEW"}, rows)
            << (reset->applied() ? "offsets reset\n" : "dry run: nothing changed\n");
  return kExitOk;
}

// ---- queue ------------------------------------------------------------------------------

struct QueueArgs {
  std::string name;
  std::string topic;
  std::string prefix;
  // Attributes (create, set): only the flags given go into the request.
  bool fifo = false;
  std::string visibility_timeout, delay, retention, max_message_bytes, receive_wait;
  bool content_based_dedup = false;
  bool no_content_based_dedup = false;
  std::string dlq;
  std::optional<std::uint32_t> max_receives;
  bool no_dlq = false;
  std::optional<std::uint32_t> partitions, max_in_flight;
  // send (also --delay)
  std::vector<std::string> bodies;
  std::optional<std::string> group, dedup_id;
  std::vector<std::string> headers;
  // receive
  std::optional<std::uint32_t> max;
  std::string wait, visibility;
  bool delete_received = false;
  bool follow = false;
  // redrive allow policy (create, set): "all", "none" or source queue names
  std::string redrive_allow;
  // delete-message (several handles), change-visibility, nack ('-': handles from stdin)
  std::vector<std::string> handles;
  std::string handle;  // change-visibility's
  std::string seconds;
  // redrive
  std::string task_id, to;
  std::optional<std::uint32_t> rate;
};

// The queue API counts whole seconds, so a bare number is seconds here (the topic flags'
// bare numbers are milliseconds).
std::uint32_t SecondsOrThrow(const std::string& flag, const std::string& text) {
  const auto seconds = spool::cli::ParseSeconds(text);
  if (!seconds || *seconds < 0 || *seconds > std::numeric_limits<std::uint32_t>::max()) {
    throw UsageError{flag + ": '" + text + "' is not a number of seconds (like 30, 90s, 15m, 12h)"};
  }
  return static_cast<std::uint32_t>(*seconds);
}

// The attribute flags of `queue create` and `queue set`.
spool::v1::QueueAttributes QueueAttributesOrThrow(const QueueArgs& args) {
  spool::v1::QueueAttributes a;
  if (!args.visibility_timeout.empty()) {
    a.set_visibility_timeout_seconds(
        SecondsOrThrow("--visibility-timeout", args.visibility_timeout));
  }
  if (!args.delay.empty()) a.set_delivery_delay_seconds(SecondsOrThrow("--delay", args.delay));
  if (!args.retention.empty()) {
    const auto seconds = spool::cli::ParseSeconds(args.retention);
    if (!seconds) {
      throw UsageError{"--retention: '" + args.retention +
                       "' is not a number of seconds (like 3600, 12h, 4d) or forever"};
    }
    a.set_retention_seconds(*seconds);
  }
  if (!args.max_message_bytes.empty()) {
    const std::int64_t bytes = BytesOrThrow("--max-message-bytes", args.max_message_bytes);
    if (bytes <= 0 || bytes > std::numeric_limits<std::uint32_t>::max())
      throw UsageError{"--max-message-bytes must be a positive size (like 256KiB)"};
    a.set_max_message_bytes(static_cast<std::uint32_t>(bytes));
  }
  if (!args.receive_wait.empty())
    a.set_receive_wait_seconds(SecondsOrThrow("--receive-wait", args.receive_wait));
  if (args.content_based_dedup && args.no_content_based_dedup)
    throw UsageError{"give --content-based-dedup or --no-content-based-dedup, not both"};
  if (args.content_based_dedup) a.set_content_based_deduplication(true);
  if (args.no_content_based_dedup) a.set_content_based_deduplication(false);
  if (args.partitions) a.set_partitions(*args.partitions);
  if (args.max_in_flight) a.set_max_in_flight(*args.max_in_flight);
  if (!args.redrive_allow.empty()) {
    auto* policy = a.mutable_redrive_allow_policy();
    if (args.redrive_allow == "all") {
      policy->set_permission(spool::v1::REDRIVE_PERMISSION_ALLOW_ALL);
    } else if (args.redrive_allow == "none") {
      policy->set_permission(spool::v1::REDRIVE_PERMISSION_DENY_ALL);
    } else {
      policy->set_permission(spool::v1::REDRIVE_PERMISSION_BY_QUEUE);
      std::istringstream names(args.redrive_allow);
      for (std::string name; std::getline(names, name, ',');) {
        if (name.empty()) {
          throw UsageError{"--redrive-allow: '" + args.redrive_allow +
                           "' has an empty queue name (give all, none or QUEUE[,QUEUE...])"};
        }
        policy->add_source_queues(name);
      }
    }
  }
  if (args.no_dlq) {
    if (!args.dlq.empty() || args.max_receives)
      throw UsageError{"--no-dlq cannot be used with --dlq or --max-receives"};
    a.mutable_redrive_policy();  // an empty dead-letter queue removes the policy
  } else if (!args.dlq.empty() || args.max_receives) {
    if (args.dlq.empty() || !args.max_receives)
      throw UsageError{
          "--dlq and --max-receives go together (the queue and after how many "
          "receives a message moves there)"};
    a.mutable_redrive_policy()->set_dead_letter_queue(args.dlq);
    a.mutable_redrive_policy()->set_max_receive_count(*args.max_receives);
  }
  return a;
}

// Create and describe print the same object; create adds whether it was new.
int PrintQueue(const Global& global, const spool::v1::Queue& queue,
               std::optional<bool> created = std::nullopt) {
  if (global.json) {
    Json out = ProtoJson(queue);
    if (created) out["created"] = *created;
    PrintJson(out);
    return kExitOk;
  }
  if (created && !*created)
    std::cout << "queue " << queue.name() << " already exists with these settings\n\n";
  std::cout << spool::cli::FormatQueue(queue);
  return kExitOk;
}

// Prints names one per row (JSON: an array of strings).
int PrintNames(const Global& global, const std::string& header,
               const std::vector<std::string>& names) {
  if (global.json) {
    PrintJson(Json(names));
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& name : names)
    rows.push_back({name});
  std::cout << spool::cli::FormatTable({header}, rows);
  return kExitOk;
}

// Per-entry errors of the batch calls carry the gRPC code's number.
grpc::Status EntryStatus(const spool::v1::Error& error) {
  return grpc::Status(static_cast<grpc::StatusCode>(error.code()), error.message());
}

int QueueCreate(const Global& global, const QueueArgs& args) {
  spool::v1::QueueAttributes attributes = QueueAttributesOrThrow(args);
  if (args.fifo) attributes.set_fifo(true);
  spool::QueueClient queues(Connect(global));
  auto created = queues.CreateQueue(args.name, attributes, args.topic);
  if (!created.ok()) return Fail(created.status, "cannot create queue " + args.name);
  return PrintQueue(global, created->queue(), created->created());
}

int QueueList(const Global& global, const QueueArgs& args) {
  spool::QueueClient queues(Connect(global));
  auto names = queues.ListQueues(args.prefix);
  if (!names.ok()) return Fail(names.status, "cannot list queues");
  return PrintNames(global, "NAME", *names);
}

int QueueDescribe(const Global& global, const QueueArgs& args) {
  spool::QueueClient queues(Connect(global));
  auto queue = queues.GetQueueAttributes(args.name);
  if (!queue.ok()) return Fail(queue.status, "cannot describe queue " + args.name);
  return PrintQueue(global, *queue);
}

int QueueSet(const Global& global, const QueueArgs& args) {
  const spool::v1::QueueAttributes attributes = QueueAttributesOrThrow(args);
  if (attributes.ByteSizeLong() == 0) {
    throw UsageError{
        "queue set: nothing to change (give --visibility-timeout, --delay, --retention, "
        "--max-message-bytes, --receive-wait, --[no-]content-based-dedup, --dlq with "
        "--max-receives, --no-dlq, --redrive-allow, --partitions or --max-in-flight)"};
  }
  spool::QueueClient queues(Connect(global));
  auto queue = queues.SetQueueAttributes(args.name, attributes);
  if (!queue.ok()) return Fail(queue.status, "cannot change queue " + args.name);
  return PrintQueue(global, *queue);
}

int QueueDelete(const Global& global, const QueueArgs& args) {
  spool::QueueClient queues(Connect(global));
  grpc::Status status = queues.DeleteQueue(args.name);
  if (!status.ok()) return Fail(status, "cannot delete queue " + args.name);
  if (global.json) {
    PrintJson({{"deleted", args.name}});
  } else {
    std::cout << "deleted queue " << args.name << "\n";
  }
  return kExitOk;
}

int QueuePurge(const Global& global, const QueueArgs& args) {
  spool::QueueClient queues(Connect(global));
  auto purged = queues.PurgeQueue(args.name);
  if (!purged.ok()) return Fail(purged.status, "cannot purge queue " + args.name);
  if (global.json) {
    PrintJson({{"queue", args.name}, {"approximate_messages_purged", *purged}});
  } else {
    std::cout << "purged queue " << args.name << " (about " << *purged << " messages)\n";
  }
  return kExitOk;
}

int QueueSend(const Global& global, const QueueArgs& args) {
  spool::SendOptions options;
  options.headers = HeadersOrThrow(args.headers);
  options.message_group_id = args.group;
  options.deduplication_id = args.dedup_id;
  if (!args.delay.empty()) options.delay_seconds = SecondsOrThrow("--delay", args.delay);
  if (std::count(args.bodies.begin(), args.bodies.end(), "-") > 1)
    throw UsageError{"BODY '-' (stdin) can be given only once"};
  if (args.dedup_id && args.bodies.size() > 1) {
    throw UsageError{
        "--dedup-id with several BODY arguments would make all but the first a duplicate; "
        "send them one at a time"};
  }
  std::vector<std::string> bodies = args.bodies;
  for (auto& body : bodies) {
    if (body == "-")
      body.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }

  spool::QueueClient queues(Connect(global));
  // One result per body: sent, or the entry's own error.
  std::vector<spool::v1::SendMessageBatchResult> results;
  if (bodies.size() == 1) {
    auto sent = queues.SendMessage(args.name, std::move(bodies[0]), options);
    if (!sent.ok()) return Fail(sent.status, "cannot send to queue " + args.name);
    *results.emplace_back().mutable_sent() = std::move(sent.value);
  } else {
    // The API takes up to 1,000 entries per batch; batches go one after the other, so a FIFO
    // group keeps the command line's order.
    constexpr std::size_t kBatch = 1000;
    for (std::size_t first = 0; first < bodies.size(); first += kBatch) {
      std::vector<spool::SendEntry> entries;
      for (std::size_t i = first; i < std::min(bodies.size(), first + kBatch); ++i)
        entries.push_back({"", std::move(bodies[i]), options});
      auto sent = queues.SendMessageBatch(args.name, std::move(entries));
      if (!sent.ok()) {
        return Fail(sent.status, "cannot send to queue " + args.name + " (" +
                                     std::to_string(first) + " of " +
                                     std::to_string(bodies.size()) + " messages were sent)");
      }
      results.insert(results.end(), sent->begin(), sent->end());
    }
  }

  int exit_code = kExitOk;
  Json out = Json::array();
  for (std::size_t i = 0; i < results.size(); ++i) {
    const auto& r = results[i];
    if (r.has_error()) {
      Fail(EntryStatus(r.error()), "message " + std::to_string(i + 1) + " of " +
                                       std::to_string(results.size()) + " was not sent");
      exit_code = kExitServer;
      if (global.json) out.push_back({{"error", ProtoJson(r.error())}});
      continue;
    }
    if (global.json) {
      out.push_back(ProtoJson(r.sent()));
      continue;
    }
    std::cout << (r.sent().duplicate() ? "duplicate of " : "sent ") << r.sent().message_id()
              << " (partition " << r.sent().partition() << ", offset " << r.sent().offset()
              << ")\n";
  }
  if (global.json) PrintJson(out);
  return exit_code;
}

// `queue receive --follow`: a receive stream, printed as messages come, until Ctrl-C or --max.
int QueueFollow(const Global& global, const QueueArgs& args) {
  if (!args.wait.empty()) {
    throw UsageError{"--wait does not go with --follow, which waits until Ctrl-C or --max"};
  }
  if (args.max && *args.max < 1) throw UsageError{"--max must be at least 1"};
  spool::ReceiveStreamOptions options;
  // No more leased than will be printed; without --max, enough to keep the stream busy.
  options.max_outstanding_messages = args.max ? std::min<std::uint32_t>(*args.max, 1000) : 100;
  if (!args.visibility.empty())
    options.visibility_timeout_seconds = SecondsOrThrow("--visibility", args.visibility);
  spool::QueueClient queues(Connect(global));
  auto stream = queues.StreamingReceive(args.name, options);
  std::signal(SIGINT, [](int) { g_interrupted = true; });
  std::signal(SIGTERM, [](int) { g_interrupted = true; });

  int exit_code = kExitOk;
  std::uint64_t printed = 0;
  while (!g_interrupted && (!args.max || printed < *args.max) && exit_code == kExitOk) {
    const std::size_t want = args.max ? *args.max - printed : SIZE_MAX;
    auto messages = stream->Receive(std::chrono::milliseconds(200), want);
    if (!messages.ok()) return Fail(messages.status, "cannot receive from queue " + args.name);
    for (const auto& m : *messages) {
      if (global.json) {
        std::cout << spool::cli::QueueMessageJson(m).dump() << "\n";
      } else {
        std::cout << spool::cli::FormatQueueMessageLine(m) << "\n";
      }
    }
    std::cout.flush();
    printed += messages->size();
    if (!args.delete_received || messages->empty()) continue;
    // Deleted only once printed, and durably before the next batch, as without --follow.
    spool::Settlement settlement;
    for (const auto& m : *messages)
      settlement.deletes.push_back(m.receipt_handle());
    auto deleted = stream->Settle(std::move(settlement)).get();
    if (!deleted.ok()) {
      return Fail(deleted.status, "messages were received but not deleted from " + args.name);
    }
    for (const auto& failure : *deleted) {
      exit_code = Fail(EntryStatus(failure.error()), "message with receipt handle " +
                                                         failure.receipt_handle() +
                                                         " was received but not deleted");
    }
  }
  // Messages the stream delivered but this did not print are made visible again.
  grpc::Status closed = stream->Close();
  if (!closed.ok() && exit_code == kExitOk)
    return Fail(closed, "cannot close the receive stream on " + args.name);
  return exit_code;
}

int QueueReceive(const Global& global, const QueueArgs& args) {
  if (args.follow) return QueueFollow(global, args);
  spool::ReceiveOptions options;
  if (args.max) {
    if (*args.max < 1 || *args.max > 1000) throw UsageError{"--max must be within 1..1000"};
    options.max_messages = *args.max;
  }
  if (!args.wait.empty()) options.wait_time_seconds = SecondsOrThrow("--wait", args.wait);
  if (!args.visibility.empty())
    options.visibility_timeout_seconds = SecondsOrThrow("--visibility", args.visibility);
  spool::QueueClient queues(Connect(global));
  auto messages = queues.ReceiveMessages(args.name, options);
  if (!messages.ok()) return Fail(messages.status, "cannot receive from queue " + args.name);
  if (global.json) {
    Json out = Json::array();
    for (const auto& m : *messages)
      out.push_back(spool::cli::QueueMessageJson(m));
    PrintJson(out);
  } else {
    for (const auto& m : *messages)
      std::cout << spool::cli::FormatQueueMessageLine(m) << "\n";
  }
  std::cout.flush();
  if (!args.delete_received || messages->empty()) return kExitOk;
  // Deleted only once printed: a failure here leaves them to be received again, never lost.
  std::vector<std::string> handles;
  for (const auto& m : *messages)
    handles.push_back(m.receipt_handle());
  auto deleted = queues.DeleteMessageBatch(args.name, handles);
  if (!deleted.ok()) {
    return Fail(deleted.status, "the messages were received but not deleted from " + args.name);
  }
  int exit_code = kExitOk;
  for (std::size_t i = 0; i < deleted->size(); ++i) {
    const auto& r = (*deleted)[i];
    if (!r.has_error()) continue;
    exit_code = Fail(EntryStatus(r.error()),
                     "message " + (*messages)[i].message_id() + " was received but not deleted");
  }
  return exit_code;
}

// The receipt handles given, or with "-" those on stdin (one per line, blank lines skipped).
std::vector<std::string> HandlesOrThrow(const std::vector<std::string>& given) {
  std::vector<std::string> handles;
  for (const std::string& handle : given) {
    if (handle != "-") {
      handles.push_back(handle);
      continue;
    }
    for (std::string line; std::getline(std::cin, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) handles.push_back(line);
    }
  }
  if (handles.empty()) throw UsageError{"no receipt handles (none on stdin)"};
  return handles;
}

// What every server accepts (SQS's limit); used when the server does not say its own.
constexpr std::size_t kCliBatch = 10;

// The most receipt handles one batch call may carry: the server's queue_max_batch, asked
// only when `handles` do not fit in kCliBatch.
std::size_t BatchFor(const spool::Client& client, std::size_t handles) {
  if (handles <= kCliBatch) return kCliBatch;
  auto info = spool::Admin(client).GetBrokerInfo();
  if (!info.ok() || info->max_queue_batch() == 0) return kCliBatch;
  return info->max_queue_batch();
}

// Runs `call` (a batch call of the QueueClient) on the handles `batch` at a time and returns
// each handle's outcome: its entry's error, or the whole call's.
std::vector<grpc::Status> InBatches(
    const std::vector<std::string>& handles, std::size_t batch,
    const std::function<spool::CallResult<std::vector<spool::v1::BatchEntryResult>>(
        const std::vector<std::string>&)>& call) {
  std::vector<grpc::Status> outcomes;
  for (std::size_t from = 0; from < handles.size(); from += batch) {
    const std::vector<std::string> chunk(
        handles.begin() + static_cast<std::ptrdiff_t>(from),
        handles.begin() + static_cast<std::ptrdiff_t>(std::min(handles.size(), from + batch)));
    auto results = call(chunk);
    if (results.ok() && results->size() != chunk.size()) {
      results.status =
          grpc::Status(grpc::StatusCode::INTERNAL,
                       "the server answered " + std::to_string(results->size()) + " results for " +
                           std::to_string(chunk.size()) + " receipt handles");
    }
    for (std::size_t i = 0; i < chunk.size(); ++i) {
      if (!results.ok()) {
        outcomes.push_back(results.status);
      } else {
        outcomes.push_back((*results)[i].has_error() ? EntryStatus((*results)[i].error())
                                                     : grpc::Status::OK);
      }
    }
  }
  return outcomes;
}

// Prints one line (JSON: one object) per handle and returns the exit code: 1 if any failed.
int ReportHandles(const Global& global, const std::string& queue, const std::string& done,
                  const std::vector<std::string>& handles,
                  const std::vector<grpc::Status>& outcomes) {
  int exit_code = kExitOk;
  Json out = Json::array();
  for (std::size_t i = 0; i < handles.size(); ++i) {
    if (!outcomes[i].ok()) {
      exit_code = Fail(outcomes[i], "message " + std::to_string(i + 1) + " of " +
                                        std::to_string(handles.size()) + " in " + queue);
    }
    if (global.json) {
      Json entry = {{"queue", queue}, {"receipt_handle", handles[i]}, {"ok", outcomes[i].ok()}};
      if (!outcomes[i].ok()) entry["error"] = outcomes[i].error_message();
      out.push_back(entry);
    }
  }
  if (global.json) {
    PrintJson(out);
  } else {
    const auto ok = static_cast<std::size_t>(
        std::count_if(outcomes.begin(), outcomes.end(), [](const auto& s) { return s.ok(); }));
    std::cout << done << " " << ok << " of " << handles.size() << " message(s) in " << queue
              << "\n";
  }
  return exit_code;
}

int QueueDeleteMessage(const Global& global, const QueueArgs& args) {
  const std::vector<std::string> handles = HandlesOrThrow(args.handles);
  const spool::Client client = Connect(global);
  spool::QueueClient queues(client);
  if (handles.size() == 1 && args.handles.front() != "-") {
    grpc::Status status = queues.DeleteMessage(args.name, handles.front());
    if (!status.ok()) return Fail(status, "cannot delete the message from " + args.name);
    if (global.json) {
      PrintJson({{"queue", args.name}, {"deleted", handles.front()}});
    } else {
      std::cout << "deleted the message from " << args.name << "\n";
    }
    return kExitOk;
  }
  const std::size_t batch = BatchFor(client, handles.size());
  const auto outcomes = InBatches(handles, batch, [&](const std::vector<std::string>& chunk) {
    return queues.DeleteMessageBatch(args.name, chunk);
  });
  return ReportHandles(global, args.name, "deleted", handles, outcomes);
}

int QueueChangeVisibility(const Global& global, const QueueArgs& args) {
  const std::uint32_t seconds = SecondsOrThrow("seconds", args.seconds);
  const std::vector<std::string> handles = HandlesOrThrow({args.handle});
  const spool::Client client = Connect(global);
  spool::QueueClient queues(client);
  if (args.handle == "-") {
    const std::size_t batch = BatchFor(client, handles.size());
    const auto outcomes = InBatches(handles, batch, [&](const std::vector<std::string>& chunk) {
      std::vector<spool::VisibilityChange> changes;
      for (const std::string& handle : chunk)
        changes.push_back({handle, seconds});
      return queues.ChangeMessageVisibilityBatch(args.name, changes);
    });
    return ReportHandles(global, args.name, "changed the visibility of", handles, outcomes);
  }
  auto deadline = queues.ChangeMessageVisibility(args.name, handles.front(), seconds);
  if (!deadline.ok())
    return Fail(deadline.status, "cannot change the message's visibility in " + args.name);
  if (global.json) {
    PrintJson({{"queue", args.name},
               {"visibility_deadline_ms", *deadline},
               {"visibility_deadline", spool::cli::FormatTimestampMs(*deadline)}});
  } else if (seconds == 0) {
    std::cout << "the message is visible again\n";
  } else {
    std::cout << "the message is hidden until " << spool::cli::FormatTimestampMs(*deadline) << "\n";
  }
  return kExitOk;
}

int QueueNack(const Global& global, const QueueArgs& args) {
  const std::uint32_t delay = args.delay.empty() ? 0 : SecondsOrThrow("--delay", args.delay);
  const std::vector<std::string> handles = HandlesOrThrow(args.handles);
  spool::QueueClient queues(Connect(global));
  std::vector<grpc::Status> outcomes;
  for (const std::string& handle : handles)
    outcomes.push_back(queues.NackMessage(args.name, handle, delay));
  return ReportHandles(global, args.name, "gave back", handles, outcomes);
}

int QueueDlqSources(const Global& global, const QueueArgs& args) {
  spool::QueueClient queues(Connect(global));
  auto sources = queues.ListDeadLetterSourceQueues(args.name);
  if (!sources.ok())
    return Fail(sources.status, "cannot list the dead-letter sources of " + args.name);
  return PrintNames(global, "SOURCE QUEUE", *sources);
}

std::string_view RedriveStatusName(spool::v1::RedriveTaskStatus status) {
  switch (status) {
    case spool::v1::REDRIVE_TASK_STATUS_RUNNING:
      return "running";
    case spool::v1::REDRIVE_TASK_STATUS_COMPLETED:
      return "completed";
    case spool::v1::REDRIVE_TASK_STATUS_CANCELLING:
      return "cancelling";
    case spool::v1::REDRIVE_TASK_STATUS_CANCELLED:
      return "cancelled";
    case spool::v1::REDRIVE_TASK_STATUS_FAILED:
      return "failed";
    default:
      return "unknown";
  }
}

int PrintRedriveTasks(const Global& global, const std::vector<spool::v1::RedriveTask>& tasks) {
  if (global.json) {
    Json out = Json::array();
    for (const auto& t : tasks)
      out.push_back(ProtoJson(t));
    PrintJson(out);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& t : tasks) {
    rows.push_back({t.task_id(), std::string(RedriveStatusName(t.status())), t.source_queue(),
                    t.destination_queue().empty() ? "(original queues)" : t.destination_queue(),
                    std::to_string(t.approximate_messages_moved()) + "/" +
                        std::to_string(t.approximate_messages_to_move()),
                    std::to_string(t.max_messages_per_second()) + "/s",
                    spool::cli::FormatTimestampMs(t.started_timestamp_ms()),
                    t.failure_reason().empty() ? "-" : t.failure_reason()});
  }
  std::cout << spool::cli::FormatTable(
      {"TASK", "STATUS", "SOURCE", "DESTINATION", "MOVED", "RATE", "STARTED", "FAILURE"}, rows);
  return kExitOk;
}

int RedriveStart(const Global& global, const QueueArgs& args) {
  spool::QueueClient queues(Connect(global));
  auto task = queues.StartRedrive(args.name, args.to, args.rate);
  if (!task.ok()) return Fail(task.status, "cannot start a redrive of " + args.name);
  return PrintRedriveTasks(global, {*task});
}

int RedriveList(const Global& global, const QueueArgs& args) {
  spool::QueueClient queues(Connect(global));
  // 10: every task the broker keeps for a source.
  auto tasks = queues.ListRedriveTasks(args.name, 10);
  if (!tasks.ok()) return Fail(tasks.status, "cannot list the redrive tasks of " + args.name);
  return PrintRedriveTasks(global, *tasks);
}

int RedriveCancel(const Global& global, const QueueArgs& args) {
  spool::QueueClient queues(Connect(global));
  auto task = queues.CancelRedrive(args.task_id);
  if (!task.ok()) return Fail(task.status, "cannot cancel redrive task " + args.task_id);
  return PrintRedriveTasks(global, {*task});
}

}  // namespace

int main(int argc, char** argv) {
  std::ios::sync_with_stdio(false);
  CLI::App app{"spool: administer and use a Spool broker."};
  app.require_subcommand(1);
  app.fallthrough();  // global options are accepted after the subcommand too
  app.set_version_flag("--version", SPOOL_VERSION);
  Global global;
  app.add_option("--server", global.server, "spoold's gRPC address host:port")
      ->envname("SPOOL_SERVER")
      ->capture_default_str();
  app.add_option("--timeout", global.timeout, "Deadline of each call")->capture_default_str();
  app.add_flag("--json", global.json, "Print JSON for scripts instead of tables");

  std::function<int()> run;

  CLI::App* topic = app.add_subcommand("topic", "Create, list, describe, update, delete topics");
  topic->require_subcommand(1);
  TopicArgs topic_args;
  auto limit_options = [&](CLI::App* command) {
    command->add_option("--retention", topic_args.retention,
                        "Keep records this long (30s, 12h, 7d, forever)");
    command->add_option("--retention-bytes", topic_args.retention_bytes,
                        "Keep at most this much per partition (64MiB, 10GiB, unlimited)");
    command->add_option("--max-message-bytes", topic_args.max_message_bytes,
                        "Largest record accepted (1MiB)");
  };
  CLI::App* create = topic->add_subcommand("create", "Create a topic");
  create->add_option("name", topic_args.name, "Topic name")->required();
  create->add_option("--partitions,-p", topic_args.partitions, "Number of partitions (default 1)");
  limit_options(create);
  create->callback([&] { run = [&] { return TopicCreate(global, topic_args); }; });

  CLI::App* list = topic->add_subcommand("list", "List topics");
  list->add_option("--prefix", topic_args.prefix, "Only names starting with this");
  list->callback([&] { run = [&] { return TopicList(global, topic_args); }; });

  CLI::App* describe = topic->add_subcommand("describe", "Show a topic and its partitions");
  describe->add_option("name", topic_args.name, "Topic name")->required();
  describe->callback([&] { run = [&] { return TopicDescribe(global, topic_args); }; });

  CLI::App* update = topic->add_subcommand("update", "Change retention, limits or partitions");
  update->add_option("name", topic_args.name, "Topic name")->required();
  update->add_option("--partitions,-p", topic_args.partitions,
                     "New number of partitions (can only grow)");
  limit_options(update);
  update->callback([&] { run = [&] { return TopicUpdate(global, topic_args); }; });

  CLI::App* remove = topic->add_subcommand("delete", "Delete a topic and its records");
  remove->add_option("name", topic_args.name, "Topic name")->required();
  remove->add_flag("--force", topic_args.force, "Also delete the queues reading it");
  remove->callback([&] { run = [&] { return TopicDelete(global, topic_args); }; });

  ProduceArgs produce_args;
  CLI::App* produce =
      app.add_subcommand("produce", "Publish one record per input line (stdin or --file)");
  produce->add_option("topic", produce_args.topic, "Topic name")->required();
  produce->add_option("--key,-k", produce_args.key, "Key of every record");
  produce->add_option("--key-separator", produce_args.key_separator,
                      "Split each line at the first SEP into key and value");
  produce->add_option("--partition", produce_args.partition,
                      "Write to this partition (default: by key, else spread)");
  produce->add_option("--file,-f", produce_args.file, "Read lines from this file ('-': stdin)");
  produce->add_option("--header,-H", produce_args.headers, "KEY=VALUE header on every record");
  produce->add_option("--linger", produce_args.linger, "How long a batch waits to fill")
      ->capture_default_str();
  produce->add_flag("--quiet,-q", produce_args.quiet, "No progress or summary");
  produce->callback([&] { run = [&] { return Produce(global, produce_args); }; });

  ConsumeArgs consume_args;
  CLI::App* consume = app.add_subcommand("consume", "Print a topic's records");
  consume->add_option("topic", consume_args.topic, "Topic name")->required();
  consume->add_option("--partition", consume_args.partition, "Only this partition");
  consume
      ->add_option("--from", consume_args.from,
                   "earliest, latest, an OFFSET, a TIME (2026-11-28T10:00:00Z) or -DURATION")
      ->capture_default_str();
  consume->add_flag("--follow,-F", consume_args.follow, "Keep waiting for new records");
  consume->add_option("--max,-n", consume_args.max, "Stop after this many records");
  consume->add_flag("--value-only", consume_args.value_only, "Print only each record's value");
  consume->add_option("--wait", consume_args.wait, "Long-poll wait with --follow")
      ->capture_default_str();
  consume->callback([&] { run = [&] { return Consume(global, consume_args); }; });

  consume->add_option("--group,-g", consume_args.group,
                      "Consume as a member of this group, committing as it goes");

  GroupArgs group_args;
  CLI::App* group = app.add_subcommand("group", "List, describe, reset and delete consumer groups");
  group->require_subcommand(1);
  CLI::App* glist = group->add_subcommand("list", "List groups");
  glist->add_option("--prefix", group_args.prefix, "Only ids starting with this");
  glist->callback([&] { run = [&] { return GroupList(global, group_args); }; });
  CLI::App* gdescribe =
      group->add_subcommand("describe", "Members, owners, committed offsets and lag");
  gdescribe->add_option("group", group_args.group, "Group id")->required();
  gdescribe->callback([&] { run = [&] { return GroupDescribe(global, group_args); }; });
  CLI::App* greset = group->add_subcommand(
      "reset-offsets", "Move a group's committed offsets for a topic (the group must be empty)");
  greset->add_option("group", group_args.group, "Group id")->required();
  greset->add_option("--topic,-t", group_args.topic, "Topic")->required();
  greset->add_option("--to", group_args.to,
                     "earliest, latest, an OFFSET, a TIME (2026-11-28T10:00:00Z) or -DURATION");
  greset->add_option("--shift-by", group_args.shift_by,
                     "Move each committed offset by N records (negative rewinds)");
  greset->add_option("--partition", group_args.partitions, "Only these partitions (repeatable)");
  greset->add_flag("--force", group_args.force,
                   "Reset even with members (they are fenced and rejoin)");
  greset->add_flag("--dry-run", group_args.dry_run, "Show the new offsets, change nothing");
  greset->callback([&] { run = [&] { return GroupResetOffsets(global, group_args); }; });
  CLI::App* gdelete = group->add_subcommand("delete", "Delete a group without members");
  gdelete->add_option("group", group_args.group, "Group id")->required();
  gdelete->callback([&] { run = [&] { return GroupDelete(global, group_args); }; });

  QueueArgs queue_args;
  CLI::App* queue = app.add_subcommand(
      "queue", "Administer queues; send, receive and delete their messages; redrive dead letters");
  queue->require_subcommand(1);
  auto attribute_options = [&](CLI::App* command) {
    command->add_option("--visibility-timeout", queue_args.visibility_timeout,
                        "Lease of a received message, in seconds (30, 5m, 12h)");
    command->add_option("--delay", queue_args.delay,
                        "Hide each new message this long, in seconds (at most 15m)");
    command->add_option("--retention", queue_args.retention,
                        "Keep messages this long, in seconds (3600, 4d, forever)");
    command->add_option("--max-message-bytes", queue_args.max_message_bytes,
                        "Largest message accepted (256KiB, at most 1MiB)");
    command->add_option("--receive-wait", queue_args.receive_wait,
                        "Default long-poll wait of a receive, in seconds (at most 20)");
    command->add_flag("--content-based-dedup", queue_args.content_based_dedup,
                      "FIFO: a message without a deduplication id is deduplicated by its body");
    command->add_option("--dlq", queue_args.dlq, "Dead-letter queue (with --max-receives)");
    command->add_option("--max-receives", queue_args.max_receives,
                        "Receives after which a message moves to the dead-letter queue");
    command->add_option("--partitions,-p", queue_args.partitions,
                        "Partitions of the queue's own topic");
    command->add_option("--max-in-flight", queue_args.max_in_flight,
                        "Most messages leased at once");
    command->add_option("--redrive-allow", queue_args.redrive_allow,
                        "Which queues may use this one as their dead-letter queue: all, none, "
                        "or QUEUE[,QUEUE...] (at most 10)");
  };
  CLI::App* qcreate = queue->add_subcommand("create", "Create a queue");
  qcreate->add_option("name", queue_args.name, "Queue name (a FIFO queue's ends in .fifo)")
      ->required();
  qcreate->add_flag("--fifo", queue_args.fifo, "A FIFO queue (the name must end in .fifo)");
  qcreate->add_option("--topic", queue_args.topic,
                      "Subscribe to this existing topic instead of owning one");
  attribute_options(qcreate);
  qcreate->callback([&] { run = [&] { return QueueCreate(global, queue_args); }; });

  CLI::App* qlist = queue->add_subcommand("list", "List queues");
  qlist->add_option("--prefix", queue_args.prefix, "Only names starting with this");
  qlist->callback([&] { run = [&] { return QueueList(global, queue_args); }; });

  CLI::App* qdescribe =
      queue->add_subcommand("describe", "Show a queue's attributes and approximate counts");
  qdescribe->add_option("name", queue_args.name, "Queue name")->required();
  qdescribe->callback([&] { run = [&] { return QueueDescribe(global, queue_args); }; });

  CLI::App* qset = queue->add_subcommand("set", "Change a queue's attributes");
  qset->add_option("name", queue_args.name, "Queue name")->required();
  attribute_options(qset);
  qset->add_flag("--no-content-based-dedup", queue_args.no_content_based_dedup,
                 "FIFO: require a deduplication id again");
  qset->add_flag("--no-dlq", queue_args.no_dlq, "Remove the dead-letter queue");
  qset->callback([&] { run = [&] { return QueueSet(global, queue_args); }; });

  CLI::App* qdelete =
      queue->add_subcommand("delete", "Delete a queue (and its own topic with its messages)");
  qdelete->add_option("name", queue_args.name, "Queue name")->required();
  qdelete->callback([&] { run = [&] { return QueueDelete(global, queue_args); }; });

  CLI::App* qpurge = queue->add_subcommand("purge", "Delete every message of a queue");
  qpurge->add_option("name", queue_args.name, "Queue name")->required();
  qpurge->callback([&] { run = [&] { return QueuePurge(global, queue_args); }; });

  CLI::App* qsend = queue->add_subcommand("send", "Send messages, one per BODY");
  qsend->add_option("name", queue_args.name, "Queue name")->required();
  qsend->add_option("body", queue_args.bodies, "Message bodies ('-': all of stdin)")->required();
  qsend->add_option("--group,-g", queue_args.group, "Message group (required by FIFO queues)");
  qsend->add_option("--dedup-id", queue_args.dedup_id, "Deduplication id");
  qsend->add_option("--delay", queue_args.delay, "Hide the messages this long, in seconds");
  qsend->add_option("--header,-H", queue_args.headers, "KEY=VALUE attribute (repeatable)");
  qsend->callback([&] { run = [&] { return QueueSend(global, queue_args); }; });

  CLI::App* qreceive = queue->add_subcommand("receive", "Receive (lease) messages and print them");
  qreceive->add_option("name", queue_args.name, "Queue name")->required();
  qreceive->add_option("--max,-n", queue_args.max,
                       "Receive up to this many, 1-1000 (default 1); with --follow, stop after "
                       "this many");
  qreceive->add_option("--wait", queue_args.wait,
                       "Long-poll this long for a message, in seconds (default: the queue's)");
  qreceive->add_option("--visibility", queue_args.visibility,
                       "Lease them this long, in seconds (default: the queue's)");
  qreceive->add_flag("--delete", queue_args.delete_received, "Delete them once printed");
  qreceive->add_flag("--follow,-f", queue_args.follow,
                     "Open a receive stream and print messages as they come, until Ctrl-C");
  qreceive->callback([&] { run = [&] { return QueueReceive(global, queue_args); }; });

  CLI::App* qdelmsg = queue->add_subcommand(
      "delete-message", "Delete (acknowledge) received messages, in batches when several");
  qdelmsg->add_option("name", queue_args.name, "Queue name")->required();
  qdelmsg
      ->add_option("handle", queue_args.handles,
                   "Receipt handles from the receive ('-': one per line from stdin)")
      ->required();
  qdelmsg->callback([&] { run = [&] { return QueueDeleteMessage(global, queue_args); }; });

  CLI::App* qvisibility = queue->add_subcommand(
      "change-visibility", "End received messages' leases SECONDS from now (0: at once)");
  qvisibility->add_option("name", queue_args.name, "Queue name")->required();
  qvisibility
      ->add_option("handle", queue_args.handle,
                   "Receipt handle from the receive ('-': one per line from stdin, in batches)")
      ->required();
  qvisibility->add_option("seconds", queue_args.seconds, "New lease (30, 5m)")->required();
  qvisibility->callback([&] { run = [&] { return QueueChangeVisibility(global, queue_args); }; });

  CLI::App* qnack = queue->add_subcommand(
      "nack", "Give received messages back (processing failed): visible again after --delay");
  qnack->add_option("name", queue_args.name, "Queue name")->required();
  qnack
      ->add_option("handle", queue_args.handles,
                   "Receipt handles from the receive ('-': one per line from stdin)")
      ->required();
  qnack->add_option("--delay", queue_args.delay,
                    "Keep them hidden this long first, in seconds (default 0, at most 12h)");
  qnack->callback([&] { run = [&] { return QueueNack(global, queue_args); }; });

  CLI::App* qsources = queue->add_subcommand(
      "dlq-sources", "List the queues that use this one as their dead-letter queue");
  qsources->add_option("name", queue_args.name, "Dead-letter queue")->required();
  qsources->callback([&] { run = [&] { return QueueDlqSources(global, queue_args); }; });

  CLI::App* redrive = queue->add_subcommand("redrive", "Move messages out of a dead-letter queue");
  redrive->require_subcommand(1);
  CLI::App* rstart =
      redrive->add_subcommand("start", "Start moving a dead-letter queue's messages");
  rstart->add_option("source", queue_args.name, "Dead-letter queue")->required();
  rstart->add_option("--to", queue_args.to,
                     "Move them here (default: back to the queues they came from)");
  rstart->add_option("--rate", queue_args.rate, "Messages per second, 1-10000 (default 500)");
  rstart->callback([&] { run = [&] { return RedriveStart(global, queue_args); }; });
  CLI::App* rlist = redrive->add_subcommand("list", "Show a dead-letter queue's redrive tasks");
  rlist->add_option("source", queue_args.name, "Dead-letter queue")->required();
  rlist->callback([&] { run = [&] { return RedriveList(global, queue_args); }; });
  CLI::App* rcancel = redrive->add_subcommand("cancel", "Stop a running redrive task");
  rcancel->add_option("task_id", queue_args.task_id, "Task id (from start or list)")->required();
  rcancel->callback([&] { run = [&] { return RedriveCancel(global, queue_args); }; });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  try {
    return run();
  } catch (const UsageError& e) {
    std::cerr << "spool: " << e.message << "\n";
    return kExitUsage;
  }
}
