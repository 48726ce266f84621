#include "broker/partitioner.h"

namespace spool::broker {

std::int32_t Murmur2(std::string_view data) {
  // Unsigned arithmetic gives Java's wrapping int semantics without undefined behaviour;
  // Java's >>> is a logical shift, which is what >> does on uint32_t.
  const std::uint32_t length = static_cast<std::uint32_t>(data.size());
  constexpr std::uint32_t kSeed = 0x9747b28c;
  constexpr std::uint32_t kM = 0x5bd1e995;
  constexpr int kR = 24;
  const auto* bytes = reinterpret_cast<const unsigned char*>(data.data());

  std::uint32_t h = kSeed ^ length;
  const std::uint32_t length4 = length / 4;
  for (std::uint32_t i = 0; i < length4; ++i) {
    const std::uint32_t i4 = i * 4;
    std::uint32_t k = static_cast<std::uint32_t>(bytes[i4]) |
                      (static_cast<std::uint32_t>(bytes[i4 + 1]) << 8) |
                      (static_cast<std::uint32_t>(bytes[i4 + 2]) << 16) |
                      (static_cast<std::uint32_t>(bytes[i4 + 3]) << 24);
    k *= kM;
    k ^= k >> kR;
    k *= kM;
    h *= kM;
    h ^= k;
  }
  // Java sign-extends each tail byte ((data[i] & 0xff) masks it back), so plain bytes match.
  const std::uint32_t tail = length & ~3u;
  switch (length % 4) {
    case 3:
      h ^= static_cast<std::uint32_t>(bytes[tail + 2]) << 16;
      [[fallthrough]];
    case 2:
      h ^= static_cast<std::uint32_t>(bytes[tail + 1]) << 8;
      [[fallthrough]];
    case 1:
      h ^= static_cast<std::uint32_t>(bytes[tail]);
      h *= kM;
  }
  h ^= h >> 13;
  h *= kM;
  h ^= h >> 15;
  return static_cast<std::int32_t>(h);
}

std::uint32_t PartitionForKey(std::string_view key, std::uint32_t partitions) {
  const auto positive = static_cast<std::uint32_t>(Murmur2(key)) & 0x7fffffffu;
  return positive % partitions;
}

}  // namespace spool::broker
