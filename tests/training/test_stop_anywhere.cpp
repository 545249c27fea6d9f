// Stop anywhere, resume, and end where an uninterrupted run ends: a run is stopped (SIGTERM, as a user or a
// scheduler would) at every step boundary, before every epoch's scoring and measurement, and inside every
// checkpoint write in turn (FLATMIN_STOP_AT, core/stop_points.h), resumed from its newest checkpoint, and
// compared bitwise with the uninterrupted run: weights, and every epoch's untimed metrics.
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "flatmin/core/stop_points.h"
#include "flatmin/training/checkpoint.h"
#include "flatmin/training/run.h"
#include "training/blobs.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace stop_anywhere_test {

using namespace flatmin;
using namespace flatmin::training;
using flatmin::testing::blobs;
using flatmin::testing::scratch_dir;

namespace {

volatile std::sig_atomic_t g_term = 0;
extern "C" void on_term(int) { g_term = 1; }

// 45 training examples in batches of 16: 3 steps an epoch, the last one short; 3 epochs; a checkpoint every
// 2 steps besides the epoch ends; NSO with augmentation (noise and crops both continue from the checkpoint).
RunConfig stop_config() {
  return RunConfig()
      .method(optim::MethodSpec().name("nso").sigma(0.05).k(1))
      .model(models::ModelSpec().name("mlp").width(8))
      .split(data::SplitOptions().val_size(30))
      .optimizer(optim::BaseOptimizerOptions().lr(0.05).momentum(0.9).weight_decay(1e-4))
      .trainer(TrainerOptions().epochs(3).batch_size(16).augment(data::AugmentOptions().enabled(true).padding(1)))
      .seed(3);
}

// An epoch-end measurement that depends on every weight, as geometry::measure_scalars does.
std::vector<std::pair<std::string, double>> weight_sum(const RunResult* run) {
  double sum = 0;
  for (const auto& p : run->model->parameters()) sum += p.sum().item<double>();
  return {{"weight_sum", sum}};
}

struct Outcome {
  std::vector<at::Tensor> weights;
  std::vector<EpochMetrics> history;
  bool interrupted = false;
};

// One run: fresh (stopping where FLATMIN_STOP_AT says) or resumed from `resume`.
Outcome run_once(const data::TrainTest& data, const std::string& dir, const std::string& resume = "") {
  RunResult* current = nullptr;
  RunResult run;
  RunControl control = RunControl()
                           .checkpoint_dir(dir)
                           .checkpoint_every_steps(2)
                           .keep_checkpoints(2)
                           .resume_from(resume)
                           .stop_requested([] { return g_term != 0; })
                           .epoch_measure([&](const EpochMetrics&) { return weight_sum(current); });
  Outcome out;
  auto on_start = [&](const RunResult& r) { current = const_cast<RunResult*>(&r); };
  try {
    run = run_training(stop_config(), data, on_start, {}, nullptr, control);
  } catch (const TrainingInterrupted&) {
    out.interrupted = true;
    return out;
  }
  for (const auto& p : run.model->parameters()) out.weights.push_back(p.detach().clone());
  out.history = run.history;
  return out;
}

// Equal, or both NaN (an epoch that does not score the test set).
bool same(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

void expect_same_run(const Outcome& a, const Outcome& b, const std::string& instant) {
  ASSERT_EQ(a.weights.size(), b.weights.size()) << instant;
  for (size_t i = 0; i < a.weights.size(); ++i) EXPECT_TRUE(a.weights[i].equal(b.weights[i])) << instant << " weight " << i;
  ASSERT_EQ(a.history.size(), b.history.size()) << instant;
  for (size_t e = 0; e < a.history.size(); ++e) {
    const EpochMetrics &x = a.history[e], &y = b.history[e];
    EXPECT_EQ(x.steps, y.steps) << instant << " epoch " << e;
    EXPECT_EQ(x.objective, y.objective) << instant << " epoch " << e;
    EXPECT_EQ(x.lr, y.lr) << instant << " epoch " << e;
    EXPECT_EQ(x.method_scalars, y.method_scalars) << instant << " epoch " << e;
    EXPECT_TRUE(same(x.train.loss, y.train.loss)) << instant << " epoch " << e;
    EXPECT_EQ(x.val.loss, y.val.loss) << instant << " epoch " << e;
    EXPECT_TRUE(same(x.test.accuracy, y.test.accuracy)) << instant << " epoch " << e;
    EXPECT_TRUE(std::isfinite(y.val.loss)) << instant << " epoch " << e;
    EXPECT_EQ(x.measures, y.measures) << instant << " epoch " << e;
  }
}

TEST(StopAnywhere, EveryInstantResumesToTheUninterruptedRunBitwise) {
  const auto data = blobs(25, 10);
  auto previous = std::signal(SIGTERM, on_term);
  // The uninterrupted run, counting its instants (the variable names one that never comes).
  ::setenv("FLATMIN_STOP_AT", "never@1", 1);
  reset_stop_points();
  const std::string dir = scratch_dir("stop-anywhere");
  const Outcome full = run_once(data, dir);
  ASSERT_FALSE(full.interrupted);
  std::vector<std::pair<std::string, int64_t>> instants;
  for (const char* name : {"step", "eval", "measure", "checkpoint"}) instants.emplace_back(name, stop_point_passes(name));
  EXPECT_EQ(instants[0].second, 9);  // 3 epochs × 3 steps
  EXPECT_EQ(instants[1].second, 3);
  EXPECT_EQ(instants[2].second, 3);
  EXPECT_EQ(instants[3].second, 6);  // steps 2, 4 and 8 (step 6 ends epoch 2), and the 3 epoch ends

  int stops = 0, resumed = 0;
  for (const auto& [name, count] : instants) {
    for (int64_t n = 1; n <= count; ++n) {
      const std::string instant = name + "@" + std::to_string(n);
      std::filesystem::remove_all(dir);
      g_term = 0;
      ::setenv("FLATMIN_STOP_AT", instant.c_str(), 1);
      reset_stop_points();
      Outcome stopped = run_once(data, dir);
      ::unsetenv("FLATMIN_STOP_AT");
      reset_stop_points();
      EXPECT_EQ(g_term, 1) << instant << ": the stop never came";
      ++stops;
      g_term = 0;
      if (stopped.interrupted) {  // else the stop came after the last step: the run had nothing left to do
        ++resumed;
        stopped = run_once(data, dir, latest_checkpoint(dir));
        ASSERT_FALSE(stopped.interrupted) << instant;
      }
      expect_same_run(full, stopped, instant);
    }
  }
  EXPECT_EQ(stops, 21);
  // The last epoch's scoring, measurement and checkpoint come after the last step: the run ends there.
  EXPECT_EQ(resumed, 18);
  std::signal(SIGTERM, previous);
  std::filesystem::remove_all(dir);
}

TEST(StopAnywhere, AMalformedStopAtIsOneClearError) {
  for (const char* bad : {"step", "step@0", "step@2:stop", "@3", "step@x"}) {
    ::setenv("FLATMIN_STOP_AT", bad, 1);
    EXPECT_THROW(reset_stop_points(), flatmin::Error) << bad;
  }
  ::unsetenv("FLATMIN_STOP_AT");
  EXPECT_NO_THROW(reset_stop_points());
  EXPECT_NO_THROW(stop_point("step", 1));
}

}  // namespace

}  // namespace stop_anywhere_test
