#pragma once

// Renders everything /metrics shows, in the Prometheus text format: per topic and
// partition the log bounds, size and publish/fetch counters; the store's group commit and
// RocksDB health; consumer groups; per queue its message counts, the age of its oldest
// visible message, its dead-letter queue's depth and its activity counters; gRPC latency per
// method.
//
// Thread-safety: call from any thread but the broker's workers: the queue counts are
// gathered on the partitions' strands, and this waits for them (at most `queue_timeout`;
// queues that did not answer by then are left out).

#include <chrono>
#include <string>

#include "broker/broker.h"
#include "protocol/grpc_services.h"
#include "storage/store.h"

namespace spool::protocol {

std::string RenderMetrics(broker::Broker& broker, const storage::Store& store,
                          const CallCounter& calls,
                          std::chrono::milliseconds queue_timeout = std::chrono::seconds(2));

}  // namespace spool::protocol
