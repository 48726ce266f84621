#pragma once

// Choosing a partition for a record. Keyed records use the Java Kafka client's default
// partitioner, so that a key lands on the same partition number here as it would there:
//   partition = (murmur2(key) & 0x7fffffff) % partitions
// with Kafka's murmur2 variant (seed 0x9747b28c). Golden values pin it in the tests.
//
// Thread-safety: pure functions.

#include <cstdint>
#include <string_view>

namespace spool::broker {

// org.apache.kafka.common.utils.Utils.murmur2, returning the same 32 bits.
std::int32_t Murmur2(std::string_view data);

std::uint32_t PartitionForKey(std::string_view key, std::uint32_t partitions);

}  // namespace spool::broker
