// `flatmin sweep EXPERIMENT`: every run of an experiment file as an ordinary `flatmin train` run directory
// under one root, --jobs processes side by side. Rerunning the command skips finished runs and resumes
// interrupted ones (bitwise, from their checkpoints); a failed or diverged run is recorded and the others go on.
// On a cluster, `--list` prints one `--unit` command per unit that can start now, for any scheduler to run.
#include <sys/file.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "flatmin/core/text.h"
#include "subprocess.h"
#include "flatmin/jobs/options.h"
#include "flatmin/core/files.h"
#include "flatmin/core/device.h"
#include "flatmin/core/error.h"
#include "flatmin/core/stop_points.h"
#include "flatmin/experiments/experiment.h"
#include "flatmin/experiments/plan.h"
#include "flatmin/training/checkpoint.h"
#include "flatmin/training/metrics_log.h"
#include "flatmin/training/progress.h"

namespace flatmin::cli {
namespace {

// A child that checkpointed on a stop request (130), or that SIGTERM or SIGINT ended before it could (in
// start-up, or a measurement, which keeps no checkpoint): a scheduler's preemption, not a failure.
bool stopped_by_request(int exit_code) {
  return exit_code == kExitInterrupted || exit_code == 128 + SIGTERM || exit_code == 128 + SIGINT;
}

namespace fs = std::filesystem;
using experiments::PlannedRun;
using experiments::RunRecord;
using experiments::RunStatus;
using experiments::UnitStep;

struct SweepArgs {
  std::string experiment;
  std::string out;
  int jobs = 1;
  int threads = 0;
  bool quick = false;
  bool retry_failed = false;
  bool dry_run = false;
  bool list = false;  // print the commands of the units that can start now
  std::string unit;   // run this one run (train or resume, then measure) and update the root's files
  std::string data_dir;
  std::string progress = "auto";
  std::string device = "cpu";
};

volatile std::sig_atomic_t g_sweep_stop = 0;
extern "C" void request_sweep_stop(int signal) { g_sweep_stop = signal; }

// Without SA_RESTART, so that waiting for a child returns when a signal arrives.
void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = request_sweep_stop;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
}

nlohmann::json last_metrics_row(const fs::path& dir) {
  std::ifstream in(dir / "metrics.jsonl");
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return nlohmann::json::parse(last, nullptr, false);
}

// A run's state, as its directory shows it (`needs_model`: a train run is done with its model.ckpt; a
// sensing run has no checkpoint).
RunRecord record_on_disk(const fs::path& dir, bool measure, bool needs_model = true) {
  RunRecord r;
  std::error_code ec;
  if (fs::exists(dir / "summary.json", ec) && (!needs_model || fs::exists(dir / "model.ckpt", ec))) {
    r.status = RunStatus::kDone;
    const nlohmann::json summary = read_json(dir / "summary.json");
    if (summary.is_object()) r.seconds = summary.value("total_seconds", 0.0);
  } else if (fs::exists(dir / "status.json", ec)) {
    const nlohmann::json s = read_json(dir / "status.json");
    r.status = s.is_object() && s.value("status", "") == "diverged" ? RunStatus::kDiverged : RunStatus::kFailed;
    if (s.is_object()) {
      r.exit_code = s.value("exit_code", 1);
      r.error = s.value("error", "");
    }
  } else if (!training::list_step_checkpoints((dir / "checkpoints").string()).empty()) {
    r.status = RunStatus::kInterrupted;
  }
  if (measure) {
    if (fs::exists(dir / "geometry.json", ec)) r.measure_status = "done";
    else if (fs::exists(dir / "geometry.failed", ec)) r.measure_status = "failed";
  }
  return r;
}

// The threads a run started with (config.json), so that a resumed run computes the same bits.
int run_threads(const fs::path& dir, int fallback) {
  const nlohmann::json config = read_json(dir / "config.json");
  if (config.is_object() && config.contains("threads") && config["threads"].is_object())
    return config["threads"].value("torch_intra_op", fallback);
  return fallback;
}

std::string minutes(double seconds) {
  if (!std::isfinite(seconds)) return "?";
  if (seconds < 90) return format_number(seconds, "%.0f") + " s";
  return format_number(seconds / 60.0, "%.0f") + " min";
}

// Parses `args` as the CLI would (validators included) without running anything: a typo in an experiment
// file is reported before the first run starts.
void validate_arguments(const std::string& command, const std::vector<std::string>& args, const std::string& what) {
  CLI::App app{"flatmin"};
  // The action owns the variables the options write into: keep it alive while parsing.
  const Action action = command == "train"     ? add_train_command(app)
                        : command == "sensing" ? add_sensing_command(app)
                                               : add_geometry_command(app);
  std::vector<const char*> argv{"flatmin", command.c_str()};
  for (const auto& a : args) argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    throw Error(what + ": " + e.what());
  }
}

// An advisory lock on `path` (flock: also across machines where the shared filesystem honours it, as Linux
// NFS clients do by mapping it to POSIX locks). Kept across exec when `inherited`, so that a run started by
// the holder keeps it while it lives; otherwise released with this object. Says why it waits, once.
class FileLock {
 public:
  FileLock(const std::string& path, int operation, bool inherited, const std::string& waiting_message,
           training::Progress& progress) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | (inherited ? 0 : O_CLOEXEC), 0644);
    check(fd_ >= 0, path + ": cannot open the lock: " + std::strerror(errno));
    if (::flock(fd_, operation | LOCK_NB) != 0) {
      progress.line(waiting_message);
      if (::flock(fd_, operation) != 0) {
        const std::string reason = std::strerror(errno);
        ::close(fd_);  // the destructor does not run for a constructor that throws
        throw Error(path + ": cannot lock: " + reason);
      }
    }
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock() { ::close(fd_); }

 private:
  int fd_ = -1;
};

// A word of a shell command line, quoted only when it needs to be (the listed lines stay readable).
std::string shell_word(const std::string& word) {
  const bool plain = !word.empty() && word.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                             "0123456789_-+=.,:/@%") == std::string::npos;
  if (plain) return word;
  std::string quoted = "'";
  for (char c : word) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

class Sweep {
 public:
  Sweep(SweepArgs args, experiments::Experiment experiment)
      : a_(std::move(args)), e_(std::move(experiment)), progress_(training::parse_progress_mode(a_.progress)) {
    root_ = a_.out.empty() ? "runs/" + e_.name + (a_.quick ? "-quick" : "") : a_.out;
    while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
    const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    threads_ = a_.threads > 0 ? a_.threads : std::max(1, cores / a_.jobs);
    command_ = "flatmin sweep " + a_.experiment + (a_.quick ? " --quick" : "") + " --out " + root_ +
               " --jobs " + std::to_string(a_.jobs);
  }

  void validate() const {
    // With every grid run assumed done, the plan holds every distinct option list of the experiment.
    const auto plan = experiments::plan_experiment(e_, [](const PlannedRun&) {
      return experiments::RunOutcome{RunStatus::kDone, 0.0};
    });
    std::set<std::vector<std::string>> seen;
    for (const auto& run : plan.runs) {
      std::vector<std::string> args = run.train_arguments(root_);
      if (seen.insert(args).second) validate_arguments(e_.command, args, e_.file + ": run " + run.id);
    }
    if (e_.measure) validate_arguments("geometry", measure_arguments("x"), e_.file + ": [measure]");
  }

  int dry_run() const {
    const auto plan = experiments::plan_experiment(e_, [](const PlannedRun&) {
      return experiments::RunOutcome{RunStatus::kPending, 0.0};
    });
    for (const auto& run : plan.runs) {
      std::string roles;
      for (const auto& r : run.roles) roles += (roles.empty() ? "" : ",") + r;
      std::string args;
      for (const auto& arg : run.train_arguments(root_)) args += " " + arg;
      std::cout << run.id << "  [" << roles << "]  flatmin " << e_.command << args << "\n";
    }
    std::cout << plan.runs.size() << " runs planned now";
    if (!plan.complete)
      std::cout << ", then per (task, method) the chosen setting's runs over seeds " << seeds_text(e_.seeds)
                << " (selected on " << e_.select->metric << ")";
    std::cout << "\n";
    return 0;
  }

  int run() {
    std::error_code ec;
    fs::create_directories(root_, ec);
    check(!ec, root_ + ": cannot create the sweep directory: " + ec.message());
    lock_root(LOCK_EX);
    check_stored_experiment(/*write=*/true);
    if (a_.retry_failed) forget_failures();
    install_stop_handlers();
    progress_.line("flatmin sweep: " + e_.name + " -> " + root_ + " | " + std::to_string(a_.jobs) + " job(s) x " +
                   std::to_string(threads_) + " thread(s)");

    bool stopping = false;
    for (;;) {
      const experiments::Plan plan = current_plan();
      write_state(plan);
      if (g_sweep_stop && !stopping) {
        stopping = true;
        progress_.line("stopping: asking " + std::to_string(running_.size()) + " run(s) to checkpoint and exit");
        for (const auto& [pid, unit] : running_) ::kill(-pid, SIGTERM);
      }
      if (!stopping) start_units(plan);
      if (running_.empty()) {
        report_end(plan, stopping);
        return stopping ? kExitInterrupted : (count(plan, RunStatus::kFailed) > 0 || blocked(plan) > 0 ? 1 : 0);
      }
      draw(plan);
      const ChildExit exit = wait_any_child();
      if (exit.pid > 0) finish_unit(exit);
    }
  }

  // `--list`: one self-contained command per unit that can start now, read from the root's files alone (it
  // writes nothing). Each line is `flatmin sweep --unit`, with absolute paths, so it runs from anywhere.
  int list() {
    check_stored_experiment(/*write=*/false);
    const experiments::Plan plan = current_plan();
    const std::vector<experiments::RunnableUnit> units = runnable(plan);
    std::error_code ec;
    const std::string self = fs::read_symlink("/proc/self/exe", ec).string();
    check(!ec, "cannot find the flatmin executable (/proc/self/exe): " + ec.message());
    std::string common = " sweep " + shell_word(absolute(a_.experiment)) + (a_.quick ? " --quick" : "") + " --out " +
                         shell_word(absolute(root_));
    if (a_.threads > 0) common += " --threads " + std::to_string(a_.threads);
    if (!a_.data_dir.empty()) common += " --data-dir " + shell_word(absolute(a_.data_dir));
    if (a_.device != "cpu") common += " --device " + shell_word(a_.device);
    for (const auto& unit : units)
      std::cout << shell_word(self) << common << " --unit " << shell_word(plan.runs[unit.run].id) << "\n";
    std::cout.flush();
    // On stderr: what the list leaves out (a pipe into a scheduler reads only the commands).
    const int64_t done = count(plan, RunStatus::kDone);
    std::string line = "flatmin sweep --list: " + std::to_string(units.size()) + " unit(s) can start now; " +
                       std::to_string(done) + " of " + std::to_string(plan.runs.size()) + " planned runs done";
    if (!plan.complete) line += ", selections still to make (their runs are listed once the grid is done)";
    const int64_t failed = count(plan, RunStatus::kFailed) + count(plan, RunStatus::kDiverged);
    if (failed) line += ", " + std::to_string(failed) + " failed or diverged";
    if (units.empty()) line += " | nothing left to start: `flatmin sweep` with the same --out reports the end";
    progress_.line(line);
    return 0;
  }

  // `--unit ID`: the run the sweep would run as ID (train, or resume; then measure it if the experiment does),
  // then the root's manifest and selection rewritten from what is on disk. Idempotent: a done unit is a no-op,
  // an interrupted one resumes. Another process on the same run (a duplicate job) is waited for, so a unit's
  // command returns once the unit is final, whoever ran it.
  int run_unit() {
    const auto find_run = [&](const experiments::Plan& plan) -> const PlannedRun* {
      for (const auto& run : plan.runs)
        if (run.id == a_.unit) return &run;
      return nullptr;
    };
    // Refused before anything is written: another experiment's root, or an id not planned (yet).
    check_stored_experiment(/*write=*/false);
    if (!find_run(current_plan()))
      throw Error("flatmin sweep --unit: '" + a_.unit + "' is not a run of " + e_.file + " that can be planned now (" +
                  root_ + "); the runs that can start: flatmin sweep " + a_.experiment + " --out " + root_ + " --list");
    std::error_code ec;
    fs::create_directories(root_, ec);
    check(!ec, root_ + ": cannot create the sweep directory: " + ec.message());
    // The manifest's command: how this root continues (the same for every unit, so a no-op unit changes nothing).
    command_ = "flatmin sweep " + a_.experiment + (a_.quick ? " --quick" : "") + " --out " + root_ + " --list";
    lock_root(LOCK_SH);
    {
      const FileLock state = state_lock();
      check_stored_experiment(/*write=*/true);
    }
    std::unique_ptr<FileLock> run_lock;
    {
      const PlannedRun run = *find_run(current_plan());
      fs::create_directories(dir_of(run), ec);
      check(!ec, dir_of(run).string() + ": cannot create the run directory: " + ec.message());
      // Inherited by the run's process: a rerun after a kill waits until it has checkpointed.
      run_lock = std::make_unique<FileLock>((dir_of(run) / ".lock").string(), LOCK_EX, /*inherited=*/true,
                                            "waiting for another process running " + run.id + " ...", progress_);
      if (a_.retry_failed) forget_failure(run);  // as a whole sweep's --retry-failed
    }
    install_stop_handlers();
    bool stopped = false, ran = false;
    for (;;) {
      records_.clear();  // what is on disk now, other processes' work included
      const experiments::Plan plan = current_plan();
      const PlannedRun* run = find_run(plan);
      check(run != nullptr, a_.unit + ": no longer planned");  // a plan only grows as runs finish
      const auto units = runnable(plan);
      const auto unit = std::find_if(units.begin(), units.end(),
                                     [&](const experiments::RunnableUnit& u) { return &plan.runs[u.run] == run; });
      if (unit == units.end() || stopped) {
        const RunRecord r = record(*run);
        if (!stopped && !is_final(r.status))
          throw Error("flatmin sweep --unit: " + run->id + " starts from " + run->init_dir +
                      ", which is not done yet; run the units --list prints, stage by stage");
        write_state_shared();
        if (stopped) return kExitInterrupted;
        if (r.status != RunStatus::kDone) {
          progress_.line(run->id + ": " + experiments::to_string(r.status) + (r.error.empty() ? "" : ": " + r.error) +
                         " (flatmin sweep --retry-failed runs a failed run again)");
          return 1;
        }
        if (run->measure && r.measure_status == "failed") return 1;
        if (!ran) progress_.line(run->id + ": done already, nothing to do");
        return 0;
      }
      const char* what = unit->step == UnitStep::kTrain    ? "training"
                         : unit->step == UnitStep::kResume ? "resuming"
                                                           : "measuring";
      progress_.line("flatmin sweep: " + std::string(what) + " " + run->id + " -> " + dir_of(*run).string());
      start(*run, unit->step);
      ran = true;
      const pid_t pid = running_.begin()->first;
      for (;;) {
        const ChildExit exit = wait_any_child();
        if (exit.pid == pid) {
          finish_unit(exit);
          // Stopped from outside (a scheduler's SIGTERM to the run alone): leave it resumable, do not loop.
          if (stopped_by_request(exit.exit_code)) stopped = true;
          break;
        }
        if (g_sweep_stop && !stopped) {
          stopped = true;
          ::kill(-pid, SIGTERM);  // once: it checkpoints and exits
        }
      }
      stopped = stopped || g_sweep_stop;
    }
  }

 private:
  struct Unit {
    const char* kind;  // "train" | "measure"
    PlannedRun run;
    std::chrono::steady_clock::time_point started;
  };

  fs::path dir_of(const PlannedRun& run) const { return fs::path(root_) / run.dir; }

  // Held (and inherited by the runs) while any process of this sweep lives: a rerun after a kill waits
  // until the killed sweep's runs have written their checkpoints and exited. A whole sweep holds it
  // exclusively (it alone decides what runs); `--unit` processes share it, so they run side by side but never
  // beside a whole sweep of the same root. Kept for the life of the process.
  void lock_root(int operation) {
    root_lock_ = std::make_unique<FileLock>((fs::path(root_) / ".lock").string(), operation, /*inherited=*/true,
                                      operation == LOCK_EX ? "waiting for another sweep of " + root_ +
                                                                 " (or its runs or units) to stop ..."
                                                           : "waiting for the sweep of " + root_ + " to stop ...",
                                      progress_);
  }

  // The experiment a root was started with is the only one it runs: a changed file is refused, except for
  // its [report] table, which is taken (the runs stay the same; the report changes).
  void check_stored_experiment(bool write) const {
    const std::string experiment_json = e_.to_json();
    const fs::path stored = fs::path(root_) / "experiment.json";
    std::error_code ec;
    std::string previous;
    if (fs::exists(stored, ec)) {
      std::ifstream in(stored);
      previous.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      check(e_.plans_same_runs_as(previous),
            root_ + ": holds a sweep of another experiment (or of this file before it changed); use another --out, "
                    "or delete the directory to start over");
    }
    if (write && previous != experiment_json + "\n") flatmin::write_text_file(stored.string(), experiment_json + "\n");
  }

  void forget_failures() {
    for (const auto& run : current_plan().runs) forget_failure(run);
  }

  // --retry-failed: a failed run (or measurement) is pending again; a diverged one stays (it is deterministic).
  void forget_failure(const PlannedRun& run) {
    std::error_code ec;
    const RunRecord r = record(run);
    if (r.status == RunStatus::kFailed) fs::remove(dir_of(run) / "status.json", ec);
    if (r.measure_status == "failed") fs::remove(dir_of(run) / "geometry.failed", ec);
    records_.erase(run.dir);
  }

  bool needs_model() const { return e_.command == "train"; }

  RunRecord record(const PlannedRun& run) {
    auto found = records_.find(run.dir);
    if (found == records_.end()) found = records_.emplace(run.dir, record_on_disk(dir_of(run), run.measure, needs_model())).first;
    // A grid run that became a reported one after the selection: its measurement may already be on disk.
    RunRecord& r = found->second;
    if (run.measure && r.measure_status.empty() && r.status == RunStatus::kDone)
      r.measure_status = record_on_disk(dir_of(run), true).measure_status;
    return r;
  }

  experiments::Plan current_plan() {
    return experiments::plan_experiment(e_, [&](const PlannedRun& run) {
      experiments::RunOutcome o;
      o.status = record(run).status;
      if (o.status == RunStatus::kDone && e_.select) {
        const nlohmann::json row = last_metrics_row(dir_of(run));
        check(row.is_object() && row.contains(e_.select->metric),
              (dir_of(run) / "metrics.jsonl").string() + ": no column '" + e_.select->metric +
                  "' to select on (select.metric)");
        o.metric = row[e_.select->metric].is_number() ? row[e_.select->metric].get<double>()
                                                       : std::numeric_limits<double>::quiet_NaN();
      }
      return o;
    });
  }

  std::vector<std::string> measure_arguments(const std::string& dir) const {
    std::vector<std::string> args{"--checkpoint=" + dir, "--out=" + dir + "/geometry.json",
                                  "--threads=" + std::to_string(threads_), "--progress=lines"};
    if (!a_.data_dir.empty()) args.push_back("--data-dir=" + a_.data_dir);
    args.push_back("--device=" + a_.device);
    for (const auto& [k, v] : *e_.measure) args.push_back("--" + k + "=" + v);
    return args;
  }

  bool is_running(const PlannedRun& run) const {
    for (const auto& [pid, unit] : running_)
      if (unit.run.dir == run.dir) return true;
    return false;
  }

  std::vector<experiments::RunnableUnit> runnable(const experiments::Plan& plan) {
    return experiments::runnable_units(plan, [&](const PlannedRun& run) { return record(run); });
  }

  void start_units(const experiments::Plan& plan) {
    for (const auto& unit : runnable(plan)) {
      if (static_cast<int>(running_.size()) >= a_.jobs) return;
      const PlannedRun& run = plan.runs[unit.run];
      if (!is_running(run)) start(run, unit.step);
    }
  }

  // Starts one unit as a child process (train afresh, resume with the threads it started with, or measure).
  void start(const PlannedRun& run, UnitStep step) {
    const fs::path dir = dir_of(run);
    if (step == UnitStep::kMeasure) {
      std::vector<std::string> args{"geometry"};
      for (const auto& arg : measure_arguments(dir.string())) args.push_back(arg);
      launch("measure", run, args, (dir / "geometry.log").string());
      return;
    }
    std::error_code ec;
    fs::create_directories(dir, ec);
    check(!ec, dir.string() + ": cannot create the run directory: " + ec.message());
    std::vector<std::string> args{e_.command};
    if (step == UnitStep::kResume) {
      for (const std::string& arg :
           {"--resume=" + dir.string(), "--threads=" + std::to_string(run_threads(dir, threads_))})
        args.push_back(arg);
    } else {
      for (const auto& arg : run.train_arguments(root_)) args.push_back(arg);
      args.push_back("--threads=" + std::to_string(threads_));
    }
    args.push_back("--progress=lines");
    if (e_.command == "train") args.push_back("--device=" + a_.device);
    if (!a_.data_dir.empty() && e_.command == "train") args.push_back("--data-dir=" + a_.data_dir);
    launch("train", run, args, (dir / "train.log").string());
  }

  RunRecord record_by_dir(const std::string& dir) {
    const auto found = records_.find(dir);
    return found != records_.end() ? found->second : record_on_disk(fs::path(root_) / dir, false, needs_model());
  }

  void launch(const char* kind, const PlannedRun& run, const std::vector<std::string>& args, const std::string& log) {
    const pid_t pid = spawn_self(args, log);
    running_[pid] = Unit{kind, run, std::chrono::steady_clock::now()};
    RunRecord& r = records_[run.dir];
    if (std::string(kind) == "train") r.status = RunStatus::kRunning;
    stop_point(std::string(kind) == "train" ? "sweep-train" : "sweep-measure");
  }

  void finish_unit(const ChildExit& exit) {
    const auto found = running_.find(exit.pid);
    if (found == running_.end()) return;
    const Unit unit = found->second;
    running_.erase(found);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - unit.started).count();
    const fs::path dir = dir_of(unit.run);
    const bool train = std::string(unit.kind) == "train";
    const std::string log = (dir / (train ? "train.log" : "geometry.log")).string();
    std::string outcome;
    if (train) {
      RunRecord r = record_on_disk(dir, unit.run.measure, needs_model());
      if (exit.exit_code == 0 && r.status == RunStatus::kDone) {
        outcome = "done";
        train_seconds_.push_back(seconds);
        const nlohmann::json summary = read_json(dir / "summary.json");
        if (summary.is_object() && e_.command == "sensing")
          outcome += "  train loss " + format_number(summary.value("final_train_loss", 0.0), "%.4g") + "  test loss " +
                     format_number(summary.value("final_test_loss", 0.0), "%.4g");
        else if (summary.is_object())
          outcome += "  val " + percent(summary.value("final_val_acc", 0.0)) + "  test " +
                     percent(summary.value("final_test_acc", 0.0));
      } else if (g_sweep_stop || stopped_by_request(exit.exit_code)) {
        r.status = RunStatus::kInterrupted;  // its checkpoint is where the rerun resumes
        outcome = "interrupted";
      } else {
        r.status = exit.exit_code == kExitDiverged ? RunStatus::kDiverged : RunStatus::kFailed;
        r.exit_code = exit.exit_code;
        r.error = last_error_line(log);
        nlohmann::ordered_json s{{"status", experiments::to_string(r.status)},
                                 {"exit_code", r.exit_code},
                                 {"error", r.error},
                                 {"log", log}};
        flatmin::write_text_file((dir / "status.json").string(), s.dump(2) + "\n");
        outcome = experiments::to_string(r.status) + " (exit " + std::to_string(exit.exit_code) + "): " + r.error;
      }
      r.seconds = seconds;
      records_[unit.run.dir] = r;
    } else {
      RunRecord& r = records_[unit.run.dir];
      std::error_code ec;
      if (exit.exit_code == 0 && fs::exists(dir / "geometry.json", ec)) {
        r.measure_status = "done";
        measure_seconds_.push_back(seconds);
        const nlohmann::json g = read_json(dir / "geometry.json");
        outcome = "measured";
        if (g.is_object() && g.contains("trace"))
          outcome += "  trace " + format_number(g["trace"].value("estimate", 0.0), "%.4g") + " ± " +
                     format_number(g["trace"].value("std_error", 0.0), "%.2g");
        if (g.is_object() && g.contains("eigenvalues") && !g["eigenvalues"]["values"].empty())
          outcome += "  λ1 " + format_number(g["eigenvalues"]["values"][0].get<double>(), "%.4g");
      } else if (g_sweep_stop || stopped_by_request(exit.exit_code)) {
        outcome = "measurement interrupted";  // measured again by this sweep or its rerun
      } else {
        r.measure_status = "failed";
        flatmin::write_text_file((dir / "geometry.failed").string(), last_error_line(log) + "\n");
        outcome = "measurement failed (exit " + std::to_string(exit.exit_code) + "): " + last_error_line(log);
      }
    }
    ++finished_;
    progress_.line("[" + std::to_string(finished_) + "] " + unit.run.id + "  " + outcome + "  " +
                   format_number(seconds, "%.1f") + " s");
  }

  int64_t count(const experiments::Plan& plan, RunStatus status) {
    int64_t n = 0;
    for (const auto& run : plan.runs) n += record(run).status == status;
    return n;
  }

  // Runs that cannot start because the run they start from did not finish.
  int64_t blocked(const experiments::Plan& plan) {
    int64_t n = 0;
    for (const auto& run : plan.runs)
      n += !is_final(record(run).status) && !run.init_dir.empty() && is_final(record_by_dir(run.init_dir).status) &&
           record_by_dir(run.init_dir).status != RunStatus::kDone;
    return n;
  }

  static std::string seeds_text(const std::vector<int64_t>& seeds) {
    std::string s;
    for (int64_t seed : seeds) s += (s.empty() ? "" : ",") + std::to_string(seed);
    return s;
  }

  // Remaining work (units not final; runs of selections still to be made), and an ETA from this
  // session's mean unit times.
  void draw(const experiments::Plan& plan) {
    int64_t train_left = 0, measure_left = 0, total = 0;
    for (const auto& run : plan.runs) {
      const RunRecord r = record(run);
      ++total;
      if (!is_final(r.status)) ++train_left;
      if (run.measure) {
        ++total;
        if (r.measure_status.empty() && r.status != RunStatus::kDiverged && r.status != RunStatus::kFailed)
          ++measure_left;
      }
    }
    if (e_.select) {
      int64_t extra_per_group = 0;
      for (int64_t seed : e_.seeds)
        extra_per_group += std::find(e_.select->seeds.begin(), e_.select->seeds.end(), seed) == e_.select->seeds.end();
      for (const auto& g : plan.selection)
        if (g.chosen < 0) {
          train_left += extra_per_group;
          measure_left += e_.measure ? static_cast<int64_t>(e_.seeds.size()) : 0;
          total += extra_per_group + (e_.measure ? static_cast<int64_t>(e_.seeds.size()) : 0);
        }
    }
    auto mean = [](const std::vector<double>& v) {
      double s = 0;
      for (double x : v) s += x;
      return v.empty() ? std::numeric_limits<double>::quiet_NaN() : s / static_cast<double>(v.size());
    };
    const double mean_measure = measure_seconds_.empty() ? 0.0 : mean(measure_seconds_);
    const double eta = (static_cast<double>(train_left) * mean(train_seconds_) +
                        static_cast<double>(measure_left) * mean_measure) /
                       static_cast<double>(a_.jobs);
    const std::string status = std::to_string(running_.size()) + " running, " + std::to_string(train_left) +
                               " runs + " + std::to_string(measure_left) + " measurements left, ETA " + minutes(eta);
    if (total != drawn_total_) {
      progress_.start("sweep", total);
      drawn_total_ = total;
    }
    progress_.update(total - train_left - measure_left, status);
    if (!progress_.has_bar() && status != last_status_line_ && finished_ != last_status_finished_) {
      progress_.line("   " + status);
      last_status_finished_ = finished_;
    }
    last_status_line_ = status;
  }

  // Several `--unit` processes write the root's files: each rewrites them from the disk under this lock, so
  // the last writer's view includes every unit that finished before it.
  FileLock state_lock() {
    return FileLock((fs::path(root_) / ".state.lock").string(), LOCK_EX, /*inherited=*/false,
                    "waiting to update " + root_ + "/manifest.json ...", progress_);
  }

  void write_state_shared() {
    const FileLock state = state_lock();
    records_.clear();
    write_state(current_plan());
  }

  static std::string absolute(const std::string& path) { return fs::absolute(path).lexically_normal().string(); }

  void write_state(const experiments::Plan& plan) {
    const std::string manifest =
        experiments::manifest_json(e_, plan, command_, [&](const PlannedRun& run) { return record(run); });
    if (manifest != last_manifest_) {
      flatmin::write_text_file((fs::path(root_) / "manifest.json").string(), manifest);
      last_manifest_ = manifest;
    }
    if (e_.select) flatmin::write_text_file((fs::path(root_) / "selection.json").string(),
                                             experiments::selection_json(e_, plan));
  }

  void report_end(const experiments::Plan& plan, bool stopped) {
    for (const auto& g : plan.selection) {
      std::string line = "selected " + (g.task.empty() ? "" : g.task + "/") + g.method + ": ";
      line += g.chosen >= 0 ? g.candidates[g.chosen].setting_name + " (" + e_.select->metric + " " +
                                  format_number(g.candidates[g.chosen].value, "%.4f") + ")"
                            : "none";
      if (g.candidates.size() > 1 || g.chosen < 0) progress_.line(line);
    }
    const int64_t done = count(plan, RunStatus::kDone), failed = count(plan, RunStatus::kFailed),
                  diverged = count(plan, RunStatus::kDiverged);
    std::string line = std::string(stopped ? "sweep interrupted: " : "sweep finished: ") + std::to_string(done) + " of " +
                       std::to_string(plan.runs.size()) + " runs done";
    if (diverged) line += ", " + std::to_string(diverged) + " diverged";
    if (failed) line += ", " + std::to_string(failed) + " failed (see their status.json; rerun with --retry-failed)";
    if (const int64_t b = blocked(plan)) line += ", " + std::to_string(b) + " blocked (the run they start from failed)";
    progress_.line(line + " | " + root_ + "/manifest.json");
    if (stopped) progress_.line("continue with:  " + command_);
    else progress_.line("report:  flatmin report " + root_);
  }

  SweepArgs a_;
  experiments::Experiment e_;
  training::Progress progress_;
  std::string root_, command_;
  int threads_ = 1;
  std::map<std::string, RunRecord> records_;  // by run directory; read from disk once, then kept current
  std::map<pid_t, Unit> running_;
  std::vector<double> train_seconds_, measure_seconds_;
  int64_t finished_ = 0, drawn_total_ = -1, last_status_finished_ = -1;
  std::string last_manifest_, last_status_line_;
  std::unique_ptr<FileLock> root_lock_;
};

}  // namespace

Action add_sweep_command(CLI::App& app) {
  auto args = std::make_shared<SweepArgs>();
  CLI::App* cmd = app.add_subcommand("sweep", "Run every configuration of an experiment file (methods × settings × "
                                              "tasks × seeds), resumably, several at a time");
  cmd->footer(
      "An experiment file (TOML, or the same in JSON) names flatmin train options by their long names; a list\n"
      "is an axis. Every run is an ordinary run directory under the root (default runs/<name>): rerunning the\n"
      "same command skips finished runs and resumes interrupted ones from their checkpoints, so a sweep killed\n"
      "at any moment ends as an uninterrupted one would. With [select], each (task, method) first runs its grid\n"
      "(select.seeds), the best validation setting is chosen, then run over all seeds. docs/SWEEPS.md.\n\n"
      "Writes ROOT/manifest.json (every run and its status), selection.json, experiment.json, and\n"
      "ROOT/runs/<task>/<method>/<setting>/seed<k>/ (config.json, metrics.csv, summary.json, train.log,\n"
      "geometry.json with [measure]). Then: flatmin report ROOT.\n\n"
      "Examples:\n"
      "  flatmin sweep experiments/finetune.toml --jobs 2        # the NSO paper's Table 3 at this scale\n"
      "  flatmin sweep experiments/finetune.toml --quick         # the same plan on a tiny budget\n"
      "  flatmin sweep experiments/finetune.toml --dry-run       # list the runs, run nothing\n\n"
      "On a cluster (docs/SWEEPS.md): --list prints one self-contained command per unit that can start now\n"
      "(a run: train or resume it, then measure it), `flatmin sweep EXP --out ROOT --unit ID`, for any\n"
      "scheduler to run on machines sharing ROOT. A listed command is a no-op once its unit is done, resumes it\n"
      "when interrupted, and waits for another process already running it. List again when they are done\n"
      "(fine-tuning follows pretraining, the chosen setting's seeds follow the grid) until nothing is listed:\n"
      "  while u=$(flatmin sweep EXP --out ROOT --list) && [ -n \"$u\" ]; do\n"
      "    printf '%s\\n' \"$u\" | xargs -d '\\n' -n 1 -P 4 sh -c; done");
  cmd->option_defaults()->always_capture_default();
  cmd->add_option("experiment", args->experiment, "Experiment file (.toml or .json)")->required();
  cmd->add_option("--out", args->out, "Sweep root directory")->default_str("runs/<name>, runs/<name>-quick");
  cmd->add_option("--jobs", args->jobs, "Runs side by side; the cores are divided among them")
      ->check(integer_in(1, 256));
  cmd->add_option("--threads", args->threads, "Intra-op threads per run")->default_str("cores / jobs");
  cmd->add_flag("--quick", args->quick, "Apply the file's [quick] table: the same plan at a tiny budget");
  cmd->add_flag("--retry-failed", args->retry_failed, "Run failed runs (not diverged ones) again");
  cmd->add_flag("--dry-run", args->dry_run, "Print the planned runs and their flatmin train options; run nothing");
  cmd->add_flag("--list", args->list,
                "Print one command per unit that can start now (`--unit` lines, absolute paths); run nothing");
  cmd->add_option("--unit", args->unit,
                  "Run this one run of the sweep (its id, as --list prints it): train or resume it, measure it, "
                  "update ROOT's manifest");
  cmd->add_option("--data-dir", args->data_dir, "The data directory, for every run (each run keeps its --dataset)")->default_str("flatmin train's");
  cmd->add_option("--progress", args->progress, "auto (bar on a terminal) | bar | lines | quiet")
      ->check(CLI::IsMember({"auto", "bar", "lines", "quiet"}));
  add_device_option(cmd, &args->device, "");
  return [args, cmd] {
    // One line for a combination that cannot mean anything: a listed unit is one process of its own.
    if (args->list || !args->unit.empty()) {
      const std::string mode = args->list ? "--list" : "--unit";
      for (const char* other : {"--dry-run", "--jobs", "--list", "--unit", "--retry-failed"})
        if (mode != other && cmd->count(other) > 0 && !(mode == "--unit" && std::string(other) == "--retry-failed"))
          throw Error("flatmin sweep " + mode + ": not with " + other +
                      (std::string(other) == "--jobs" ? " (each unit is one process; choose its --threads)" : ""));
    }
    parse_device(args->device);  // a missing GPU is said before any run starts
    experiments::Experiment experiment = experiments::load_experiment(args->experiment, args->quick);
    Sweep sweep(*args, std::move(experiment));
    sweep.validate();
    if (args->dry_run) return sweep.dry_run();
    if (args->list) return sweep.list();
    if (!args->unit.empty()) return sweep.run_unit();
    return sweep.run();
  };
}

}  // namespace flatmin::cli
