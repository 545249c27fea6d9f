#include "flatmin/jobs/stop_signals.h"

namespace flatmin::jobs {
namespace {

volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void request_stop(int signal) {
  if (g_stop_signal == 0) g_stop_signal = signal;
  std::signal(signal, SIG_DFL);  // a second signal kills as usual
}

}  // namespace

StopOnSignals::StopOnSignals() {
  g_stop_signal = 0;
  struct sigaction action {};
  action.sa_handler = request_stop;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, &previous_int_);
  sigaction(SIGTERM, &action, &previous_term_);
}

StopOnSignals::~StopOnSignals() {
  sigaction(SIGINT, &previous_int_, nullptr);
  sigaction(SIGTERM, &previous_term_, nullptr);
}

bool StopOnSignals::requested() const { return g_stop_signal != 0; }

const char* StopOnSignals::signal_name() const {
  return g_stop_signal == SIGTERM ? "SIGTERM" : g_stop_signal == SIGINT ? "SIGINT" : "";
}

}  // namespace flatmin::jobs
