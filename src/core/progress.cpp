#include "flatmin/core/progress.h"

#include <unistd.h>

#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "flatmin/core/error.h"

namespace flatmin {
namespace {

bool is_terminal(const std::ostream* out) {
  if (out == &std::cerr) return isatty(STDERR_FILENO) == 1;
  if (out == &std::cout) return isatty(STDOUT_FILENO) == 1;
  return false;
}

std::string format_duration(double seconds) {
  char buffer[32];
  if (seconds < 60) std::snprintf(buffer, sizeof buffer, "%.0fs", seconds);
  else if (seconds < 3600) std::snprintf(buffer, sizeof buffer, "%dm%02ds", int(seconds) / 60, int(seconds) % 60);
  else std::snprintf(buffer, sizeof buffer, "%dh%02dm", int(seconds) / 3600, (int(seconds) % 3600) / 60);
  return buffer;
}

}  // namespace

Progress::Progress(Mode mode, std::ostream* out) : mode_(mode), out_(out ? out : &std::cerr) {
  if (mode_ == Mode::kAuto) mode_ = is_terminal(out_) ? Mode::kBar : Mode::kLines;
}

void Progress::start(const std::string& label, int64_t total) {
  label_ = label;
  total_ = total;
  started_ = std::chrono::steady_clock::now();
  last_draw_ = {};
}

void Progress::update(int64_t done, const std::string& status) {
  if (mode_ != Mode::kBar) return;
  const auto now = std::chrono::steady_clock::now();
  if (done < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  constexpr int kWidth = 28;
  const double fraction = total_ > 0 ? static_cast<double>(done) / static_cast<double>(total_) : 1.0;
  const int filled = static_cast<int>(fraction * kWidth);
  const double elapsed = std::chrono::duration<double>(now - started_).count();
  const double eta = done > 0 ? elapsed * static_cast<double>(total_ - done) / static_cast<double>(done) : 0.0;
  std::ostringstream bar;
  bar << '\r' << label_ << " [" << std::string(filled, '=') << std::string(kWidth - filled, ' ') << "] " << done
      << '/' << total_ << ' ' << status << " eta " << format_duration(eta) << "\033[K";
  *out_ << bar.str() << std::flush;
  drawn_ = true;
}

void Progress::line(const std::string& text) {
  if (mode_ == Mode::kQuiet) return;
  if (drawn_) *out_ << "\r\033[K";
  drawn_ = false;
  *out_ << text << '\n' << std::flush;
}

Progress::Mode parse_progress_mode(const std::string& name) {
  if (name == "auto") return Progress::Mode::kAuto;
  if (name == "bar") return Progress::Mode::kBar;
  if (name == "lines") return Progress::Mode::kLines;
  if (name == "quiet") return Progress::Mode::kQuiet;
  throw Error("unknown progress mode '" + name + "' (valid: auto, bar, lines, quiet)");
}

}  // namespace flatmin
