#pragma once

// A clock that moves only when a test says so. Starts at a fixed, realistic wall time.
// Thread-safe: tests advance it while broker threads read it.

#include <atomic>
#include <chrono>

#include "common/clock.h"

namespace spool::testing {

class ManualClock final : public Clock {
 public:
  // 2026-01-01T00:00:00Z
  static constexpr std::int64_t kStartMillis = 1'767'225'600'000;

  SteadyTime Now() const override { return SteadyTime(std::chrono::milliseconds(millis_.load())); }
  WallTime WallNow() const override { return WallTime(std::chrono::milliseconds(millis_.load())); }

  void Advance(std::chrono::milliseconds by) { millis_ += by.count(); }
  // Moves wall time backwards too, to test code that must tolerate a clock step.
  void Set(std::int64_t unix_millis) { millis_ = unix_millis; }

 private:
  std::atomic<std::int64_t> millis_{kStartMillis};
};

}  // namespace spool::testing
