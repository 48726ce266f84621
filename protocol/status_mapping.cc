#include "protocol/status_mapping.h"

namespace spool::protocol {

grpc::Status ToGrpcStatus(const Error& error) {
  grpc::StatusCode code = grpc::StatusCode::INTERNAL;
  switch (error.code) {
    case ErrorCode::kNotFound:
      code = grpc::StatusCode::NOT_FOUND;
      break;
    case ErrorCode::kAlreadyExists:
      code = grpc::StatusCode::ALREADY_EXISTS;
      break;
    case ErrorCode::kInvalidArgument:
      code = grpc::StatusCode::INVALID_ARGUMENT;
      break;
    case ErrorCode::kFailedPrecondition:
      code = grpc::StatusCode::FAILED_PRECONDITION;
      break;
    case ErrorCode::kOutOfRange:
      code = grpc::StatusCode::OUT_OF_RANGE;
      break;
    case ErrorCode::kResourceExhausted:
      code = grpc::StatusCode::RESOURCE_EXHAUSTED;
      break;
    case ErrorCode::kUnavailable:
      code = grpc::StatusCode::UNAVAILABLE;
      break;
    case ErrorCode::kDataLoss:
      code = grpc::StatusCode::DATA_LOSS;
      break;
    case ErrorCode::kInternal:
      code = grpc::StatusCode::INTERNAL;
      break;
  }
  return {code, error.message};
}

v1::ErrorCode ToProtoErrorCode(ErrorCode code) {
  switch (code) {
    case ErrorCode::kNotFound:
      return v1::ERROR_CODE_NOT_FOUND;
    case ErrorCode::kAlreadyExists:
      return v1::ERROR_CODE_ALREADY_EXISTS;
    case ErrorCode::kInvalidArgument:
      return v1::ERROR_CODE_INVALID_ARGUMENT;
    case ErrorCode::kFailedPrecondition:
      return v1::ERROR_CODE_FAILED_PRECONDITION;
    case ErrorCode::kOutOfRange:
      return v1::ERROR_CODE_OUT_OF_RANGE;
    case ErrorCode::kResourceExhausted:
      return v1::ERROR_CODE_RESOURCE_EXHAUSTED;
    case ErrorCode::kUnavailable:
      return v1::ERROR_CODE_UNAVAILABLE;
    case ErrorCode::kDataLoss:
      return v1::ERROR_CODE_DATA_LOSS;
    case ErrorCode::kInternal:
      return v1::ERROR_CODE_INTERNAL;
  }
  return v1::ERROR_CODE_INTERNAL;
}

void ToProtoError(const Error& error, v1::Error* out) {
  out->set_code(ToProtoErrorCode(error.code));
  out->set_message(error.message);
}

}  // namespace spool::protocol
