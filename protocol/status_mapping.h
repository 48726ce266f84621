#pragma once

// The one place where broker errors become wire statuses. The switches have no default, so
// adding an ErrorCode fails the build (-Wswitch) until every protocol maps it.
//
// Thread-safety: pure functions.

#include <grpcpp/support/status.h>

#include "common/error.h"
#include "spool/v1/common.pb.h"

namespace spool::protocol {

grpc::Status ToGrpcStatus(const Error& error);
v1::ErrorCode ToProtoErrorCode(ErrorCode code);
void ToProtoError(const Error& error, v1::Error* out);

}  // namespace spool::protocol
