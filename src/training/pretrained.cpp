#include "flatmin/training/pretrained.h"

#include <fnmatch.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include <torch/nn/module.h>
#include <torch/utils.h>

#include "flatmin/core/error.h"
#include "flatmin/core/shape.h"

namespace flatmin::training {
namespace {


bool in_module(const std::string& name, const std::string& module) {
  return name.compare(0, module.size() + 1, module + ".") == 0;
}

bool matches(const std::string& pattern, const std::string& name) {
  return fnmatch(pattern.c_str(), name.c_str(), 0) == 0 || fnmatch((pattern + ".*").c_str(), name.c_str(), 0) == 0;
}

}  // namespace

std::string resolve_init_path(const std::string& path, const std::string& what) {
  namespace fs = std::filesystem;
  std::error_code ec;
  check(!path.empty(), what + ": empty path");
  if (fs::is_directory(path, ec)) {
    const std::string file = (fs::path(path) / "model.ckpt").string();
    check(fs::is_regular_file(file, ec), path + ": no model.ckpt in this directory (has its run finished?)");
    return file;
  }
  check(fs::exists(path, ec), path + ": " + what + " not found");
  return path;
}

std::string PretrainedReport::describe() const {
  std::string s = "init: " + std::to_string(tensors_loaded) + " tensors from " + path + " (crc32 " + checksum + ")";
  if (!reinitialised.empty()) s += "; classifier re-initialised (" + reinitialised_because + ")";
  if (!frozen.empty()) s += "; " + std::to_string(frozen.size()) + " parameter tensors frozen";
  return s;
}

PretrainedReport load_pretrained(const CheckpointContents& pretrained, const std::string& path,
                                 const models::ModelSpec& target_spec, const models::Model& model,
                                 const InitOptions& options) {
  const models::ModelSpec& source = pretrained.spec;
  check(source.name() == target_spec.name() && source.width() == target_spec.width(),
        path + ": the pretrained network is " + source.name() + " (width " + std::to_string(source.width()) +
            "), the run builds " + target_spec.name() + " (width " + std::to_string(target_spec.width()) + ")");
  check(source.in_channels() == target_spec.in_channels() && source.image_size() == target_spec.image_size(),
        path + ": the pretrained network takes " + std::to_string(source.in_channels()) + "×" +
            std::to_string(source.image_size()) + "×" + std::to_string(source.image_size()) + " inputs, the data is " +
            std::to_string(target_spec.in_channels()) + "×" + std::to_string(target_spec.image_size()) + "×" +
            std::to_string(target_spec.image_size()));

  PretrainedReport report;
  report.path = path;
  report.checksum = pretrained.checksum();
  const std::string head = models::classifier_name(target_spec);
  const bool new_head = options.reset_head() || source.num_classes() != target_spec.num_classes();
  if (new_head) {
    report.reinitialised_because = options.reset_head() ? "--reset-head"
                                                        : std::to_string(target_spec.num_classes()) +
                                                              " classes, the pretrained network has " +
                                                              std::to_string(source.num_classes());
  }

  torch::NoGradGuard no_grad;
  auto copy_all = [&](const torch::OrderedDict<std::string, at::Tensor>& from,
                      const torch::OrderedDict<std::string, at::Tensor>& to, const char* what) {
    for (const auto& item : from)
      check(to.contains(item.key()), path + ": " + what + " '" + item.key() + "' has no counterpart in the model");
    for (const auto& item : to) {
      const std::string& name = item.key();
      if (new_head && in_module(name, head)) {
        report.reinitialised.push_back(name);
        continue;
      }
      const at::Tensor* source_tensor = from.find(name);
      check(source_tensor != nullptr, path + ": " + what + " '" + name + "' is missing from the pretrained network");
      check(source_tensor->sizes() == item.value().sizes(),
            path + ": " + what + " '" + name + "' has shape " + shape_string(source_tensor->sizes()) +
                " in the pretrained network, " + shape_string(item.value().sizes()) + " in the model");
      item.value().copy_(*source_tensor);
      ++report.tensors_loaded;
    }
  };
  copy_all(pretrained.model->named_parameters(), model->named_parameters(), "parameter");
  copy_all(pretrained.model->named_buffers(), model->named_buffers(), "buffer");
  report.frozen = freeze_parameters(*model.module(), options.freeze());
  return report;
}

std::vector<std::string> freeze_parameters(torch::nn::Module& module, const std::vector<std::string>& patterns) {
  std::vector<std::string> frozen;
  std::set<std::string> used;
  for (auto& item : module.named_parameters()) {
    for (const auto& pattern : patterns) {
      if (!matches(pattern, item.key())) continue;
      item.value().set_requires_grad(false);
      frozen.push_back(item.key());
      used.insert(pattern);
      break;
    }
  }
  const auto names = module.named_parameters();
  for (const auto& pattern : patterns)
    check(used.count(pattern) > 0 || std::any_of(frozen.begin(), frozen.end(),
                                                  [&](const std::string& n) { return matches(pattern, n); }),
          "--freeze: '" + pattern + "' matches no parameter" +
              (names.is_empty() ? std::string() : " (names look like " + names.begin()->key() + ")"));
  return frozen;
}

}  // namespace flatmin::training
