#include "common/logging.h"

#include <spdlog/pattern_formatter.h>

namespace spool {

spdlog::logger& ModuleLogger(const std::string& module) {
  if (auto existing = spdlog::get(module)) return *existing;
  auto logger = spdlog::default_logger()->clone(module);
  // register_logger throws if another thread registered the same name first.
  try {
    spdlog::register_logger(logger);
  } catch (const spdlog::spdlog_ex&) {
    return *spdlog::get(module);
  }
  return *logger;
}

bool SetLogLevel(const std::string& level) {
  const auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") return false;
  spdlog::set_level(parsed);
  return true;
}

}  // namespace spool
