// `flatmin launch --nproc N -- train|geometry ...`: N local processes of flatmin train or geometry with torchrun's
// environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT). A thin
// convenience: the same commands run under torchrun or any launcher that sets the variables. When one
// process fails, the launcher names it, stops the others and exits with its status.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "commands.h"
#include "subprocess.h"
#include "flatmin/jobs/options.h"
#include "flatmin/core/error.h"

namespace flatmin::cli {
namespace {

struct LaunchArgs {
  int nproc = 2;
  int master_port = 0;  // 0: a free port
  double grace = 30;
  std::vector<std::string> command;
};

volatile std::sig_atomic_t g_launch_signal = 0;
extern "C" void record_launch_signal(int signal) { g_launch_signal = signal; }

// A port that is free now: bound to port 0 and released (the rank-0 store binds it next).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  check(fd >= 0, std::string("launch: no socket: ") + std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  ::close(fd);
  check(ok, std::string("launch: cannot find a free port: ") + std::strerror(errno));
  return ntohs(address.sin_port);
}

pid_t start_rank(const std::vector<std::string>& command, const std::map<std::string, std::string>& env) {
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  check(pid >= 0, std::string("launch: fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // a launcher that dies takes its ranks with it
    if (::getppid() != parent) ::_exit(130);
    for (const auto& [key, value] : env) ::setenv(key.c_str(), value.c_str(), 1);
    exec_self(command);
  }
  return pid;
}

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
                                  ::strsignal(WTERMSIG(status)) + ")";
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

int exit_code_of(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

int run_launch(const LaunchArgs& a) {
  check(!a.command.empty(), "launch: no command given (flatmin launch --nproc N -- train ...)");
  check(a.command.front() == "train" || a.command.front() == "geometry",
        "launch: '" + a.command.front() + "' does not run in several processes (train and geometry do)");
  const int port = a.master_port > 0 ? a.master_port : free_port();
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  std::signal(SIGINT, record_launch_signal);  // the ranks get Ctrl-C too (same process group): wait for them
  std::signal(SIGTERM, record_launch_signal);
  std::map<pid_t, int> ranks;  // pid → rank
  for (int r = 0; r < a.nproc; ++r) {
    std::map<std::string, std::string> env{{"RANK", std::to_string(r)},
                                           {"WORLD_SIZE", std::to_string(a.nproc)},
                                           {"LOCAL_RANK", std::to_string(r)},
                                           {"LOCAL_WORLD_SIZE", std::to_string(a.nproc)},
                                           {"MASTER_ADDR", "127.0.0.1"},
                                           {"MASTER_PORT", std::to_string(port)}};
    if (std::getenv("MASTER_ADDR")) env["MASTER_ADDR"] = std::getenv("MASTER_ADDR");
    ranks[start_rank(a.command, env)] = r;
  }
  std::cerr << "flatmin launch: " << a.nproc << " processes of 'flatmin " << a.command.front() << "', "
            << std::max(1u, cores / static_cast<unsigned>(a.nproc)) << " thread(s) each by default, rendezvous at 127.0.0.1:"
            << port << "\n";

  int result = 0;
  bool stopping = false;
  auto stop_others = [&] {
    for (const auto& [pid, rank] : ranks) ::kill(pid, SIGTERM);
    stopping = true;
  };
  auto deadline = std::chrono::steady_clock::time_point::max();
  bool forwarded = false;
  while (!ranks.empty()) {
    if (g_launch_signal == SIGTERM && !forwarded) {  // Ctrl-C already reached the ranks; SIGTERM did not
      for (const auto& [pid, rank] : ranks) ::kill(pid, SIGTERM);
      forwarded = true;
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      if (stopping && std::chrono::steady_clock::now() > deadline) {
        for (const auto& [p, rank] : ranks) {
          std::cerr << "flatmin launch: rank " << rank << " did not stop within " << a.grace << " s: killed\n";
          ::kill(p, SIGKILL);
        }
        deadline = std::chrono::steady_clock::time_point::max();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    const auto it = ranks.find(pid);
    if (it == ranks.end()) continue;
    const int rank = it->second;
    ranks.erase(it);
    const int code = exit_code_of(status);
    if (code != 0 && result == 0) {
      result = code;
      if (!ranks.empty() && !stopping && g_launch_signal == 0) {
        std::cerr << "flatmin launch: rank " << rank << " (pid " << pid << ") " << describe_exit(status)
                  << "; stopping the other ranks\n";
        stop_others();
        deadline = std::chrono::steady_clock::now() +
                   std::chrono::milliseconds(static_cast<int64_t>(a.grace * 1000));
      } else if (g_launch_signal == 0) {
        std::cerr << "flatmin launch: rank " << rank << " (pid " << pid << ") " << describe_exit(status) << "\n";
      }
    }
  }
  return result;
}

}  // namespace

Action add_launch_command(CLI::App& app) {
  auto args = std::make_shared<LaunchArgs>();
  CLI::App* cmd = app.add_subcommand("launch", "Run train (or geometry) in several local processes, as torchrun does");
  cmd->footer(
      "\nStarts N processes of `flatmin COMMAND ...` with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,\n"
      "MASTER_ADDR (127.0.0.1 unless set) and MASTER_PORT (a free port unless --master-port) set, as torchrun\n"
      "does; the processes meet through c10d's TCPStore and exchange gradients over Gloo. Cores are divided\n"
      "among them. Rank 0 alone prints and writes the run directory. If a process fails, the launcher names it,\n"
      "stops the others (SIGTERM, then SIGKILL after --grace seconds) and exits with its status; the run\n"
      "resumes with the same command and `train --resume DIR`.\n\n"
      "Examples:\n"
      "  flatmin launch --nproc 2 -- train --method nso --parallel perturbation --out runs/nso-2p\n"
      "  flatmin launch --nproc 2 -- train --method sam --batch-size 128 --out runs/sam-2d   # data-parallel\n"
      "  flatmin launch --nproc 2 -- train --resume runs/nso-2p\n"
      "  flatmin launch --nproc 2 -- geometry --checkpoint runs/nso-2p --measures trace   # probes shared\n"
      "Several machines: run `flatmin train ...` on each with torchrun's variables set (MASTER_ADDR = rank 0's).");
  cmd->add_option("--nproc", args->nproc, "Processes to start")->check(integer_in(1, 256));
  cmd->add_option("--master-port", args->master_port, "Port of the rendezvous store (0 = a free one)")
      ->check(integer_in(0, 65535));
  cmd->add_option("--grace", args->grace, "Seconds the other ranks get to stop after one fails")
      ->check(number_between(0, 3600));
  cmd->add_option("command", args->command, "The flatmin command and its options, after --")->required();
  return [args] { return run_launch(*args); };
}

}  // namespace flatmin::cli
