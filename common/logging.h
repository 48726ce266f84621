#pragma once

// One spdlog logger per module, so every line names where it came from:
//   [storage] [warning] write stalled for 12.3 ms
// Loggers are clones of the default logger made on first use; SetLogLevel() changes all.
//
// Thread-safety: spdlog loggers are thread-safe.

#include <memory>
#include <string>

#include <spdlog/spdlog.h>

namespace spool {

// Returns the named module logger, creating it on first use.
spdlog::logger& ModuleLogger(const std::string& module);

// Sets the level of the default logger and every module logger ("trace" ... "off").
// Returns false for an unknown level name.
bool SetLogLevel(const std::string& level);

}  // namespace spool
