// Smoke test on the real data: every method trains the NSO paper's MLP on a seeded Fashion-MNIST subset
// (2,000 training examples, 2 epochs, 1,000 test examples) through the one training loop, above a
// stated accuracy, and the run counts its gradient evaluations as the method states its cost.
// Measured (seed 0): sgd 79.3%, wp-sgd 79.9%, nso 79.8%, sam 80.3%, usam 79.0%, asam 80.1%, rsam 80.5%,
// // bsam 79.6% (lr = α 0.5), crsam 78.3%; 1.7 s for all nine. Smoke level: it catches a method that does not
// train through the real loop (divergence, an update of the wrong sign or scale, state that blows up); the
// exact rules are checked by hand-computed steps in test_sam.cpp.
#include <iostream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "flatmin/data/dataset.h"
#include "flatmin/optim/methods.h"
#include "flatmin/training/run.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace sam_smoke_test {

using namespace flatmin;

namespace {

TEST(EndToEnd, EveryMethodTrainsTheMlpOnAFashionMnistSubset) {
  const data::TrainTest fmnist = data::load_fashion_mnist(data::default_fashion_mnist_dir());
  for (const auto& name : optim::method_names()) {
    training::RunConfig config =
        training::RunConfig()
            .method(optim::MethodSpec().name(name))
            .model(models::ModelSpec().name("mlp"))
            .split(data::SplitOptions().val_size(500).train_per_class(200).test_size(1000))
            .optimizer(optim::BaseOptimizerOptions().lr(name == "bsam" ? 0.5 : 0.05).momentum(0.9))
            .trainer(training::TrainerOptions().epochs(2).batch_size(32).train_eval_size(1000))
            .seed(0);
    const training::RunResult r = training::run_training(config, fmnist);
    const auto& last = r.history.back();
    std::cout << "smoke " << name << ": test accuracy " << last.test.accuracy << ", " << r.optimizer->evaluations()
              << " gradient evaluations/step\n";
    EXPECT_GT(last.test.accuracy, 0.75) << name;
    EXPECT_EQ(last.gradient_evaluations, last.steps * r.optimizer->evaluations()) << name;
  }
}

}  // namespace

}  // namespace sam_smoke_test
