#pragma once
/// Fine-tuning: a run that starts from a pretrained network's weights. The architecture and the data
/// normalisation come from the pretrained checkpoint (the same pixels then mean the same thing to it); the
/// classifier is re-initialised when the number of classes differs (or on request); parameters can be frozen
/// by name pattern. The config records the file's checksum, so a resumed run can tell when it changed.

#include <string>
#include <vector>

#include <torch/arg.h>

#include "flatmin/models/models.h"
#include "flatmin/training/checkpoint.h"

namespace torch::nn {
class Module;
}

namespace flatmin::training {

struct InitOptions {
  /// A checkpoint (model.ckpt, a step checkpoint) or a run directory holding model.ckpt; "" = random init.
  TORCH_ARG(std::string, path) = "";
  /// The CRC-32 of the checkpoint's payload, 8 hex digits; filled in when the run is configured
  /// (with_pretrained_defaults) and checked whenever the file is read again.
  TORCH_ARG(std::string, checksum) = "";
  /// Re-initialise the classifier even when the number of classes matches.
  TORCH_ARG(bool, reset_head) = false;
  /// Parameters kept fixed: glob patterns (fnmatch) of parameter names; a pattern also matches everything
  /// below a module of that name ("stages.0" freezes "stages.0.conv1.weight", ...).
  TORCH_ARG(std::vector<std::string>, freeze) = {};
};

/// `path` itself, or `path`/model.ckpt when it is a directory. Throws flatmin::Error when neither exists,
/// naming `path` as `what` ("init file"; "run or checkpoint to export", ...).
std::string resolve_init_path(const std::string& path, const std::string& what = "init file");

/// What loading a pretrained network into a new model did, for the run's one-line report.
struct PretrainedReport {
  std::string path;
  std::string checksum;
  int64_t tensors_loaded = 0;               ///< parameters and buffers copied
  std::vector<std::string> reinitialised;   ///< the classifier's parameters, when re-initialised
  std::string reinitialised_because;        ///< "10 classes, the pretrained model has 5" | "--reset-head"
  std::vector<std::string> frozen;          ///< parameter names

  /// "init: 62 tensors from runs/pre/model.ckpt (crc32 1a2b3c4d); classifier head re-initialised (...)".
  std::string describe() const;
};

/// Copies `pretrained`'s parameters and buffers into `model` (same architecture, built for the target's
/// number of classes), except the classifier's when its shape differs or `options.reset_head()`; those
/// keep `model`'s fresh initialisation. Throws flatmin::Error "<path>: ..." when the networks do not match
/// (another architecture, width or input shape; a tensor missing on either side).
PretrainedReport load_pretrained(const CheckpointContents& pretrained, const std::string& path,
                                 const models::ModelSpec& target_spec, const models::Model& model,
                                 const InitOptions& options);

/// Sets requires_grad = false on the parameters of `module` matching any of `patterns` and returns their
/// names. Throws flatmin::Error naming a pattern that matches nothing (a typo would silently train all).
std::vector<std::string> freeze_parameters(torch::nn::Module& module, const std::vector<std::string>& patterns);

}  // namespace flatmin::training
