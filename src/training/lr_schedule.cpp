#include "flatmin/training/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "flatmin/core/error.h"

namespace flatmin::training {

LrScheduleKind parse_lr_schedule(const std::string& name) {
  if (name == "constant") return LrScheduleKind::kConstant;
  if (name == "step") return LrScheduleKind::kStep;
  if (name == "cosine") return LrScheduleKind::kCosine;
  throw Error("unknown learning-rate schedule '" + name + "' (valid: constant, step, cosine)");
}

std::string to_string(LrScheduleKind kind) {
  switch (kind) {
    case LrScheduleKind::kConstant: return "constant";
    case LrScheduleKind::kStep: return "step";
    case LrScheduleKind::kCosine: return "cosine";
  }
  return "?";
}

void LrSchedule::validate() const {
  check(step_epochs_ >= 1, "lr step period must be >= 1 epoch, got " + std::to_string(step_epochs_));
  check(gamma_ > 0 && gamma_ <= 1, "lr decay factor gamma must be in (0, 1], got " + std::to_string(gamma_));
  check(min_factor_ >= 0 && min_factor_ <= 1, "cosine floor must be in [0, 1], got " + std::to_string(min_factor_));
}

double LrSchedule::factor(int64_t step, int64_t steps_per_epoch, int64_t epochs) const {
  switch (kind_) {
    case LrScheduleKind::kConstant:
      return 1.0;
    case LrScheduleKind::kStep: {
      const int64_t epoch = steps_per_epoch > 0 ? step / steps_per_epoch : 0;
      return std::pow(gamma_, static_cast<double>(epoch / step_epochs_));
    }
    case LrScheduleKind::kCosine: {
      const int64_t total = std::max<int64_t>(steps_per_epoch * epochs, 1);
      const double t = std::min(1.0, static_cast<double>(step) / static_cast<double>(total));
      return min_factor_ + (1.0 - min_factor_) * 0.5 * (1.0 + std::cos(M_PI * t));
    }
  }
  return 1.0;
}

}  // namespace flatmin::training
