// flatmin landscape: loss and accuracy of trained models along filter-normalised random directions (1-D or
// 2-D, the same seeded directions for every model) or along the line between two models, with gnuplot
// figures; resumable point by point (geometry/landscape.h).
#include "flatmin/jobs/landscape.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/utils.h>

#include "flatmin/jobs/run_data.h"
#include "flatmin/core/text.h"
#include "flatmin/core/files.h"
#include "flatmin/core/device.h"
#include "flatmin/core/error.h"
#include "flatmin/core/runtime.h"
#include "flatmin/geometry/landscape.h"
#include "flatmin/geometry/spectrum.h"
#include "flatmin/reports/plots.h"
#include "flatmin/training/metrics_log.h"
#include "flatmin/training/progress.h"
#include "flatmin/training/trainer.h"

namespace flatmin::jobs {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();


std::string checkpoint_path(const std::string& p) {
  return fs::is_directory(p) ? (fs::path(p) / "model.ckpt").string() : p;
}

// Rows already in landscape.csv: (model, grid index) → (loss, accuracy).
std::map<std::pair<std::string, int64_t>, std::pair<double, double>> read_rows(const fs::path& csv) {
  std::map<std::pair<std::string, int64_t>, std::pair<double, double>> rows;
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::stringstream cells(line);
    std::string model, index, x, y, loss, acc;
    if (!std::getline(cells, model, ',') || !std::getline(cells, index, ',') || !std::getline(cells, x, ',') ||
        !std::getline(cells, y, ',') || !std::getline(cells, loss, ',') || !std::getline(cells, acc))
      continue;  // a row cut by a kill: measured again
    try {
      rows[{model, std::stoll(index)}] = {std::stod(loss), std::stod(acc)};
    } catch (const std::exception&) {
    }
  }
  return rows;
}

}  // namespace

std::string run_landscape_job(const LandscapeJob& a) {
  const auto t0 = std::chrono::steady_clock::now();
  check(!a.checkpoints().empty(), "--checkpoint: give at least one model");
  check(a.labels().empty() || a.labels().size() == a.checkpoints().size(),
        "--labels: one per --checkpoint (" + std::to_string(a.checkpoints().size()) + ")");
  const bool line = !a.to().empty();
  check(!line || (a.checkpoints().size() == 1 && a.dims() == 1), "--to: one --checkpoint and --dims 1 (the line from it to --to)");
  std::vector<double> range = a.range();
  if (range.empty()) range = line ? std::vector<double>{-0.5, 1.5} : std::vector<double>{-1.0, 1.0};
  check(range.size() == 2 && range[0] < range[1], "--range: two numbers lo,hi with lo < hi");
  const int64_t points = a.points() > 0 ? a.points() : (a.dims() == 2 ? 21 : 41);
  const std::vector<double> xs = geometry::linspace(range[0], range[1], points);
  const std::vector<double> ys = a.dims() == 2 ? xs : std::vector<double>{};

  const std::string out = a.out().empty() ? (fs::path(checkpoint_path(a.checkpoints()[0])).parent_path() / "landscape").string() : a.out();
  fs::create_directories(out);
  std::vector<std::string> labels = a.labels();
  for (size_t i = labels.size(); i < a.checkpoints().size(); ++i)
    labels.push_back(fs::path(checkpoint_path(a.checkpoints()[i])).parent_path().filename().string());

  // The settings that make a grid; a rerun with the same ones continues it, other ones are refused.
  json settings = {{"checkpoints", a.checkpoints()}, {"labels", labels},     {"to", a.to()},
                   {"dims", a.dims()},               {"xs", xs},             {"ys", ys},
                   {"split", a.split()},             {"examples", a.examples()}, {"include_bias_bn", a.include_bias_bn()},
                   {"seed", a.seed()},               {"sample_seed", a.sample_seed()}};
  const fs::path settings_path = fs::path(out) / "landscape.json", csv_path = fs::path(out) / "landscape.csv";
  auto rows = read_rows(csv_path);
  if (fs::exists(settings_path) && !rows.empty()) {
    std::ifstream in(settings_path);
    const json old = json::parse(in, nullptr, false);
    check(!old.is_discarded() && old.value("settings", json()) == settings,
          out + " holds a landscape with other settings; use another --out (or delete it)");
  }
  flatmin::write_text_file(settings_path.string(), json{{"command", "landscape"}, {"settings", settings}}.dump(2) + "\n");
  const bool fresh = rows.empty();
  std::ofstream csv(csv_path, fresh ? std::ios::trunc : std::ios::app);
  if (fresh) csv << "model,index,x,y,loss,accuracy\n" << std::flush;

  training::Progress progress(training::parse_progress_mode(a.progress()));
  const int64_t per_model = static_cast<int64_t>(xs.size() * std::max<size_t>(1, ys.size()));
  std::vector<reports::LandscapeGrid> grids;
  std::map<std::string, data::TrainTest> raw;  // by source: read once, split per checkpoint (its own seed)
  const c10::Device device = parse_device(a.device());
  for (size_t m = 0; m < a.checkpoints().size(); ++m) {
    const std::string path = checkpoint_path(a.checkpoints()[m]);
    training::CheckpointContents ck = training::load_checkpoint(path);
    ck.model->to(device);
    set_num_threads(a.threads() > 0 ? a.threads()
                                  : models::default_num_threads(ck.spec, static_cast<int>(std::thread::hardware_concurrency())));
    const data::DataSource source = run_data_source(path, a.data_dir());
    const std::string what = describe(source) + " " + source.labels() + " " + std::to_string(source.image_size());
    if (!raw.count(what)) raw.emplace(what, data::load_dataset(source));
    const RunData d = rebuild_data(ck, raw.at(what), describe(source), path);
    const data::Dataset sample = geometry::sample_examples(checked_split(d, a.split(), ck, path), a.examples(), a.sample_seed());
    std::vector<at::Tensor> params;
    for (const auto& p : geometry::trainable_parameters(*ck.model.module())) params.push_back(p.tensor);
    geometry::Direction d1, d2;
    if (line) {
      training::CheckpointContents other = training::load_checkpoint(checkpoint_path(a.to()));
      other.model->to(device);
      std::vector<at::Tensor> target;
      for (const auto& p : geometry::trainable_parameters(*other.model.module())) target.push_back(p.tensor);
      // BatchNorm's running statistics move along too (linearly): otherwise t = 1 would be the other
      // model's weights with this model's statistics, not the other model.
      for (const at::Tensor& b : ck.model.module()->buffers())
        if (b.is_floating_point()) params.push_back(b);
      for (const at::Tensor& b : other.model.module()->buffers())
        if (b.is_floating_point()) target.push_back(b);
      d1 = geometry::difference_direction(params, target);
    } else {
      d1 = geometry::random_direction(params, a.seed(), 0, a.include_bias_bn());
      if (a.dims() == 2) d2 = geometry::random_direction(params, a.seed(), 1, a.include_bias_bn());
    }
    reports::LandscapeGrid grid{labels[m], xs, ys.empty() ? std::vector<double>{0.0} : ys,
                                std::vector<double>(per_model, kNaN), std::vector<double>(per_model, kNaN)};
    std::set<int64_t> skip;
    for (const auto& [key, value] : rows)
      if (key.first == labels[m] && key.second < per_model) {
        skip.insert(key.second);
        grid.loss[key.second] = value.first;
        grid.accuracy[key.second] = value.second;
      }
    progress.line("flatmin landscape: " + labels[m] + " (" + path + ") | " + std::to_string(sample.size()) + " " +
                  a.split() + " examples | " + std::to_string(per_model) + " points" +
                  (skip.empty() ? "" : ", " + std::to_string(skip.size()) + " already measured"));
    int64_t done = static_cast<int64_t>(skip.size());
    progress.start(labels[m], per_model);
    geometry::landscape(params, d1, d2, [&] {
                          const training::EvalResult r = training::evaluate(ck.model, sample, a.batch_size());
                          return geometry::PointValue{r.loss, r.accuracy};
                        },
                        geometry::LandscapeOptions().xs(xs).ys(ys).skip(skip).on_point(
                            [&](int64_t index, const geometry::LandscapePoint& p) {
                              char row[200];
                              std::snprintf(row, sizeof row, "%.17g,%.17g,%.17g,%.17g\n", p.x, p.y, p.loss, p.accuracy);
                              csv << labels[m] << ',' << index << ',' << row << std::flush;
                              grid.loss[static_cast<size_t>(index)] = p.loss;
                              grid.accuracy[static_cast<size_t>(index)] = p.accuracy;
                              progress.update(++done, "loss " + format_number(p.loss, "%.4g"));
                            }));
    grids.push_back(std::move(grid));
  }
  std::vector<std::string> warnings;
  const std::string x_label = line ? "t (0: " + labels[0] + ", 1: " + fs::path(checkpoint_path(a.to())).parent_path().filename().string() + ")"
                                   : "α (filter-normalised direction 1)";
  const auto figures = reports::write_landscape_plots(grids, out, "landscape", x_label, "β (filter-normalised direction 2)",
                                                      reports::PlotOptions().formats(a.formats()), warnings);
  for (const auto& w : warnings) progress.line("warning: " + w);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const auto& g : grids) {
    // The loss at the origin (the model itself) and the largest rise on the grid: a one-line summary.
    double at_origin = kNaN, highest = -std::numeric_limits<double>::infinity();
    for (size_t iy = 0; iy < g.ys.size(); ++iy)
      for (size_t ix = 0; ix < g.xs.size(); ++ix) {
        const double v = g.loss[iy * g.xs.size() + ix];
        if (std::abs(g.xs[ix]) < 1e-12 && std::abs(g.ys[iy]) < 1e-12) at_origin = v;
        if (std::isfinite(v)) highest = std::max(highest, v);
      }
    progress.line(g.label + ": loss " + format_number(at_origin, "%.4g") + " at the model, at most " +
                  format_number(highest, "%.4g") + " on the grid");
  }
  progress.line("wrote " + csv_path.string() + " and " + std::to_string(figures.size()) + " figure(s) in " + out + " (" +
                format_number(seconds, "%.1f") + " s)");
  return out;
}

}  // namespace flatmin::jobs
