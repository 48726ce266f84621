#pragma once

#include "common/logging.h"

namespace spool::storage {

inline spdlog::logger& StoreLog() {
  static spdlog::logger& logger = ModuleLogger("storage");
  return logger;
}

}  // namespace spool::storage
