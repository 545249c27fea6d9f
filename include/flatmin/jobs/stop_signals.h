#pragma once
/// SIGINT and SIGTERM as a request to stop, while a job runs: the job checks `requested()` after each step,
/// writes a checkpoint and returns. A second signal acts as the default (it kills). The handlers found at
/// construction (Python's, for flatmin.train) are put back at destruction.

#include <csignal>

namespace flatmin::jobs {

class StopOnSignals {
 public:
  StopOnSignals();
  ~StopOnSignals();
  StopOnSignals(const StopOnSignals&) = delete;
  StopOnSignals& operator=(const StopOnSignals&) = delete;

  /// Whether SIGINT or SIGTERM arrived since construction.
  bool requested() const;
  /// "SIGINT" or "SIGTERM" (the first that arrived), "" before any.
  const char* signal_name() const;

 private:
  struct sigaction previous_int_ {}, previous_term_ {};
};

}  // namespace flatmin::jobs
