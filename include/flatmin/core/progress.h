#pragma once
/// Progress on long work: a one-line bar redrawn in place on a terminal; elsewhere (CI, pipes, files)
/// only the permanent lines, so logs stay readable. In core: training, geometry and the CLI all report with it.

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <string>

namespace flatmin {

class Progress {
 public:
  enum class Mode { kAuto, kBar, kLines, kQuiet };
  /// kAuto: a bar when `out` is std::cerr/std::cout attached to a terminal, else plain lines.
  explicit Progress(Mode mode = Mode::kAuto, std::ostream* out = nullptr);

  /// Starts a task of `total` units labelled `label` ("epoch 3/10").
  void start(const std::string& label, int64_t total);
  /// Redraws the bar (at most every 100 ms); a no-op without a bar.
  void update(int64_t done, const std::string& status = "");
  /// Clears the bar and prints `line` for good (suppressed in quiet mode).
  void line(const std::string& line);
  bool has_bar() const { return mode_ == Mode::kBar; }

 private:
  Mode mode_;
  std::ostream* out_;
  std::string label_;
  int64_t total_ = 0;
  std::chrono::steady_clock::time_point started_, last_draw_;
  bool drawn_ = false;
};

/// "auto" | "bar" | "lines" | "quiet"; throws flatmin::Error otherwise.
Progress::Mode parse_progress_mode(const std::string& name);

}  // namespace flatmin
