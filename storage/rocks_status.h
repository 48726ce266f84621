#pragma once

// Private to storage/: conversions between RocksDB types and ours. Never include it from a
// header outside this folder.

#include <string>
#include <string_view>

#include <rocksdb/slice.h>
#include <rocksdb/status.h>

#include "common/error.h"

namespace spool::storage {

inline rocksdb::Slice ToSlice(std::string_view s) {
  return {s.data(), s.size()};
}
inline std::string_view ToStringView(const rocksdb::Slice& s) {
  return {s.data(), s.size()};
}

inline Status FromRocks(const rocksdb::Status& s, std::string_view context = {}) {
  if (s.ok()) return Ok();
  std::string message = context.empty() ? s.ToString() : std::string(context) + ": " + s.ToString();
  if (s.IsCorruption()) return DataLoss(std::move(message));
  if (s.IsNotFound()) return NotFound(std::move(message));
  if (s.IsInvalidArgument()) return InvalidArgument(std::move(message));
  if (s.IsBusy() || s.IsTimedOut() || s.IsTryAgain() || s.IsIncomplete() ||
      s.IsShutdownInProgress()) {
    return Unavailable(std::move(message));
  }
  if (s.IsNoSpace()) return ResourceExhausted(std::move(message));
  return Internal(std::move(message));
}

}  // namespace spool::storage
