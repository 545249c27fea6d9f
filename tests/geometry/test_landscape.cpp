// Loss landscapes: filter normalisation against the weights' filters, seeded directions shared across
// models, and landscapes of a quadratic against its formula.
#include <cmath>
#include <set>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "flatmin/core/error.h"
#include "flatmin/geometry/landscape.h"
#include "flatmin/geometry/objective.h"
#include "flatmin/models/models.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace landscape_test {

using namespace flatmin::geometry;

namespace {

std::vector<at::Tensor> weights_of(const flatmin::models::Model& model) {
  std::vector<at::Tensor> out;
  for (const auto& p : trainable_parameters(*model.module())) out.push_back(p.tensor);
  return out;
}

flatmin::models::Model small_cnn(uint64_t seed) {
  torch::manual_seed(seed);
  return flatmin::models::make_model(flatmin::models::ModelSpec().name("cnn").width(4));
}

}  // namespace

TEST(Landscape, EveryFilterOfADirectionHasTheNormOfTheWeightsFilter) {
  const auto model = small_cnn(0);
  const std::vector<at::Tensor> w = weights_of(model);
  const Direction d = random_direction(w, /*seed=*/7, /*axis=*/0);
  int filters = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    if (w[i].dim() <= 1) {
      EXPECT_EQ(d[i].abs().max().item<double>(), 0.0) << "1-D parameter " << i << " moves";
      continue;
    }
    const at::Tensor wf = w[i].reshape({w[i].size(0), -1}).norm(2, {1});
    const at::Tensor df = d[i].reshape({d[i].size(0), -1}).norm(2, {1});
    EXPECT_TRUE(torch::allclose(df, wf, 1e-5, 1e-7)) << "parameter " << i;
    filters += static_cast<int>(w[i].size(0));
  }
  EXPECT_GT(filters, 10);
  // With include_1d, a bias vector is one filter: its norm too.
  const Direction all = random_direction(w, 7, 0, /*include_1d=*/true);
  for (size_t i = 0; i < w.size(); ++i) {
    if (w[i].dim() != 1) continue;
    EXPECT_NEAR(all[i].norm().item<double>(), w[i].norm().item<double>(), 1e-5 * (1 + w[i].norm().item<double>()));
  }
}

TEST(Landscape, TheSameSeedGivesTheSameRawDirectionForEveryModel) {
  // Two models of one architecture: the directions differ only by each filter's scale.
  const std::vector<at::Tensor> a = weights_of(small_cnn(1)), b = weights_of(small_cnn(2));
  const Direction da = random_direction(a, 3, 0), db = random_direction(b, 3, 0);
  const Direction other_axis = random_direction(a, 3, 1);
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].dim() <= 1) continue;
    const at::Tensor ua = da[i].reshape({a[i].size(0), -1}), ub = db[i].reshape({b[i].size(0), -1});
    const at::Tensor unit_a = ua / ua.norm(2, {1}, true), unit_b = ub / ub.norm(2, {1}, true);
    EXPECT_TRUE(torch::allclose(unit_a, unit_b, 1e-5, 1e-6)) << i;
    EXPECT_FALSE(torch::allclose(da[i], other_axis[i])) << i;
  }
}

TEST(Landscape, OneAndTwoDimensionalLandscapesOfAQuadraticFollowTheFormula) {
  torch::manual_seed(0);
  const at::Tensor m = torch::randn({6, 6}, torch::kFloat64);
  const at::Tensor a = m.mm(m.t()) + torch::eye(6, torch::kFloat64);
  at::Tensor w = torch::randn({3, 2}, torch::kFloat64);
  const at::Tensor w0 = w.clone();
  const Direction d1{torch::randn({3, 2}, torch::kFloat64)}, d2{torch::randn({3, 2}, torch::kFloat64)};
  auto f = [&](const at::Tensor& v) { return 0.5 * v.reshape({-1}).dot(a.mv(v.reshape({-1}))).item<double>(); };
  int evaluations = 0;
  const PointEvaluator evaluate = [&] { ++evaluations; return PointValue{f(w), std::nan("")}; };
  const std::vector<double> xs = linspace(-2, 2, 9);
  const auto line = landscape({w}, d1, {}, evaluate, LandscapeOptions().xs(xs));
  ASSERT_EQ(line.size(), 9u);
  for (const auto& p : line) EXPECT_NEAR(p.loss, f(w0 + p.x * d1[0]), 1e-10 * (1 + std::abs(p.loss))) << p.x;
  EXPECT_TRUE(torch::equal(w, w0));  // restored exactly
  const auto plane = landscape({w}, d1, d2, evaluate, LandscapeOptions().xs({-1, 0, 1}).ys({-0.5, 0.5}).skip({1}));
  ASSERT_EQ(plane.size(), 5u);  // 6 points, index 1 (x = 0, y = −0.5) already measured
  EXPECT_EQ(plane[1].x, 1);
  EXPECT_EQ(plane[1].y, -0.5);
  for (const auto& p : plane) EXPECT_NEAR(p.loss, f(w0 + p.x * d1[0] + p.y * d2[0]), 1e-10 * (1 + std::abs(p.loss)));
  EXPECT_EQ(evaluations, 9 + 5);
  EXPECT_TRUE(torch::equal(w, w0));
}

TEST(Landscape, TheLineBetweenTwoModelsEndsAtTheSecond) {
  at::Tensor w = torch::tensor({1.0, 2.0}, torch::kFloat64);
  const at::Tensor target = torch::tensor({-3.0, 0.5}, torch::kFloat64);
  const Direction d = difference_direction({w}, {target});
  std::vector<at::Tensor> seen;
  landscape({w}, d, {}, [&] { seen.push_back(w.clone()); return PointValue{0, 0}; }, LandscapeOptions().xs({0, 1}));
  EXPECT_TRUE(torch::allclose(seen[0], torch::tensor({1.0, 2.0}, torch::kFloat64)));
  EXPECT_TRUE(torch::allclose(seen[1], target));
  EXPECT_THROW(difference_direction({w}, {torch::zeros({3})}), flatmin::Error);
}

}  // namespace landscape_test
