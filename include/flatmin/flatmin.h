#pragma once
/// flatmin: training toward flat minima and measuring flatness, on LibTorch. The umbrella header.

#include "flatmin/core/error.h"
#include "flatmin/core/runtime.h"
#include "flatmin/core/seed.h"
#include "flatmin/data/dataset.h"
#include "flatmin/data/idx.h"
#include "flatmin/models/models.h"
#include "flatmin/noise/noise.h"
#include "flatmin/optim/base_optimizer.h"
#include "flatmin/optim/methods.h"
#include "flatmin/optim/perturbation_method.h"
#include "flatmin/optim/perturbed_optimizer.h"
#include "flatmin/training/lr_schedule.h"
#include "flatmin/training/metrics_log.h"
#include "flatmin/training/progress.h"
#include "flatmin/training/run.h"
#include "flatmin/training/trainer.h"
