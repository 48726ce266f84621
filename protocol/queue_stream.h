#pragma once

// QueueService.StreamingReceive: a receive stream with flow control, like Pub/Sub's
// StreamingPull (contract in proto/spool/v1/queue.proto).
//
// The stream keeps one broker long poll (ReceiveMessages, up to 20 s) open while its window
// has room, and pushes what it returns. A delivered message stays outstanding until it is
// deleted or nacked on the stream or its lease ends; a grpc::Alarm at the earliest lease end
// reopens a full window. Deletes, nacks and visibility changes go to the broker as the unary
// calls do, and each request's are confirmed together once durable.
//
// Thread-safety: gRPC reactions, broker callbacks and the alarm run on different threads;
// the stream's state is behind one mutex, and what they decide is carried out after it is
// released, Finish last.

#include <grpcpp/grpcpp.h>

#include "broker/broker.h"
#include "protocol/grpc_services.h"
#include "spool/v1/queue.grpc.pb.h"

namespace spool::protocol {

grpc::ServerBidiReactor<v1::StreamingReceiveRequest, v1::StreamingReceiveResponse>*
NewStreamingReceive(broker::Broker& broker, CallCounter& calls);

}  // namespace spool::protocol
