#pragma once

// Error handling for every layer below the network edge: a small Result<T> shaped like
// std::expected (which GCC 12 lacks in C++20), so that a later switch to std::expected is
// a one-line alias. Errors are values; storage, broker and protocol code never throws.
//
// Thread-safety: plain values; safe to move between threads.

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace spool {

enum class ErrorCode {
  kNotFound,            // a named thing (topic, partition, group) does not exist
  kAlreadyExists,       // creating something that exists with other settings
  kInvalidArgument,     // the caller sent a bad value; retrying the same call fails again
  kFailedPrecondition,  // the call is valid but the current state forbids it
  kOutOfRange,          // an offset outside [log start, log end]
  kResourceExhausted,   // a size or count limit was exceeded
  kUnavailable,         // shutting down or temporarily unable; retrying may succeed
  kDataLoss,            // stored bytes failed their checksum or could not be decoded
  kInternal,            // a bug or an unexpected storage failure
};

std::string_view ErrorCodeName(ErrorCode code);

struct Error {
  ErrorCode code;
  std::string message;

  std::string ToString() const;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & {
    assert(has_value());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(has_value());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(has_value());
    return std::get<0>(std::move(v_));
  }
  const Error& error() const {
    assert(!has_value());
    return std::get<1>(v_);
  }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT: implicit by design

  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const {
    assert(!ok_);
    return error_;
  }

 private:
  Error error_{ErrorCode::kInternal, {}};
  bool ok_ = true;
};

using Status = Result<void>;

inline Status Ok() {
  return {};
}
inline Error NotFound(std::string message) {
  return {ErrorCode::kNotFound, std::move(message)};
}
inline Error AlreadyExists(std::string message) {
  return {ErrorCode::kAlreadyExists, std::move(message)};
}
inline Error InvalidArgument(std::string message) {
  return {ErrorCode::kInvalidArgument, std::move(message)};
}
inline Error FailedPrecondition(std::string message) {
  return {ErrorCode::kFailedPrecondition, std::move(message)};
}
inline Error OutOfRange(std::string message) {
  return {ErrorCode::kOutOfRange, std::move(message)};
}
inline Error ResourceExhausted(std::string message) {
  return {ErrorCode::kResourceExhausted, std::move(message)};
}
inline Error Unavailable(std::string message) {
  return {ErrorCode::kUnavailable, std::move(message)};
}
inline Error DataLoss(std::string message) {
  return {ErrorCode::kDataLoss, std::move(message)};
}
inline Error Internal(std::string message) {
  return {ErrorCode::kInternal, std::move(message)};
}

}  // namespace spool
