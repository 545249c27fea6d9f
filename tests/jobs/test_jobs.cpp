// The jobs layer: its options parse as the CLI's (one definition for both faces), a stop request by signal
// leaves the caller's handlers as they were, and a tiny run writes its files and the outcome says so.
#include <csignal>
#include <filesystem>
#include <fstream>

#include <CLI/CLI.hpp>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "data/dataset_files.h"
#include "flatmin/core/error.h"
#include "flatmin/jobs/options.h"
#include "flatmin/jobs/stop_signals.h"
#include "flatmin/jobs/train.h"

namespace fs = std::filesystem;
using namespace flatmin;

namespace {

jobs::TrainJob parse_train(std::vector<std::string> args) {
  jobs::TrainJob job;
  CLI::App app("train");
  jobs::add_train_options(app, job);
  std::reverse(args.begin(), args.end());
  app.parse(args);
  jobs::finish_train_options(app, job);
  return job;
}

int g_caller_handler_calls = 0;
extern "C" void caller_handler(int) { ++g_caller_handler_calls; }

}  // namespace

TEST(TrainOptions, ParseIntoTheJobWithTheClisDefaultsAndChecks) {
  const jobs::TrainJob defaults = parse_train({});
  EXPECT_EQ(defaults.method(), "nso");
  EXPECT_DOUBLE_EQ(defaults.sigma(), 0.01);
  const jobs::TrainJob job = parse_train({"--method", "sam", "--per-class", "7", "--classes", "0,2", "--augment"});
  EXPECT_EQ(job.method(), "sam");
  EXPECT_EQ(job.per_class(), 7);
  EXPECT_EQ(job.classes(), (std::vector<int64_t>{0, 2}));
  EXPECT_TRUE(job.augment());
  const training::RunConfig config = jobs::to_run_config(job);
  EXPECT_EQ(config.method().name(), "sam");
  EXPECT_EQ(config.split().train_per_class(), 7);
  EXPECT_DOUBLE_EQ(config.optimizer().lr(), 0.05);
  EXPECT_DOUBLE_EQ(jobs::to_run_config(parse_train({"--method", "bsam"})).optimizer().lr(), 0.5);  // bSAM's α
  EXPECT_THROW(parse_train({"--sigma", "-1"}), CLI::ValidationError);
  EXPECT_THROW(parse_train({"--resume", "somewhere", "--sigma", "0.1"}), CLI::ValidationError);
  EXPECT_THROW(parse_train({"--reset-head"}), CLI::ValidationError);
  EXPECT_TRUE(parse_train({"--init", "x", "--model", "cnn"}).model_given());
  EXPECT_FALSE(parse_train({"--init", "x"}).width_given());
}

TEST(StopOnSignals, ASignalIsAStopRequestAndTheCallersHandlersComeBack) {
  std::signal(SIGINT, caller_handler);
  std::signal(SIGTERM, caller_handler);
  {
    const jobs::StopOnSignals stop;
    EXPECT_FALSE(stop.requested());
    std::raise(SIGTERM);
    EXPECT_TRUE(stop.requested());
    EXPECT_STREQ(stop.signal_name(), "SIGTERM");
    EXPECT_EQ(g_caller_handler_calls, 0);
  }
  std::raise(SIGINT);  // the caller's handler again, not the default (which would end this test binary)
  EXPECT_EQ(g_caller_handler_calls, 1);
  {
    const jobs::StopOnSignals fresh;  // a new guard starts without a request
    EXPECT_FALSE(fresh.requested());
  }
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
}

TEST(TrainJob, ATinyRunWritesItsFilesAndSaysItFinished) {
  const fs::path dir = fs::temp_directory_path() / ("flatmin-jobs-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "data");
  torch::manual_seed(0);
  flatmin::testing::write_bytes(dir / "data" / "train.pt", flatmin::testing::tensor_file(torch::rand({40, 1, 4, 4}), torch::randint(0, 2, {40}, at::kLong)));
  flatmin::testing::write_bytes(dir / "data" / "test.pt", flatmin::testing::tensor_file(torch::rand({20, 1, 4, 4}), torch::randint(0, 2, {20}, at::kLong)));
  jobs::TrainJob job = parse_train({"--dataset", "tensors", "--data-dir", (dir / "data").string(), "--val-size", "8",
                                    "--epochs", "1", "--width", "4", "--progress", "quiet", "--out",
                                    (dir / "run").string()});
  const jobs::TrainOutcome outcome = jobs::run_train_job(job);
  EXPECT_EQ(outcome.status, jobs::JobStatus::kFinished);
  EXPECT_EQ(outcome.exit_code(), 0);
  EXPECT_NE(outcome.summary_json.find("\"final_test_acc\""), std::string::npos);
  for (const char* name : {"config.json", "metrics.csv", "summary.json", "model.ckpt"})
    EXPECT_TRUE(fs::exists(dir / "run" / name)) << name;
  job.resume((dir / "nowhere").string());
  EXPECT_THROW(jobs::run_train_job(job), Error);
  fs::remove_all(dir);
}
