#pragma once
/// Learning-rate schedules as a factor of each parameter group's initial learning rate.

#include <cstdint>
#include <string>

#include <torch/arg.h>

namespace flatmin::training {

enum class LrScheduleKind {
  kConstant,  ///< factor 1
  kStep,      ///< gamma^floor(epoch / step_epochs)
  kCosine,    ///< min + (1 − min)·½(1 + cos(π·t/T)), per step, over the whole run
};

/// "constant" | "step" | "cosine"; throws flatmin::Error otherwise.
LrScheduleKind parse_lr_schedule(const std::string& name);
std::string to_string(LrScheduleKind kind);

struct LrSchedule {
  TORCH_ARG(LrScheduleKind, kind) = LrScheduleKind::kCosine;
  TORCH_ARG(int64_t, step_epochs) = 10;  ///< step decay period
  TORCH_ARG(double, gamma) = 0.1;        ///< step decay factor
  TORCH_ARG(double, min_factor) = 0.0;   ///< cosine floor, as a fraction of the initial lr

 public:
  /// The factor for global step `step` (0-based) of a run of `epochs` × `steps_per_epoch`.
  double factor(int64_t step, int64_t steps_per_epoch, int64_t epochs) const;
  /// Throws flatmin::Error on step_epochs < 1, gamma outside (0, 1], min_factor outside [0, 1].
  void validate() const;
};

}  // namespace flatmin::training
