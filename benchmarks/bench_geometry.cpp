// Cost of Hessian measurements in units of one gradient evaluation (forward + backward over the same data),
// measured side by side in one process, the time Hutchinson takes to reach a target standard error, and the
// time of measure_scalars (the set a training run logs every few epochs).
//
// Each figure is the median of interleaved rounds (round r: every variant once), so machine noise hits all
// alike. Variants: a gradient; a Hessian-vector product reusing cached per-batch gradient graphs (the default;
// the one-time graph build is reported apart); one recomputing forward + backward + double backward per batch
// (graph_memory_mb 0); a central finite difference (two gradients).
//
//   build/benchmarks/bench_geometry                                          # random-init MLP, random 28×28 inputs
//   build/benchmarks/bench_geometry --checkpoint /tmp/geo-mlp/model.ckpt     # a trained model on Fashion-MNIST
//   build/benchmarks/bench_geometry --model cnn --examples 2000 --threads 2 --target-se 0.02
//   build-gpu/benchmarks/bench_geometry --model cnn --device cuda        # on a GPU (docs/GPU.md)
//
// With --checkpoint the data are a seeded sample of the Fashion-MNIST training set ($FLATMIN_DATA_DIR),
// normalised with the checkpoint's statistics.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "flatmin/flatmin.h"

using namespace flatmin;

namespace {

struct Args {
  std::string checkpoint;
  std::string model = "mlp";
  int64_t examples = 5000;
  int64_t batch_size = 1000;
  int threads = 1;
  int rounds = 7;
  double target_se = 0.01;
  uint64_t seed = 0;
  std::string device = "cpu";
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

c10::Device g_device(c10::DeviceType::CPU);

// Until the device has finished: a GPU's work is done when its kernels are, not when they are queued.
template <typename F>
double time_ms(F&& f) {
  synchronize(g_device);
  const auto t0 = std::chrono::steady_clock::now();
  f();
  synchronize(g_device);
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i], value = argv[i + 1];
    if (key == "--checkpoint") a.checkpoint = value;
    else if (key == "--model") a.model = value;
    else if (key == "--examples") a.examples = std::stoll(value);
    else if (key == "--batch-size") a.batch_size = std::stoll(value);
    else if (key == "--threads") a.threads = std::stoi(value);
    else if (key == "--rounds") a.rounds = std::stoi(value);
    else if (key == "--target-se") a.target_se = std::stod(value);
    else if (key == "--seed") a.seed = std::stoull(value);
    else if (key == "--device") a.device = value;
    else { std::fprintf(stderr, "unknown option %s\n", key.c_str()); return 2; }
  }
  try {
    tune_malloc_for_training();
    const ThreadCounts threads = set_num_threads(a.threads);
    models::Model model;
    data::Dataset data;
    std::string what;
    if (!a.checkpoint.empty()) {
      training::CheckpointContents ck = training::load_checkpoint(a.checkpoint);
      model = ck.model;
      data::Dataset train = data::load_fashion_mnist(data::default_fashion_mnist_dir()).train;
      if (ck.channel_mean.defined()) {
        const int64_t c = train.inputs.size(1);
        train.inputs = (train.inputs - ck.channel_mean.to(at::kFloat).view({1, c, 1, 1})) /
                       ck.channel_std.to(at::kFloat).view({1, c, 1, 1});
      }
      data = geometry::sample_examples(train, a.examples, a.seed);
      what = a.checkpoint + " (" + ck.spec.name() + ")";
    } else {
      torch::manual_seed(a.seed);
      model = models::make_model(models::ModelSpec().name(a.model));
      data = {torch::randn({a.examples, 1, 28, 28}), torch::randint(0, 10, {a.examples}, torch::kLong), 10};
      what = a.model + " (random init, random inputs)";
    }
    const c10::Device device = parse_device(a.device);
    model->to(device);
    g_device = device;
    const geometry::Objective objective =
        geometry::Objective::for_model(model, data, geometry::ObjectiveOptions().batch_size(a.batch_size));
    std::printf("# %s, threads: torch %d, blas %d | %s | %s | %lld parameters | %lld examples in batches of %lld | %d rounds, median\n",
                version_string().c_str(), threads.torch_intra_op, threads.blas, device.str().c_str(), what.c_str(),
                static_cast<long long>(objective.dim()), static_cast<long long>(data.size()),
                static_cast<long long>(a.batch_size), a.rounds);

    geometry::MeasurementScope scope(objective, /*snapshot_parameters=*/false);
    std::vector<at::Tensor> params;
    for (const auto& p : objective.parameters()) params.push_back(p.tensor);
    auto gradient = [&] {
      for (int64_t b = 0; b < objective.num_batches(); ++b) {
        const at::Tensor loss = objective.batch_loss(b) * objective.weight(b);
        torch::autograd::grad({loss}, params, {}, false, false, true);
      }
    };
    geometry::HessianOperator cached(objective, geometry::HvpOptions().graph_memory_mb(-1));
    geometry::HessianOperator recomputed(objective, geometry::HvpOptions().graph_memory_mb(0));
    geometry::HessianOperator fd(objective, geometry::HvpOptions().method(geometry::HvpMethod::kFiniteDifference));
    const at::Tensor v = torch::randn({objective.dim()}, objective.tensor_options());
    gradient();  // warm-up: allocator, kernels
    const double build_ms = time_ms([&] { cached.loss(); });
    recomputed.loss();
    fd.loss();
    cached.apply(v);
    recomputed.apply(v);
    fd.apply(v);
    std::vector<double> grad_ms, cached_ms, recomputed_ms, fd_ms;
    for (int r = 0; r < a.rounds; ++r) {
      grad_ms.push_back(time_ms(gradient));
      cached_ms.push_back(time_ms([&] { cached.apply(v); }));
      recomputed_ms.push_back(time_ms([&] { recomputed.apply(v); }));
      fd_ms.push_back(time_ms([&] { fd.apply(v); }));
    }
    const double g = median(grad_ms);
    std::printf("%-44s %10s %10s\n", "", "ms", "x gradient");
    std::printf("%-44s %10.2f %10.2f\n", "gradient (forward + backward)", g, 1.0);
    std::printf("%-44s %10.2f %10.2f\n", "HVP, cached graphs (per product)", median(cached_ms), median(cached_ms) / g);
    std::printf("%-44s %10.2f %10.2f\n", "  one-time graph build (create_graph)", build_ms, build_ms / g);
    std::printf("%-44s %10.2f %10.2f\n", "HVP, recomputed per product", median(recomputed_ms), median(recomputed_ms) / g);
    std::printf("%-44s %10.2f %10.2f\n", "HVP, finite differences", median(fd_ms), median(fd_ms) / g);
    std::printf("# cached graphs: %lld of %lld batches, %.1f MiB\n", static_cast<long long>(cached.cached_batches()),
                static_cast<long long>(objective.num_batches()), static_cast<double>(cached.cached_bytes()) / 1048576.0);

    // Hutchinson to the target relative standard error, from scratch (graph build included).
    geometry::TraceResult t;
    const double trace_ms = time_ms([&] {
      geometry::HessianOperator op(objective, geometry::HvpOptions().graph_memory_mb(-1));
      t = geometry::hutchinson_trace(op, geometry::TraceOptions().rel_tol(a.target_se).max_probes(100000).seed(a.seed));
    });
    std::printf("Hutchinson to %.2g%% SE: trace %.5g ± %.3g (%.2f%%), %lld probes, %.2f s = %.0f gradients\n",
                100 * a.target_se, t.trace, t.std_error, 100 * t.std_error / std::abs(t.trace),
                static_cast<long long>(t.probes), trace_ms / 1000, trace_ms / g);
    geometry::TraceResult pp;
    const double pp_ms = time_ms([&] {
      geometry::HessianOperator op(objective, geometry::HvpOptions().graph_memory_mb(-1));
      pp = geometry::hutchpp_trace(op, geometry::HutchppOptions().hvps(std::max<int64_t>(3, t.probes)).seed(a.seed));
    });
    std::printf("Hutch++ with the same %lld products: trace %.5g ± %.3g (%.2f%%), %.2f s\n",
                static_cast<long long>(pp.hvps), pp.trace, pp.std_error, 100 * pp.std_error / std::abs(pp.trace),
                pp_ms / 1000);

    // The per-epoch set a training run logs (measure_scalars with its defaults: 2000 examples).
    std::vector<std::pair<std::string, double>> scalars;
    const double scalars_ms = time_ms([&] { scalars = geometry::measure_scalars(model, data); });
    std::printf("measure_scalars (defaults): %.2f s =", scalars_ms / 1000);
    for (const auto& [name, value] : scalars) std::printf(" %s %.4g", name.c_str(), value);
    std::printf("\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
