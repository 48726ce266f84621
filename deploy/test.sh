#!/usr/bin/env bash
# Installs what is missing, builds (Release) and runs the whole test suite with ctest, then
# runs the concurrency tests again under ThreadSanitizer.
# Extra arguments go to the Release ctest run, e.g. `./deploy/test.sh -L unit`.
set -euo pipefail
cd "$(dirname "$0")/.."

./deploy/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release
ctest --preset release --timeout 600 "$@"

# The strand-per-partition design and the client's threads are only as good as their
# synchronization: build those tests with ThreadSanitizer and run them, failing on any report.
cmake --preset tsan >/dev/null
cmake --build --preset tsan --target store_test broker_test broker_queue_test producer_test group_coordinator_test \
  consumer_test receive_stream_test
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/tests/tsan.supp" \
  ctest --preset tsan --timeout 600 -R '^(StoreTest|BrokerTest|BrokerQueueTest|ProducerTest|GroupCoordinatorTest|ConsumerTest|ReceiveStreamTest)\.'
