#pragma once
/// The options of the jobs, defined once for both faces: the CLI's subcommands and Python's flatmin.train
/// parse them with these definitions (CLI11, header-only: a program including this header needs it).
/// Option checks say what is wrong in words ("must be in [0, 1)"), not as CLI11's numeric ranges, and reject
/// a non-number as such.

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include <CLI/CLI.hpp>

#include "flatmin/jobs/geometry.h"
#include "flatmin/jobs/landscape.h"
#include "flatmin/jobs/sensing.h"
#include "flatmin/jobs/train.h"

namespace flatmin::jobs {

/// A finite number in the interval from lo to hi, each end open or closed.
inline CLI::Validator number_between(double lo, double hi, bool lo_closed = true, bool hi_closed = true) {
  const bool unbounded = hi == std::numeric_limits<double>::infinity();
  const std::string range = unbounded ? std::string(lo_closed ? ">= " : "> ") + CLI::detail::to_string(lo)
                                      : std::string("in ") + (lo_closed ? "[" : "(") + CLI::detail::to_string(lo) +
                                            ", " + CLI::detail::to_string(hi) + (hi_closed ? "]" : ")");
  return CLI::Validator(
      [=](std::string& input) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(input.c_str(), &end);
        if (input.empty() || *end != '\0') return "'" + input + "' is not a number";
        const bool ok = std::isfinite(v) && (lo_closed ? v >= lo : v > lo) && (hi_closed ? v <= hi : v < hi);
        return ok ? std::string() : "must be " + range + ", got " + input;
      },
      range);
}

inline CLI::Validator number_at_least(double lo) {
  return number_between(lo, std::numeric_limits<double>::infinity());
}

/// An integer in [lo, hi].
inline CLI::Validator integer_in(long long lo, long long hi = std::numeric_limits<long long>::max()) {
  const std::string range = hi == std::numeric_limits<long long>::max()
                                ? ">= " + std::to_string(lo)
                                : "in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  return CLI::Validator(
      [=](std::string& input) -> std::string {
        char* end = nullptr;
        errno = 0;
        const long long v = std::strtoll(input.c_str(), &end, 10);
        if (input.empty() || *end != '\0' || errno == ERANGE) return "'" + input + "' is not an integer";
        return v >= lo && v <= hi ? std::string() : "must be an integer " + range + ", got " + input;
      },
      range);
}

inline CLI::Option* add_device_option(CLI::App* cmd, std::string* device, const std::string& group) {
  return cmd
      ->add_option("--device", *device,
                   "cpu | cuda | cuda:N: where the model, batches, noise and measures live (cuda needs flatmin "
                   "built against a CUDA LibTorch: docs/GPU.md)")
      ->group(group);
}

inline CLI::Option* add_precision_option(CLI::App* cmd, std::string* precision, const std::string& group) {
  return cmd
      ->add_option("--precision", *precision,
                   "fp32 | bf16: forward passes in bf16 autocast (weights, gradients, noise and the methods' "
                   "combination stay fp32)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->group(group);
}

/// The options of `flatmin train` on `cmd` (its help text and footer too), bound to `job`'s fields.
void add_train_options(CLI::App& cmd, TrainJob& job);
/// After parsing: records which options were given and rejects the combinations that cannot run together
/// (throws CLI::ValidationError naming the option).
void finish_train_options(const CLI::App& cmd, TrainJob& job);

/// The options of `flatmin geometry` on `cmd` (its help text and footer too), bound to `job`'s fields.
void add_geometry_options(CLI::App& cmd, GeometryJob& job);
/// The options of `flatmin landscape`.
void add_landscape_options(CLI::App& cmd, LandscapeJob& job);
/// The options of `flatmin sensing`.
void add_sensing_options(CLI::App& cmd, SensingJob& job);

}  // namespace flatmin::jobs
