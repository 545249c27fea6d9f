// BatchNorm running statistics under multi-pass steps: they move once per step, by the mean of the
// updates of the passes that count, and are untouched where no pass counts or the model is in eval mode.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "flatmin/optim/methods.h"
#include "flatmin/optim/perturbed_optimizer.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace batchnorm_policy_test {

using namespace flatmin::optim;

namespace {

constexpr double kMomentum = 0.1;

struct Net : torch::nn::Module {
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
  Net() {
    fc = register_module("fc", torch::nn::Linear(3, 4));
    bn = register_module("bn", torch::nn::BatchNorm1d(torch::nn::BatchNorm1dOptions(4).momentum(kMomentum)));
  }
  at::Tensor pre_bn(const at::Tensor& x) { return fc->forward(x); }
  at::Tensor forward(const at::Tensor& x) { return bn->forward(fc->forward(x)); }
};

// A two-pass method whose second pass does not count for the statistics (as SAM's ascent pass).
class FirstPassStatistics final : public PerturbationMethod {
 public:
  std::string name() const override { return "test-first-pass"; }
  int64_t evaluations() const override { return 2; }
  void move_to(int64_t i, StepContext& ctx) override {
    for (size_t j = 0; j < ctx.params.size(); ++j) ctx.params[j].copy_(ctx.anchor[j]).add_(i == 0 ? 0.0 : 0.3);
  }
  bool counts_for_buffers(int64_t i) const override { return i == 0; }
};

struct Fixture {
  std::shared_ptr<Net> net = std::make_shared<Net>();
  at::Tensor x = at::randn({16, 3});
  std::vector<at::Tensor> pre_bn_outputs;  // the BN input of every pass
  std::shared_ptr<PerturbedOptimizer> opt;

  Fixture(std::shared_ptr<PerturbationMethod> method, bool track) {
    auto base = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.0));
    opt = std::make_shared<PerturbedOptimizer>(base, std::move(method));
    if (track) opt->track_buffers(net->buffers());
  }
  void step() {
    opt->step([&] {
      {
        torch::NoGradGuard no_grad;
        pre_bn_outputs.push_back(net->pre_bn(x));
      }
      auto loss = net->forward(x).pow(2).mean();
      loss.backward();
      return loss;
    });
  }
};

TEST(BatchNormPolicy, NsoMovesStatisticsOnceByTheMeanOfAllPasses) {
  at::manual_seed(1);
  Fixture f(std::make_shared<Nso>(NsoOptions(0.5).k(2)), /*track=*/true);
  const at::Tensor mean0 = f.net->bn->running_mean.clone(), var0 = f.net->bn->running_var.clone();
  f.step();
  ASSERT_EQ(f.pre_bn_outputs.size(), 4u);
  at::Tensor batch_mean = at::zeros({4}), batch_var = at::zeros({4});
  for (const auto& h : f.pre_bn_outputs) {
    batch_mean += h.mean(0) / 4;
    batch_var += h.var(0, /*unbiased=*/true) / 4;
  }
  EXPECT_TRUE(at::allclose(f.net->bn->running_mean, (1 - kMomentum) * mean0 + kMomentum * batch_mean, 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(f.net->bn->running_var, (1 - kMomentum) * var0 + kMomentum * batch_var, 1e-5, 1e-6));
  EXPECT_EQ(f.net->bn->num_batches_tracked.item<int64_t>(), 1);
}

TEST(BatchNormPolicy, PassesThatDoNotCountLeaveNoTrace) {
  at::manual_seed(2);
  Fixture f(std::make_shared<FirstPassStatistics>(), true);
  const at::Tensor mean0 = f.net->bn->running_mean.clone();
  f.step();
  ASSERT_EQ(f.pre_bn_outputs.size(), 2u);
  const at::Tensor expected = (1 - kMomentum) * mean0 + kMomentum * f.pre_bn_outputs[0].mean(0);
  EXPECT_TRUE(at::allclose(f.net->bn->running_mean, expected, 1e-6, 1e-7));
  // The second pass really saw other statistics: counting it would have given another value.
  const at::Tensor both = (1 - kMomentum) * mean0 + kMomentum * (f.pre_bn_outputs[0] + f.pre_bn_outputs[1]).mean(0) / 2;
  EXPECT_FALSE(at::allclose(f.net->bn->running_mean, both, 1e-4, 1e-5));
  EXPECT_EQ(f.net->bn->num_batches_tracked.item<int64_t>(), 1);
}

TEST(BatchNormPolicy, UntrackedBuffersUpdateOnEveryPass) {
  at::manual_seed(3);
  Fixture f(std::make_shared<Nso>(NsoOptions(0.5).k(1)), /*track=*/false);
  f.step();
  EXPECT_EQ(f.net->bn->num_batches_tracked.item<int64_t>(), 2);
}

TEST(BatchNormPolicy, EvalModeAndZeroLearningRateLeaveEverythingBitwiseUnchanged) {
  at::manual_seed(4);
  Fixture f(std::make_shared<Nso>(NsoOptions(0.5).k(3)), true);
  f.net->eval();
  std::vector<at::Tensor> before;
  for (const auto& t : f.net->parameters()) before.push_back(t.clone());
  for (const auto& t : f.net->buffers()) before.push_back(t.clone());
  for (int s = 0; s < 3; ++s) f.step();
  std::vector<at::Tensor> after;
  for (const auto& t : f.net->parameters()) after.push_back(t);
  for (const auto& t : f.net->buffers()) after.push_back(t);
  ASSERT_EQ(before.size(), after.size());
  for (size_t j = 0; j < before.size(); ++j) EXPECT_TRUE(at::equal(before[j], after[j])) << j;
}

}  // namespace

}  // namespace batchnorm_policy_test
