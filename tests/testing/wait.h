#pragma once

// Turns a broker callback into a value the test can wait for, with a bound so that a lost
// callback fails the test instead of hanging it.

#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>

#include "common/error.h"

namespace spool::testing {

template <class T>
class Waiter {
 public:
  Waiter() : promise_(std::make_shared<std::promise<Result<T>>>()) {}

  std::function<void(Result<T>)> Callback() {
    return [p = promise_](Result<T> r) { p->set_value(std::move(r)); };
  }

  Result<T> Get(std::chrono::seconds timeout = std::chrono::seconds(30)) {
    auto future = promise_->get_future();
    if (future.wait_for(timeout) != std::future_status::ready) {
      throw std::runtime_error("callback did not run in time");
    }
    return future.get();
  }

 private:
  std::shared_ptr<std::promise<Result<T>>> promise_;
};

class StatusWaiter {
 public:
  StatusWaiter() : promise_(std::make_shared<std::promise<Status>>()) {}
  std::function<void(Status)> Callback() {
    return [p = promise_](Status s) { p->set_value(std::move(s)); };
  }
  Status Get(std::chrono::seconds timeout = std::chrono::seconds(30)) {
    auto future = promise_->get_future();
    if (future.wait_for(timeout) != std::future_status::ready) {
      throw std::runtime_error("callback did not run in time");
    }
    return future.get();
  }

 private:
  std::shared_ptr<std::promise<Status>> promise_;
};

}  // namespace spool::testing
