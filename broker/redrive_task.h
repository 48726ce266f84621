#pragma once

// A redrive task (SQS "message move task"): moves the messages of a dead-letter queue back
// to the queues they came from, or to one named queue, at a bounded rate. Its record here
// is what `meta` stores, so a task survives a restart: which messages it covers (the log
// end of each partition when it started), how far it got and how it ended.
//
// Thread-safety: plain values and pure functions.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace spool::broker {

inline constexpr std::uint32_t kMinRedriveRate = 1;
inline constexpr std::uint32_t kMaxRedriveRate = 10'000;
inline constexpr std::uint32_t kDefaultRedriveRate = 500;
// Finished tasks kept per source queue, for ListRedriveTasks.
inline constexpr std::size_t kRedriveTasksKept = 10;

enum class RedriveStatus : std::uint8_t {
  kRunning = 1,
  kCompleted = 2,
  kCancelling = 3,
  kCancelled = 4,
  kFailed = 5,
};

struct RedriveTask {
  std::uint64_t id = 0;
  RedriveStatus status = RedriveStatus::kRunning;
  std::string source;                     // the dead-letter queue
  std::uint32_t source_subscription = 0;  // tells a deleted-and-created-again source apart
  std::string destination;                // empty: each message's source queue
  std::uint32_t max_per_second = kDefaultRedriveRate;
  std::uint64_t moved = 0;
  std::uint64_t to_move = 0;  // approximate, counted at the start
  std::string failure;        // kFailed only
  std::int64_t started_ms = 0;
  std::int64_t finished_ms = 0;  // 0 while running
  // Per partition of the source's topic: the task covers offsets below these.
  std::vector<std::uint64_t> ends;

  bool active() const {
    return status == RedriveStatus::kRunning || status == RedriveStatus::kCancelling;
  }
  bool operator==(const RedriveTask&) const = default;
};

std::string_view RedriveStatusName(RedriveStatus status);

std::string EncodeRedriveTask(const RedriveTask& task);
Result<RedriveTask> DecodeRedriveTask(std::string_view bytes);

}  // namespace spool::broker
