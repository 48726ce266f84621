#include "broker/topic.h"

#include <fmt/format.h>

#include "common/coding.h"

namespace spool::broker {
namespace {

constexpr std::uint8_t kTopicFormatVersion = 1;

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

}  // namespace

Status ValidateTopicName(std::string_view name) {
  if (name.empty()) return InvalidArgument("topic name is empty");
  if (name.size() > kMaxTopicNameLength) {
    return InvalidArgument("topic name is " + std::to_string(name.size()) +
                           " characters long; the limit is " + std::to_string(kMaxTopicNameLength));
  }
  if (name == "." || name == "..") {
    return InvalidArgument("topic name cannot be \"" + std::string(name) + "\"");
  }
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (!IsNameChar(name[i])) {
      const auto byte = static_cast<unsigned char>(name[i]);
      std::string shown = (byte >= 0x20 && byte < 0x7f) ? "'" + std::string(1, name[i]) + "'"
                                                        : fmt::format("byte 0x{:02x}", byte);
      return InvalidArgument("topic name has " + shown + " at position " + std::to_string(i) +
                             "; allowed are letters, digits, '.', '_' and '-'");
    }
  }
  return Ok();
}

Status ValidateTopicConfig(const TopicConfig& config) {
  if (Status s = ValidateTopicName(config.name); !s) return s;
  if (config.partitions < 1 || config.partitions > kMaxPartitions) {
    return InvalidArgument("partition count " + std::to_string(config.partitions) +
                           " is out of range 1-" + std::to_string(kMaxPartitions));
  }
  if (config.retention_ms != -1 && config.retention_ms < 1) {
    return InvalidArgument("retention_ms " + std::to_string(config.retention_ms) +
                           " must be positive, or -1 to keep records forever");
  }
  if (config.retention_bytes != -1 && config.retention_bytes < 1) {
    return InvalidArgument("retention_bytes " + std::to_string(config.retention_bytes) +
                           " must be positive, or -1 for no size limit");
  }
  if (config.max_message_bytes < 1 || config.max_message_bytes > kMaxMaxMessageBytes) {
    return InvalidArgument("max_message_bytes " + std::to_string(config.max_message_bytes) +
                           " is out of range 1-" + std::to_string(kMaxMaxMessageBytes));
  }
  return Ok();
}

std::string EncodeTopicMetadata(const TopicMetadata& topic) {
  std::string out;
  out.push_back(static_cast<char>(kTopicFormatVersion));
  PutFixed32BE(out, topic.id);
  PutLengthPrefixed(out, topic.config.name);
  PutVarint64(out, topic.config.partitions);
  PutVarsint64(out, topic.config.retention_ms);
  PutVarsint64(out, topic.config.retention_bytes);
  PutVarsint64(out, topic.config.max_message_bytes);
  PutVarsint64(out, topic.created_ms);
  return out;
}

Result<TopicMetadata> DecodeTopicMetadata(std::string_view in) {
  if (in.empty() || static_cast<std::uint8_t>(in[0]) != kTopicFormatVersion) {
    return DataLoss("topic metadata has an unknown format version");
  }
  in.remove_prefix(1);
  TopicMetadata topic;
  std::string_view name;
  std::uint64_t partitions = 0;
  if (!GetFixed32BE(in, &topic.id) || !GetLengthPrefixed(in, &name) ||
      !GetVarint64(in, &partitions) || !GetVarsint64(in, &topic.config.retention_ms) ||
      !GetVarsint64(in, &topic.config.retention_bytes) ||
      !GetVarsint64(in, &topic.config.max_message_bytes) || !GetVarsint64(in, &topic.created_ms) ||
      !in.empty() || partitions > kMaxPartitions) {
    return DataLoss("topic metadata is corrupt");
  }
  topic.config.name.assign(name);
  topic.config.partitions = static_cast<std::uint32_t>(partitions);
  return topic;
}

}  // namespace spool::broker
