// Time and memory per optimisation step of each method, side by side in one process.
//
// Time: methods are timed in interleaved rounds (round r: every method for `steps` steps), so machine noise
// hits all of them alike; the figure is each method's median round, and its ratio to SGD's median from the
// same run. With --baseline (the JSON of benchmarks/python_baseline.py, the same steps in Debian's PyTorch
// with the same 1.13 kernels) it also prints flatmin's time / the Python baseline's.
// Memory: a counting CPU allocator (flatmin::MemoryCounter) records live tensor bytes. "held": what a method keeps between steps
// beyond SGD with momentum (its copy of W, its state); "extra": its peak during a step beyond SGD's peak
// (held + transient buffers); both in parameter-sized buffers (parameters × 4 bytes).
// Noise: numbers drawn per second by flatmin's Philox draw and by LibTorch's normal_.
//
//   build/benchmarks/bench_step                         # MLP and CNN, batch 32 and 128, 1 thread
//   build/benchmarks/bench_step --threads 2 --models cnn --batches 128
//   /usr/bin/python3 benchmarks/python_baseline.py > /tmp/baseline.json
//   build/benchmarks/bench_step --baseline /tmp/baseline.json
//   # a GPU (flatmin built against a CUDA LibTorch; scripts/gpu-check.sh runs both sides):
//   python3 benchmarks/python_baseline.py --device cuda --models resnet18 --batches 128 --methods sgd,nso,sam > b.json
//   build/benchmarks/bench_step --device cuda --models resnet18 --batches 128 --methods nso,sam --baseline b.json
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>
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
  bool malloc_tuning = true;
  bool noise = true;
  bool memory = true;
  std::string baseline;
  std::string device = "cpu";
  std::string precision = "fp32";
  std::string layout = "nchw";
  int64_t width = 0;
};

// The input of each model: resnets take CIFAR's 3x32x32, the others Fashion-MNIST's 1x28x28.
std::vector<int64_t> input_shape(const std::string& model, int64_t batch) {
  if (model.rfind("resnet", 0) == 0) return {batch, 3, 32, 32};
  return {batch, 1, 28, 28};
}

models::ModelSpec bench_model_spec(const std::string& name, int64_t width) {
  const bool resnet = name.rfind("resnet", 0) == 0;
  return models::ModelSpec().name(name).width(width).in_channels(resnet ? 3 : 1).image_size(resnet ? 32 : 28);
}

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

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Bench {
  std::string method;
  models::Model model;
  std::shared_ptr<optim::PerturbedOptimizer> opt;
  std::vector<double> round_ms;
  int64_t step_peak = 0;  // peak live bytes during a step: model, grads, optimizer and method state, activations
  int64_t held = 0;       // live bytes between steps: model, grads, optimizer and method state
};

std::map<std::string, double> read_baseline(const std::string& path) {
  std::map<std::string, double> out;
  if (path.empty()) return out;
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open the baseline");
  const nlohmann::json json = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) throw Error(path + ": not a JSON object (write it with benchmarks/python_baseline.py)");
  for (const auto& [key, value] : json.items())  // keys starting with '_' are metadata
    if (!key.empty() && key[0] != '_' && value.is_number()) out[key] = value.get<double>();
  return out;
}

// A baseline measured in another configuration compares nothing: refuse it rather than print ratios.
void check_baseline_matches(const std::string& path, const Args& a) {
  if (path.empty()) return;
  std::ifstream in(path);
  const nlohmann::json json = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  for (const auto& [key, mine] : {std::pair<std::string, std::string>{"_device", a.device},
                                  {"_precision", a.precision},
                                  {"_layout", a.layout}}) {
    const std::string theirs = json.value(key, key == "_device" ? std::string("cpu")
                                                : key == "_precision" ? std::string("fp32") : std::string("nchw"));
    if (theirs != mine)
      throw Error(path + ": the baseline was measured with " + key.substr(1) + " " + theirs + ", this run uses " + mine);
  }
}

void bench_noise() {
  std::printf("\n# noise: numbers drawn per second (1 thread for both), median of 15 rounds\n");
  std::printf("%-10s %12s %16s %16s %8s\n", "law", "numbers", "philox (M/s)", "libtorch (M/s)", "speedup");
  for (int64_t n : {int64_t{100000}, int64_t{1000000}}) {
    for (const auto& [law, name] : {std::pair{noise::NoiseLaw::kGaussian, "gaussian"},
                                    std::pair{noise::NoiseLaw::kRademacher, "rademacher"}}) {
      at::Tensor x = at::empty({n});
      auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
      auto time_of = [&](const std::function<void(int)>& f) {
        std::vector<double> rounds;
        const int reps = std::max<int64_t>(1, 20000000 / n);
        for (int r = 0; r < 15; ++r) {
          const auto t0 = std::chrono::steady_clock::now();
          for (int i = 0; i < reps; ++i) f(i);
          rounds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps);
        }
        return median(rounds);
      };
      const double philox = time_of([&](int i) { noise::fill_noise_(x, law, 1.0, static_cast<uint64_t>(i)); });
      const double torch_time = time_of([&](int) {
        if (law == noise::NoiseLaw::kGaussian) x.normal_(0.0, 1.0, gen);
        else x.bernoulli_(0.5, gen).mul_(2).sub_(1);
      });
      std::printf("%-10s %12lld %16.0f %16.0f %8.2f\n", name, static_cast<long long>(n), n / philox / 1e6,
                  n / torch_time / 1e6, torch_time / philox);
    }
  }
}

}  // namespace

static int run_benchmarks(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string key = argv[i];
    if (key == "--help" || key == "-h") {
      std::printf(
          "bench_step: time and memory per optimisation step, every method side by side in one process.\n"
          "  --models mlp,cnn        models to time (default mlp,cnn)\n"
          "  --batches 32,128        batch sizes (default 32,128)\n"
          "  --methods nso,sam,...   methods besides sgd, which is always timed as the reference\n"
          "  --threads N             LibTorch intra-op and OpenBLAS threads (default 1)\n"
          "  --rounds N              interleaved rounds; the median round is reported\n"
          "  --steps N               steps per round (default: about 0.3 s of SGD)\n"
          "  --baseline FILE         JSON from benchmarks/python_baseline.py: adds flatmin / PyTorch ratios\n"
          "  --no-malloc-tuning      keep glibc's default mmap/trim thresholds\n"
          "  --no-noise              skip the noise-throughput table\n"
          "  --no-memory             time with LibTorch's own allocator, not the counting one (memory columns 0)\n"
          "  --models resnet18       resnets take 3x32x32 inputs (CIFAR); --width W sets their base width\n"
          "  --device cpu|cuda[:N]   where to run (steps are timed to the device's completion)\n"
          "  --precision fp32|bf16   forward passes in bf16 autocast\n"
          "  --layout nchw|channels-last   memory format of 4-D weights and inputs\n");
      return 0;
    }
    if (key == "--no-malloc-tuning") { a.malloc_tuning = false; continue; }
    if (key == "--no-noise") { a.noise = false; continue; }
    if (key == "--no-memory") { a.memory = false; continue; }
    if (i + 1 >= argc) { std::fprintf(stderr, "option %s needs a value\n", key.c_str()); return 2; }
    const std::string value = argv[++i];
    if (key == "--models") a.models = split(value);
    else if (key == "--batches") { a.batches.clear(); for (auto& b : split(value)) a.batches.push_back(std::stoll(b)); }
    else if (key == "--methods") a.methods = split(value);
    else if (key == "--threads") a.threads = std::stoi(value);
    else if (key == "--rounds") a.rounds = std::stoi(value);
    else if (key == "--steps") a.steps = std::stoi(value);
    else if (key == "--baseline") a.baseline = value;
    else if (key == "--device") a.device = value;
    else if (key == "--precision") a.precision = value;
    else if (key == "--layout") a.layout = value;
    else if (key == "--width") a.width = std::stoll(value);
    else { std::fprintf(stderr, "unknown option %s\n", key.c_str()); return 2; }
  }
  if (a.methods.empty() || a.methods.front() != "sgd") a.methods.insert(a.methods.begin(), "sgd");
  const c10::Device device = parse_device(a.device);
  const Precision precision = parse_precision(a.precision);
  check(a.layout == "nchw" || a.layout == "channels-last", "--layout: nchw or channels-last, not " + a.layout);
  const at::MemoryFormat layout = a.layout == "nchw" ? at::MemoryFormat::Contiguous : at::MemoryFormat::ChannelsLast;
  if (a.malloc_tuning) tune_malloc_for_training();
  // The counter sees CPU allocations only; where it cannot count (some LibTorch builds) it says so.
  MemoryCounter* counter = a.memory && device.is_cpu() ? &MemoryCounter::install() : nullptr;
  const std::string memory_note = !a.memory ? "off (--no-memory)"
                                  : !device.is_cpu() ? "not counted on " + device.str()
                                  : counter->counting() ? "counted"
                                                        : "not counted: this LibTorch does not allocate CPU tensors "
                                                          "through c10::SetCPUAllocator";
  if (counter && !counter->counting()) counter = nullptr;
  check_baseline_matches(a.baseline, a);
  const std::map<std::string, double> baseline = read_baseline(a.baseline);
  const ThreadCounts threads = set_num_threads(a.threads);
  std::printf("# %s | threads: torch %d, blas %d | malloc tuning %s | %d rounds, median round\n",
              version_string().c_str(), threads.torch_intra_op, threads.blas, a.malloc_tuning ? "on" : "off", a.rounds);
  std::printf("# device %s | precision %s | layout %s | memory %s\n", device.str().c_str(), a.precision.c_str(),
              a.layout.c_str(), memory_note.c_str());
  std::printf("# held: bytes kept between steps beyond SGD's; extra: peak bytes during a step beyond SGD's;\n"
              "#       both in parameter-sized buffers\n");
  std::printf("%-5s %5s %-16s %6s %10s %7s %6s %7s %9s\n", "model", "batch", "method", "evals", "ms/step", "x sgd",
              "held", "extra", "x python");
  for (const auto& model_name : a.models) {
    for (int64_t batch : a.batches) {
      torch::manual_seed(0);
      const at::Tensor x = torch::randn(input_shape(model_name, batch)).to(device).contiguous(layout);
      const at::Tensor y = torch::randint(0, 10, {batch}, torch::kLong).to(device);
      // As flatmin train does: a GPU step is checked for finiteness every kDeviceCheckEvery steps.
      const int64_t check_every = device.is_cpu() ? 1 : training::kDeviceCheckEvery;
      auto build_model = [&] {
        models::Model m = models::make_model(bench_model_spec(model_name, a.width));
        m->to(device);
        if (layout != at::MemoryFormat::Contiguous) {
          torch::NoGradGuard no_grad;
          for (auto& p : m->parameters())
            if (p.dim() == 4) p.set_data(p.contiguous(layout));
        }
        return m;
      };
      std::vector<Bench> benches;
      int64_t parameter_bytes = 0;
      for (const auto& method : a.methods) {
        torch::manual_seed(1);
        Bench b{method, build_model(), nullptr, {}};
        b.opt = optim::make_perturbed_optimizer(b.model->parameters(), spec_for(method),
                                                optim::BaseOptimizerOptions().lr(0.01),
                                                optim::PerturbedOptimizerOptions().accumulate_in_grad(true).check_finite_every(check_every));
        b.opt->track_buffers(b.model->buffers());
        parameter_bytes = models::count_parameters(*b.model.module()) * 4;
        benches.push_back(std::move(b));
      }
      auto closure_for = [&](Bench& b) {
        return [&] {
          at::Tensor loss;
          {
            AutocastScope autocast(device, precision);
            loss = torch::nn::functional::cross_entropy(b.model.forward(x), y);
          }
          loss.backward();
          return loss;
        };
      };
      auto run = [&](Bench& b, int steps) {
        auto closure = closure_for(b);
        synchronize(device);
        const auto t0 = std::chrono::steady_clock::now();
        for (int s = 0; s < steps; ++s) b.opt->step(closure);
        synchronize(device);  // a GPU step is done when its kernels are, not when they are queued
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / steps;
      };
      for (auto& b : benches) run(b, 3);  // warm-up: allocator, kernels, optimizer state
      // Memory: each method built alone (the others' tensors stay live but constant): the bytes it holds
      // after two steps, and the peak during a third, both counted from before it was built.
      for (auto& b : benches) {
        if (!counter) break;
        const int64_t before = counter->live();
        torch::manual_seed(1);
        Bench fresh{b.method, build_model(), nullptr, {}};
        fresh.opt = optim::make_perturbed_optimizer(fresh.model->parameters(), spec_for(b.method),
                                                    optim::BaseOptimizerOptions().lr(0.01),
                                                    optim::PerturbedOptimizerOptions().accumulate_in_grad(true).check_finite_every(check_every));
        fresh.opt->track_buffers(fresh.model->buffers());
        run(fresh, 2);
        b.held = counter->live() - before;
        counter->reset_peak();
        run(fresh, 1);
        b.step_peak = counter->peak() - before;
      }
      int steps = a.steps;
      if (steps <= 0) steps = std::max(3, static_cast<int>(300.0 / std::max(run(benches.front(), 5), 1e-3)));
      for (int r = 0; r < a.rounds; ++r)
        for (auto& b : benches) b.round_ms.push_back(run(b, steps));
      const Bench& sgd = benches.front();
      const double sgd_ms = median(sgd.round_ms);
      for (const auto& b : benches) {
        const double ms = median(b.round_ms);
        const std::string key = model_name + "/" + std::to_string(batch) + "/" + b.method;
        char python[16] = "-";
        if (baseline.count(key)) std::snprintf(python, sizeof python, "%.2f", ms / baseline.at(key));
        char held[16] = "-", extra[16] = "-";
        if (counter) {
          std::snprintf(held, sizeof held, "%.2f", static_cast<double>(b.held - sgd.held) / parameter_bytes);
          std::snprintf(extra, sizeof extra, "%.2f", static_cast<double>(b.step_peak - sgd.step_peak) / parameter_bytes);
        }
        std::printf("%-5s %5lld %-16s %6lld %10.3f %7.2f %6s %7s %9s\n", model_name.c_str(),
                    static_cast<long long>(batch), b.method.c_str(), static_cast<long long>(b.opt->evaluations()), ms,
                    ms / sgd_ms, held, extra, python);
      }
      std::fflush(stdout);
    }
  }
  if (a.noise) bench_noise();
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run_benchmarks(argc, argv);
  } catch (const std::logic_error& e) {  // std::stoi's invalid_argument / out_of_range
    std::fprintf(stderr, "bench_step: an option value is not a number in range (%s)\n", e.what());
    return 2;
  } catch (const std::exception& e) {  // bad option values, an unreadable baseline
    std::fprintf(stderr, "bench_step: %s\n", e.what());
    return 2;
  }
}
