// The memory budget of each method, counted (flatmin::MemoryCounter), in parameter-sized buffers beyond
// SGD with momentum, on the NSO paper's MLP: "held" between steps, "extra" at the peak of a step.
// Budget (docs/PERFORMANCE.md): one copy of W for exact restoration, nothing else held, except bSAM's own
// state (m, s, h: 3 with the copy, beyond SGD's momentum) and nothing more at the peak, except
//  - CR-SAM: the clean gradient g_o beside the copy (2);
//  - multi-pass sums (NSO): LibTorch's AccumulateGrad materialises one parameter tensor's new gradient
//    before adding it into .grad, so the peak adds the largest parameter tensor.
// Catches a method (or the optimizer) that starts keeping a buffer, or a temporary of a parameter's size.
#include <algorithm>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "flatmin/core/memory.h"
#include "flatmin/models/models.h"
#include "flatmin/optim/methods.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace memory_test {

using namespace flatmin;

namespace {

struct Usage {
  double held = 0, extra = 0;  // parameter-sized buffers
  double largest_tensor = 0;   // the largest parameter tensor, as a fraction of all parameters
};

struct Footprint {
  int64_t held = 0, peak = 0;
};

Footprint footprint(const optim::MethodSpec& spec, const at::Tensor& x, const at::Tensor& y) {
  MemoryCounter& counter = MemoryCounter::install();
  const int64_t before = counter.live();
  torch::manual_seed(1);
  models::Model model = models::make_model(models::ModelSpec().name("mlp"));
  auto opt = optim::make_perturbed_optimizer(model->parameters(), spec,
                                             optim::BaseOptimizerOptions().lr(0.01).momentum(0.9),
                                             optim::PerturbedOptimizerOptions().accumulate_in_grad(true));
  auto closure = [&] {
    at::Tensor loss = torch::nn::functional::cross_entropy(model.forward(x), y);
    loss.backward();
    return loss;
  };
  for (int s = 0; s < 2; ++s) opt->step(closure);  // state (momentum, the copy of W) exists from here on
  Footprint f;
  f.held = counter.live() - before;
  counter.reset_peak();
  opt->step(closure);
  f.peak = counter.peak() - before;
  return f;
}

Usage usage(const optim::MethodSpec& spec) {
  MemoryCounter::install();  // before the data, so that every tensor of the measurement is counted
  torch::manual_seed(0);
  const at::Tensor x = torch::randn({32, 1, 28, 28});
  const at::Tensor y = torch::randint(0, 10, {32}, torch::kLong);
  const Footprint sgd = footprint(optim::MethodSpec().name("sgd"), x, y);
  const Footprint method = footprint(spec, x, y);
  torch::manual_seed(1);
  models::Model model = models::make_model(models::ModelSpec().name("mlp"));
  int64_t total = 0, largest = 0;
  for (const auto& p : model->parameters()) {
    total += p.numel();
    largest = std::max(largest, p.numel());
  }
  const double buffer = static_cast<double>(total) * 4;  // float32
  return {(method.held - sgd.held) / buffer, (method.peak - sgd.peak) / buffer,
          static_cast<double>(largest) / static_cast<double>(total)};
}

constexpr double kSlack = 0.02;  // bias-sized odds and ends, the loss scalars

TEST(Memory, CounterCountsWhatIsAllocatedAndFreed) {
  MemoryCounter& counter = MemoryCounter::install();
  const int64_t before = counter.live();
  {
    at::Tensor t = at::empty({1000}, at::kFloat);
    EXPECT_EQ(counter.live() - before, 4000);
    counter.reset_peak();
  }
  EXPECT_EQ(counter.live(), before);
  EXPECT_EQ(counter.peak() - before, 4000);
}

TEST(Memory, OneCopyOfWeightsForPerturbingMethodsAndNothingAtThePeak) {
  for (const char* name : {"wp-sgd", "sam", "usam", "asam", "rsam"}) {
    const Usage u = usage(optim::MethodSpec().name(name));
    EXPECT_NEAR(u.held, 1.0, kSlack) << name;
    EXPECT_LE(u.extra, 1.0 + kSlack) << name;
  }
}

TEST(Memory, NsoPeakAddsOnlyTheLargestTensorsFreshGradient) {
  for (const auto& spec : {optim::MethodSpec().name("nso"), optim::MethodSpec().name("nso").k(2),
                           optim::MethodSpec().name("nso").two_point(false)}) {
    const Usage u = usage(spec);
    EXPECT_NEAR(u.held, 1.0, kSlack) << spec.k();
    EXPECT_LE(u.extra, 1.0 + u.largest_tensor + kSlack) << spec.k();
  }
}

TEST(Memory, CrSamHoldsTheCleanGradientOnlyDuringTheStep) {
  const Usage u = usage(optim::MethodSpec().name("crsam"));
  EXPECT_NEAR(u.held, 1.0, kSlack);
  EXPECT_LE(u.extra, 2.0 + kSlack);
}

TEST(Memory, BsamHoldsItsOwnStateAndNoMore) {
  const Usage u = usage(optim::MethodSpec().name("bsam").bsam_train_size(60000));
  EXPECT_NEAR(u.held, 3.0, kSlack);
  EXPECT_LE(u.extra, 3.0 + kSlack);
}

}  // namespace

}  // namespace memory_test
