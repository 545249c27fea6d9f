#pragma once
/// flatmin's one exception type for problems a user can fix (bad options, bad files, missing data).
/// Messages are one line and name the offending thing ("<file>: <problem>", "--sigma: must be >= 0").

#include <stdexcept>
#include <string>

namespace flatmin {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

/// A combination of options that cannot run together, found after parsing (the CLI exits 2, as for any
/// usage error).
class UsageError : public Error {
 public:
  using Error::Error;
};

/// The first line of `text`: LibTorch's messages carry a backtrace after it, and flatmin's errors are one line.
inline std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

/// Throws flatmin::Error(message) unless `condition` holds.
inline void check(bool condition, const std::string& message) {
  if (!condition) throw Error(message);
}

}  // namespace flatmin
