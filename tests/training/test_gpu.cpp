// On a CUDA GPU: the noise kernel draws the CPU's bits, runs train there, resume bitwise, checkpoints cross
// devices, bf16 autocast trains, and a geometry measure agrees with the CPU's. Every test skips, saying so,
// where this LibTorch sees no GPU (scripts/gpu-check.sh builds and runs them on a GPU machine).
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "flatmin/core/device.h"
#include "flatmin/geometry/spectrum.h"
#include "flatmin/noise/noise.h"
#include "flatmin/training/checkpoint.h"
#include "flatmin/training/run.h"
#include "training/blobs.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace gpu_test {

using namespace flatmin;
using namespace flatmin::training;
using flatmin::testing::blobs;
using flatmin::testing::scratch_dir;
using flatmin::noise::NoiseLaw;

#define SKIP_WITHOUT_GPU()                                                                              \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU here (this LibTorch: " << TORCH_VERSION           \
                                      << "); scripts/gpu-check.sh runs these on a GPU machine"

namespace {

const c10::Device kCpu(c10::DeviceType::CPU);
c10::Device gpu() { return c10::Device(c10::DeviceType::CUDA, 0); }

RunConfig gpu_config(const std::string& method) {
  return RunConfig()
      .method(optim::MethodSpec().name(method).sigma(0.05))
      .model(models::ModelSpec().name("cnn").width(8))
      .split(data::SplitOptions().val_size(30))
      .optimizer(optim::BaseOptimizerOptions().lr(0.05).momentum(0.9))
      .trainer(TrainerOptions().epochs(2).batch_size(16).augment(data::AugmentOptions().enabled(true).padding(1)))
      .seed(11);
}

std::vector<at::Tensor> cpu_parameters(const models::Model& model) {
  std::vector<at::Tensor> w;
  for (const auto& p : model->parameters()) w.push_back(p.detach().cpu().clone());
  return w;
}

double max_difference(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  double d = 0;
  for (size_t j = 0; j < a.size(); ++j) d = std::max(d, (a[j] - b[j]).abs().max().item<double>());
  return d;
}

}  // namespace

TEST(Gpu, NoiseDrawsTheCpusBitsWithoutLeavingTheDevice) {
  SKIP_WITHOUT_GPU();
  for (NoiseLaw law : {NoiseLaw::kGaussian, NoiseLaw::kLaplace, NoiseLaw::kUniform, NoiseLaw::kRademacher}) {
    for (auto dtype : {at::kFloat, at::kDouble}) {
      for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{300007}}) {
        const uint64_t key = noise::noise_key(1, 2, 3, static_cast<uint64_t>(n));
        at::Tensor cpu = at::empty({n}, at::TensorOptions().dtype(dtype));
        at::Tensor dev = at::empty({n}, at::TensorOptions().dtype(dtype).device(gpu()));
        noise::fill_noise_(cpu, law, 0.3, key);
        noise::fill_noise_(dev, law, 0.3, key);
        EXPECT_TRUE(at::equal(cpu, dev.cpu())) << noise::to_string(law) << " n " << n << " " << dtype;
        // base + σx, into another tensor and in place.
        const at::Tensor base_cpu = at::randn({n}, at::TensorOptions().dtype(dtype));
        const at::Tensor base_dev = base_cpu.to(gpu());
        at::Tensor out_cpu = at::empty_like(base_cpu), out_dev = at::empty_like(base_dev);
        noise::add_noise_(out_cpu, base_cpu, law, 0.3, key);
        noise::add_noise_(out_dev, base_dev, law, 0.3, key);
        EXPECT_TRUE(at::equal(out_cpu, out_dev.cpu())) << noise::to_string(law);
        at::Tensor in_place = base_dev.clone();
        noise::add_noise_(in_place, in_place, law, 0.3, key);
        EXPECT_TRUE(at::equal(out_cpu, in_place.cpu())) << noise::to_string(law);
      }
    }
    // A non-contiguous view and a bf16 tensor take the values of the contiguous float draw of their shape.
    at::Tensor cpu = at::empty({31, 97});
    noise::fill_noise_(cpu, law, 0.5, 5);
    at::Tensor view = at::empty({97, 31}, at::TensorOptions().device(gpu())).t();
    noise::fill_noise_(view, law, 0.5, 5);
    EXPECT_TRUE(at::equal(cpu, view.cpu())) << noise::to_string(law);
    at::Tensor half = at::empty({31, 97}, at::TensorOptions().dtype(at::kBFloat16).device(gpu()));
    noise::fill_noise_(half, law, 0.5, 5);
    EXPECT_TRUE(at::equal(cpu.to(at::kBFloat16), half.cpu())) << noise::to_string(law);
  }
}

// The same run on the GPU and on the CPU: the same noise, batches and steps; only the kernels' rounding
// differs, so the weights stay close.
TEST(Gpu, TrainingRunsThereAndStaysCloseToTheCpuRun) {
  SKIP_WITHOUT_GPU();
  const auto data = blobs(40, 10);
  for (const std::string method : {"sgd", "nso", "sam", "crsam", "bsam"}) {
    RunConfig config = gpu_config(method);
    if (method == "bsam") config.optimizer().weight_decay(0.0);
    const RunResult cpu = run_training(config, data);
    const RunResult dev = run_training(config, data, {}, {}, nullptr, RunControl().device(gpu()));
    EXPECT_TRUE(module_device(*dev.model.module()).is_cuda()) << method;
    EXPECT_LT(max_difference(cpu_parameters(cpu.model), cpu_parameters(dev.model)), 1e-3) << method;
    EXPECT_NEAR(cpu.history.back().test.loss, dev.history.back().test.loss, 1e-3) << method;
    EXPECT_EQ(dev.optimizer->options().check_finite_every(), kDeviceCheckEvery);
  }
}

TEST(Gpu, AResumedGpuRunIsBitwiseEqualToAnUninterruptedOne) {
  SKIP_WITHOUT_GPU();
  const auto data = blobs(60, 20);
  for (const std::string method : {"nso", "sam"}) {
    const RunConfig config = gpu_config(method);
    const RunResult full = run_training(config, data, {}, {}, nullptr, RunControl().device(gpu()));
    const std::string dir = scratch_dir("gpu-resume-" + method);
    int64_t steps = 0;
    const RunControl stop = RunControl().device(gpu()).checkpoint_dir(dir).stop_requested([&] { return ++steps == 11; });
    EXPECT_THROW(run_training(config, data, {}, {}, nullptr, stop), TrainingInterrupted);
    const RunResult resumed =
        run_training(config, data, {}, {}, nullptr, RunControl().device(gpu()).resume_from(latest_checkpoint(dir)));
    EXPECT_EQ(max_difference(cpu_parameters(full.model), cpu_parameters(resumed.model)), 0.0) << method;
    EXPECT_EQ(full.history.back().objective, resumed.history.back().objective) << method;
    std::filesystem::remove_all(dir);
  }
}

// A checkpoint written on the GPU opens on the CPU with the same weights, and a CPU run resumes on the GPU.
TEST(Gpu, CheckpointsMoveBetweenDevices) {
  SKIP_WITHOUT_GPU();
  const auto data = blobs(60, 20);
  const RunConfig config = gpu_config("nso");
  const std::string dir = scratch_dir("gpu-checkpoint");
  int64_t steps = 0;
  EXPECT_THROW(run_training(config, data, {}, {}, nullptr,
                            RunControl().device(gpu()).checkpoint_dir(dir).stop_requested([&] { return ++steps == 11; })),
               TrainingInterrupted);
  const std::string written_on_gpu = latest_checkpoint(dir);
  CheckpointContents opened = load_checkpoint(written_on_gpu);
  EXPECT_TRUE(module_device(*opened.model.module()).is_cpu());
  const RunResult on_cpu = run_training(config, data, {}, {}, nullptr, RunControl().resume_from(written_on_gpu));
  EXPECT_TRUE(module_device(*on_cpu.model.module()).is_cpu());
  std::filesystem::remove_all(dir);

  steps = 0;
  EXPECT_THROW(run_training(config, data, {}, {}, nullptr,
                            RunControl().checkpoint_dir(dir).stop_requested([&] { return ++steps == 11; })),
               TrainingInterrupted);
  const RunResult on_gpu =
      run_training(config, data, {}, {}, nullptr, RunControl().device(gpu()).resume_from(latest_checkpoint(dir)));
  EXPECT_LT(max_difference(cpu_parameters(on_cpu.model), cpu_parameters(on_gpu.model)), 1e-3);
  std::filesystem::remove_all(dir);
}

TEST(Gpu, Bf16AutocastTrainsWithFp32Weights) {
  SKIP_WITHOUT_GPU();
  const auto data = blobs(40, 10);
  RunConfig config = gpu_config("nso");
  config.trainer().precision(Precision::kBFloat16);
  const RunResult r = run_training(config, data, {}, {}, nullptr, RunControl().device(gpu()));
  for (const auto& p : r.model->parameters()) EXPECT_EQ(p.scalar_type(), at::kFloat);
  EXPECT_GT(r.history.back().test.accuracy, 0.9);
}

// The same probes on both devices: the Hutchinson estimate agrees to float rounding.
TEST(Gpu, HessianTraceAgreesWithTheCpus) {
  SKIP_WITHOUT_GPU();
  const auto data = blobs(40, 10);
  const RunResult run = run_training(gpu_config("sgd"), data);
  const auto options = geometry::TraceOptions().max_probes(20).min_probes(20).seed(3);
  const double on_cpu = geometry::hutchinson_trace(geometry::Objective::for_model(run.model, data.test), options).trace;
  run.model->to(gpu());
  const double on_gpu = geometry::hutchinson_trace(geometry::Objective::for_model(run.model, data.test), options).trace;
  EXPECT_NEAR(on_gpu, on_cpu, 1e-3 * std::abs(on_cpu));
}

}  // namespace gpu_test
#undef SKIP_WITHOUT_GPU
