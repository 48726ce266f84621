#pragma once

// Byte codecs shared by every stored format.
// - Fixed-width integers are big-endian, so that the byte order of an encoded key equals the
//   numeric order of its fields (RocksDB compares keys bytewise).
// - Varints are LEB128 (7 bits a byte, low bits first), as in protobuf.
// Decoders read from a string_view cursor and return false on truncated or malformed input;
// they never read past the end.
//
// Thread-safety: free functions on caller-owned data.

#include <cstdint>
#include <string>
#include <string_view>

namespace spool {

inline void PutFixed32BE(std::string& out, std::uint32_t v) {
  const char bytes[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                         static_cast<char>(v >> 8), static_cast<char>(v)};
  out.append(bytes, 4);
}

inline void PutFixed64BE(std::string& out, std::uint64_t v) {
  PutFixed32BE(out, static_cast<std::uint32_t>(v >> 32));
  PutFixed32BE(out, static_cast<std::uint32_t>(v));
}

inline std::uint32_t DecodeFixed32BE(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (static_cast<std::uint32_t>(u[0]) << 24) | (static_cast<std::uint32_t>(u[1]) << 16) |
         (static_cast<std::uint32_t>(u[2]) << 8) | static_cast<std::uint32_t>(u[3]);
}

inline std::uint64_t DecodeFixed64BE(const char* p) {
  return (static_cast<std::uint64_t>(DecodeFixed32BE(p)) << 32) | DecodeFixed32BE(p + 4);
}

inline bool GetFixed32BE(std::string_view& in, std::uint32_t* v) {
  if (in.size() < 4) return false;
  *v = DecodeFixed32BE(in.data());
  in.remove_prefix(4);
  return true;
}

inline bool GetFixed64BE(std::string_view& in, std::uint64_t* v) {
  if (in.size() < 8) return false;
  *v = DecodeFixed64BE(in.data());
  in.remove_prefix(8);
  return true;
}

inline void PutVarint64(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

inline bool GetVarint64(std::string_view& in, std::uint64_t* v) {
  std::uint64_t result = 0;
  for (int shift = 0; shift <= 63 && !in.empty(); shift += 7) {
    const auto byte = static_cast<unsigned char>(in.front());
    in.remove_prefix(1);
    if (shift == 63 && byte > 1) return false;  // would overflow 64 bits
    result |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *v = result;
      return true;
    }
  }
  return false;
}

// Signed values (timestamps may be negative in principle) are zigzag-encoded.
inline void PutVarsint64(std::string& out, std::int64_t v) {
  PutVarint64(out, (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63));
}

inline bool GetVarsint64(std::string_view& in, std::int64_t* v) {
  std::uint64_t u = 0;
  if (!GetVarint64(in, &u)) return false;
  *v = static_cast<std::int64_t>((u >> 1) ^ (~(u & 1) + 1));
  return true;
}

inline void PutLengthPrefixed(std::string& out, std::string_view bytes) {
  PutVarint64(out, bytes.size());
  out.append(bytes);
}

inline bool GetLengthPrefixed(std::string_view& in, std::string_view* bytes) {
  std::uint64_t len = 0;
  if (!GetVarint64(in, &len) || len > in.size()) return false;
  *bytes = in.substr(0, len);
  in.remove_prefix(len);
  return true;
}

}  // namespace spool
