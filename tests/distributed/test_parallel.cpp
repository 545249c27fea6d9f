// Several processes computing one step, each rank a thread of this test with its own Gloo process group
// over loopback: perturbation-parallel NSO equals one process; data-parallel (2 × B/2) equals one process
// with batch B; the rendezvous fails clearly, and in bounded time, when nobody serves it.
#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "flatmin/core/error.h"
#include "flatmin/distributed/communicator.h"
#include "flatmin/geometry/spectrum.h"
#include "flatmin/models/models.h"
#include "flatmin/optim/methods.h"
#include "flatmin/optim/perturbed_optimizer.h"

using namespace flatmin;
using flatmin::distributed::Communicator;
using flatmin::distributed::World;

namespace {

int next_port() {
  static int port = 29600 + static_cast<int>(::getpid() % 2000) * 8;
  return ++port;
}

// A small network and its data: the same weights for every rank and for the single process.
struct Problem {
  torch::nn::Sequential net{nullptr};
  at::Tensor x, y;
};

Problem make_problem() {
  torch::manual_seed(3);
  Problem p;
  p.net = torch::nn::Sequential(torch::nn::Linear(6, 16), torch::nn::Tanh(), torch::nn::Linear(16, 3));
  p.x = torch::randn({32, 6});
  p.y = torch::randint(0, 3, {32});
  return p;
}

torch::nn::Sequential copy_of(const torch::nn::Sequential& net) {
  auto copy = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(net->clone());
  return torch::nn::Sequential(copy);
}

std::shared_ptr<optim::PerturbedOptimizer> make_optimizer(const torch::nn::Sequential& net, const std::string& method,
                                                          int64_t k = 1) {
  return optim::make_perturbed_optimizer(net->parameters(), optim::MethodSpec().name(method).sigma(0.05).k(k).rho(0.05),
                                         optim::BaseOptimizerOptions().lr(0.1).momentum(0.9),
                                         optim::PerturbedOptimizerOptions().seed(17).accumulate_in_grad(true));
}

// `steps` steps on (x, y).
void train(optim::PerturbedOptimizer& opt, torch::nn::Sequential net, const at::Tensor& x, const at::Tensor& y,
           int steps) {
  for (int s = 0; s < steps; ++s)
    opt.step([&] {
      auto l = torch::nn::functional::cross_entropy(net->forward(x), y);
      l.backward();
      return l;
    });
}

// Runs body(rank, communicator) on `size` threads, one Gloo group member each; rethrows a failure.
void on_ranks(int size, const std::function<void(int, Communicator&)>& body) {
  const int port = next_port();
  std::vector<std::future<void>> ranks;
  for (int r = 0; r < size; ++r) {
    ranks.push_back(std::async(std::launch::async, [&, r] {
      World w;
      w.rank = r;
      w.size = size;
      w.master_port = port;
      Communicator c(w, std::chrono::seconds(30));
      body(r, c);
    }));
  }
  for (auto& f : ranks) f.get();
}

optim::Parallelism parallelism(optim::Parallelism::Mode mode, int rank, Communicator& c, bool synced = true) {
  optim::Parallelism p;
  p.mode = mode;
  p.rank = rank;
  p.size = c.size();
  p.synced_ascent = synced;
  p.sum = [&c](const std::vector<at::Tensor>& t) { c.sum(t); };
  return p;
}

double max_difference(const torch::nn::Sequential& a, const torch::nn::Sequential& b) {
  double d = 0;
  for (size_t j = 0; j < a->parameters().size(); ++j)
    d = std::max(d, (a->parameters()[j] - b->parameters()[j]).abs().max().item<double>());
  return d;
}

}  // namespace

TEST(Communicator, SumsMeansAndBroadcastsAcrossRanks) {
  on_ranks(2, [](int rank, Communicator& c) {
    at::Tensor a = at::full({3}, static_cast<float>(rank + 1)), b = at::full({2, 2}, 10.0 * rank, at::kDouble);
    c.sum({a, b});
    EXPECT_TRUE(at::equal(a, at::full({3}, 3.0f)));
    EXPECT_TRUE(at::equal(b, at::full({2, 2}, 10.0, at::kDouble)));
    at::Tensor m = at::full({1}, static_cast<float>(rank));
    c.mean({m});
    EXPECT_FLOAT_EQ(m.item<float>(), 0.5f);
    at::Tensor v = at::full({2}, static_cast<float>(rank + 7));
    c.broadcast({v}, 1);
    EXPECT_TRUE(at::equal(v, at::full({2}, 8.0f)));
    c.barrier();
  });
}

// Perturbation-parallel: rank r evaluates points i ≡ r (mod 2) of the same step on the same batch; one sum
// builds the combination. The update is one process's, up to the order of a two-term sum.
TEST(PerturbationParallel, NsoOnTwoRanksEqualsOneProcess) {
  for (int64_t k : {1, 2}) {
    const Problem p = make_problem();
    auto single = copy_of(p.net);
    auto opt = make_optimizer(single, "nso", k);
    train(*opt, single, p.x, p.y, 6);
    std::vector<torch::nn::Sequential> nets{copy_of(p.net), copy_of(p.net)};
    on_ranks(2, [&](int rank, Communicator& c) {
      auto o = make_optimizer(nets[rank], "nso", k);
      o->set_parallelism(parallelism(optim::Parallelism::Mode::kPerturbation, rank, c));
      train(*o, nets[rank], p.x, p.y, 6);
      EXPECT_EQ(o->gradient_evaluations(), 6 * 2 * k);
    });
    std::cout << "nso k=" << k << ": max |W(2 ranks) - W(1 process)| = " << max_difference(single, nets[0]) << "\n";
    EXPECT_LT(max_difference(single, nets[0]), 1e-6) << "k " << k;
    EXPECT_EQ(max_difference(nets[0], nets[1]), 0.0) << "k " << k;  // the ranks agree exactly
  }
}

TEST(PerturbationParallel, RefusesMethodsWhosePointsReadGradients) {
  const Problem p = make_problem();
  auto opt = make_optimizer(copy_of(p.net), "sam");
  optim::Parallelism par;
  par.mode = optim::Parallelism::Mode::kPerturbation;
  par.size = 2;
  par.sum = [](const std::vector<at::Tensor>&) {};
  try {
    opt->set_parallelism(par);
    FAIL() << "no error";
  } catch (const flatmin::Error& e) {
    EXPECT_NE(std::string(e.what()).find("use data-parallel"), std::string::npos) << e.what();
  }
}

// Data-parallel: each rank takes half of the batch; the averaged gradients make the one-process step with the
// whole batch (SAM's ascent from the averaged gradient: synced).
TEST(DataParallel, TwoHalfBatchesEqualOneWholeBatch) {
  for (const std::string method : {"sgd", "nso", "sam", "asam", "crsam"}) {
    const Problem p = make_problem();
    auto single = copy_of(p.net);
    auto opt = make_optimizer(single, method);
    train(*opt, single, p.x, p.y, 5);
    std::vector<torch::nn::Sequential> nets{copy_of(p.net), copy_of(p.net)};
    on_ranks(2, [&](int rank, Communicator& c) {
      auto o = make_optimizer(nets[rank], method);
      o->set_parallelism(parallelism(optim::Parallelism::Mode::kData, rank, c));
      train(*o, nets[rank], p.x.narrow(0, 16 * rank, 16), p.y.narrow(0, 16 * rank, 16), 5);
    });
    std::cout << method << ": max |W(2 x B/2) - W(1 x B)| = " << max_difference(single, nets[0]) << "\n";
    EXPECT_LT(max_difference(single, nets[0]), 1e-5) << method;
    EXPECT_EQ(max_difference(nets[0], nets[1]), 0.0) << method;
  }
}

// One collective per step: the stop flag and the BatchNorm statistics travel with the gradients. A stop that
// one rank requests before step 3's combination is known to both ranks after step 3, never before; the ranks'
// statistics stay identical, and SGD's first update is momentum × the whole batch's mean.
TEST(DataParallel, StopFlagAndBatchNormStatisticsTravelInTheStepsOneCollective) {
  for (const std::string method : {"sgd", "nso"}) {
    torch::manual_seed(5);
    torch::nn::Sequential net(torch::nn::Linear(6, 8), torch::nn::BatchNorm1d(8), torch::nn::Tanh(),
                              torch::nn::Linear(8, 3));
    const at::Tensor x = torch::randn({32, 6}), y = torch::randint(0, 3, {32});
    at::Tensor first_mean;
    {
      torch::NoGradGuard no_grad;
      first_mean = 0.1 * net[0]->as<torch::nn::Linear>()->forward(x).mean(0);
    }
    std::vector<torch::nn::Sequential> nets{copy_of(net), copy_of(net)};
    on_ranks(2, [&](int rank, Communicator& c) {
      auto o = make_optimizer(nets[rank], method);
      o->track_buffers(nets[rank]->buffers());
      int step = 0;
      optim::Parallelism par = parallelism(optim::Parallelism::Mode::kData, rank, c);
      par.stop_requested = [&step, rank] { return rank == 1 && step >= 3; };
      o->set_parallelism(par);
      for (step = 1; step <= 4; ++step) {
        const int64_t before = c.collectives();
        train(*o, nets[rank], x.narrow(0, 16 * rank, 16), y.narrow(0, 16 * rank, 16), 1);
        EXPECT_EQ(c.collectives() - before, 1) << method << " step " << step;
        EXPECT_EQ(o->stop_requested_anywhere(), step >= 3) << method << " rank " << rank << " step " << step;
        if (method == "sgd" && step == 1) {
          const at::Tensor running = nets[rank][1]->as<torch::nn::BatchNorm1d>()->running_mean;
          EXPECT_LT((running - first_mean).abs().max().item<double>(), 1e-6);
        }
      }
    });
    for (size_t j = 0; j < nets[0]->buffers().size(); ++j)
      EXPECT_TRUE(at::equal(nets[0]->buffers()[j], nets[1]->buffers()[j])) << method << " buffer " << j;
    EXPECT_EQ(max_difference(nets[0], nets[1]), 0.0) << method;
  }
}

// Per-replica SAM (each rank's ascent from its own half) is another method: it must not equal synced.
TEST(DataParallel, PerReplicaSamAscendsFromEachRanksOwnGradient) {
  const Problem p = make_problem();
  std::vector<torch::nn::Sequential> synced{copy_of(p.net), copy_of(p.net)}, replica{copy_of(p.net), copy_of(p.net)};
  for (bool sync : {true, false}) {
    auto& nets = sync ? synced : replica;
    on_ranks(2, [&](int rank, Communicator& c) {
      auto o = make_optimizer(nets[rank], "sam");
      o->set_parallelism(parallelism(optim::Parallelism::Mode::kData, rank, c, sync));
      train(*o, nets[rank], p.x.narrow(0, 16 * rank, 16), p.y.narrow(0, 16 * rank, 16), 3);
    });
  }
  EXPECT_EQ(max_difference(replica[0], replica[1]), 0.0);  // still one model
  EXPECT_GT(max_difference(synced[0], replica[0]), 1e-6);
}

// A rank that cannot reach the store fails, after the timeout, saying where it looked: no hang.
TEST(Communicator, UnreachableStoreFailsClearlyAfterTheTimeout) {
  World w;
  w.rank = 1;
  w.size = 2;
  w.master_port = next_port();  // nobody serves it
  const auto t0 = std::chrono::steady_clock::now();
  try {
    Communicator c(w, std::chrono::seconds(2));
    FAIL() << "no error";
  } catch (const flatmin::Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1: cannot reach the rendezvous store at 127.0.0.1:"), std::string::npos)
        << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
}

TEST(World, ReadsTorchrunsVariablesAndRefusesBadOnes) {
  ::unsetenv("RANK");
  ::unsetenv("WORLD_SIZE");
  EXPECT_FALSE(distributed::world_from_env().distributed());
  ::setenv("RANK", "1", 1);
  ::setenv("WORLD_SIZE", "2", 1);
  ::setenv("MASTER_PORT", "12345", 1);
  const World w = distributed::world_from_env();
  EXPECT_EQ(w.rank, 1);
  EXPECT_EQ(w.size, 2);
  EXPECT_EQ(w.master_port, 12345);
  ::setenv("RANK", "2", 1);
  EXPECT_THROW(distributed::world_from_env(), flatmin::Error);  // rank ≥ world size
  ::unsetenv("WORLD_SIZE");
  EXPECT_THROW(distributed::world_from_env(), flatmin::Error);  // RANK without WORLD_SIZE
  ::unsetenv("RANK");
  ::unsetenv("MASTER_PORT");
}

// Hutchinson's probes shared by two ranks: the same estimate, standard error and probe count as one process
// (the values are gathered in probe order and the stop rule reads them one by one).
TEST(ProbeSplit, TwoRanksGiveOneProcesssTraceEstimate) {
  const Problem p = make_problem();
  const data::Dataset data{p.x, p.y, 3};
  auto options = geometry::TraceOptions().rel_tol(0.05).min_probes(3).max_probes(41).seed(9);
  auto model_of = [](const torch::nn::Sequential& net) { return models::Model(net); };
  const auto single = geometry::hutchinson_trace(geometry::Objective::for_model(model_of(copy_of(p.net)), data), options);
  std::vector<geometry::TraceResult> results(2);
  std::vector<torch::nn::Sequential> nets{copy_of(p.net), copy_of(p.net)};
  on_ranks(2, [&](int rank, Communicator& c) {
    geometry::ProbeSplit split;
    split.rank = rank;
    split.size = 2;
    split.sum = [&c](const std::vector<at::Tensor>& t) { c.sum(t); };
    results[rank] = geometry::hutchinson_trace(geometry::Objective::for_model(model_of(nets[rank]), data),
                                               geometry::TraceOptions(options).split(split));
  });
  for (const auto& r : results) {
    EXPECT_EQ(r.trace, single.trace);
    EXPECT_EQ(r.std_error, single.std_error);
    EXPECT_EQ(r.probes, single.probes);
    EXPECT_EQ(r.converged, single.converged);
  }
  std::cout << "trace: 1 process " << single.trace << " ± " << single.std_error << " (" << single.probes
            << " probes), 2 ranks " << results[0].trace << "\n";
}
