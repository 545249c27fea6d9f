// flatmin report's library: statistics, reading a sweep root, grouping, the highlight's relative changes,
// the table/CSV/JSON writers, the gnuplot files and the HTML page, on a hand-built sweep (fake_sweep.h)
// whose every expected number is worked out by hand below.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "flatmin/core/error.h"
#include "flatmin/reports/aggregate.h"
#include "flatmin/reports/html.h"
#include "flatmin/reports/plots.h"
#include "flatmin/reports/report.h"
#include "flatmin/reports/tables.h"
#include "reports/fake_sweep.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace report_test {

namespace fs = std::filesystem;
using namespace flatmin::reports;

// (The file's own namespace, report_test, keeps these helpers to this file.)

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            ("flatmin-report-" + std::to_string(::getpid()) + "-" + info->test_suite_name() + "-" + info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string str() const { return path_.string(); }
  fs::path operator/(const std::string& p) const { return path_ / p; }

 private:
  fs::path path_;
};

std::string read(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void overwrite(const fs::path& path, const std::string& text) { std::ofstream(path, std::ios::trunc) << text; }

const GroupSummary& group(const Report& report, const std::string& task, const std::string& method) {
  for (const GroupSummary& g : report.groups)
    if (g.task == task && g.method == method) return g;
  throw std::runtime_error("no group " + task + "/" + method);
}

// The message of the flatmin::Error that `f` throws ("" if none).
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const flatmin::Error& e) {
    return e.what();
  }
  return "";
}

constexpr double kTol = 1e-12;


// ------------------------------------------------------------------------------------------------ stats

TEST(ReportStats, MeanAndSampleStd) {
  const MeanStd s = mean_std({0.8, 0.9, 1.0});
  EXPECT_NEAR(s.mean, 0.9, kTol);
  EXPECT_NEAR(s.std, 0.1, kTol);  // divisor n − 1 (with n it would be 0.0816)
  EXPECT_EQ(s.n, 3);
}

TEST(ReportStats, OneValueHasNoSpreadAndNaNsAreLeftOut) {
  const MeanStd one = mean_std({5});
  EXPECT_EQ(one.mean, 5);
  EXPECT_TRUE(std::isnan(one.std));
  EXPECT_EQ(one.n, 1);
  const MeanStd none = mean_std({});
  EXPECT_TRUE(std::isnan(none.mean));
  EXPECT_EQ(none.n, 0);
  const MeanStd with_nan = mean_std({1, std::nan(""), 3, INFINITY});
  EXPECT_EQ(with_nan.n, 2);
  EXPECT_NEAR(with_nan.mean, 2, kTol);
  EXPECT_NEAR(with_nan.std, std::sqrt(2.0), kTol);
  // Far from zero: the two-pass formula keeps the digits a one-pass Σx² − n·mean² loses.
  const MeanStd far = mean_std({1e9 + 1, 1e9 + 2, 1e9 + 3});
  EXPECT_NEAR(far.std, 1.0, 1e-6);
}

TEST(ReportStats, PercentChange) {
  EXPECT_NEAR(percent_change(11, 25), -56, kTol);
  EXPECT_NEAR(percent_change(3.4, 3.0), 100.0 * 0.4 / 3.0, kTol);
  EXPECT_NEAR(percent_change(-2, -4), 50, kTol);  // relative to |reference|
  EXPECT_TRUE(std::isnan(percent_change(1, 0)));
  EXPECT_TRUE(std::isnan(percent_change(std::nan(""), 1)));
}

// ------------------------------------------------------------------------------------------ aggregation

class ReportFakeSweep : public ::testing::Test {
 protected:
  void SetUp() override { flatmin::test::write_fake_sweep(dir_.str()); }
  Sweep load() const { return load_sweep(dir_.str()); }
  TempDir dir_;
};

TEST_F(ReportFakeSweep, ReadsTheManifestAndEveryRun) {
  const Sweep sweep = load();
  EXPECT_EQ(sweep.name, "finetune");
  EXPECT_EQ(sweep.highlight, "nso");
  EXPECT_EQ(sweep.select_metric, "val_acc");
  EXPECT_EQ(sweep.select_mode, "max");
  EXPECT_TRUE(sweep.complete);  // no "complete" key
  ASSERT_EQ(sweep.runs.size(), 21u);
  EXPECT_TRUE(sweep.warnings.empty()) << sweep.warnings.front();
  const RunRecord& r = sweep.runs[0];  // fm5-50/sgd/default/seed0
  EXPECT_EQ(r.dir, "runs/fm5-50/sgd/default/seed0");
  EXPECT_EQ(r.test_acc, 0.78);
  EXPECT_EQ(r.trace, 20);
  EXPECT_EQ(r.trace_std_error, 0.2);
  EXPECT_EQ(r.lambda1, 2.0);
  EXPECT_EQ(r.lambda1_residual, 0.001);
  ASSERT_EQ(r.curve.size(), 3u);
  EXPECT_TRUE(std::isnan(r.curve[0].trace));  // "nan" in metrics.csv
  EXPECT_EQ(r.curve[2].trace, 23);
  EXPECT_EQ(r.curve[2].test_acc, 0.78);
  ASSERT_EQ(sweep.selection.size(), 6u);
  EXPECT_EQ(sweep.selection[2].method, "nso");
  EXPECT_EQ(sweep.selection[2].chosen, "sigma=0.01");
  EXPECT_EQ(sweep.selection[2].candidates[1].value, 0.795);
}

TEST_F(ReportFakeSweep, GroupsFinalRunsOverSeeds) {
  const Report report = aggregate(load());
  ASSERT_EQ(report.tasks, (std::vector<std::string>{"fm5-50", "c10_5"}));  // manifest order; no "pretrain"
  ASSERT_EQ(report.groups.size(), 6u);
  EXPECT_EQ(report.groups[0].method, "sgd");
  EXPECT_EQ(report.groups[1].method, "label-smoothing");
  EXPECT_EQ(report.groups[2].method, "nso");

  const GroupSummary& sgd = group(report, "fm5-50", "sgd");
  EXPECT_EQ(sgd.seeds, 3);
  EXPECT_NEAR(sgd.test_acc.mean, 0.79, kTol);
  EXPECT_NEAR(sgd.test_acc.std, 0.01, kTol);
  EXPECT_NEAR(sgd.test_loss.mean, 0.21, kTol);
  EXPECT_NEAR(sgd.gap_loss.mean, 0.30, kTol);
  EXPECT_NEAR(sgd.gap_acc.mean, 0.12, kTol);
  EXPECT_NEAR(sgd.trace.mean, 22, kTol);
  EXPECT_NEAR(sgd.trace.std, 2, kTol);  // spread over seeds ...
  EXPECT_NEAR(sgd.trace_mean_std_error, 0.3, kTol);  // ... and the mean of the runs' standard errors
  EXPECT_NEAR(sgd.lambda1.mean, 2.2, kTol);
  EXPECT_NEAR(sgd.lambda1.std, 0.2, kTol);
  EXPECT_EQ(sgd.gradient_evaluations.mean, 1000);
  EXPECT_EQ(sgd.gradient_evaluations.std, 0);
  EXPECT_NEAR(sgd.seconds.mean, 11, kTol);
  EXPECT_NEAR(sgd.seconds.std, 1, kTol);
  EXPECT_EQ(sgd.failed + sgd.diverged + sgd.pending, 0);

  const GroupSummary& smoothing = group(report, "fm5-50", "label-smoothing");
  EXPECT_EQ(smoothing.setting_name, "epsilon=0.1");
  EXPECT_EQ(smoothing.seeds, 2);
  EXPECT_EQ(smoothing.failed, 1);
  EXPECT_NEAR(smoothing.test_acc.mean, 0.805, kTol);
  EXPECT_NEAR(smoothing.test_acc.std, std::sqrt(0.00005), kTol);
  EXPECT_EQ(smoothing.trace.n, 1);  // geometry.json on one run only
  EXPECT_EQ(smoothing.trace.mean, 25);
  EXPECT_TRUE(std::isnan(smoothing.trace.std));

  const GroupSummary& nso = group(report, "fm5-50", "nso");
  EXPECT_EQ(nso.setting_name, "sigma=0.01");  // the grid-only sigma=0.02 run (test acc .10) is not final
  EXPECT_EQ(nso.seeds, 3);
  EXPECT_NEAR(nso.test_acc.mean, 0.82, kTol);
  EXPECT_NEAR(nso.test_acc.std, 0.02, kTol);
  EXPECT_EQ(nso.trace.n, 2);
  EXPECT_NEAR(nso.trace.mean, 11, kTol);
  EXPECT_NEAR(nso.trace.std, std::sqrt(2.0), kTol);
  EXPECT_NEAR(nso.trace_mean_std_error, 0.1, kTol);
  EXPECT_NEAR(nso.lambda1.mean, 1.2, kTol);

  EXPECT_EQ(group(report, "c10_5", "sgd").diverged, 1);
  EXPECT_EQ(group(report, "c10_5", "sgd").seeds, 2);
  EXPECT_EQ(group(report, "c10_5", "label-smoothing").pending, 1);
  EXPECT_EQ(group(report, "c10_5", "label-smoothing").seeds, 3);
  EXPECT_NEAR(group(report, "c10_5", "label-smoothing").test_acc.mean, 0.70, kTol);
}

TEST_F(ReportFakeSweep, CurvesAreMeansPerEpoch) {
  const Report report = aggregate(load());
  const GroupSummary& sgd = group(report, "fm5-50", "sgd");
  ASSERT_EQ(sgd.curve.size(), 3u);
  EXPECT_EQ(sgd.curve[0].epoch, 1);
  EXPECT_NEAR(sgd.curve[0].test_acc.mean, 0.75, kTol);  // final − .04
  EXPECT_NEAR(sgd.curve[2].test_acc.mean, 0.79, kTol);
  EXPECT_NEAR(sgd.curve[2].test_acc.std, 0.01, kTol);
  EXPECT_EQ(sgd.curve[0].trace.n, 0);                   // not measured at epoch 1
  EXPECT_NEAR(sgd.curve[1].trace.mean, 24, kTol);       // (20 + 22 + 24)/3 + 2
  EXPECT_EQ(group(report, "fm5-50", "label-smoothing").curve[2].trace.n, 0);  // no geo_* columns
  EXPECT_NEAR(sgd.curve[1].gap_loss.mean, 0.3, kTol);   // test − train loss per epoch
  EXPECT_EQ(sgd.curve[1].gap_loss.n, 3);
}

// geometry.json with the gap measured under two laws (seed 0) and, in the older one-law form, one (seed 1).
void write_gap_tables(const fs::path& root) {
  using nlohmann::json;
  auto table = [](const std::string& law, double trace, double gap1, double gap2) {
    return json{{"law", law},
                {"loss", 0.05},
                {"trace", trace},
                {"rss", 0.01},
                {"rows",
                 {{{"sigma", 0.01}, {"gap", gap1}, {"gap_std_error", 1e-5}, {"predicted", 5e-5 * trace}, {"relative_error", 0.1}},
                  {{"sigma", 0.02}, {"gap", gap2}, {"gap_std_error", 2e-5}, {"predicted", 2e-4 * trace}, {"relative_error", -0.1}}}}};
  };
  const json seed0 = {{"trace", {{"estimate", 10}, {"std_error", 0.1}}},
                      {"perturbation_gap", table("gaussian", 10, 4e-4, 2e-3)},
                      {"perturbation_gaps", {table("gaussian", 10, 4e-4, 2e-3), table("laplace", 10, 6e-4, 3e-3)}}};
  const json seed1 = {{"trace", {{"estimate", 12}, {"std_error", 0.1}}}, {"perturbation_gap", table("gaussian", 12, 6e-4, 3e-3)}};
  overwrite(root / "runs/fm5-50/nso/sigma=0.01/seed0/geometry.json", seed0.dump());
  overwrite(root / "runs/fm5-50/nso/sigma=0.01/seed1/geometry.json", seed1.dump());
}

TEST_F(ReportFakeSweep, ExtraQuantitiesBecomeColumnsAndCurves) {
  // Two runs of a kind with quantities of its own (summary.json "extra", the same-named metrics.csv column),
  // over losses spanning orders of magnitude (a logarithmic axis).
  const fs::path root(dir_.str());
  for (int seed : {0, 1}) {
    const fs::path run = root / ("runs/fm5-50/sgd/default/seed" + std::to_string(seed));
    nlohmann::json summary = nlohmann::json::parse(read(run / "summary.json"));
    summary["extra"] = {{"recovery_error", 0.5 + seed}};
    overwrite(run / "summary.json", summary.dump());
    overwrite(run / "metrics.csv", "epoch,train_loss,test_loss,recovery_error\n0,1000,2000,4\n50,0.001,10," +
                                       std::to_string(0.5 + seed) + "\n");
  }
  const Sweep sweep = load();
  const Report report = aggregate(sweep);
  const GroupSummary& sgd = group(report, "fm5-50", "sgd");
  ASSERT_EQ(sgd.extra.size(), 1u);
  EXPECT_EQ(sgd.extra[0].first, "recovery_error");
  EXPECT_NEAR(sgd.extra[0].second.mean, 1.0, kTol);
  EXPECT_EQ(sgd.extra[0].second.n, 2);
  EXPECT_NEAR(sgd.curve.back().extra.at("recovery_error").mean, 1.0, kTol);
  const std::vector<Table> tables = result_tables(sweep, report);
  const Table& fm = tables[0];
  const auto column = std::find(fm.header.begin(), fm.header.end(), "recovery_error");
  ASSERT_NE(column, fm.header.end());
  EXPECT_EQ(fm.rows[0][column - fm.header.begin()], "1 ± 0.71 (n=2)");  // 3 seeds, 2 with the quantity
  EXPECT_EQ(fm.rows[1][column - fm.header.begin()], "—");
  TempDir out;
  std::vector<std::string> warnings;
  write_plots(report, (out / "plots").string(), PlotOptions().gnuplot("/nonexistent/gnuplot"), warnings);
  EXPECT_TRUE(fs::exists(out / "plots/fm5-50-recovery_error.gp"));
  EXPECT_NE(read(out / "plots/fm5-50-test-loss.gp").find("set logscale y"), std::string::npos);  // 2000 … 0.2
  EXPECT_EQ(read(out / "plots/fm5-50-test-acc.gp").find("set logscale y"), std::string::npos);
}

TEST_F(ReportFakeSweep, NoiseStabilityTablesPerLawOverSeeds) {
  write_gap_tables(fs::path(dir_.str()));
  const Sweep sweep = load();
  ASSERT_EQ(sweep.runs[6].gaps.size(), 2u);  // fm5-50/nso seed 0
  const Report report = aggregate(sweep);
  const GroupSummary& nso = group(report, "fm5-50", "nso");
  ASSERT_EQ(nso.gaps.size(), 2u);
  EXPECT_EQ(nso.gaps[0].law, "gaussian");
  EXPECT_EQ(nso.gaps[0].trace.n, 2);
  EXPECT_NEAR(nso.gaps[0].trace.mean, 11, kTol);
  ASSERT_EQ(nso.gaps[0].rows.size(), 2u);
  EXPECT_NEAR(nso.gaps[0].rows[1].sigma, 0.02, 1e-15);
  EXPECT_NEAR(nso.gaps[0].rows[1].gap.mean, 2.5e-3, 1e-12);     // over both seeds
  EXPECT_NEAR(nso.gaps[0].rows[1].predicted.mean, 2.2e-3, 1e-12);
  EXPECT_EQ(nso.gaps[1].law, "laplace");
  EXPECT_EQ(nso.gaps[1].rows[0].gap.n, 1);  // seed 1 measured one law
  EXPECT_TRUE(group(report, "fm5-50", "sgd").gaps.empty());
  // One table for the task with the gaps, rows method × law × σ; none for the other task.
  const std::vector<Table> tables = result_tables(sweep, report);
  int gap_tables = 0;
  for (const Table& t : tables) {
    if (t.kind != TableKind::kNoiseStability) continue;
    ++gap_tables;
    EXPECT_EQ(t.task, "fm5-50");
    ASSERT_EQ(t.rows.size(), 4u);
    EXPECT_EQ(t.rows[0][0], "nso");
    EXPECT_EQ(t.rows[2][1], "laplace");
    EXPECT_EQ(t.rows[1][3], "0.0025 ± 0.00071 (n=2)");  // 2 of the 3 seeds measured
  }
  EXPECT_EQ(gap_tables, 1);
  const nlohmann::json j = nlohmann::json::parse(results_json(sweep, report));
  EXPECT_EQ(j["groups"][2]["noise_stability"][0]["rows"][1]["gap"]["n"], 2);
  // Its figure: one block per law, the prediction drawn from the first.
  TempDir out;
  std::vector<std::string> warnings;
  const std::vector<Figure> figures =
      write_plots(report, (out / "plots").string(), PlotOptions().gnuplot("/nonexistent/gnuplot"), warnings);
  EXPECT_TRUE(std::any_of(figures.begin(), figures.end(), [](const Figure& f) { return f.name == "fm5-50-nso-gap"; }));
  const std::string gp = read(out / "plots/fm5-50-nso-gap.gp");
  EXPECT_NE(gp.find("index 1 using 1:2:(sd(3)) with yerrorbars"), std::string::npos) << gp;
  EXPECT_NE(gp.find("set logscale xy"), std::string::npos);
}

TEST(WriteReport, WritesEveryFileOfTheCommandAndItsSummary) {
  TempDir dir;
  const std::string root = (dir / "sweep").string();
  flatmin::test::write_fake_sweep(root);
  const WrittenReport written = write_report(root, ReportOptions().plots(false));
  EXPECT_EQ(written.out_dir, (fs::path(root) / "report").string());
  for (const char* name : {"results.md", "results.csv", "results.json", "paired.csv", "index.html"})
    EXPECT_TRUE(fs::exists(fs::path(written.out_dir) / name)) << name;
  EXPECT_EQ(written.files.size(), 5u);  // no figures without plots
  EXPECT_NE(written.summary.find("flatmin report: " + root), std::string::npos);
  write_report(root, ReportOptions().plots(false).out((dir / "r").string()));
  EXPECT_TRUE(fs::exists(dir / "r" / "results.json"));
  EXPECT_THROW(write_report((dir / "not-a-sweep").string()), flatmin::Error);
}

TEST(LandscapePlots, LossOverDecadesGetsALogAxisAccuracyNever) {
  // 1-D: the loss from 0.06 at the minimum to 60 at the grid's edge (as trained networks at α = ±1).
  const LandscapeGrid steep{"sgd", {-1, 0, 1}, {0.0}, {62.0, 0.06, 70.0}, {0.2, 0.99, 0.2}};
  const LandscapeGrid flat{"nso", {-1, 0, 1}, {0.0}, {0.5, 0.1, 0.4}, {0.8, 0.99, 0.8}};
  for (const auto& [grids, log_loss] : {std::pair{std::vector<LandscapeGrid>{steep, flat}, true},
                                        std::pair{std::vector<LandscapeGrid>{flat}, false}}) {
    TempDir out;
    std::vector<std::string> warnings;
    write_landscape_plots(grids, out.str(), "landscape", "α", "β", PlotOptions().gnuplot("/nonexistent/gnuplot"),
                          warnings);
    EXPECT_EQ(read(out / "landscape-loss.gp").find("set logscale y") != std::string::npos, log_loss);
    EXPECT_EQ(read(out / "landscape-accuracy.gp").find("set logscale y"), std::string::npos);
  }
}

TEST(LandscapePlots, ContoursOfALossOverDecadesAreOneTwoFiveSteps) {
  // 2 × 2 plane from 0.07 at the minimum to 1,500: levels 0.1, 0.2, 0.5, 1, ..., 1000, not 15 linear ones.
  const LandscapeGrid plane{"crsam", {-1, 1}, {-1, 1}, {0.07, 30.0, 2.0, 1500.0}, {0.99, 0.5, 0.9, 0.2}};
  TempDir out;
  std::vector<std::string> warnings;
  write_landscape_plots({plane}, out.str(), "landscape", "α", "β", PlotOptions().gnuplot("/nonexistent/gnuplot"),
                        warnings);
  EXPECT_NE(read(out / "landscape-crsam-contour.gp").find("set cntrparam levels discrete 0.1,0.2,0.5,1,2,5,10,20,50,100,"
                                                          "200,500,1000\n"),
            std::string::npos)
      << read(out / "landscape-crsam-contour.gp");
}

TEST_F(ReportFakeSweep, HighlightComparedWithTheBestAndTheFlattestOtherMethod) {
  const Report report = aggregate(load());
  ASSERT_EQ(report.comparisons.size(), 2u);
  // fm5-50: best other by accuracy label-smoothing (.805 > .79); lowest trace and λ1: sgd (22 < 25, 2.2 < 2.5).
  const Comparison& a = report.comparisons[0];
  EXPECT_EQ(a.task, "fm5-50");
  EXPECT_EQ(a.highlight, "nso");
  EXPECT_EQ(a.best_accuracy_method, "label-smoothing");
  EXPECT_EQ(a.lowest_trace_method, "sgd");
  EXPECT_EQ(a.lowest_lambda1_method, "sgd");
  EXPECT_NEAR(a.accuracy_points, 1.5, 1e-9);
  EXPECT_NEAR(a.trace_vs_best_accuracy, 100.0 * (11 - 25) / 25, 1e-9);  // −56%
  EXPECT_NEAR(a.lambda1_vs_best_accuracy, 100.0 * (1.2 - 2.5) / 2.5, 1e-9);  // −52%
  EXPECT_NEAR(a.trace_vs_lowest, 100.0 * (11 - 22) / 22, 1e-9);  // −50%
  EXPECT_NEAR(a.lambda1_vs_lowest, 100.0 * (1.2 - 2.2) / 2.2, 1e-9);  // −45.5%
  // c10_5: best other by accuracy sgd (.725 > .70); lowest trace and λ1: label-smoothing (36 < 42, 3.0 < 4.2).
  const Comparison& b = report.comparisons[1];
  EXPECT_EQ(b.best_accuracy_method, "sgd");
  EXPECT_EQ(b.lowest_trace_method, "label-smoothing");
  EXPECT_EQ(b.lowest_lambda1_method, "label-smoothing");
  EXPECT_NEAR(b.accuracy_points, -0.5, 1e-9);
  EXPECT_NEAR(b.trace_vs_best_accuracy, 100.0 * (32 - 42) / 42, 1e-9);
  EXPECT_NEAR(b.lambda1_vs_best_accuracy, 100.0 * (3.4 - 4.2) / 4.2, 1e-9);
  EXPECT_NEAR(b.trace_vs_lowest, 100.0 * (32 - 36) / 36, 1e-9);
  EXPECT_NEAR(b.lambda1_vs_lowest, 100.0 * (3.4 - 3.0) / 3.0, 1e-9);  // sharper than the flattest: +13.3%
  ASSERT_TRUE(report.average.has_value());
  EXPECT_NEAR(report.average->accuracy_points, 0.5, 1e-9);
  EXPECT_NEAR(report.average->trace_vs_best_accuracy, (-56 + 100.0 * (32 - 42) / 42) / 2, 1e-9);
  EXPECT_NEAR(report.average->lambda1_vs_lowest, (100.0 * (1.2 - 2.2) / 2.2 + 100.0 * 0.4 / 3.0) / 2, 1e-9);
  EXPECT_NE(highlight_sentence(report).find("test accuracy +0.50 points"), std::string::npos)
      << highlight_sentence(report);
}

// Paired by seed (fake_sweep.h): the reference is sgd (a manifest without report.reference, and an sgd
// method); every other group against it, and against the best other method by mean test accuracy.
TEST_F(ReportFakeSweep, PairedAgainstTheReferenceAndTheBestOtherSeedBySeed) {
  const Sweep sweep = load();
  EXPECT_EQ(sweep.reference, "sgd");
  const Report report = aggregate(sweep);
  auto find = [&](const std::string& task, const std::string& method, const std::string& basis) {
    for (const PairedComparison& c : report.paired)
      if (c.task == task && c.group == method && c.basis == basis) return c;
    throw std::runtime_error("no paired comparison " + task + "/" + method + "/" + basis);
  };
  auto metric = [](const PairedComparison& c, const std::string& name) {
    for (const PairedMetric& m : c.metrics)
      if (m.name == name) return m;
    throw std::runtime_error("no quantity " + name);
  };
  // fm5-50, nso − sgd over seeds 0-2: accuracy +.02 +.03 +.04; trace −10 −10 (seeds 0, 1).
  const PairedComparison nso = find("fm5-50", "nso", "reference");
  EXPECT_EQ(nso.against, "sgd");
  const PairedMetric acc = metric(nso, "test_acc");
  EXPECT_EQ(acc.stats.n, 3);
  EXPECT_NEAR(acc.stats.mean, 0.03, kTol);
  EXPECT_NEAR(acc.stats.std_error, 0.01 / std::sqrt(3.0), kTol);
  EXPECT_EQ(acc.stats.positive, 3);
  EXPECT_DOUBLE_EQ(acc.stats.sign_p, 0.25);
  EXPECT_NEAR(acc.stats.t_p, 1 - std::sqrt(27.0 / 29.0), 1e-9);  // t² = 27, df 2: 1 − |t|/√(2 + t²)
  EXPECT_NEAR(acc.against_mean, 0.79, kTol);
  const PairedMetric trace = metric(nso, "trace");
  EXPECT_EQ(trace.stats.n, 2);
  EXPECT_NEAR(trace.stats.mean, -10, kTol);
  EXPECT_EQ(trace.stats.negative, 2);
  EXPECT_EQ(trace.stats.t_p, 0.0);  // the same difference on both seeds
  EXPECT_NEAR(trace.against_mean, 21, kTol);
  EXPECT_NEAR(metric(nso, "gap_acc").stats.mean, 0.0, 1e-9);  // train = test + .12 everywhere
  // The best other than nso is label-smoothing (.805 > .79): seeds 0, 1 only (seed 2 failed); one tie.
  const PairedComparison nso_best = find("fm5-50", "nso", "best other");
  EXPECT_EQ(nso_best.against, "label-smoothing");
  EXPECT_EQ(metric(nso_best, "test_acc").stats.n, 2);
  EXPECT_NEAR(metric(nso_best, "test_acc").stats.mean, 0.005, kTol);
  EXPECT_EQ(metric(nso_best, "test_acc").stats.positive, 1);
  EXPECT_EQ(metric(nso_best, "test_acc").stats.negative, 0);
  // The reference itself: only against the best other (nso); label-smoothing's best other is nso too.
  EXPECT_EQ(find("fm5-50", "sgd", "best other").against, "nso");
  EXPECT_THROW(find("fm5-50", "sgd", "reference"), std::runtime_error);
  EXPECT_EQ(find("fm5-50", "label-smoothing", "best other").against, "nso");
  // c10_5: sgd's seed 2 diverged, so nso − sgd pairs seeds 0 and 1: −.01 −.01.
  const PairedMetric c10 = metric(find("c10_5", "nso", "reference"), "test_acc");
  EXPECT_EQ(c10.stats.n, 2);
  EXPECT_NEAR(c10.stats.mean, -0.01, kTol);
  EXPECT_EQ(c10.stats.negative, 2);

  // The table, the CSV and the JSON carry the same numbers.
  const std::vector<Table> tables = result_tables(sweep, report);
  const auto paired_table = std::find_if(tables.begin(), tables.end(), [](const Table& t) {
    return t.kind == TableKind::kPaired && t.task == "fm5-50";
  });
  ASSERT_NE(paired_table, tables.end());
  bool found = false;
  for (const auto& row : paired_table->rows)
    found = found || (row[0] == "nso" && row[2] == "test acc (pts)" && row[4] == "+3.00 ± 0.58" && row[6] == "3 / 0");
  EXPECT_TRUE(found);
  found = false;  // the trace: −10 against sgd's 21 over the same seeds, −47.6%
  for (const auto& row : paired_table->rows)
    found = found || (row[2] == "Hessian trace" && row[4] == "-10 ± 0" && row[5] == "-47.6%");
  EXPECT_TRUE(found);
  const std::string csv = paired_csv(report);
  EXPECT_NE(csv.find("fm5-50,nso,sgd,reference,trace,2,-10,0,0,0,2,0,0.5,21\n"), std::string::npos) << csv;
  const auto j = nlohmann::json::parse(results_json(sweep, report));
  EXPECT_EQ(j.at("reference"), "sgd");
  EXPECT_EQ(j.at("paired").size(), report.paired.size());
}

// report.pairs adds the comparisons a claim needs, read from the manifest; one that repeats the reference or
// the best other is not drawn twice.
TEST_F(ReportFakeSweep, NamedPairsAreComparedSeedBySeedToo) {
  const fs::path file = dir_ / "manifest.json";
  auto manifest = nlohmann::json::parse(read(file));
  manifest["report"]["pairs"] = nlohmann::json::array(
      {nlohmann::json::array({"sgd", "label-smoothing"}), nlohmann::json::array({"label-smoothing", "nso"})});
  overwrite(file, manifest.dump());
  const Sweep sweep = load();
  ASSERT_EQ(sweep.pairs.size(), 2u);
  const Report report = aggregate(sweep);
  std::vector<std::string> pairs;
  for (const PairedComparison& c : report.paired)
    if (c.basis == "pair") pairs.push_back(c.task + ":" + c.group + "-" + c.against);
  // sgd − label-smoothing is new on both tasks; label-smoothing − nso only on c10_5, where label-smoothing's
  // best other is sgd (on fm5-50 it is nso already).
  EXPECT_EQ(pairs, (std::vector<std::string>{"fm5-50:sgd-label-smoothing", "c10_5:sgd-label-smoothing",
                                             "c10_5:label-smoothing-nso"}));
  for (const PairedComparison& c : report.paired) {
    if (c.basis == "pair" && c.task == "fm5-50") {  // seeds 0, 1 (label-smoothing's seed 2 failed)
      EXPECT_EQ(c.metrics.front().stats.n, 2);
    }
  }
  const std::vector<Table> tables = result_tables(sweep, report);
  bool named = false;
  for (const Table& t : tables)
    for (const auto& row : t.rows) named = named || (t.kind == TableKind::kPaired && row[0] == "sgd" && row[1] == "label-smoothing");
  EXPECT_TRUE(named);
}

// A chosen setting on its grid's edge (selection.json "edges") is marked in the task table and the grid.
TEST_F(ReportFakeSweep, AChosenSettingOnTheGridsEdgeIsMarked) {
  const fs::path file = dir_ / "selection.json";
  auto selection = nlohmann::json::parse(read(file));
  for (auto& g : selection.at("groups"))
    if (g.at("task") == "fm5-50" && g.at("method") == "nso") g["edges"] = {"sigma=0.01 is the smallest tried"};
  overwrite(file, selection.dump());
  const Sweep sweep = load();
  const Report report = aggregate(sweep);
  const std::vector<Table> tables = result_tables(sweep, report);
  EXPECT_EQ(tables[0].rows[2][1], "sigma=0.01 (grid edge)");  // fm5-50, nso
  EXPECT_EQ(tables[1].rows[2][1], "sigma=0.01");               // c10_5, nso: bracketed
  const Table& grid = tables.back();
  ASSERT_EQ(grid.kind, TableKind::kSelection);
  EXPECT_EQ(grid.rows[3][5], "✓");
  EXPECT_EQ(grid.rows[3][6], "sigma=0.01 is the smallest tried");
  EXPECT_EQ(grid.rows[4][6], "");  // not chosen
}

// In a sweep without selection (several settings per method), a named pair compares the two methods at each
// setting both have: NSO against WP-GD at the same σ.
TEST(ReportAggregate, NamedPairsMatchTheSameSetting) {
  Sweep sweep;
  sweep.pairs = {{"nso", "wp-gd"}};
  for (const std::string method : {"nso", "wp-gd"})
    for (const std::string sigma : {"0.1", "0.2"})
      for (int64_t seed : {0, 1}) {
        RunRecord r;
        r.task = "t";
        r.method = method;
        r.setting_name = "sigma=" + sigma;
        r.seed = seed;
        r.status = "done";
        r.roles = {"final"};
        // Test loss: 1 at σ = 0.1 and 2 at σ = 0.2 for WP-GD; NSO 0.1 (σ = 0.1) or 0.2 (σ = 0.2) lower.
        r.test_loss = (sigma == "0.1" ? 1.0 : 2.0) - (method == "nso" ? std::stod(sigma) : 0.0) + 0.01 * seed;
        sweep.runs.push_back(r);
      }
  const Report report = aggregate(sweep);
  std::map<std::string, double> differences;
  for (const PairedComparison& c : report.paired)
    if (c.basis == "pair")
      for (const PairedMetric& m : c.metrics)
        if (m.name == "test_loss") differences[c.group + " - " + c.against] = m.stats.mean;
  ASSERT_EQ(differences.size(), 2u);
  EXPECT_NEAR(differences.at("nso (sigma=0.1) - wp-gd (sigma=0.1)"), -0.1, 1e-12);
  EXPECT_NEAR(differences.at("nso (sigma=0.2) - wp-gd (sigma=0.2)"), -0.2, 1e-12);
}

TEST(ReportAggregate, NoHighlightNoComparison) {
  Sweep sweep;
  RunRecord r;
  r.task = "t";
  r.method = "sgd";
  r.status = "done";
  r.roles = {"final"};
  r.test_acc = 0.5;
  sweep.runs = {r};
  const Report report = aggregate(sweep);
  EXPECT_EQ(report.groups.size(), 1u);
  EXPECT_TRUE(report.comparisons.empty());
  EXPECT_FALSE(report.average.has_value());
  EXPECT_EQ(highlight_sentence(report), "");
}

// ------------------------------------------------------------------------------------- broken inputs

TEST_F(ReportFakeSweep, PerRunProblemsAreWarningsNamingTheFile) {
  fs::remove(dir_ / "runs/fm5-50/nso/sigma=0.01/seed2/summary.json");
  overwrite(dir_ / "runs/fm5-50/sgd/default/seed0/geometry.json", "{ truncated");
  overwrite(dir_ / "runs/c10_5/nso/sigma=0.01/seed0/metrics.csv", "epoch,test_acc\n1,0.5\n2\n");
  const Sweep sweep = load();
  ASSERT_EQ(sweep.warnings.size(), 3u);
  // In manifest order: fm5-50/sgd/seed0, fm5-50/nso/seed2, c10_5/nso/seed0.
  EXPECT_NE(sweep.warnings[0].find("seed0/geometry.json: not valid JSON"), std::string::npos) << sweep.warnings[0];
  EXPECT_NE(sweep.warnings[1].find("seed2/summary.json: not found"), std::string::npos) << sweep.warnings[1];
  EXPECT_NE(sweep.warnings[2].find("seed0/metrics.csv:3: 1 cells"), std::string::npos) << sweep.warnings[2];
  for (const std::string& w : sweep.warnings) EXPECT_EQ(w.find('\n'), std::string::npos);
  const Report report = aggregate(sweep);
  EXPECT_EQ(group(report, "fm5-50", "nso").failed, 1);  // done without a summary: counted as failed
  EXPECT_EQ(group(report, "fm5-50", "nso").seeds, 2);
  EXPECT_EQ(group(report, "fm5-50", "sgd").trace.n, 2);
  EXPECT_NEAR(group(report, "fm5-50", "sgd").trace.mean, 23, kTol);
}

TEST_F(ReportFakeSweep, UnknownHighlightIsAWarning) {
  nlohmann::json manifest = nlohmann::json::parse(read(dir_ / "manifest.json"));
  manifest["report"]["highlight"] = "nsoo";
  overwrite(dir_ / "manifest.json", manifest.dump());
  const Sweep sweep = load();
  ASSERT_EQ(sweep.warnings.size(), 1u);
  EXPECT_NE(sweep.warnings[0].find("manifest.json: report.highlight 'nsoo' is not the method of any final run"),
            std::string::npos)
      << sweep.warnings[0];
  EXPECT_TRUE(aggregate(sweep).comparisons.empty());
}

TEST_F(ReportFakeSweep, AnIncompleteSweepSaysSo) {
  nlohmann::json manifest = nlohmann::json::parse(read(dir_ / "manifest.json"));
  manifest["complete"] = false;
  overwrite(dir_ / "manifest.json", manifest.dump());
  const Sweep sweep = load();
  EXPECT_FALSE(sweep.complete);
  const Report report = aggregate(sweep);
  const std::vector<Table> tables = result_tables(sweep, report);
  EXPECT_NE(results_markdown(sweep, report, tables).find("The sweep is not complete"), std::string::npos);
  EXPECT_NE(html_page(sweep, report, tables, {}, "", "plots").find("The sweep is not complete"), std::string::npos);
  EXPECT_FALSE(nlohmann::json::parse(results_json(sweep, report)).at("complete").get<bool>());
}

TEST_F(ReportFakeSweep, RunsWithoutATaskAreReportedUnderDefault) {
  // An experiment file without [tasks] (crsam-curvature): the manifest's task is "".
  nlohmann::json manifest = nlohmann::json::parse(read(dir_ / "manifest.json"));
  for (auto& run : manifest["runs"])
    if (run["task"] == "c10_5") run["task"] = "";
  overwrite(dir_ / "manifest.json", manifest.dump());
  const Report report = aggregate(load());
  EXPECT_EQ(report.tasks, (std::vector<std::string>{"fm5-50", "default"}));
  EXPECT_FALSE(report.groups_of("default").empty());
  TempDir out;
  std::vector<std::string> warnings;
  const std::vector<Figure> figures =
      write_plots(report, (out / "plots").string(), PlotOptions().gnuplot("/nonexistent/gnuplot"), warnings);
  for (const Figure& f : figures) EXPECT_NE(f.name.front(), '_') << f.name;  // no "_-test-acc"
}

TEST_F(ReportFakeSweep, RootProblemsAreOneLineErrorsNamingTheFile) {
  const std::string missing = error_of([&] { load_sweep(dir_.str() + "/nonexistent"); });
  EXPECT_NE(missing.find(dir_.str() + "/nonexistent: no such directory"), std::string::npos) << missing;

  overwrite(dir_ / "selection.json", "{\"groups\": [{\"task\": 3}]}");
  const std::string selection = error_of([&] { load(); });
  EXPECT_NE(selection.find("selection.json: "), std::string::npos) << selection;

  overwrite(dir_ / "manifest.json", "{\"format\": \"flatmin-sweep/2\", \"runs\": []}");
  EXPECT_NE(error_of([&] { load(); }).find("manifest.json: format 'flatmin-sweep/2'"), std::string::npos);

  overwrite(dir_ / "manifest.json", "{\"format\": \"flatmin-sweep/1\", \"runs\": [{\"id\": \"x\"}]}");
  const std::string run = error_of([&] { load(); });
  EXPECT_NE(run.find("manifest.json: runs[0]: "), std::string::npos) << run;

  overwrite(dir_ / "manifest.json", "{\"format\": ");
  const std::string corrupt = error_of([&] { load(); });
  EXPECT_NE(corrupt.find("manifest.json: not valid JSON"), std::string::npos) << corrupt;
  EXPECT_EQ(corrupt.find('\n'), std::string::npos);

  fs::remove(dir_ / "manifest.json");
  EXPECT_NE(error_of([&] { load(); }).find("manifest.json: not found"), std::string::npos);
}

TEST(ReportInput, MetricsCsvColumnsByNameWithNanAndQuotes) {
  TempDir dir;
  overwrite(dir / "metrics.csv",
            "epoch,note,test_loss,test_acc,geo_lambda1\n1,\"a, \"\"quoted\"\" note\",0.5,nan,\n2,x,0.25,0.75,3.5\n");
  const std::vector<EpochPoint> points = read_metrics_csv((dir / "metrics.csv").string());
  ASSERT_EQ(points.size(), 2u);
  EXPECT_EQ(points[0].test_loss, 0.5);
  EXPECT_TRUE(std::isnan(points[0].test_acc));
  EXPECT_TRUE(std::isnan(points[0].lambda1));  // empty cell
  EXPECT_TRUE(std::isnan(points[0].trace));    // no such column
  EXPECT_EQ(points[1].epoch, 2);
  EXPECT_EQ(points[1].lambda1, 3.5);
  overwrite(dir / "bad.csv", "epoch,test_acc\n1,high\n");
  EXPECT_NE(error_of([&] { read_metrics_csv((dir / "bad.csv").string()); })
                .find("bad.csv:2: 'high' in column 'test_acc' is not a number"),
            std::string::npos);
}

// ------------------------------------------------------------------------------------------------ output

TEST_F(ReportFakeSweep, CsvRoundTripsEveryNumberExactly) {
  const Report report = aggregate(load());
  std::istringstream csv(results_csv(report));
  std::string line;
  std::getline(csv, line);
  std::vector<std::string> header;
  for (std::stringstream h(line); std::getline(h, line, ',');) header.push_back(line);
  auto column = [&](const std::string& name) {
    return static_cast<size_t>(std::find(header.begin(), header.end(), name) - header.begin());
  };
  size_t row = 0;
  while (std::getline(csv, line)) {
    std::vector<std::string> cells;
    for (std::stringstream c(line); std::getline(c, line, ',');) cells.push_back(line);
    ASSERT_EQ(cells.size(), header.size());
    const GroupSummary& g = report.groups[row++];
    EXPECT_EQ(cells[column("task")], g.task);
    EXPECT_EQ(cells[column("method")], g.method);
    EXPECT_EQ(std::stod(cells[column("test_acc_mean")]), g.test_acc.mean);  // bit for bit
    EXPECT_EQ(std::stod(cells[column("test_acc_std")]), g.test_acc.std);
    EXPECT_EQ(std::stod(cells[column("seconds_mean")]), g.seconds.mean);
    EXPECT_EQ(std::stoll(cells[column("failed")]), g.failed);
    if (std::isnan(g.trace.std)) EXPECT_EQ(cells[column("trace_std")], "nan");
    else EXPECT_EQ(std::stod(cells[column("trace_std")]), g.trace.std);
  }
  EXPECT_EQ(row, report.groups.size());
}

TEST_F(ReportFakeSweep, JsonRoundTripsNumbersAndKeepsEveryRun) {
  const Sweep sweep = load();
  const Report report = aggregate(sweep);
  const nlohmann::json j = nlohmann::json::parse(results_json(sweep, report));
  ASSERT_EQ(j.at("groups").size(), report.groups.size());
  for (size_t i = 0; i < report.groups.size(); ++i) {
    const nlohmann::json& g = j.at("groups")[i];
    EXPECT_EQ(g.at("test_acc").at("mean").get<double>(), report.groups[i].test_acc.mean);
    EXPECT_EQ(g.at("trace").at("n").get<int64_t>(), report.groups[i].trace.n);
    if (std::isnan(report.groups[i].trace.std)) EXPECT_TRUE(g.at("trace").at("std").is_null());
    else EXPECT_EQ(g.at("trace").at("std").get<double>(), report.groups[i].trace.std);
  }
  EXPECT_EQ(j.at("average").at("trace_vs_best_accuracy_percent").get<double>(), report.average->trace_vs_best_accuracy);
  EXPECT_EQ(j.at("runs").size(), 21u);
  EXPECT_EQ(j.at("runs")[0].at("test_acc").get<double>(), 0.78);
  EXPECT_EQ(j.at("runs")[0].at("setting"), nlohmann::json::object());
  EXPECT_EQ(j.at("selection").size(), 6u);
}

TEST_F(ReportFakeSweep, TablesShowMeanStdAndMarkTheHighlight) {
  const Sweep sweep = load();
  const Report report = aggregate(sweep);
  const std::vector<Table> tables = result_tables(sweep, report);
  ASSERT_EQ(tables.size(), 6u);  // 2 tasks, their paired differences, the comparison, the selection grid
  const Table& fm = tables[0];
  EXPECT_EQ(fm.task, "fm5-50");
  auto cell = [&](const Table& t, size_t row, const std::string& column) {
    return t.rows[row][std::find(t.header.begin(), t.header.end(), column) - t.header.begin()];
  };
  EXPECT_EQ(cell(fm, 0, "test acc (%)"), "79.00 ± 1.00");
  EXPECT_EQ(cell(fm, 0, "grad evals"), "1000");  // no "± 0"
  EXPECT_EQ(cell(fm, 1, "Hessian trace"), "25 (n=1)");
  EXPECT_EQ(cell(fm, 1, "failed / diverged / pending"), "1 / 0 / 0");
  EXPECT_EQ(cell(fm, 2, "Hessian trace"), "11 ± 1.4 (n=2)");
  EXPECT_EQ(fm.emphasized, (std::vector<bool>{false, false, true}));
  EXPECT_EQ(tables[2].kind, TableKind::kPaired);
  EXPECT_EQ(tables[3].kind, TableKind::kPaired);
  EXPECT_EQ(tables[4].kind, TableKind::kComparison);
  EXPECT_EQ(tables[4].rows.back()[0], "average");
  EXPECT_EQ(tables[5].kind, TableKind::kSelection);
  EXPECT_EQ(tables[5].rows.size(), 10u);  // candidates: (1 + 2 + 2) per task
  EXPECT_EQ(cell(tables[5], 3, "chosen"), "✓");  // nso sigma=0.01
  EXPECT_EQ(cell(tables[5], 4, "chosen"), "");

  const std::string md = results_markdown(sweep, report, tables);
  EXPECT_NE(md.find("| **nso** | **sigma=0.01** | **3** | **82.00 ± 2.00** |"), std::string::npos) << md;
  EXPECT_NE(md.find("## Relative change of nso"), std::string::npos);
  const std::string text = text_summary(report, tables);
  EXPECT_NE(text.find("* nso"), std::string::npos) << text;
}

TEST(ReportHtml, EscapesSpecialCharacters) {
  EXPECT_EQ(html_escape("<a href=\"x\">Tom & 'Jerry'</a>"),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;");
  EXPECT_EQ(html_escape("λ1 ± 0.5"), "λ1 ± 0.5");
}

TEST(ReportHtml, InlineSvgDropsThePrologAndPrefixesIds) {
  const std::string svg =
      "<?xml version=\"1.0\"?>\n<!DOCTYPE svg>\n<svg viewBox=\"0 0 10 10\">\n<g id=\"gnuplot_canvas\">"
      "<path id='gpPt5' uid='keep'/><use xlink:href='#gpPt5'/><rect filter='url(#textbox)' href=\"#x\"/></g></svg>\n";
  const std::string out = inline_svg(svg, "f3-");
  EXPECT_EQ(out.rfind("<svg", 0), 0u);
  EXPECT_NE(out.find("id=\"f3-gnuplot_canvas\""), std::string::npos);
  EXPECT_NE(out.find("id='f3-gpPt5'"), std::string::npos);
  EXPECT_NE(out.find("uid='keep'"), std::string::npos);
  EXPECT_NE(out.find("xlink:href='#f3-gpPt5'"), std::string::npos);
  EXPECT_NE(out.find("url(#f3-textbox)"), std::string::npos);
  EXPECT_NE(out.find("href=\"#f3-x\""), std::string::npos);
  EXPECT_EQ(out.back(), '>');
  EXPECT_THROW(inline_svg("<html/>", "x"), flatmin::Error);
}

TEST_F(ReportFakeSweep, PageEscapesTextFromFiles) {
  const Sweep sweep = load();
  const Report report = aggregate(sweep);
  const std::string html = html_page(sweep, report, result_tables(sweep, report), {}, "", "plots");
  EXPECT_NE(html.find("Fine-tuning on &lt;small&gt; targets &amp; &#39;quoted&#39; &quot;labels&quot;"),
            std::string::npos);
  EXPECT_EQ(html.find("<small>"), std::string::npos);
  EXPECT_NE(html.find("data &lt;missing&gt; &amp; gone"), std::string::npos);  // the failed run's error
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_NE(html.find("<tr class=\"emphasized\"><td>nso</td>"), std::string::npos);
}

// ------------------------------------------------------------------------------------------------- plots

TEST_F(ReportFakeSweep, PlotFilesWithoutGnuplot) {
  const Report report = aggregate(load());
  TempDir out;
  std::vector<std::string> warnings;
  const std::vector<Figure> figures =
      write_plots(report, (out / "plots").string(), PlotOptions().gnuplot("/nonexistent/gnuplot"), warnings);
  // 14 per task: validation acc and loss, objective, test acc and loss, train loss, loss gap, final acc, trace,
  // λ1, trace and λ1 per epoch, and the paired differences of accuracy and trace against sgd
  ASSERT_EQ(figures.size(), 28u);
  ASSERT_EQ(warnings.size(), 1u);  // once, not per figure
  EXPECT_NE(warnings[0].find("/nonexistent/gnuplot: not found"), std::string::npos) << warnings[0];
  for (const Figure& f : figures) {
    EXPECT_TRUE(fs::exists(out / ("plots/" + f.name + ".gp"))) << f.name;
    EXPECT_TRUE(fs::exists(out / ("plots/" + f.name + ".dat"))) << f.name;
    EXPECT_TRUE(f.images.empty());
  }
  EXPECT_EQ(figures[0].name, "fm5-50-val-acc");
  EXPECT_EQ(figures[3].name, "fm5-50-test-acc");
  const std::string gp = read(out / "plots/fm5-50-test-acc.gp");
  EXPECT_NE(gp.find("plot 'fm5-50-test-acc.dat' index 0"), std::string::npos) << gp;
  EXPECT_NE(gp.find("set output 'fm5-50-test-acc.svg'"), std::string::npos);
  EXPECT_NE(gp.find("set output 'fm5-50-test-acc.png'"), std::string::npos);
  EXPECT_NE(gp.find("title 'label-smoothing'"), std::string::npos);
  // The final accuracies: one row per method, mean and std in percent.
  std::istringstream dat(read(out / "plots/fm5-50-final-acc.dat"));
  std::vector<std::string> rows;
  for (std::string line; std::getline(dat, line);)
    if (line[0] != '#') rows.push_back(line);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[2].rfind("2 \"nso\" 82 2 3 ", 0), 0u) << rows[2];
  EXPECT_EQ(rows[1].rfind("1 \"label-smoothing\" 80.5 0.7071067812 2 ", 0), 0u) << rows[1];
  // The paired accuracy differences against sgd: label-smoothing +2 (seeds 0, 1), nso +3 ± 0.577 (3 of 3).
  std::istringstream paired(read(out / "plots/fm5-50-paired-acc.dat"));
  rows.clear();
  for (std::string line; std::getline(paired, line);)
    if (line[0] != '#') rows.push_back(line);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].rfind("1 \"nso\" 3 0.5773502692 3 3 0 ", 0), 0u) << rows[1];
  // Formats gnuplot is not asked for are refused.
  EXPECT_THROW(write_plots(report, (out / "p2").string(), PlotOptions().formats({"jpeg"}), warnings), flatmin::Error);
}

TEST_F(ReportFakeSweep, GnuplotFailuresAreWarningsNamingTheScript) {
  const Report report = aggregate(load());
  TempDir out;
  std::vector<std::string> warnings;
  // `false` stands in for a gnuplot that rejects every script.
  const std::vector<Figure> figures =
      write_plots(report, (out / "plots").string(), PlotOptions().gnuplot("false"), warnings);
  ASSERT_EQ(warnings.size(), figures.size());
  EXPECT_EQ(warnings[0], (out / "plots/fm5-50-val-acc.gp").string() + ": gnuplot failed: exit status 1");
}

TEST(ReportPlots, FileStems) {
  EXPECT_EQ(file_stem("fm5-50"), "fm5-50");
  EXPECT_EQ(file_stem("a/b c<d>"), "a_b_c_d_");
  EXPECT_EQ(file_stem(".."), "_..");
  EXPECT_EQ(file_stem(""), "_");
}

}  // namespace report_test
