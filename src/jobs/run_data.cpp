#include "flatmin/jobs/run_data.h"

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "flatmin/core/error.h"
#include "flatmin/core/seed.h"
#include "run_record.h"

namespace flatmin::jobs {

namespace {

using nlohmann::json;

/// (x − mean)/std per channel.
data::Dataset normalized(data::Dataset d, const at::Tensor& mean, const at::Tensor& std) {
  d.inputs = data::float_inputs(d.inputs);  // load_dataset leaves IDX images as uint8 pixels, as make_splits reads them
  if (!mean.defined() || !std.defined() || d.size() == 0) return d;
  const int64_t c = d.inputs.size(1);
  check(mean.numel() == c && std.numel() == c, "checkpoint normalisation has " + std::to_string(mean.numel()) +
                                                    " channels but the data has " + std::to_string(c));
  d.inputs = (d.inputs - mean.to(at::kFloat).view({1, c, 1, 1})) / std.to(at::kFloat).view({1, c, 1, 1});
  return d;
}

}  // namespace

void record_data_source(nlohmann::ordered_json& config, const data::DataSource& source) {
  config["data_dir"] = data::resolved_dir(source);
  config["dataset"] = {{"kind", source.kind()}, {"labels", source.labels()}, {"image_size", source.image_size()}};
}

std::optional<data::DataSource> recorded_data_source(const std::string& config_path) {
  std::ifstream in(config_path);
  if (!in) return std::nullopt;
  return recorded_data_source(json::parse(in, nullptr, /*allow_exceptions=*/false));
}

std::optional<data::DataSource> recorded_data_source(const json& j) {
  if (!j.is_object() || !j.contains("data_dir") || !j["data_dir"].is_string()) return std::nullopt;
  data::DataSource source;
  source.dir(j["data_dir"].get<std::string>());
  if (j.contains("dataset") && j["dataset"].is_object()) {
    const json& d = j["dataset"];
    source.kind(d.value("kind", source.kind())).labels(d.value("labels", source.labels()));
    source.image_size(d.value("image_size", source.image_size()));
  }
  return source;
}

data::DataSource run_data_source(const std::string& checkpoint_path, const std::string& given_dir) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(checkpoint_path).parent_path();
  data::DataSource source;
  for (const fs::path& config : {dir / "config.json", dir.parent_path() / "config.json"}) {
    if (auto recorded = recorded_data_source(config.string())) {
      source = *recorded;
      break;
    }
  }
  if (!given_dir.empty()) {
    source.dir(given_dir);
  } else if (source.kind() == "fashion-mnist" && !fs::is_directory(source.dir())) {
    source.dir("");  // moved or deleted: the default, checked against the checkpoint's statistics
  }
  return source;
}

std::string describe(const data::DataSource& source) {
  return source.kind() + " in " + data::resolved_dir(source);
}

RunData rebuild_data(const training::CheckpointContents& ck, const data::DataSource& source, const std::string& name) {
  return rebuild_data(ck, data::load_dataset(source), describe(source), name);
}

RunData rebuild_data(const training::CheckpointContents& ck, const data::TrainTest& raw, const std::string& what,
                  const std::string& name) {
  json config = json::object();
  try {
    if (!ck.config_json.empty()) config = json::parse(ck.config_json);
  } catch (const std::exception&) {
    config = json::object();
  }
  RunData out;
  std::optional<training::RunConfig> run_config;
  if (config.contains("split") && config.contains("seed")) {
    try {
      run_config = training::RunConfig::from_json(ck.config_json);
    } catch (const Error&) {
      run_config.reset();  // an older or hand-written config: its split fields below, with defaults
    }
  }
  if (config.contains("split") && config.contains("seed")) {
    const json& s = config["split"];
    out.run_seed = config["seed"].get<uint64_t>();
    out.has_run_seed = true;
    data::SplitOptions options;
    if (run_config) {
      options = run_config->split();
      out.config = *run_config;
    } else {
      options.val_size(s.value("val_size", int64_t{5000}))
          .classes(s.value("classes", std::vector<int64_t>{}))
          .train_per_class(s.value("train_per_class", int64_t{0}))
          .test_size(s.value("test_size", int64_t{0}))
          .normalize(s.value("normalize", true));
    }
    options.seed(derive_seed(out.run_seed, SeedStream::kDataSplit));
    out.splits = data::make_splits(raw, options);
    if (ck.channel_mean.defined() && ck.channel_mean.numel() == out.splits.channel_mean.numel()) {
      const bool same = at::allclose(out.splits.channel_mean.to(at::kDouble), ck.channel_mean.to(at::kDouble), 1e-5, 1e-6) &&
                        at::allclose(out.splits.channel_std.to(at::kDouble), ck.channel_std.to(at::kDouble), 1e-5, 1e-6);
      check(same, what + ": not the data " + name +
                      " was trained on (its training split's mean/std differ from the checkpoint's)");
    }
    out.source = "rebuilt from the checkpoint's config (seed " + std::to_string(out.run_seed) + ")";
    out.has_val = true;
  } else {
    out.splits.train = normalized(raw.train, ck.channel_mean, ck.channel_std);
    out.splits.test = normalized(raw.test, ck.channel_mean, ck.channel_std);
    out.source = "full train/test sets of " + what + ", normalised with the checkpoint's statistics (no run config)";
  }
  return out;
}

const data::Dataset& checked_split(const RunData& d, const std::string& split, const training::CheckpointContents& ck,
                                   const std::string& path) {
  const data::Dataset* out = &d.splits.train;
  if (split == "test") {
    out = &d.splits.test;
  } else if (split == "val") {
    check(d.has_val, "--split val: the checkpoint has no run config to rebuild the validation split from");
    out = &d.splits.val;
  }
  check(out->size() > 0, "--split " + split + ": the split is empty");
  check(out->inputs.size(1) == ck.spec.in_channels() && out->inputs.size(2) == ck.spec.image_size(),
        path + ": the model expects " + std::to_string(ck.spec.in_channels()) + "×" + std::to_string(ck.spec.image_size()) +
            " px inputs, the data has " + std::to_string(out->inputs.size(1)) + "×" + std::to_string(out->inputs.size(2)));
  return *out;
}

}  // namespace flatmin::jobs
