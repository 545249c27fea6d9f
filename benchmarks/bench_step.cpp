// Time per optimisation step of each method, and its ratio to SGD measured in the same run.
//
// Methods are timed in interleaved rounds (round r: every method for `steps` steps), so that machine noise
// hits all of them alike; the reported figure is each method's median round. Inputs are random batches of
// Fashion-MNIST's shape; the data pipeline is not timed.
//
//   build/bench_step                       # MLP and CNN, batch 32 and 128, 1 thread
//   build/bench_step --threads 2 --rounds 15 --models cnn --batches 128
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "flatmin/flatmin.h"

using namespace flatmin;

namespace {

struct Args {
  std::vector<std::string> models{"mlp", "cnn"};
  std::vector<int64_t> batches{32, 128};
  std::vector<std::string> methods{"sgd",  "wp-sgd", "nso",  "nso-k2", "nso-no-negative", "sam",
                                   "usam", "asam",   "rsam", "bsam",   "crsam"};
  int threads = 1;
  int rounds = 9;
  int steps = 0;  // per round; 0 = about 0.3 s of SGD
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = std::min(s.find(',', start), s.size());
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

optim::MethodSpec spec_for(const std::string& name) {
  if (name == "nso-k2") return optim::MethodSpec().name("nso").k(2);
  if (name == "nso-no-negative") return optim::MethodSpec().name("nso").two_point(false);
  if (name == "bsam") return optim::MethodSpec().name("bsam").bsam_train_size(60000);
  return optim::MethodSpec().name(name);
}

struct Bench {
  std::string method;
  models::Model model;
  std::shared_ptr<optim::PerturbedOptimizer> opt;
  std::vector<double> round_ms;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i], value = argv[i + 1];
    if (key == "--models") a.models = split(value);
    else if (key == "--batches") { a.batches.clear(); for (auto& b : split(value)) a.batches.push_back(std::stoll(b)); }
    else if (key == "--methods") a.methods = split(value);
    else if (key == "--threads") a.threads = std::stoi(value);
    else if (key == "--rounds") a.rounds = std::stoi(value);
    else if (key == "--steps") a.steps = std::stoi(value);
    else { std::fprintf(stderr, "unknown option %s\n", key.c_str()); return 2; }
  }
  tune_malloc_for_training();
  const ThreadCounts threads = set_num_threads(a.threads);
  std::printf("# %s, threads: torch %d, blas %d, %d rounds, median round\n", version_string().c_str(),
              threads.torch_intra_op, threads.blas, a.rounds);
  std::printf("%-5s %5s %-16s %6s %10s %8s\n", "model", "batch", "method", "evals", "ms/step", "x sgd");
  for (const auto& model_name : a.models) {
    for (int64_t batch : a.batches) {
      torch::manual_seed(0);
      const at::Tensor x = torch::randn({batch, 1, 28, 28});
      const at::Tensor y = torch::randint(0, 10, {batch}, torch::kLong);
      std::vector<Bench> benches;
      for (const auto& method : a.methods) {
        torch::manual_seed(1);
        Bench b{method, models::make_model(models::ModelSpec().name(model_name)), nullptr, {}};
        b.opt = optim::make_perturbed_optimizer(b.model->parameters(), spec_for(method),
                                                optim::BaseOptimizerOptions().lr(0.01),
                                                optim::PerturbedOptimizerOptions().accumulate_in_grad(true));
        b.opt->track_buffers(b.model->buffers());
        benches.push_back(std::move(b));
      }
      auto run = [&](Bench& b, int steps) {
        auto closure = [&] {
          at::Tensor loss = torch::nn::functional::cross_entropy(b.model.forward(x), y);
          loss.backward();
          return loss;
        };
        const auto t0 = std::chrono::steady_clock::now();
        for (int s = 0; s < steps; ++s) b.opt->step(closure);
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / steps;
      };
      for (auto& b : benches) run(b, 3);  // warm-up: allocator, kernels
      int steps = a.steps;
      if (steps <= 0) steps = std::max(3, static_cast<int>(300.0 / std::max(run(benches.front(), 5), 1e-3)));
      for (int r = 0; r < a.rounds; ++r)
        for (auto& b : benches) b.round_ms.push_back(run(b, steps));
      const double sgd_ms = median(benches.front().round_ms);
      for (const auto& b : benches) {
        const double ms = median(b.round_ms);
        std::printf("%-5s %5lld %-16s %6lld %10.3f %8.2f\n", model_name.c_str(), static_cast<long long>(batch),
                    b.method.c_str(), static_cast<long long>(b.opt->evaluations()), ms, ms / sgd_ms);
      }
    }
  }
  return 0;
}
