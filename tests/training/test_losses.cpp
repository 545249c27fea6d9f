// Training losses against their closed forms; label smoothing, L2-SP and augmentation through a whole run.
#include <cmath>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "flatmin/core/error.h"
#include "flatmin/core/seed.h"
#include "flatmin/training/losses.h"
#include "flatmin/training/run.h"
#include "training/blobs.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace losses_test {

using namespace flatmin::training;

namespace {

TEST(LabelSmoothing, EqualsTheClosedFormForAKnownLogitVector) {
  // One example, logits z = (2, 0, −1), target 0, K = 3, ε = 0.2:
  //   q = (1 − ε + ε/3, ε/3, ε/3),  loss = −Σ q_k log softmax(z)_k = lse − Σ q_k z_k.
  const at::Tensor z = torch::tensor({{2.0, 0.0, -1.0}}, torch::kDouble);
  const at::Tensor y = torch::tensor({0}, torch::kLong);
  const double eps = 0.2;
  const double lse = std::log(std::exp(2.0) + std::exp(0.0) + std::exp(-1.0));
  const double q0 = 1 - eps + eps / 3, q1 = eps / 3, q2 = eps / 3;
  const double expected = lse - (q0 * 2.0 + q1 * 0.0 + q2 * -1.0);
  EXPECT_NEAR(make_loss(LossOptions().label_smoothing(eps))(z, y).item<double>(), expected, 1e-14);
  EXPECT_NEAR(smoothed_cross_entropy(z, y, eps).item<double>(), expected, 1e-14);
}

TEST(LabelSmoothing, AveragesOverTheBatchAndMatchesLibTorchsOption) {
  at::manual_seed(0);
  const at::Tensor z = at::randn({7, 5}, at::kDouble);
  const at::Tensor y = torch::tensor({0, 4, 2, 2, 1, 3, 0}, torch::kLong);
  for (double eps : {0.0, 0.1, 0.3}) {
    double sum = 0;
    for (int64_t i = 0; i < 7; ++i) {
      const at::Tensor log_p = at::log_softmax(z[i], 0);
      const int64_t t = y[i].item<int64_t>();
      for (int64_t k = 0; k < 5; ++k) sum -= ((k == t ? 1 - eps : 0) + eps / 5) * log_p[k].item<double>();
    }
    EXPECT_NEAR(make_loss(LossOptions().label_smoothing(eps))(z, y).item<double>(), sum / 7, 1e-13) << eps;
    const double torch_value = torch::nn::functional::cross_entropy(
                                   z, y, torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(eps))
                                   .item<double>();
    EXPECT_NEAR(smoothed_cross_entropy(z, y, eps).item<double>(), torch_value, 1e-13) << eps;
  }
}

TEST(LabelSmoothing, GradientIsSoftmaxMinusTheSmoothedTargets) {
  const at::Tensor z = torch::tensor({{0.5, -0.3, 1.2, 0.0}}, torch::kDouble).requires_grad_(true);
  const at::Tensor y = torch::tensor({2}, torch::kLong);
  const double eps = 0.3;
  smoothed_cross_entropy(z, y, eps).backward();
  at::Tensor q = at::full({1, 4}, eps / 4, at::kDouble);
  q[0][2] += 1 - eps;
  EXPECT_TRUE(at::allclose(z.grad(), at::softmax(z.detach(), 1) - q, 1e-14, 1e-14));
}

TEST(LabelSmoothing, RejectsWeightsOutsideZeroToOne) {
  EXPECT_THROW(make_loss(LossOptions().label_smoothing(1.0)), flatmin::Error);
  EXPECT_THROW(make_loss(LossOptions().label_smoothing(-0.1)), flatmin::Error);
  EXPECT_THROW(make_loss(LossOptions().label_smoothing(std::nan(""))), flatmin::Error);
}

using flatmin::testing::blobs;

RunConfig base_config(const std::string& method) {
  return RunConfig()
      .method(flatmin::optim::MethodSpec().name(method).bsam_train_size(0))
      .model(flatmin::models::ModelSpec().name("mlp").width(16))
      .split(flatmin::data::SplitOptions().val_size(30))
      .optimizer(flatmin::optim::BaseOptimizerOptions().lr(0.05))
      .trainer(TrainerOptions().epochs(2).batch_size(16))
      .seed(3);
}

std::vector<at::Tensor> weights(const RunResult& r) {
  std::vector<at::Tensor> w;
  for (const auto& p : r.model->parameters()) w.push_back(p.detach().clone());
  return w;
}

bool same_weights(const RunResult& a, const RunResult& b) {
  const auto wa = weights(a), wb = weights(b);
  for (size_t j = 0; j < wa.size(); ++j)
    if (!at::equal(wa[j], wb[j])) return false;
  return true;
}

TEST(RunTraining, SmoothingL2SpAndAugmentationChangeTheRunAndAreSeeded) {
  const auto data = blobs();
  for (const std::string method : {"sam", "bsam", "crsam"}) {
    const RunResult plain = run_training(base_config(method), data);
    RunConfig all = base_config(method);
    all.loss().label_smoothing(0.2);
    all.l2sp(1e-2);
    all.trainer().augment(flatmin::data::AugmentOptions().enabled(true).padding(1));
    const RunResult a = run_training(all, data), b = run_training(all, data);
    EXPECT_TRUE(same_weights(a, b)) << method;  // every stream is seeded
    EXPECT_FALSE(same_weights(a, plain)) << method;
    // Each option alone changes the run.
    RunConfig smoothing = base_config(method), l2sp = base_config(method), augment = base_config(method);
    smoothing.loss().label_smoothing(0.2);
    l2sp.l2sp(1e-2);
    augment.trainer().augment(flatmin::data::AugmentOptions().enabled(true).padding(1));
    EXPECT_FALSE(same_weights(run_training(smoothing, data), plain)) << method;
    EXPECT_FALSE(same_weights(run_training(l2sp, data), plain)) << method;
    EXPECT_FALSE(same_weights(run_training(augment, data), plain)) << method;
    // Augmentation that does nothing (no padding, no flip) leaves the run bit-identical: its stream is its own.
    RunConfig identity = base_config(method);
    identity.trainer().augment(flatmin::data::AugmentOptions().enabled(true).padding(0).flip(false));
    EXPECT_TRUE(same_weights(run_training(identity, data), plain)) << method;
  }
}

TEST(RunTraining, L2SpPullsTheWeightsTowardsTheirStart) {
  const auto data = blobs();
  RunConfig config = base_config("sgd");
  config.trainer().epochs(3);
  auto distance = [&](double lambda) {
    RunConfig c = config;
    c.l2sp(lambda);
    const RunResult r = run_training(c, data);
    torch::manual_seed(flatmin::derive_seed(c.seed(), flatmin::SeedStream::kModelInit));
    const auto start = flatmin::models::make_model(r.spec);
    double d = 0;
    const auto w = r.model->parameters(), w0 = start->parameters();
    for (size_t j = 0; j < w.size(); ++j) d += (w[j] - w0[j]).square().sum().item<double>();
    return std::sqrt(d);
  };
  const double free = distance(0.0), held = distance(1.0);
  EXPECT_LT(held, 0.7 * free) << free << " vs " << held;
}

TEST(RunTraining, ConfigRecordsTheNewOptions) {
  RunConfig config = base_config("rsam");
  config.loss().label_smoothing(0.1);
  config.l2sp(0.01);
  config.trainer().augment(flatmin::data::AugmentOptions().enabled(true).padding(3));
  const auto j = nlohmann::json::parse(config.to_json());
  EXPECT_DOUBLE_EQ(j["loss"]["label_smoothing"].get<double>(), 0.1);
  EXPECT_DOUBLE_EQ(j["l2sp"].get<double>(), 0.01);
  EXPECT_EQ(j["trainer"]["augment"], true);
  EXPECT_EQ(j["trainer"]["augment_padding"], 3);
  EXPECT_DOUBLE_EQ(j["method"]["rho"].get<double>(), 0.05);  // resolved: rsam's default
  EXPECT_DOUBLE_EQ(j["method"]["rsam_sigma"].get<double>(), 0.01);
  RunConfig bad = base_config("sam");
  bad.loss().label_smoothing(1.5);
  EXPECT_THROW(run_training(bad, blobs()), flatmin::Error);
}

}  // namespace

}  // namespace losses_test
