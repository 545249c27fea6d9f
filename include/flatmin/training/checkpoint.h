#pragma once
/// Self-describing checkpoints: the model's spec (to rebuild it), its parameters and buffers, the run's
/// config, the data normalisation and, optionally, the optimizer's state — in a LibTorch archive wrapped
/// in a small header with a format version, the payload length and a CRC-32, written atomically
/// (temporary file, fsync, rename). A truncated or corrupted file is rejected with an error naming it.
///
/// File: "FLATMINC" | u32 version | u64 payload bytes | u32 crc32(payload) | payload (torch archive).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

#include "flatmin/models/models.h"
#include "flatmin/training/trainer.h"

namespace torch::optim {
class Optimizer;
}

namespace flatmin::training {

constexpr uint32_t kCheckpointVersion = 1;

struct CheckpointContents {
  models::ModelSpec spec;
  models::Model model;        ///< rebuilt from `spec`, weights loaded
  std::string config_json;    ///< the run's RunConfig (may be "{}")
  at::Tensor channel_mean;    ///< data normalisation used in training (may be undefined)
  at::Tensor channel_std;
  int64_t epoch = 0;          ///< epochs completed when written
  std::optional<TrainerState> trainer_state;  ///< present in checkpoints written during training
  uint32_t payload_crc32 = 0;  ///< the header's checksum of the payload (verified): identifies the contents

  /// payload_crc32 as 8 lower-case hex digits.
  std::string checksum() const;
  /// channel_mean and channel_std as numbers (empty when undefined), for JSON, configs and Python.
  std::vector<double> mean_values() const;
  std::vector<double> std_values() const;
};

/// Writes a checkpoint of `model` (built from `spec`). When `optimizer` is given its state is saved too,
/// and `trainer_state` makes it a checkpoint a run can resume from.
void save_checkpoint(const std::string& path, const models::ModelSpec& spec, const models::Model& model,
                     const std::string& config_json, const at::Tensor& channel_mean, const at::Tensor& channel_std,
                     int64_t epoch, const torch::optim::Optimizer* optimizer = nullptr,
                     const TrainerState* trainer_state = nullptr);

/// Verifies a checkpoint's header and checksum without parsing the payload (cheap); the error says why
/// not. For picking the newest intact checkpoint of a directory.
void verify_checkpoint(const std::string& path);

/// The files `dir`/step-*.ckpt, oldest first (by step number).
std::vector<std::string> list_step_checkpoints(const std::string& dir);

/// The newest step checkpoint of `dir` that verifies; older ones are tried when the newest is damaged
/// (each skip is reported to `warn`). Throws flatmin::Error when none is intact.
std::string latest_checkpoint(const std::string& dir, const std::function<void(const std::string&)>& warn = {});

/// Reads a checkpoint and rebuilds its model, on the CPU whatever device wrote it. Throws flatmin::Error "<path>: <problem>" on a missing,
/// truncated, corrupted or foreign file, or an unsupported version.
CheckpointContents load_checkpoint(const std::string& path);

/// Loads the optimizer state stored in the checkpoint at `path` into `optimizer` (which must be built over
/// the parameters of the model that load_checkpoint returned), on the device of those parameters. Throws
/// flatmin::Error when there is none.
void load_optimizer_state(const std::string& path, torch::optim::Optimizer& optimizer);

/// The parsing behind load_checkpoint, on bytes in memory (`name` appears in error messages); for the
/// fuzzer and tests.
CheckpointContents parse_checkpoint(const unsigned char* bytes, size_t size, const std::string& name);

}  // namespace flatmin::training
