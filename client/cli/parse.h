#pragma once

// Parsing of the CLI's human-friendly values. Each parser returns nullopt on bad input; the
// caller reports the error and exits with the usage code.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "spool/client.h"

namespace spool::cli {

// "500ms", "30s", "15m", "12h", "7d", "2w" or a bare number of milliseconds; "forever" or
// "-1" is -1 (keep forever).
std::optional<std::int64_t> ParseDurationMs(std::string_view text);

// A queue duration in whole seconds, the queue API's unit: a bare number is seconds ("30"),
// a number with a unit is read as ParseDurationMs reads it ("90s", "15m", "4d") and must come
// to whole seconds; "forever" or "-1" is -1.
std::optional<std::int64_t> ParseSeconds(std::string_view text);

// "512", "64KiB", "10GiB", "1MB" (decimal units are powers of 1000, binary of 1024);
// "unlimited" or "-1" is -1.
std::optional<std::int64_t> ParseBytes(std::string_view text);

// "2026-11-28T10:00:00Z", "2026-11-28T10:00:00.250Z", "2026-11-28T10:00:00+01:00" or
// "2026-11-28" (midnight UTC), as milliseconds since the epoch.
std::optional<std::int64_t> ParseTimestampMs(std::string_view text);

// --from: "earliest", "latest", an offset ("42"), a time (as ParseTimestampMs) or a time
// relative to `now_ms` ("-15m": fifteen minutes ago).
std::optional<StartPosition> ParseStartPosition(std::string_view text, std::int64_t now_ms);

}  // namespace spool::cli
