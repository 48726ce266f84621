#pragma once

// Renders everything /metrics shows, in the Prometheus text format: per topic and
// partition the log bounds, size and publish/fetch counters; the store's group commit and
// RocksDB health; gRPC latency per method.
//
// Thread-safety: reads atomics and thread-safe stats only; call from any thread.

#include <string>

#include "broker/broker.h"
#include "protocol/grpc_services.h"
#include "storage/store.h"

namespace spool::protocol {

std::string RenderMetrics(const broker::Broker& broker, const storage::Store& store,
                          const CallCounter& calls);

}  // namespace spool::protocol
