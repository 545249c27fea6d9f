#pragma once
// Child processes of the CLI (a sweep's runs): each is flatmin itself with other arguments, in its own
// process group (a terminal's Ctrl-C reaches only the parent, which asks each child once to stop), its
// output appended to a log file, and asked to stop (SIGTERM: checkpoint and exit) if the parent dies.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "flatmin/core/error.h"

namespace flatmin::cli {

/// In a forked child: becomes `flatmin args...` (/proc/self/exe); if that fails, says so and exits 127.
[[noreturn]] inline void exec_self(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  static char self[] = "flatmin";
  argv.push_back(self);
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execv("/proc/self/exe", argv.data());
  const std::string message = std::string("error: cannot run flatmin: ") + std::strerror(errno) + "\n";
  (void)!::write(STDERR_FILENO, message.data(), message.size());
  ::_exit(127);
}

/// Starts `/proc/self/exe args...` with stdout and stderr appended to `log_path`; returns its pid.
inline pid_t spawn_self(const std::vector<std::string>& args, const std::string& log_path) {
  const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  check(log >= 0, log_path + ": cannot open the log: " + std::strerror(errno));
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log);
    throw Error(std::string("cannot start a run: fork failed: ") + std::strerror(errno));
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(130);  // the parent died before prctl took effect
    ::dup2(log, STDOUT_FILENO);
    ::dup2(log, STDERR_FILENO);
    ::close(STDIN_FILENO);
    exec_self(args);
  }
  ::close(log);
  ::setpgid(pid, pid);  // also here: no race with a signal sent right after the fork
  return pid;
}

struct ChildExit {
  pid_t pid = -1;
  int exit_code = 0;  ///< the exit status, or 128 + the signal that ended it
};

/// Waits for any child; returns pid -1 when interrupted by a signal (EINTR) or when there is none.
inline ChildExit wait_any_child() {
  int status = 0;
  const pid_t pid = ::waitpid(-1, &status, 0);
  if (pid < 0) return {};
  ChildExit e;
  e.pid = pid;
  e.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  return e;
}

/// The last non-empty line of a text file that starts with "error:" (a failed run's reason), else its
/// last non-empty line; "" when unreadable.
inline std::string last_error_line(const std::string& path) {
  std::ifstream in(path);
  std::string line, last, error;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    last = line;
    if (line.rfind("error:", 0) == 0) error = line;
  }
  return error.empty() ? last : error;
}

}  // namespace flatmin::cli
