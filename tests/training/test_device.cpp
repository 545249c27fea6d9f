// Devices, precision and the finiteness check without a wait, on the CPU: what a GPU run relies on that a
// CPU can check. (tests/training/test_gpu.cpp checks the rest where a GPU is.)
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/nn/utils/clip_grad.h>
#include <torch/torch.h>
#include <torch/version.h>

#include "flatmin/core/device.h"
#include "flatmin/core/error.h"
#include "flatmin/core/memory.h"
#include "flatmin/optim/methods.h"
#include "flatmin/optim/perturbed_optimizer.h"
#include "flatmin/training/run.h"
#include "training/blobs.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace device_test {

using namespace flatmin;
using namespace flatmin::training;
using flatmin::testing::blobs;

namespace {

RunConfig blob_config(const std::string& method) {
  return RunConfig()
      .method(optim::MethodSpec().name(method).sigma(0.05))
      .model(models::ModelSpec().name("mlp").width(16))
      .split(data::SplitOptions().val_size(30))
      .optimizer(optim::BaseOptimizerOptions().lr(0.05).momentum(0.9))
      .trainer(TrainerOptions().epochs(2).batch_size(16))
      .seed(3);
}

std::vector<at::Tensor> parameters_of(const models::Model& model) {
  std::vector<at::Tensor> w;
  for (const auto& p : model->parameters()) w.push_back(p.detach().cpu().clone());
  return w;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(Device, ParsesNamesAndSaysWhatIsNotThere) {
  EXPECT_TRUE(parse_device("cpu").is_cpu());
  EXPECT_NE(message_of([] { parse_device("tpu"); }).find("unknown device 'tpu' (valid: cpu, cuda, cuda:N)"),
            std::string::npos);
  for (const char* bad : {"cuda:", "cuda:x", "cuda0", "cuda:-1", "cudax"})
    EXPECT_NE(message_of([&] { parse_device(bad); }).find("unknown device"), std::string::npos) << bad;
  const std::string far = message_of([] { parse_device("cuda:99"); });
  EXPECT_NE(far.find("--device cuda:99: "), std::string::npos) << far;
  if (!cuda_available()) {
    EXPECT_NE(message_of([] { parse_device("cuda"); }).find("sees no CUDA GPU"), std::string::npos);
  } else {
    EXPECT_TRUE(parse_device("cuda").is_cuda());
    EXPECT_NE(far.find("there "), std::string::npos) << far;  // "there is 1 GPU (cuda:0)"
  }
  EXPECT_EQ(parse_precision("bf16"), Precision::kBFloat16);
  EXPECT_EQ(parse_precision("fp32"), Precision::kFloat32);
  EXPECT_THROW(parse_precision("fp16"), flatmin::Error);
}

TEST(Device, ModuleDeviceIsWhereTheParametersAre) {
  torch::nn::Linear linear(3, 2);
  EXPECT_TRUE(module_device(*linear).is_cpu());
  torch::nn::Sequential empty;
  EXPECT_TRUE(module_device(*empty).is_cpu());
}

TEST(Autocast, Bf16ScopeRunsMatmulsInBf16AndRestoresFp32) {
  torch::nn::Linear linear(8, 4);
  const at::Tensor x = torch::randn({5, 8});
  EXPECT_EQ(linear->forward(x).scalar_type(), at::kFloat);
  {
    AutocastScope scope(c10::Device(c10::DeviceType::CPU), Precision::kBFloat16);
    EXPECT_EQ(linear->forward(x).scalar_type(), at::kBFloat16);
    {
      AutocastScope nested(c10::Device(c10::DeviceType::CPU), Precision::kFloat32);  // nothing
      EXPECT_EQ(linear->forward(x).scalar_type(), at::kBFloat16);
    }
  }
  EXPECT_EQ(linear->forward(x).scalar_type(), at::kFloat);
  EXPECT_EQ(linear->weight.scalar_type(), at::kFloat);
}

// bf16 autocast changes the forward passes (the run differs from fp32) but not what is stored: weights,
// gradients and the methods' combination stay float32, and the run still learns.
TEST(Autocast, Bf16RunLearnsKeepsFp32WeightsAndDiffersFromFp32) {
  const auto data = blobs(40, 10);
  for (const std::string method : {"nso", "sam"}) {
    RunConfig bf16 = blob_config(method);
    bf16.trainer().precision(Precision::kBFloat16);
    const RunResult a = run_training(blob_config(method), data);
    const RunResult b = run_training(bf16, data);
    for (const auto& p : b.model->parameters()) EXPECT_EQ(p.scalar_type(), at::kFloat) << method;
    EXPECT_GT(b.history.back().test.accuracy, 0.9) << method;  // three separable blobs
    EXPECT_NE(a.history.back().objective, b.history.back().objective) << method;
    EXPECT_NEAR(a.history.back().objective, b.history.back().objective, 0.05) << method;
  }
}

TEST(Autocast, ConfigRecordsPrecisionOnlyWhenNotFp32) {
  const RunConfig fp32 = blob_config("nso");
  EXPECT_FALSE(nlohmann::json::parse(fp32.to_json())["trainer"].contains("precision"));  // old configs unchanged
  RunConfig bf16 = blob_config("nso");
  bf16.trainer().precision(Precision::kBFloat16);
  EXPECT_EQ(nlohmann::json::parse(bf16.to_json())["trainer"]["precision"], "bf16");
  EXPECT_EQ(RunConfig::from_json(bf16.to_json()).trainer().precision(), Precision::kBFloat16);
  EXPECT_EQ(RunConfig::from_json(fp32.to_json()).trainer().precision(), Precision::kFloat32);
}

// Checking finiteness every N steps (no wait on a GPU) changes nothing in a finite run.
TEST(FiniteCheck, EveryNStepsLeavesAFiniteRunBitwiseEqual) {
  const auto data = blobs(40, 10);
  for (const std::string method : {"nso", "sam"}) {
    const RunResult every = run_training(blob_config(method), data);
    const RunResult sparse =
        run_training(blob_config(method), data, {}, {}, nullptr, RunControl().check_finite_every(4));
    EXPECT_EQ(sparse.optimizer->options().check_finite_every(), 4);
    const auto a = parameters_of(every.model), b = parameters_of(sparse.model);
    for (size_t j = 0; j < a.size(); ++j) EXPECT_TRUE(at::equal(a[j], b[j])) << method;
    EXPECT_EQ(every.history.back().objective, sparse.history.back().objective) << method;
  }
}

// A divergence between two checks is still caught, at the next check, and named with its window.
TEST(FiniteCheck, EveryNStepsCatchesADivergenceAtTheNextCheck) {
  const auto data = blobs(40, 10);
  RunConfig config = blob_config("sgd");
  config.optimizer().lr(1e30).momentum(0.0);
  try {
    run_training(config, data, {}, {}, nullptr, RunControl().check_finite_every(4));
    FAIL() << "no error";
  } catch (const TrainingDiverged& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("between steps 1 and 4"), std::string::npos) << what;
    EXPECT_NE(what.find("checked every 4 steps"), std::string::npos) << what;
    EXPECT_EQ(e.state().batch, 3);  // the checking step (the 4th) was not applied
  }
  config.trainer().on_divergence(DivergencePolicy::kSkip);
  EXPECT_NE(message_of([&] { run_training(config, data, {}, {}, nullptr, RunControl().check_finite_every(4)); })
                .find("skipping non-finite steps needs every step checked"),
            std::string::npos);
}

TEST(FiniteCheck, SettleChecksThePendingStepsAtOnce) {
  at::Tensor w = torch::tensor({1.0, 2.0}).set_requires_grad(true);
  auto base = std::make_shared<torch::optim::SGD>(std::vector<at::Tensor>{w}, torch::optim::SGDOptions(0.1));
  optim::PerturbedOptimizer opt(base, std::make_shared<optim::NoPerturbation>(),
                                optim::PerturbedOptimizerOptions().check_finite_every(10));
  opt.step([&] {
    auto l = (w * w).sum();
    l.backward();
    return l;
  });
  EXPECT_EQ(opt.settle_finite_check(), "");
  opt.step([&] {
    auto l = (w * w).sum() * std::numeric_limits<float>::infinity();
    l.backward();
    return l;
  });
  EXPECT_FALSE(opt.last_step_skipped());  // not checked yet: applied
  const std::string why = opt.settle_finite_check();
  EXPECT_NE(why.find("between steps 2 and 2"), std::string::npos) << why;
  EXPECT_TRUE(opt.last_step_skipped());
  EXPECT_EQ(opt.settle_finite_check(), "");  // nothing pending any more
}

// The combined gradient is clipped by LibTorch's rule, with the coefficient kept on the device.
TEST(ClipGradNorm, EqualsLibTorchsClipGradNormBitwise) {
  torch::manual_seed(4);
  torch::nn::Linear a(6, 3), b(6, 3);
  {
    torch::NoGradGuard no_grad;
    for (size_t j = 0; j < a->parameters().size(); ++j) b->parameters()[j].copy_(a->parameters()[j]);
  }
  auto base = std::make_shared<torch::optim::SGD>(a->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  optim::PerturbedOptimizer opt(base, std::make_shared<optim::NoPerturbation>(),
                                optim::PerturbedOptimizerOptions().max_grad_norm(0.05));
  torch::optim::SGD plain(b->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  const at::Tensor x = torch::randn({10, 6}), y = torch::randint(0, 3, {10});
  for (int step = 0; step < 3; ++step) {
    opt.step([&] {
      auto l = torch::nn::functional::cross_entropy(a->forward(x), y);
      l.backward();
      return l;
    });
    plain.zero_grad();
    torch::nn::functional::cross_entropy(b->forward(x), y).backward();
    torch::nn::utils::clip_grad_norm_(b->parameters(), 0.05);
    plain.step();
  }
  for (size_t j = 0; j < a->parameters().size(); ++j)
    EXPECT_TRUE(at::equal(a->parameters()[j], b->parameters()[j])) << j;
}

TEST(MemoryCounter, SaysWhetherItCounts) {
  MemoryCounter& counter = MemoryCounter::install();
#if TORCH_VERSION_MAJOR < 2
  EXPECT_TRUE(counter.counting());  // Debian's LibTorch routes CPU tensors through SetCPUAllocator
#endif
  if (!counter.counting()) GTEST_SKIP() << "this LibTorch does not count: bench_step says \"not counted\"";
  const int64_t before = counter.live();
  const at::Tensor t = at::empty({1 << 16});
  EXPECT_GE(counter.live() - before, static_cast<int64_t>(t.nbytes()));
}

}  // namespace device_test
