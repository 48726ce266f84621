#include "common/clock.h"

namespace spool {

SystemClock& SystemClock::Instance() {
  static SystemClock clock;
  return clock;
}

}  // namespace spool
