#pragma once

// Runs a real spoold as a child process on 127.0.0.1 port 0 with a given data directory,
// and reads the bound gRPC address from its startup line. Every wait is bounded.

#include <cerrno>
#include <chrono>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace spool::testing {

class SpooldProcess {
 public:
  SpooldProcess() = default;
  SpooldProcess(const SpooldProcess&) = delete;
  SpooldProcess& operator=(const SpooldProcess&) = delete;
  ~SpooldProcess() { Kill(); }

  // Starts spoold and waits for its "spoold ready" line. Returns false (with the output so
  // far in output()) if it exits or does not get ready in time.
  bool Start(const std::string& binary, const std::string& data_dir,
             std::vector<std::string> extra_args = {},
             std::chrono::seconds timeout = std::chrono::seconds(30)) {
    std::vector<std::string> args = {binary,       "--data-dir",    data_dir,     "--grpc-listen",
                                     grpc_listen_, "--http-listen", "127.0.0.1:0"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    if (!Spawn(args)) return false;
    static const std::regex kReady(R"(spoold ready: grpc=(\S+) http=(\S+))");
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      std::smatch match;
      if (std::regex_search(output_, match, kReady)) {
        address_ = match[1];
        http_address_ = match[2];
        return true;
      }
      if (!ReadSome(50)) break;
    }
    return false;
  }

  // Runs spoold to completion (for startup failures); returns its exit code.
  int RunToExit(const std::string& binary, const std::vector<std::string>& args,
                std::chrono::seconds timeout = std::chrono::seconds(30)) {
    std::vector<std::string> all = {binary};
    all.insert(all.end(), args.begin(), args.end());
    if (!Spawn(all)) return -1;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline && ReadSome(50)) {
    }
    return Wait();
  }

  // SIGTERM, then wait for exit; returns the exit code (-1 if it had to be killed).
  int Stop(std::chrono::seconds timeout = std::chrono::seconds(30)) {
    return StopWith(SIGTERM, timeout);
  }

  // Sends `signal` (SIGTERM, SIGINT), then waits for exit; returns the exit code (-1 if it
  // had to be killed).
  int StopWith(int signal, std::chrono::seconds timeout = std::chrono::seconds(30)) {
    if (pid_ <= 0) return exit_code_;
    kill(pid_, signal);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        Reap(status);
        return exit_code_;
      }
      ReadSome(20);
    }
    Kill();
    return -1;
  }

  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    Reap(status);
  }

  // Where the next Start listens for gRPC: port 0 unless a test restarts a daemon on the
  // port its clients already use.
  void set_grpc_listen(std::string address) { grpc_listen_ = std::move(address); }
  const std::string& address() const { return address_; }
  const std::string& http_address() const { return http_address_; }
  // Everything the process printed so far.
  const std::string& output() {
    while (fd_ >= 0) {
      char buf[8192];
      const ssize_t n = read(fd_, buf, sizeof buf);
      if (n <= 0) {
        if (n == 0) {
          close(fd_);
          fd_ = -1;
        }
        break;
      }
      output_.append(buf, static_cast<std::size_t>(n));
    }
    return output_;
  }
  pid_t pid() const { return pid_; }

 private:
  bool Spawn(const std::vector<std::string>& args) {
    int fds[2];
    if (pipe(fds) != 0) return false;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::vector<char*> argv;
    for (const auto& a : args)
      argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, args[0].c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (rc != 0) {
      close(fds[0]);
      pid_ = 0;
      return false;
    }
    fd_ = fds[0];
    fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_NONBLOCK);
    output_.clear();
    return true;
  }

  // Reads what is available within `timeout_ms`; false once the pipe is closed.
  bool ReadSome(int timeout_ms) {
    if (fd_ < 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return true;
    char buf[8192];
    const ssize_t n = read(fd_, buf, sizeof buf);
    if (n > 0) {
      output_.append(buf, static_cast<std::size_t>(n));
      return true;
    }
    if (n < 0 && errno == EAGAIN) return true;
    close(fd_);
    fd_ = -1;
    return false;
  }

  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    Reap(status);
    return exit_code_;
  }

  void Reap(int status) {
    while (ReadSome(0)) {
    }
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    pid_ = 0;
  }

  pid_t pid_ = 0;
  int fd_ = -1;
  std::string output_;
  std::string grpc_listen_ = "127.0.0.1:0";
  std::string address_;
  std::string http_address_;
  int exit_code_ = -1;
};

}  // namespace spool::testing
