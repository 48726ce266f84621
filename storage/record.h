#pragma once

// A record as stored in the `log` column family, and its binary encoding.
//
// Encoding, version 1 (all varints LEB128, see common/coding.h):
//   u8      version = 1
//   u8      flags: bit0 key present, bit1 message group id, bit2 dedup id, bit3 deliver-after,
//           bit4 sequence number
//   varsint producer timestamp (ms since epoch; 0 if the producer gave none)
//   varsint append timestamp (ms since epoch, set by the broker)
//   [bytes  key]                    if bit0; bytes = varint length + raw bytes
//   bytes   value
//   varint  header count, then per header: bytes name, bytes value
//   [bytes  message group id]       if bit1
//   [bytes  dedup id]               if bit2
//   [varsint deliver-after (ms)]    if bit3
//   [varint  sequence number]       if bit4
//   u32     CRC32C (Castagnoli) of every byte above, big-endian
// A decoder rejects unknown versions, unknown flag bits, truncation, trailing bytes and a
// checksum mismatch with a DataLoss error: never a crash, never a silently wrong record.
//
// Thread-safety: plain values and pure functions.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.h"

namespace spool::storage {

struct Record {
  std::optional<std::string> key;
  std::string value;
  std::vector<std::pair<std::string, std::string>> headers;
  std::int64_t producer_timestamp_ms = 0;
  std::int64_t append_timestamp_ms = 0;
  // Queue fields, carried by the record so that a queue needs no second copy of the data.
  std::optional<std::string> message_group_id;
  std::optional<std::string> dedup_id;
  std::optional<std::int64_t> deliver_after_ms;
  // Set by the broker on every record with a message group id: increases with each such
  // record appended to the topic, across its partitions (a FIFO queue's sequence number).
  std::optional<std::uint64_t> sequence;

  bool operator==(const Record&) const = default;
};

inline constexpr std::uint8_t kRecordFormatVersion = 1;

// Appends the encoding of `record` to `out`.
void EncodeRecord(const Record& record, std::string& out);
std::string EncodeRecord(const Record& record);

// The number of bytes EncodeRecord would produce; used for size limits before encoding.
std::size_t EncodedRecordSize(const Record& record);

// A message's size as limits count it: key, value, and header names and values, without the
// encoding's framing. A header type (`spool.type.<name>`) counts its value, as SQS counts an
// attribute's type; the headers a dead-letter move adds (`spool.dlq.`) and the trace header
// (bounded on its own) do not count, so a move never pushes a message over its limit.
std::size_t MessageBytes(const Record& record);

Result<Record> DecodeRecord(std::string_view bytes);

// Reads only the append timestamp, after checking the checksum. Used by time-index scans.
Result<std::int64_t> DecodeAppendTimestamp(std::string_view bytes);

// CRC32C (Castagnoli); uses the SSE4.2 instruction where the CPU has it.
std::uint32_t Crc32c(std::string_view bytes);
// The table-driven implementation, so tests can check the fast path against it.
std::uint32_t Crc32cPortableForTest(std::string_view bytes);

}  // namespace spool::storage
