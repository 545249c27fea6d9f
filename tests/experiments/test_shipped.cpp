// The shipped experiment files (experiments/*.toml) expand to the configurations they promise: run counts,
// the options that define each experiment, and their --quick forms.
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "flatmin/core/error.h"
#include "flatmin/experiments/experiment.h"
#include "flatmin/experiments/plan.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace shipped_test {

namespace fx = flatmin::experiments;

namespace {

fx::RunOutcome pending(const fx::PlannedRun&) { return {fx::RunStatus::kPending, 0}; }

fx::Plan plan_of(const std::string& name, bool quick = false) {
  const fx::Experiment e = fx::load_experiment(std::string(FLATMIN_EXPERIMENTS_DIR) + "/" + name + ".toml", quick);
  return fx::plan_experiment(e, pending);
}

// The value a run's command line ends up with (the last occurrence wins).
std::string option(const fx::PlannedRun& run, const std::string& name) {
  std::string value = "<absent>";
  for (const auto& [k, v] : run.options)
    if (k == name) value = v;
  return value;
}

std::map<std::string, int> count_by(const fx::Plan& plan, const std::string& what) {
  std::map<std::string, int> counts;
  for (const auto& run : plan.runs)
    if (run.stage != "pretrain") ++counts[what == "task" ? run.task : run.method];
  return counts;
}

}  // namespace

TEST(ShippedExperiments, NoiseLawsComparesFourLawsForWpSgdAndNsoAtOneSigma) {
  const fx::Plan plan = plan_of("noise-laws");
  ASSERT_EQ(plan.runs.size(), 1u + 2 * 9 * 5);  // pretraining + 2 tasks × 9 methods × 5 seeds
  EXPECT_EQ(plan.runs[0].stage, "pretrain");
  std::set<std::string> laws;
  for (const auto& run : plan.runs) {
    if (run.stage == "pretrain" || run.method == "sgd") continue;
    EXPECT_EQ(option(run, "sigma"), "0.01") << run.id;
    EXPECT_NE(run.method.find(option(run, "noise")), std::string::npos) << run.id;  // wp-sgd-laplace: laplace
    EXPECT_TRUE(run.measure) << run.id;
    laws.insert(option(run, "noise"));
  }
  EXPECT_EQ(laws, (std::set<std::string>{"gaussian", "laplace", "uniform", "binomial"}));
}

TEST(ShippedExperiments, NsoAblationsMatchesCostsAndMeasuresCurvesOfTheFirstFour) {
  const fx::Plan plan = plan_of("nso-ablations");
  ASSERT_EQ(plan.runs.size(), 1u + 2 * 8 * 3);
  for (const auto& run : plan.runs) {
    if (run.stage == "pretrain") continue;
    const bool curves = run.method == "sgd" || run.method == "wp-sgd" || run.method.back() == '1';
    EXPECT_EQ(option(run, "geometry-every"), curves ? "2" : "<absent>") << run.id;
    if (run.method.rfind("nso-k", 0) == 0 || run.method.rfind("no-negative-k", 0) == 0) {
      EXPECT_EQ(option(run, "k"), std::string(1, run.method.back())) << run.id;  // the same 2k evaluations
      EXPECT_EQ(option(run, "no-negative"), run.method[1] == 'o' ? "true" : "<absent>") << run.id;
    }
  }
}

TEST(ShippedExperiments, RegularizersPairsEachRegulariserWithAndWithoutNso) {
  const fx::Plan plan = plan_of("regularizers");
  ASSERT_EQ(plan.runs.size(), 1u + 2 * 8 * 3);
  for (const auto& run : plan.runs) {
    if (run.stage == "pretrain") continue;
    EXPECT_EQ(option(run, "weight-decay"), run.method.find("-wd") != std::string::npos ? "0.001" : "0") << run.id;
    EXPECT_EQ(option(run, "l2sp"), run.method.find("l2sp") != std::string::npos ? "0.01" : "<absent>") << run.id;
    EXPECT_EQ(option(run, "augment"), run.method.find("augment") != std::string::npos ? "true" : "<absent>") << run.id;
    EXPECT_EQ(option(run, "method"), run.method.rfind("nso", 0) == 0 ? "nso" : "sgd") << run.id;
  }
}

TEST(ShippedExperiments, NoiseStabilityMeasuresTwoNetworksAndTheirSmoothTwinsAtTwoLosses) {
  const fx::Experiment e = fx::load_experiment(std::string(FLATMIN_EXPERIMENTS_DIR) + "/noise-stability.toml");
  ASSERT_TRUE(e.measure.has_value());
  std::map<std::string, std::string> measure(e.measure->begin(), e.measure->end());
  EXPECT_EQ(measure["noise"], "gaussian,rademacher,binomial4");  // the mean-zero binomial beside the unscaled one
  EXPECT_EQ(measure["gap-modes"], "eval,train");
  EXPECT_EQ(measure["measures"], "trace,gap");
  const fx::Plan plan = plan_of("noise-stability");
  ASSERT_EQ(plan.runs.size(), 4u * 2 * 3);  // {mlp, resnet} × {moderate, near-zero} × {relu, gelu} × 3 seeds
  std::map<std::string, int> activations;
  for (const auto& run : plan.runs) {
    EXPECT_TRUE(run.init_dir.empty()) << run.id;  // trained from scratch
    EXPECT_TRUE(run.measure) << run.id;
    ++activations[option(run, "activation") == "<absent>" ? "relu" : option(run, "activation")];
    if (run.task.find("moderate") != std::string::npos) {
      // One annealed epoch over many examples (loss ≈ 0.3), not a network stopped early in a longer schedule.
      EXPECT_EQ(option(run, "per-class"), run.task == "mlp-moderate" ? "0" : "2500");
      EXPECT_EQ(option(run, "epochs"), "1");
    }
  }
  EXPECT_EQ(activations, (std::map<std::string, int>{{"gelu", 12}, {"relu", 12}}));
}

TEST(ShippedExperiments, MatrixSensingRunsTheSensingCommandOverSigmaAndLearningRate) {
  const fx::Experiment e = fx::load_experiment(std::string(FLATMIN_EXPERIMENTS_DIR) + "/matrix-sensing.toml");
  EXPECT_EQ(e.command, "sensing");
  EXPECT_FALSE(e.pretrain.has_value());
  const fx::Plan plan = fx::plan_experiment(e, pending);
  ASSERT_EQ(plan.runs.size(), (1u + 5 + 5) * 3);  // (GD + 5 σ of WP-GD + 5 σ of NSO) × 3 seeds
  std::set<std::string> sigmas, lrs;
  for (const auto& run : plan.runs) {
    EXPECT_TRUE(run.init_dir.empty());
    EXPECT_EQ(option(run, "measurements"), "2500");  // above the recovery threshold (~920), not at it
    EXPECT_EQ(option(run, "steps"), "5000");
    EXPECT_EQ(option(run, "float64"), "true");
    if (run.method == "nso") sigmas.insert(option(run, "sigma"));
    lrs.insert(option(run, "lr"));
  }
  EXPECT_EQ(sigmas, (std::set<std::string>{"0.004", "0.016", "0.04", "0.08", "0.125"}));  // 0.08: the paper's Figure 6
  EXPECT_EQ(lrs, (std::set<std::string>{"0.001"}));
  EXPECT_EQ(count_by(plan, "task")["lr1e-3"], 33);
  EXPECT_EQ(plan_of("matrix-sensing", /*quick=*/true).runs.size(), 3u);
}

TEST(ShippedExperiments, CrsamCurvatureMeasuresBothSplitsEveryTwoEpochsButNotWhilePretraining) {
  const fx::Plan plan = plan_of("crsam-curvature");
  ASSERT_EQ(plan.runs.size(), 1u + 4 * 3);  // SGD, SAM, CR-SAM, NSO × 3 seeds
  EXPECT_EQ(option(plan.runs[0], "geometry-every"), "0");
  for (size_t i = 1; i < plan.runs.size(); ++i) {
    EXPECT_EQ(option(plan.runs[i], "geometry-every"), "2");
    EXPECT_EQ(option(plan.runs[i], "geometry-splits"), "train,test");
    EXPECT_NE(option(plan.runs[i], "geometry-measures").find("ratio"), std::string::npos);
  }
  EXPECT_EQ(option(plan.runs[7], "method"), "crsam");
  EXPECT_EQ(option(plan.runs[7], "rho"), option(plan.runs[4], "rho"));  // CR-SAM and SAM: the same radius
}

// The fine-tuning comparison selects on the mean of two seeds and widens a grid its choice lands on the edge
// of; bSAM is configured for fine-tuning (issue 21): noise std around NSO's σ, the prior at the pretrained
// weights, statistics from the ascent pass, β₂ 0.99, α and ρ on grids.
TEST(ShippedExperiments, FinetuneSelectsOnTwoSeedsAndConfiguresBsamForFineTuning) {
  const fx::Experiment e = fx::load_experiment(std::string(FLATMIN_EXPERIMENTS_DIR) + "/finetune.toml");
  ASSERT_TRUE(e.select.has_value());
  EXPECT_GE(e.select->seeds.size(), 2u);
  EXPECT_GT(e.select->extend_edges, 0);
  const fx::Plan plan = fx::plan_experiment(e, pending);
  std::set<std::string> noise, alpha, rho;
  for (const auto& run : plan.runs) {
    if (run.method != "bsam") continue;
    EXPECT_EQ(option(run, "bsam-prior-mean"), "init");
    EXPECT_EQ(option(run, "bsam-bn-statistics"), "ascent");
    EXPECT_EQ(option(run, "bsam-beta2"), "0.99");
    EXPECT_EQ(option(run, "weight-decay"), "0");
    noise.insert(option(run, "bsam-noise-std"));
    alpha.insert(option(run, "lr"));
    rho.insert(option(run, "rho"));
  }
  EXPECT_EQ(noise, (std::set<std::string>{"0.005", "0.01", "0.02"}));  // NSO's σ grid
  EXPECT_EQ(alpha.size(), 3u);
  EXPECT_EQ(rho.size(), 3u);
  EXPECT_EQ(count_by(plan, "method")["bsam"], 27 * 3 * 2);  // 27 settings × 3 tasks × 2 selection seeds
}

TEST(ShippedExperiments, EveryQuickFormIsSmall) {
  for (const char* name : {"finetune", "noise-laws", "nso-ablations", "regularizers", "noise-stability", "crsam-curvature"}) {
    const fx::Plan plan = plan_of(name, /*quick=*/true);
    for (const auto& run : plan.runs) {
      if (run.stage != "pretrain") {
        EXPECT_EQ(run.seed, 0) << name << " " << run.id;
      }
    }
    EXPECT_LE(plan.runs.size(), 40u) << name;
  }
}

}  // namespace shipped_test
