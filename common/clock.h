#pragma once

// Time is injected so that retention, visibility timeouts, delays and sessions are tested
// with a manual clock instead of sleeps. Intervals use the steady clock; wall time is only
// for timestamps that are stored or shown (append timestamps, retention cut-offs).
//
// Thread-safety: implementations must be safe to call from any thread.

#include <chrono>
#include <cstdint>

namespace spool {

class Clock {
 public:
  using SteadyTime = std::chrono::steady_clock::time_point;
  using WallTime = std::chrono::system_clock::time_point;

  Clock() = default;
  Clock(const Clock&) = delete;
  Clock& operator=(const Clock&) = delete;
  virtual ~Clock() = default;

  virtual SteadyTime Now() const = 0;
  virtual WallTime WallNow() const = 0;

  // Milliseconds since the Unix epoch, the unit of every stored timestamp.
  std::int64_t WallMillis() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(WallNow().time_since_epoch())
        .count();
  }
};

class SystemClock final : public Clock {
 public:
  SteadyTime Now() const override { return std::chrono::steady_clock::now(); }
  WallTime WallNow() const override { return std::chrono::system_clock::now(); }

  // The process-wide real clock.
  static SystemClock& Instance();
};

}  // namespace spool
