#pragma once
// A small hand-built sweep root in the format `flatmin sweep` writes (manifest.json, selection.json, run
// directories with summary.json, metrics.csv and some geometry.json), with values chosen so that every
// aggregate the report computes can be worked out by hand. Shared by the unit tests and the CLI test.
//
// Two tasks × three methods (sgd, label-smoothing, nso = the highlight) × seeds 0-2, all with role "final":
//   fm5-50  sgd              test acc .78 .79 .80   trace 20 22 24 (SE .2 .3 .4)   λ1 2.0 2.2 2.4
//           label-smoothing  test acc .80 .81, seed 2 failed   trace 25 (seed 0 only)   λ1 2.5 (seed 0)
//           nso              test acc .80 .82 .84   trace 10 12 (seeds 0, 1; SE .1 .1)   λ1 1.0 1.4
//   c10_5   sgd              test acc .72 .73, seed 2 diverged   trace 40 44 (SE 1 1)   λ1 4.0 4.4
//           label-smoothing  test acc .69 .70 .71 (+ seed 3 pending)   trace 36 (seed 0, SE 1)   λ1 3.0 (seed 0)
//           nso              test acc .71 .72 .73   trace 30 34 (SE 1 1)   λ1 3.3 3.5
// Train accuracy is test + .12, train loss test loss − .30 (test loss 1 − test acc): the gaps are .12 and .30.
// Gradient evaluations 1000 (sgd), 2000 (nso, label-smoothing); seconds 10 + seed.
// Plus a grid-only run (nso sigma=0.02 on fm5-50, test acc .10) and a pretraining run: neither is final.
// metrics.csv: 3 epochs, test acc = final − .02·(3 − epoch); sgd and nso runs also have geo_* columns,
// NaN at epoch 1, trace = (run's trace or 5) + epoch at epochs 2 and 3.

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace flatmin::test {

namespace fake_sweep_detail {

inline void write(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

struct FakeRun {
  std::string task, method, setting_name;
  nlohmann::json setting;
  int seed;
  std::string status;                 // done | failed | diverged | pending
  double test_acc = 0;                // done runs
  double trace = -1, trace_se = 0;    // < 0: no geometry.json
  double lambda1 = -1;
  std::vector<std::string> roles{"grid", "final"};
  std::string stage = "finetune";
};

inline std::string fmt(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.9g", v);
  return buffer;
}

}  // namespace fake_sweep_detail

/// The highlight method of the fake sweep.
inline const char* kFakeHighlight = "nso";

/// Writes the fake sweep root described above into `root` (created).
inline void write_fake_sweep(const std::string& root_dir) {
  using fake_sweep_detail::FakeRun;
  using fake_sweep_detail::fmt;
  using nlohmann::json;
  const std::filesystem::path root(root_dir);
  const json sigma1 = {{"sigma", 0.01}}, sigma2 = {{"sigma", 0.02}}, eps = {{"epsilon", 0.1}}, none = json::object();
  std::vector<FakeRun> runs = {
      {"fm5-50", "sgd", "default", none, 0, "done", 0.78, 20, 0.2, 2.0},
      {"fm5-50", "sgd", "default", none, 1, "done", 0.79, 22, 0.3, 2.2},
      {"fm5-50", "sgd", "default", none, 2, "done", 0.80, 24, 0.4, 2.4},
      {"fm5-50", "label-smoothing", "epsilon=0.1", eps, 0, "done", 0.80, 25, 0.5, 2.5},
      {"fm5-50", "label-smoothing", "epsilon=0.1", eps, 1, "done", 0.81},
      {"fm5-50", "label-smoothing", "epsilon=0.1", eps, 2, "failed"},
      {"fm5-50", "nso", "sigma=0.01", sigma1, 0, "done", 0.80, 10, 0.1, 1.0},
      {"fm5-50", "nso", "sigma=0.01", sigma1, 1, "done", 0.82, 12, 0.1, 1.4},
      {"fm5-50", "nso", "sigma=0.01", sigma1, 2, "done", 0.84},
      {"c10_5", "sgd", "default", none, 0, "done", 0.72, 40, 1, 4.0},
      {"c10_5", "sgd", "default", none, 1, "done", 0.73, 44, 1, 4.4},
      {"c10_5", "sgd", "default", none, 2, "diverged"},
      {"c10_5", "label-smoothing", "epsilon=0.1", eps, 0, "done", 0.69, 36, 1, 3.0},
      {"c10_5", "label-smoothing", "epsilon=0.1", eps, 1, "done", 0.70},
      {"c10_5", "label-smoothing", "epsilon=0.1", eps, 2, "done", 0.71},
      {"c10_5", "label-smoothing", "epsilon=0.1", eps, 3, "pending"},
      {"c10_5", "nso", "sigma=0.01", sigma1, 0, "done", 0.71, 30, 1, 3.3},
      {"c10_5", "nso", "sigma=0.01", sigma1, 1, "done", 0.72, 34, 1, 3.5},
      {"c10_5", "nso", "sigma=0.01", sigma1, 2, "done", 0.73},
  };
  FakeRun grid_only{"fm5-50", "nso", "sigma=0.02", sigma2, 0, "done", 0.10};
  grid_only.roles = {"grid"};
  runs.push_back(grid_only);
  FakeRun pretrain{"pretrain", "sgd", "default", none, 0, "done", 0.50};
  pretrain.roles = {"pretrain"};
  pretrain.stage = "pretrain";
  runs.push_back(pretrain);

  json manifest_runs = json::array();
  for (const FakeRun& r : runs) {
    const std::string id = r.task + "/" + r.method + "/" + r.setting_name + "/seed" + std::to_string(r.seed);
    const std::string dir = "runs/" + id;
    const bool done = r.status == "done";
    const std::string error = r.status == "failed"     ? "fm5-50/label-smoothing: exit code 1: data <missing> & gone"
                              : r.status == "diverged" ? "diverged at epoch 1, step 2: the loss is nan"
                                                       : "";
    manifest_runs.push_back({{"id", id},
                             {"dir", dir},
                             {"stage", r.stage},
                             {"task", r.task},
                             {"method", r.method},
                             {"setting", r.setting},
                             {"setting_name", r.setting_name},
                             {"seed", r.seed},
                             {"roles", r.roles},
                             {"status", r.status},
                             {"exit_code", done ? 0 : (r.status == "diverged" ? 3 : 1)},
                             {"seconds", done ? 10.0 + r.seed : 0.0},
                             {"error", error}});
    if (r.status == "pending" || r.status == "failed") continue;  // never started, or failed before writing
    const std::filesystem::path run_dir = root / dir;
    const double grad_evals = r.method == "sgd" ? 1000 : 2000;
    const bool geo_columns = r.method != "label-smoothing";
    std::string csv = "epoch,steps,gradient_evaluations,lr,";
    if (r.method == "nso") csv += "sigma,";
    csv += "objective,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,gap_loss,gap_acc,skipped_steps,";
    if (geo_columns)
      csv += "geo_hessian_trace,geo_hessian_trace_se,geo_hessian_trace_probes,geo_lambda1,geo_lambda1_residual,";
    csv += "train_seconds,ms_per_step\n";
    const int epochs = done ? 3 : 1;  // a diverged run stops early
    for (int e = 1; e <= epochs; ++e) {
      const double acc = done ? r.test_acc - 0.02 * (3 - e) : std::nan("");
      const double loss = 1 - acc;
      csv += std::to_string(e) + "," + std::to_string(10 * e) + "," + fmt(grad_evals * e / 3) + ",0.1,";
      if (r.method == "nso") csv += "0.01,";
      csv += fmt(loss - 0.3) + "," + fmt(loss - 0.3) + "," + fmt(acc + 0.12) + "," + fmt(loss) + "," + fmt(acc) + "," +
             fmt(loss) + "," + fmt(acc) + ",0.3,0.12,0,";
      if (geo_columns) {
        const double base = r.trace >= 0 ? r.trace : 5;
        csv += e == 1 ? "nan,nan,nan,nan,nan," : fmt(base + e) + ",0.5,20," + fmt(base / 10 + e) + ",0.001,";
      }
      csv += "1.5,0.25\n";
    }
    fake_sweep_detail::write(run_dir / "metrics.csv", csv);
    if (!done) continue;
    const double test_loss = 1 - r.test_acc;
    const json summary = {{"final_test_acc", r.test_acc},
                          {"final_test_loss", test_loss},
                          {"final_val_acc", r.test_acc + 0.01},
                          {"final_train_acc", r.test_acc + 0.12},
                          {"final_train_loss", test_loss - 0.30},
                          {"gap_loss", 0.30},
                          {"epochs", 3},
                          {"steps", 30},
                          {"gradient_evaluations", grad_evals},
                          {"skipped_steps", 0},
                          {"mean_ms_per_step", 0.25},
                          {"total_seconds", 10.0 + r.seed},
                          {"resumed", false},
                          {"threads", 1}};
    fake_sweep_detail::write(run_dir / "summary.json", summary.dump(2) + "\n");
    if (r.trace >= 0) {
      const json geometry = {{"command", "geometry"},
                             {"loss", test_loss - 0.30},
                             {"trace", {{"estimate", r.trace}, {"std_error", r.trace_se}, {"probes", 40}}},
                             {"eigenvalues", {{"values", {r.lambda1, r.lambda1 / 2}}, {"residuals", {0.001, 0.002}}}}};
      fake_sweep_detail::write(run_dir / "geometry.json", geometry.dump(2) + "\n");
    }
  }
  const json manifest = {
      {"format", "flatmin-sweep/1"},
      {"experiment",
       {{"name", "finetune"},
        {"file", "experiments/finetune.toml"},
        {"description", "Fine-tuning on <small> targets & 'quoted' \"labels\""},
        {"command", "flatmin sweep experiments/finetune.toml"}}},
      {"select", {{"metric", "val_acc"}, {"mode", "max"}}},
      {"report", {{"highlight", kFakeHighlight}}},
      {"runs", manifest_runs}};
  fake_sweep_detail::write(root / "manifest.json", manifest.dump(2) + "\n");

  auto candidate = [](const json& setting, const std::string& name, double value, int n) {
    return json{{"setting", setting}, {"setting_name", name}, {"value", value}, {"runs", n}};
  };
  json groups = json::array();
  for (const std::string task : {"fm5-50", "c10_5"}) {
    const double shift = task == "fm5-50" ? 0 : -0.1;
    groups.push_back({{"task", task},
                      {"method", "sgd"},
                      {"candidates", {candidate(none, "default", 0.79 + shift, 1)}},
                      {"chosen", "default"}});
    groups.push_back({{"task", task},
                      {"method", "label-smoothing"},
                      {"candidates",
                       {candidate(eps, "epsilon=0.1", 0.80 + shift, 1),
                        candidate({{"epsilon", 0.2}}, "epsilon=0.2", 0.798 + shift, 1)}},
                      {"chosen", "epsilon=0.1"}});
    groups.push_back({{"task", task},
                      {"method", "nso"},
                      {"candidates",
                       {candidate(sigma1, "sigma=0.01", 0.812 + shift, 1), candidate(sigma2, "sigma=0.02", 0.795 + shift, 1)}},
                      {"chosen", "sigma=0.01"}});
  }
  const json selection = {{"metric", "val_acc"}, {"mode", "max"}, {"groups", groups}};
  fake_sweep_detail::write(root / "selection.json", selection.dump(2) + "\n");
}

}  // namespace flatmin::test
