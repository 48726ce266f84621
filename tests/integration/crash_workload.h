#pragma once

// The records the crash test writes, derived from a sequence number alone so that the
// checker can rebuild every acknowledged record byte for byte.

#include <cstdint>
#include <optional>
#include <string>

namespace spool::testing {

inline std::string CrashValue(std::uint64_t seq) {
  std::string value = "seq=" + std::to_string(seq) + "|";
  std::uint64_t x = seq * 6364136223846793005ull + 1442695040888963407ull;
  const std::size_t length = 40 + seq % 300;
  while (value.size() < length) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    value.push_back(static_cast<char>(x >> 56));
  }
  return value;
}

inline std::optional<std::string> CrashKey(std::uint64_t seq) {
  if (seq % 2 == 0) return std::nullopt;
  return "key-" + std::to_string(seq % 13);
}

inline constexpr const char* kCrashTopic = "crash";
inline constexpr std::uint32_t kCrashPartitions = 3;

}  // namespace spool::testing
