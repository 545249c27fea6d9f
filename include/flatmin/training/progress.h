#pragma once
/// The progress display moved to core (flatmin/core/progress.h) so that geometry can use it without depending
/// on training; these names keep the training-side spelling working.

#include "flatmin/core/progress.h"

namespace flatmin::training {
using flatmin::parse_progress_mode;
using flatmin::Progress;
}  // namespace flatmin::training
