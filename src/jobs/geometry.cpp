// `flatmin geometry` as one library call: measure the flatness of a trained model (a checkpoint written by `flatmin train`) on a
// split of its data: Hessian trace (Hutchinson, Hutch++), top eigenvalues (Lanczos), spectral density (SLQ),
// gradient norm and normalised trace, perturbation gap vs σ²/2·Tr, SAM's approximation ratio, the NSO
// PAC-Bayes bound. Writes JSON and prints a summary.
#include "flatmin/jobs/geometry.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <limits>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>
#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include "flatmin/jobs/run_data.h"
#include "flatmin/core/text.h"
#include "flatmin/core/files.h"
#include "flatmin/core/device.h"
#include "flatmin/core/error.h"
#include "flatmin/distributed/communicator.h"
#include "flatmin/core/runtime.h"
#include "flatmin/core/seed.h"
#include "flatmin/data/dataset.h"
#include "flatmin/geometry/objective.h"
#include "flatmin/geometry/perturbation.h"
#include "flatmin/geometry/spectrum.h"
#include "flatmin/training/checkpoint.h"
#include "flatmin/training/run.h"
#include "flatmin/training/metrics_log.h"
#include "flatmin/training/progress.h"
#include "flatmin/training/trainer.h"

namespace flatmin::jobs {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

const std::vector<std::string> kMeasures{"grad", "trace", "hutchpp", "eigen", "density", "gap", "ratio", "pac-bayes"};

std::string num(double value, const char* format = "%.4g") { return format_number(value, format); }

json layer_traces_json(const std::vector<geometry::LayerTrace>& layers) {
  json a = json::array();
  for (const auto& l : layers)
    a.push_back({{"name", l.name}, {"numel", l.numel}, {"trace", l.trace}, {"std_error", l.std_error}});
  return a;
}

geometry::TraceOptions trace_options(const GeometryJob& a, training::Progress* progress,
                                     const geometry::ProbeSplit& split) {
  return geometry::TraceOptions()
      .rel_tol(a.trace_tol())
      .max_probes(a.max_probes())
      .min_probes(std::min(a.min_probes(), a.max_probes()))
      .stop_rule(a.stop_rule() == "pyhessian" ? geometry::TraceStopRule::kPyHessianChange
                                            : geometry::TraceStopRule::kStandardError)
      .seed(a.seed())
      .progress(progress)
      .split(split);
}

// One law's gap table, printed as it is written.
json gap_table(const geometry::GapResult& g, const std::string& mode, training::Progress& progress) {
  json rows = json::array();
  progress.line("perturbation gap (" + g.law + " noise, " + mode + " mode, " + std::to_string(g.draws) +
                (g.antithetic ? " antithetic pairs" : " one-sided draws") + " per σ):");
  progress.line("    σ       gap ± std            σ²/2·Tr     rel. error");
  for (const auto& r : g.rows) {
    rows.push_back({{"sigma", r.sigma},
                    {"gap", r.gap},
                    {"gap_std", r.gap_std},
                    {"gap_std_error", r.gap_std_error},
                    {"predicted", r.predicted},
                    {"predicted_std_error", r.predicted_std_error},
                    {"relative_error", r.relative_error},
                    {"z", r.z}});
    char line[160];
    std::snprintf(line, sizeof line, "  %.4f  %.5f ± %.5f   %.5f     %+.1f%%", r.sigma, r.gap, r.gap_std, r.predicted,
                  100 * r.relative_error);
    progress.line(line);
  }
  progress.line("  RSS Σ(gap − σ²/2·Tr)²/Σgap² = " + num(100 * g.rss, "%.2f") + "%, RMS relative error " +
                num(100 * g.rms_relative_error, "%.1f") + "%, effective trace 2·gap/σ² " +
                num(g.effective_trace, "%.5g") + " vs Tr " + num(g.trace, "%.5g"));
  for (const auto& w : g.warnings) progress.line("  warning: " + w);
  return {{"loss", g.loss},
          {"trace", g.trace},
          {"trace_std_error", g.trace_std_error},
          {"law", mode == "train" ? g.law + " (train mode)" : g.law},
          {"mode", mode},
          {"antithetic", g.antithetic},
          {"draws", g.draws},
          {"rows", rows},
          {"rss", g.rss},
          {"rss_absolute", g.rss_absolute},
          {"rms_relative_error", g.rms_relative_error},
          {"effective_trace", g.effective_trace},
          {"warnings", g.warnings},
          {"seconds", g.seconds}};
}

}  // namespace

const std::vector<std::string>& geometry_measure_names() { return kMeasures; }

GeometryOutcome run_geometry_job(const GeometryJob& a) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::set<std::string> chosen = [&] {
    std::set<std::string> s;
    for (const auto& m : a.measures()) {
      if (m == "all") s.insert(kMeasures.begin(), kMeasures.end());
      else s.insert(m);
    }
    return s;
  }();
  auto wants = [&](const std::string& m) { return chosen.count(m) > 0; };
  // Several processes (flatmin launch): they share Hutchinson's probes; rank 0 alone prints and writes.
  const distributed::World world = distributed::world_from_env();
  training::Progress progress(training::parse_progress_mode(world.rank == 0 ? a.progress() : "quiet"));
  std::vector<noise::NoiseLaw> laws;
  for (const auto& name : a.noise()) laws.push_back(noise::parse_noise_law(name));

  std::string path = a.checkpoint();
  if (fs::is_directory(path)) path = (fs::path(path) / "model.ckpt").string();
  const c10::Device device = parse_device(a.device());
  training::CheckpointContents ck = training::load_checkpoint(path);
  const int threads = a.threads() > 0 ? a.threads()
                                    : models::default_num_threads(ck.spec, static_cast<int>(std::thread::hardware_concurrency()));
  const ThreadCounts thread_counts = set_num_threads(threads);
  ck.model->to(device);
  std::unique_ptr<distributed::Communicator> communicator;
  geometry::ProbeSplit probe_split;  // Hutchinson's probes, shared by the processes
  if (world.distributed()) {
    communicator = std::make_unique<distributed::Communicator>(
        world, std::chrono::milliseconds(static_cast<int64_t>(a.dist_timeout() * 1000)));
    probe_split.rank = world.rank;
    probe_split.size = world.size;
    probe_split.sum = [c = communicator.get()](const std::vector<at::Tensor>& t) { c->sum(t); };
  }
  const std::string out_path = a.out().empty() ? (fs::path(path).parent_path() / "geometry.json").string() : a.out();

  const data::DataSource source = run_data_source(path, a.data_dir());
  RunData d = rebuild_data(ck, source, path);
  const data::Dataset* split = &checked_split(d, a.split(), ck, path);
  const data::Dataset sample = geometry::sample_examples(*split, a.examples(), a.sample_seed());
  const geometry::Objective objective =
      geometry::Objective::for_model(ck.model, sample,
                                     geometry::ObjectiveOptions().batch_size(a.batch_size()).mode(
                                         geometry::parse_model_mode(a.mode())));
  const geometry::HvpOptions hvp = geometry::HvpOptions().graph_memory_mb(a.graph_memory_mb());

  json j;
  j["command"] = "geometry";
  j["flatmin"] = version_string();
  j["started"] = now_utc();
  j["checkpoint"] = path;
  j["model"] = {{"name", ck.spec.name()},
                {"width", ck.spec.width()},
                {"activation", ck.spec.activation()},
                {"parameters", models::count_parameters(*ck.model.module())},
                {"measured_parameters", objective.dim()},
                {"epoch", ck.epoch}};
  j["data"] = {{"dir", data::resolved_dir(source)},
               {"dataset", source.kind()},
               {"source", d.source},
               {"split", a.split()},
               {"examples", sample.size()},
               {"split_examples", split->size()},
               {"batch_size", a.batch_size()},
               {"loss", "cross-entropy (mean), " + a.mode() + " mode"},
               {"mode", a.mode()}};
  j["seed"] = a.seed();
  j["sample_seed"] = a.sample_seed();
  j["threads"] = thread_counts.torch_intra_op;
  j["device"] = device.str();
  progress.line("flatmin geometry: " + path + " | " + ck.spec.name() + ", " + std::to_string(objective.dim()) +
                " parameters | " + a.split() + " split, " + std::to_string(sample.size()) + " of " +
                std::to_string(split->size()) + " examples | " + std::to_string(thread_counts.torch_intra_op) +
                " thread(s)");

  geometry::TraceResult trace;
  {
    geometry::MeasurementScope scope(objective, /*snapshot_parameters=*/false);
    geometry::HessianOperator hessian(objective, hvp);
    const auto prepare0 = std::chrono::steady_clock::now();
    const double loss = hessian.loss();  // one pass: loss, gradient, cached graphs
    const double grad_norm = hessian.gradient().to(at::kDouble).norm().item<double>();
    j["loss"] = loss;
    j["graph_cache"] = {{"cached_batches", hessian.cached_batches()},
                        {"batches", objective.num_batches()},
                        {"bytes", hessian.cached_bytes()},
                        {"budget_mb", a.graph_memory_mb()},
                        {"build_seconds",
                         std::chrono::duration<double>(std::chrono::steady_clock::now() - prepare0).count()}};
    progress.line("loss " + num(loss, "%.5f"));
    if (wants("grad")) {
      const geometry::GradientResult g = geometry::gradient(objective);
      json layers = json::array();
      for (size_t i = 0; i < g.names.size(); ++i) layers.push_back({{"name", g.names[i]}, {"norm", g.layer_norms[i]}});
      j["gradient"] = {{"norm", g.norm}, {"layers", layers}};
      progress.line("gradient norm ‖∇L‖ " + num(grad_norm));
    }
    if (wants("trace") || wants("gap")) {
      trace = geometry::hutchinson_trace(hessian, trace_options(a, &progress, probe_split));
      j["trace"] = {{"estimate", trace.trace},
                    {"std_error", trace.std_error},
                    {"relative_std_error", trace.std_error / std::abs(trace.trace)},
                    {"probe_std", trace.probe_std},
                    {"probes", trace.probes},
                    {"hvps", trace.hvps},
                    {"converged", trace.converged},
                    {"stop_rule", a.stop_rule() == "pyhessian" ? "pyhessian-change" : "standard-error"},
                    {"rel_tol", a.trace_tol()},
                    {"seconds", trace.seconds},
                    {"layers", layer_traces_json(trace.layers)}};
      progress.line("Hessian trace (Hutchinson) " + num(trace.trace, "%.5g") + " ± " + num(trace.std_error, "%.3g") +
                    " (" + num(100 * trace.std_error / std::abs(trace.trace), "%.2f") + "% SE, " +
                    std::to_string(trace.probes) + " probes" + (trace.converged ? "" : ", NOT converged") + ", " +
                    num(trace.seconds, "%.1f") + " s)");
      for (const auto& l : trace.layers)
        progress.line("  " + l.name + " (" + std::to_string(l.numel) + "): " + num(l.trace, "%.5g") + " ± " +
                      num(l.std_error, "%.3g"));
      const double g2 = grad_norm * grad_norm;
      j["normalized_trace"] = {{"value", g2 > 0 ? trace.trace / g2 : std::numeric_limits<double>::infinity()},
                               {"std_error", g2 > 0 ? trace.std_error / g2 : std::nan("")},
                               {"grad_norm", grad_norm}};
      progress.line("normalised trace Tr/‖∇L‖² (CR-SAM) " + num(trace.trace / g2, "%.5g"));
    }
    if (wants("hutchpp")) {
      const geometry::TraceResult pp = geometry::hutchpp_trace(
          hessian, geometry::HutchppOptions().hvps(a.hutchpp_hvps()).seed(a.seed()).progress(&progress));
      j["hutchpp"] = {{"estimate", pp.trace}, {"std_error", pp.std_error}, {"hvps", pp.hvps}, {"seconds", pp.seconds}};
      progress.line("Hessian trace (Hutch++, " + std::to_string(pp.hvps) + " products) " + num(pp.trace, "%.5g") +
                    " ± " + num(pp.std_error, "%.3g"));
    }
    if (wants("eigen")) {
      const geometry::EigenResult e = geometry::top_eigenvalues(
          hessian, geometry::EigenOptions()
                       .k(std::min<int64_t>(a.top_k(), objective.dim()))
                       .tol(a.eigen_tol())
                       .max_iterations(a.lanczos_iterations())
                       .seed(a.seed())
                       .progress(&progress));
      j["eigenvalues"] = {{"values", e.values},         {"residuals", e.residuals}, {"converged", e.converged},
                          {"iterations", e.iterations}, {"hvps", e.hvps},           {"tol", a.eigen_tol()},
                          {"method", "lanczos-full-reorthogonalisation"}, {"seconds", e.seconds}};
      std::string values;
      for (size_t i = 0; i < e.values.size(); ++i) values += (i ? ", " : "") + num(e.values[i], "%.5g");
      progress.line("top eigenvalues (Lanczos) " + values + " (" + std::to_string(e.iterations) + " steps, " +
                    (e.converged ? "converged" : "NOT converged") + ", max residual " +
                    num(*std::max_element(e.residuals.begin(), e.residuals.end()), "%.2g") + ")");
    }
    if (wants("density")) {
      const geometry::DensityResult dd = geometry::spectral_density(
          hessian, geometry::DensityOptions()
                       .runs(a.density_runs())
                       .iterations(a.density_iterations())
                       .grid_points(a.density_points())
                       .seed(a.seed())
                       .progress(&progress));
      j["density"] = {{"grid", dd.grid},       {"density", dd.density}, {"bandwidth", dd.bandwidth},
                      {"mass", dd.mass},       {"nodes", dd.nodes},     {"weights", dd.weights},
                      {"trace_estimate", dd.trace_estimate}, {"hvps", dd.hvps}, {"seconds", dd.seconds}};
      progress.line("spectral density (SLQ, " + std::to_string(a.density_runs()) + " run(s)): support [" +
                    num(dd.grid.front()) + ", " + num(dd.grid.back()) + "], mass " + num(dd.mass, "%.4f"));
    }
  }

  if (wants("gap")) {
    // One table per law and mode. The laws of a mode share its trace estimate: they differ by their gaps, not
    // by luck. Another mode is another function (BatchNorm's batch statistics): it gets its own trace.
    json tables = json::array();
    for (const std::string& mode : a.gap_modes().empty() ? std::vector<std::string>{a.mode()} : a.gap_modes()) {
      const geometry::Objective in_mode =
          mode == a.mode() ? objective
                         : geometry::Objective::for_model(ck.model, sample,
                                                          geometry::ObjectiveOptions().batch_size(a.batch_size()).mode(
                                                              geometry::parse_model_mode(mode)));
      geometry::TraceResult mode_trace = trace;
      if (mode != a.mode()) {
        geometry::MeasurementScope scope(in_mode, /*snapshot_parameters=*/false);
        geometry::HessianOperator hessian(in_mode, hvp);
        mode_trace = geometry::hutchinson_trace(hessian, trace_options(a, &progress, probe_split));
        progress.line("Hessian trace in " + mode + " mode " + num(mode_trace.trace, "%.5g") + " ± " +
                      num(mode_trace.std_error, "%.3g"));
      }
      for (const noise::NoiseLaw law : laws)
        tables.push_back(gap_table(geometry::perturbation_gap(in_mode, geometry::GapOptions()
                                                                           .sigmas(a.sigmas())
                                                                           .draws(a.gap_draws())
                                                                           .law(law)
                                                                           .antithetic(!a.one_sided())
                                                                           .seed(a.seed())
                                                                           .trace(mode_trace.trace)
                                                                           .trace_std_error(mode_trace.std_error)
                                                                           .progress(&progress)),
                                   mode, progress));
    }
    j["perturbation_gap"] = tables.front();  // the first law's table (every reader of one law)
    j["perturbation_gaps"] = tables;         // one per mode and --noise law, in that order
  }

  if (wants("ratio")) {
    const data::Dataset points = geometry::sample_examples(*split, a.ratio_examples(), a.sample_seed() + 1);
    const geometry::Objective per_point = geometry::Objective::for_model(ck.model, points);
    const geometry::AscentRatioResult r = geometry::sam_approximation_ratio(
        per_point, geometry::AscentRatioOptions().rho(a.rho()).steps(a.ratio_steps()).progress(&progress));
    j["approximation_ratio"] = {{"ratio", r.ratio},
                                {"std", r.ratio_std},
                                {"std_error", r.ratio_std_error},
                                {"rho", a.rho()},
                                {"steps", a.ratio_steps()},
                                {"one_step_increase", r.one_step_increase},
                                {"best_increase", r.best_increase},
                                {"points", r.points},
                                {"skipped", r.skipped},
                                {"seconds", r.seconds}};
    progress.line("SAM approximation ratio (ρ " + num(a.rho()) + ", " + std::to_string(a.ratio_steps()) + "-step ascent, " +
                  std::to_string(r.points) + " points) " + num(r.ratio, "%.4f") + " ± " + num(r.ratio_std_error, "%.2g"));
  }

  if (wants("pac-bayes")) {
    // α over a sample of the union of training and test data (the TMLR version's practical choice).
    const data::Dataset tr = geometry::sample_examples(d.splits.train, a.pac_examples(), a.sample_seed() + 2);
    const data::Dataset te = geometry::sample_examples(d.splits.test, a.pac_examples(), a.sample_seed() + 3);
    data::Dataset both{at::cat({tr.inputs, te.inputs}), at::cat({tr.targets, te.targets}), tr.num_classes};
    const geometry::Objective per_example = geometry::Objective::for_model(ck.model, both);
    const geometry::SampleTraces st = geometry::per_example_traces(
        per_example, geometry::SampleTraceOptions().probes(a.pac_probes()).seed(a.seed()).progress(&progress));
    double max_loss = 0;
    {
      geometry::MeasurementScope scope(per_example, false);
      torch::NoGradGuard no_grad;
      max_loss = torch::nn::functional::cross_entropy(
                     ck.model.forward(both.inputs.to(device)), both.targets.to(device),
                     torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone))
                     .max()
                     .item<double>();
    }
    const double c = a.loss_bound() > 0 ? a.loss_bound() : max_loss;
    std::string reference_name;
    double radius = 0;
    if (!a.reference().empty()) {
      const training::CheckpointContents ref = training::load_checkpoint(a.reference());
      radius = geometry::parameter_distance(*ck.model.module(), *ref.model.module());
      reference_name = a.reference();
    } else {
      check(d.has_run_seed, "pac-bayes: the checkpoint has no run config to rebuild its initialisation from; "
                            "give --reference");
      if (d.config) {
        // Exactly the model the run started from: for a fine-tuned run, the pretrained weights.
        const models::Model init = training::build_initial_model(*d.config, ck.spec);
        radius = geometry::parameter_distance(*ck.model.module(), *init.module());
        reference_name = d.config->init().path().empty()
                             ? "the run's initialisation (rebuilt from seed " + std::to_string(d.run_seed) + ")"
                             : "the pretrained weights it started from (" + d.config->init().path() + ")";
      } else {
        torch::manual_seed(derive_seed(d.run_seed, SeedStream::kModelInit));  // as run_training does
        const models::Model init = models::make_model(ck.spec);
        radius = geometry::parameter_distance(*ck.model.module(), *init.module());
        reference_name = "the run's initialisation (rebuilt from seed " + std::to_string(d.run_seed) + ")";
      }
    }
    const training::EvalResult train_eval = training::evaluate(ck.model, d.splits.train, a.batch_size());
    const training::EvalResult test_eval = training::evaluate(ck.model, d.splits.test, a.batch_size());
    auto inputs = geometry::PacBayesInputs()
                      .train_loss(train_eval.loss)
                      .test_loss(test_eval.loss)
                      .radius(radius)
                      .n(d.splits.train.size())
                      .loss_bound(c);
    const geometry::PacBayesResult with_max = geometry::pac_bayes_bound(inputs.alpha(std::max(0.0, st.max)));
    const geometry::PacBayesResult with_mean = geometry::pac_bayes_bound(inputs.alpha(std::max(0.0, st.mean)));
    j["pac_bayes"] = {{"theorem", "NSO Thm 2.2 (review) / 2.1 (TMLR): L <= (1+e)L_train + (1+e)sqrt(C*alpha*r^2/n)"},
                      {"alpha_max", st.max},
                      {"alpha_max_std_error", st.max_std_error},
                      {"alpha_mean", st.mean},
                      {"alpha_mean_std_error", st.mean_std_error},
                      {"alpha_examples", static_cast<int64_t>(st.traces.size())},
                      {"probes_per_example", a.pac_probes()},
                      {"radius", radius},
                      {"reference", reference_name},
                      {"n", d.splits.train.size()},
                      {"loss_bound", c},
                      {"loss_bound_source", a.loss_bound() > 0 ? "--loss-bound" : "max per-example loss on the sample"},
                      {"train_loss", train_eval.loss},
                      {"test_loss", test_eval.loss},
                      {"observed_gap", with_max.observed_gap},
                      {"complexity_alpha_max", with_max.complexity},
                      {"bound_alpha_max", with_max.bound},
                      {"complexity_alpha_mean", with_mean.complexity},
                      {"bound_alpha_mean", with_mean.bound},
                      {"seconds", st.seconds}};
    progress.line("PAC-Bayes: α max " + num(st.max) + " ± " + num(st.max_std_error, "%.2g") + ", mean " + num(st.mean) +
                  " ± " + num(st.mean_std_error, "%.2g") + " | r " + num(radius) + " | n " +
                  std::to_string(d.splits.train.size()) + " | C " + num(c));
    progress.line("  observed gap (test − train loss) " + num(with_max.observed_gap) + " vs √(Cαr²/n) " +
                  num(with_max.complexity) + " (α max), " + num(with_mean.complexity) + " (α mean)");
  }

  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  j["seconds"] = seconds;
  const fs::path parent = fs::path(out_path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    check(!ec, parent.string() + ": cannot create the output directory: " + ec.message());
  }
  if (world.distributed()) j["processes"] = world.size;
  GeometryOutcome outcome{out_path, j.dump(2) + "\n"};
  if (world.rank != 0) return outcome;
  flatmin::write_text_file(out_path, outcome.json);
  progress.line("wrote " + out_path + " (" + num(seconds, "%.1f") + " s)");
  return outcome;
}

}  // namespace flatmin::jobs
