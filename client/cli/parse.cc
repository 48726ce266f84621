#include "client/cli/parse.h"

#include <charconv>
#include <ctime>
#include <utility>

namespace spool::cli {
namespace {

// A non-negative integer prefix of `text`, leaving the rest (the unit) in `text`.
std::optional<std::int64_t> TakeNumber(std::string_view& text) {
  std::int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end == text.data() || value < 0) return std::nullopt;
  text.remove_prefix(static_cast<std::size_t>(end - text.data()));
  return value;
}

std::optional<std::int64_t> Scale(std::int64_t value, std::int64_t factor) {
  std::int64_t out = 0;
  if (__builtin_mul_overflow(value, factor, &out)) return std::nullopt;
  return out;
}

// Exactly `digits` decimal digits at text[pos].
std::optional<int> Digits(std::string_view text, std::size_t pos, std::size_t digits) {
  if (pos + digits > text.size()) return std::nullopt;
  int value = 0;
  for (std::size_t i = pos; i < pos + digits; ++i) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    value = value * 10 + (text[i] - '0');
  }
  return value;
}

}  // namespace

std::optional<std::int64_t> ParseDurationMs(std::string_view text) {
  if (text == "forever" || text == "-1") return -1;
  auto value = TakeNumber(text);
  if (!value) return std::nullopt;
  static constexpr std::pair<std::string_view, std::int64_t> kUnits[] = {
      {"", 1},          {"ms", 1},           {"s", 1000},          {"m", 60'000},
      {"h", 3'600'000}, {"d", 86'400'000LL}, {"w", 604'800'000LL},
  };
  for (const auto& [unit, factor] : kUnits) {
    if (text == unit) return Scale(*value, factor);
  }
  return std::nullopt;
}

std::optional<std::int64_t> ParseSeconds(std::string_view text) {
  std::string_view rest = text;
  if (auto seconds = TakeNumber(rest); seconds && rest.empty()) return seconds;
  const auto ms = ParseDurationMs(text);
  if (!ms) return std::nullopt;
  if (*ms == -1) return -1;
  if (*ms % 1000 != 0) return std::nullopt;
  return *ms / 1000;
}

std::optional<std::int64_t> ParseBytes(std::string_view text) {
  if (text == "unlimited" || text == "-1") return -1;
  auto value = TakeNumber(text);
  if (!value) return std::nullopt;
  static constexpr std::pair<std::string_view, std::int64_t> kUnits[] = {
      {"", 1},
      {"B", 1},
      {"KB", 1000},
      {"MB", 1000'000},
      {"GB", 1000'000'000},
      {"TB", 1000'000'000'000LL},
      {"KiB", 1LL << 10},
      {"MiB", 1LL << 20},
      {"GiB", 1LL << 30},
      {"TiB", 1LL << 40},
  };
  for (const auto& [unit, factor] : kUnits) {
    if (text == unit) return Scale(*value, factor);
  }
  return std::nullopt;
}

std::optional<std::int64_t> ParseTimestampMs(std::string_view text) {
  // YYYY-MM-DD
  const auto year = Digits(text, 0, 4), month = Digits(text, 5, 2), day = Digits(text, 8, 2);
  if (!year || !month || !day || text[4] != '-' || text[7] != '-') return std::nullopt;
  if (*month < 1 || *month > 12 || *day < 1 || *day > 31) return std::nullopt;
  std::tm tm{};
  tm.tm_year = *year - 1900;
  tm.tm_mon = *month - 1;
  tm.tm_mday = *day;
  std::int64_t millis = 0;
  std::int64_t offset_s = 0;
  if (text.size() > 10) {
    // THH:MM:SS[.fff](Z|+HH:MM|-HH:MM)
    const auto hour = Digits(text, 11, 2), minute = Digits(text, 14, 2),
               second = Digits(text, 17, 2);
    if ((text[10] != 'T' && text[10] != ' ') || !hour || !minute || !second || text[13] != ':' ||
        text[16] != ':' || *hour > 23 || *minute > 59 || *second > 60) {
      return std::nullopt;
    }
    tm.tm_hour = *hour;
    tm.tm_min = *minute;
    tm.tm_sec = *second;
    std::size_t pos = 19;
    if (pos < text.size() && text[pos] == '.') {
      ++pos;
      std::int64_t scale = 100;
      const std::size_t first = pos;
      while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
        millis += (text[pos] - '0') * scale;
        scale /= 10;
        ++pos;
      }
      if (pos == first) return std::nullopt;
    }
    const std::string_view zone = text.substr(pos);
    if (zone == "Z") {
      offset_s = 0;
    } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
      const auto zh = Digits(zone, 1, 2), zm = Digits(zone, 4, 2);
      if (!zh || !zm || *zh > 23 || *zm > 59) return std::nullopt;
      offset_s = (*zh * 3600 + *zm * 60) * (zone[0] == '+' ? 1 : -1);
    } else {
      return std::nullopt;  // a time without a zone is ambiguous
    }
  }
  const std::time_t seconds = timegm(&tm);
  if (seconds == static_cast<std::time_t>(-1)) return std::nullopt;
  // timegm normalizes 31 February to March: refuse what did not survive the round trip.
  if (tm.tm_mday != *day || tm.tm_mon != *month - 1) return std::nullopt;
  return (static_cast<std::int64_t>(seconds) - offset_s) * 1000 + millis;
}

std::optional<StartPosition> ParseStartPosition(std::string_view text, std::int64_t now_ms) {
  if (text == "earliest") return StartPosition::Earliest();
  if (text == "latest") return StartPosition::Latest();
  if (!text.empty() && text[0] == '-') {
    const auto ago = ParseDurationMs(text.substr(1));
    if (!ago || *ago < 0) return std::nullopt;
    return StartPosition::AtTime(now_ms - *ago);
  }
  std::string_view rest = text;
  if (auto offset = TakeNumber(rest); offset && rest.empty()) {
    return StartPosition::AtOffset(static_cast<std::uint64_t>(*offset));
  }
  if (auto ms = ParseTimestampMs(text)) return StartPosition::AtTime(*ms);
  return std::nullopt;
}

}  // namespace spool::cli
