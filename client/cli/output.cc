#include "client/cli/output.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <ctime>

#include <google/protobuf/util/json_util.h>

namespace spool::cli {

std::string FormatTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths(header.size());
  for (std::size_t c = 0; c < header.size(); ++c)
    widths[c] = header[c].size();
  for (const auto& row : rows) {
    for (std::size_t c = 0; c < row.size() && c < widths.size(); ++c)
      widths[c] = std::max(widths[c], row[c].size());
  }
  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string text;
    for (std::size_t c = 0; c < cells.size() && c < widths.size(); ++c) {
      text += cells[c];
      if (c + 1 < cells.size()) text.append(widths[c] - cells[c].size() + 2, ' ');
    }
    out += text;
    out += '\n';
  };
  line(header);
  for (const auto& row : rows)
    line(row);
  return out;
}

std::string FormatTimestampMs(std::int64_t ms) {
  const std::time_t seconds = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  const int millis = static_cast<int>(ms - static_cast<std::int64_t>(seconds) * 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
  return buffer;
}

std::string FormatDurationMs(std::int64_t ms) {
  if (ms < 0) return "forever";
  static constexpr std::pair<std::int64_t, const char*> kUnits[] = {
      {86'400'000LL, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1000, "s"}};
  for (const auto& [factor, unit] : kUnits) {
    if (ms >= factor && ms % factor == 0) return std::to_string(ms / factor) + unit;
  }
  return std::to_string(ms) + "ms";
}

std::string FormatBytes(std::int64_t bytes) {
  if (bytes < 0) return "unlimited";
  static constexpr std::pair<std::int64_t, const char*> kUnits[] = {
      {1LL << 40, "TiB"}, {1LL << 30, "GiB"}, {1LL << 20, "MiB"}, {1LL << 10, "KiB"}};
  for (const auto& [factor, unit] : kUnits) {
    if (bytes >= factor) {
      if (bytes % factor == 0) return std::to_string(bytes / factor) + unit;
      char buffer[32];
      std::snprintf(buffer, sizeof buffer, "%.1f%s",
                    static_cast<double>(bytes) / static_cast<double>(factor), unit);
      return buffer;
    }
  }
  return std::to_string(bytes) + "B";
}

std::string_view StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::DO_NOT_USE:
      break;
  }
  return "UNKNOWN";
}

bool IsValidUtf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    std::size_t extra = 0;
    std::uint32_t code = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      code = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      code = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      code = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= text.size()) return false;  // truncated sequence
    for (std::size_t k = 1; k <= extra; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      code = (code << 6) | (next & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    static constexpr std::uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (code < kMin[extra] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

std::string Base64(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const std::uint32_t n = (static_cast<unsigned char>(bytes[i]) << 16) |
                            (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                            static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  if (i + 1 == bytes.size()) {
    const std::uint32_t n = static_cast<unsigned char>(bytes[i]) << 16;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    const std::uint32_t n = (static_cast<unsigned char>(bytes[i]) << 16) |
                            (static_cast<unsigned char>(bytes[i + 1]) << 8);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

namespace {

std::string OptionalMs(bool has, std::int64_t ms) {
  return has ? FormatDurationMs(ms) : "-";
}
std::string OptionalBytes(bool has, std::int64_t bytes) {
  return has ? FormatBytes(bytes) : "-";
}

// A key or value as a JSON member: "name" when it is text, else "name_base64".
void PutBytes(nlohmann::json& out, const std::string& name, const std::string& bytes) {
  if (IsValidUtf8(bytes)) {
    out[name] = bytes;
  } else {
    out[name + "_base64"] = Base64(bytes);
  }
}

// Text as it is, other bytes as "base64:...", so that a line stays one line of text.
std::string Printable(const std::string& bytes) {
  return IsValidUtf8(bytes) ? bytes : "base64:" + Base64(bytes);
}

std::string RedrivePermissionText(const v1::RedriveAllowPolicy& policy) {
  switch (policy.permission()) {
    case v1::REDRIVE_PERMISSION_DENY_ALL:
      return "no queue";
    case v1::REDRIVE_PERMISSION_BY_QUEUE: {
      std::string queues;
      for (const auto& q : policy.source_queues())
        queues += (queues.empty() ? "" : ", ") + q;
      return queues;
    }
    default:
      return "any queue";
  }
}

}  // namespace

nlohmann::json TopicConfigJson(const v1::TopicConfig& config) {
  nlohmann::json out = {{"name", config.name()}};
  if (config.has_partitions()) out["partitions"] = config.partitions();
  if (config.has_retention_ms()) out["retention_ms"] = config.retention_ms();
  if (config.has_retention_bytes()) out["retention_bytes"] = config.retention_bytes();
  if (config.has_max_message_bytes()) out["max_message_bytes"] = config.max_message_bytes();
  return out;
}

nlohmann::json TopicJson(const v1::Topic& topic) {
  nlohmann::json out = TopicConfigJson(topic.config());
  out["created"] = FormatTimestampMs(topic.created_ms());
  out["size_bytes"] = topic.size_bytes();
  out["partition_info"] = nlohmann::json::array();
  for (const auto& p : topic.partitions()) {
    out["partition_info"].push_back({{"partition", p.partition()},
                                     {"start_offset", p.start_offset()},
                                     {"end_offset", p.end_offset()},
                                     {"size_bytes", p.size_bytes()}});
  }
  out["queues"] = nlohmann::json::array();
  for (const auto& queue : topic.queues())
    out["queues"].push_back(queue);
  if (!topic.owner_queue().empty()) out["owner_queue"] = topic.owner_queue();
  return out;
}

std::string FormatTopic(const v1::Topic& topic) {
  const v1::TopicConfig& c = topic.config();
  std::string out;
  out += "Topic:              " + c.name() + "\n";
  out += "Partitions:         " + std::to_string(c.partitions()) + "\n";
  out += "Retention:          " + OptionalMs(c.has_retention_ms(), c.retention_ms()) + "\n";
  out += "Retention bytes:    " + OptionalBytes(c.has_retention_bytes(), c.retention_bytes()) +
         " per partition\n";
  out += "Max message bytes:  " + OptionalBytes(c.has_max_message_bytes(), c.max_message_bytes()) +
         "\n";
  out += "Created:            " + FormatTimestampMs(topic.created_ms()) + "\n";
  out += "Size:               " + FormatBytes(static_cast<std::int64_t>(topic.size_bytes())) + "\n";
  if (!topic.owner_queue().empty()) out += "Owner queue:        " + topic.owner_queue() + "\n";
  if (topic.queues_size() > 0) {
    std::string queues;
    for (const auto& q : topic.queues())
      queues += (queues.empty() ? "" : ", ") + q;
    out += "Queues:             " + queues + "\n";
  }
  out += "\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& p : topic.partitions()) {
    rows.push_back({std::to_string(p.partition()), std::to_string(p.start_offset()),
                    std::to_string(p.end_offset()),
                    std::to_string(p.end_offset() - p.start_offset()),
                    FormatBytes(static_cast<std::int64_t>(p.size_bytes()))});
  }
  out += FormatTable({"PARTITION", "START", "END", "RECORDS", "SIZE"}, rows);
  return out;
}

std::string FormatRecordLine(const v1::Record& record) {
  auto printable = [](const std::string& bytes) {
    return IsValidUtf8(bytes) ? bytes : "base64:" + Base64(bytes);
  };
  std::string out = std::to_string(record.partition()) + "/" + std::to_string(record.offset());
  out += "\t" + FormatTimestampMs(record.append_timestamp_ms());
  out += "\t" + (record.has_key() ? printable(record.key()) : std::string("-"));
  out += "\t" + printable(record.value());
  return out;
}

nlohmann::json RecordJson(std::string_view topic, const v1::Record& record) {
  nlohmann::json out = {{"topic", topic},
                        {"partition", record.partition()},
                        {"offset", record.offset()},
                        {"append_timestamp_ms", record.append_timestamp_ms()}};
  if (record.producer_timestamp_ms() != 0)
    out["producer_timestamp_ms"] = record.producer_timestamp_ms();
  if (record.has_key()) PutBytes(out, "key", record.key());
  PutBytes(out, "value", record.value());
  if (record.headers_size() > 0) {
    nlohmann::json headers = nlohmann::json::array();
    for (const auto& h : record.headers()) {
      nlohmann::json header = {{"key", h.key()}};
      PutBytes(header, "value", h.value());
      headers.push_back(std::move(header));
    }
    out["headers"] = std::move(headers);
  }
  return out;
}

nlohmann::json ProtoJson(const google::protobuf::Message& message) {
  std::string text;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(message, &text, options);
  return nlohmann::json::parse(text);
}

std::string FormatQueue(const v1::Queue& queue) {
  const v1::QueueAttributes& a = queue.attributes();
  auto seconds = [](std::int64_t s) {
    return s == 0 ? "0s" : FormatDurationMs(s < 0 ? -1 : s * 1000);
  };
  std::string type = a.fifo() ? "FIFO" : "standard";
  if (a.content_based_deduplication()) type += ", content-based deduplication";
  std::string out;
  out += "Queue:              " + queue.name() + "\n";
  out += "Type:               " + type + "\n";
  out += "Topic:              " + queue.topic() +
         (queue.owns_topic() ? " (its own)" : " (shared subscription)") + "\n";
  out += "Partitions:         " + std::to_string(a.partitions()) + "\n";
  out += "Visibility timeout: " + seconds(a.visibility_timeout_seconds()) + "\n";
  out += "Delivery delay:     " + seconds(a.delivery_delay_seconds()) + "\n";
  out += "Receive wait:       " + seconds(a.receive_wait_seconds()) + "\n";
  out += "Retention:          " + seconds(a.retention_seconds()) + "\n";
  out += "Max message bytes:  " + FormatBytes(a.max_message_bytes()) + "\n";
  out += "Max in flight:      " + std::to_string(a.max_in_flight()) + "\n";
  if (a.has_redrive_policy()) {
    out += "Dead-letter queue:  " + a.redrive_policy().dead_letter_queue() + " after " +
           std::to_string(a.redrive_policy().max_receive_count()) + " receives\n";
  } else {
    out += "Dead-letter queue:  -\n";
  }
  out += "Dead letters from:  " + RedrivePermissionText(a.redrive_allow_policy()) + "\n";
  out += "Created:            " + FormatTimestampMs(queue.created_timestamp_ms()) + "\n";
  out += "Modified:           " + FormatTimestampMs(queue.last_modified_timestamp_ms()) + "\n";
  out += "Messages:           " + std::to_string(queue.stats().approximate_visible()) +
         " visible, " + std::to_string(queue.stats().approximate_in_flight()) + " in flight, " +
         std::to_string(queue.stats().approximate_delayed()) + " delayed (approximate)\n";
  return out;
}

std::string FormatQueueMessageLine(const v1::QueueMessage& message) {
  return message.message_id() + "\t" + std::to_string(message.receive_count()) + "\t" +
         message.receipt_handle() + "\t" + Printable(message.body());
}

nlohmann::json QueueMessageJson(const v1::QueueMessage& message) {
  nlohmann::json out = ProtoJson(message);
  out.erase("body");
  PutBytes(out, "body", message.body());
  if (message.has_key()) {
    out.erase("key");
    PutBytes(out, "key", message.key());
  }
  nlohmann::json headers = nlohmann::json::array();
  for (const auto& h : message.headers()) {
    nlohmann::json header = {{"key", h.key()}};
    PutBytes(header, "value", h.value());
    headers.push_back(std::move(header));
  }
  out["headers"] = std::move(headers);
  return out;
}

}  // namespace spool::cli
