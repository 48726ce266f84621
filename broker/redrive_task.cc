#include "broker/redrive_task.h"

#include "common/coding.h"

namespace spool::broker {
namespace {

constexpr std::uint8_t kRedriveFormatVersion = 1;
constexpr std::uint64_t kMaxPartitions = 1024;

}  // namespace

std::string_view RedriveStatusName(RedriveStatus status) {
  switch (status) {
    case RedriveStatus::kRunning:
      return "RUNNING";
    case RedriveStatus::kCompleted:
      return "COMPLETED";
    case RedriveStatus::kCancelling:
      return "CANCELLING";
    case RedriveStatus::kCancelled:
      return "CANCELLED";
    case RedriveStatus::kFailed:
      return "FAILED";
  }
  return "UNKNOWN";
}

std::string EncodeRedriveTask(const RedriveTask& t) {
  std::string out;
  out.push_back(static_cast<char>(kRedriveFormatVersion));
  PutFixed64BE(out, t.id);
  out.push_back(static_cast<char>(t.status));
  PutLengthPrefixed(out, t.source);
  PutFixed32BE(out, t.source_subscription);
  PutLengthPrefixed(out, t.destination);
  PutVarint64(out, t.max_per_second);
  PutVarint64(out, t.moved);
  PutVarint64(out, t.to_move);
  PutLengthPrefixed(out, t.failure);
  PutVarsint64(out, t.started_ms);
  PutVarsint64(out, t.finished_ms);
  PutVarint64(out, t.ends.size());
  for (std::uint64_t end : t.ends)
    PutVarint64(out, end);
  return out;
}

Result<RedriveTask> DecodeRedriveTask(std::string_view in) {
  auto corrupt = [] { return DataLoss("stored redrive task is corrupt"); };
  if (in.empty() || static_cast<std::uint8_t>(in[0]) != kRedriveFormatVersion) {
    return DataLoss("stored redrive task has an unknown format version");
  }
  in.remove_prefix(1);
  RedriveTask t;
  if (!GetFixed64BE(in, &t.id) || in.empty()) return corrupt();
  const auto status = static_cast<std::uint8_t>(in[0]);
  if (status < static_cast<std::uint8_t>(RedriveStatus::kRunning) ||
      status > static_cast<std::uint8_t>(RedriveStatus::kFailed)) {
    return corrupt();
  }
  t.status = static_cast<RedriveStatus>(status);
  in.remove_prefix(1);
  std::string_view source, destination, failure;
  std::uint64_t rate = 0, partitions = 0;
  if (!GetLengthPrefixed(in, &source) || !GetFixed32BE(in, &t.source_subscription) ||
      !GetLengthPrefixed(in, &destination) || !GetVarint64(in, &rate) ||
      !GetVarint64(in, &t.moved) || !GetVarint64(in, &t.to_move) ||
      !GetLengthPrefixed(in, &failure) || !GetVarsint64(in, &t.started_ms) ||
      !GetVarsint64(in, &t.finished_ms) || !GetVarint64(in, &partitions) ||
      rate < kMinRedriveRate || rate > kMaxRedriveRate || partitions > kMaxPartitions) {
    return corrupt();
  }
  t.source = source;
  t.destination = destination;
  t.failure = failure;
  t.max_per_second = static_cast<std::uint32_t>(rate);
  t.ends.resize(partitions);
  for (std::uint64_t& end : t.ends) {
    if (!GetVarint64(in, &end)) return corrupt();
  }
  if (!in.empty()) return corrupt();
  return t;
}

}  // namespace spool::broker
