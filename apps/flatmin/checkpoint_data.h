#pragma once
// Shared by the commands that measure a checkpoint (geometry, landscape): the data its run trained on.

#include <optional>
#include <string>

#include "flatmin/data/dataset.h"
#include "flatmin/training/checkpoint.h"
#include "flatmin/training/run.h"

namespace flatmin::cli {

struct Data {
  data::Splits splits;
  std::string source;
  bool has_val = false;
  uint64_t run_seed = 0;
  bool has_run_seed = false;
  std::optional<training::RunConfig> config;  ///< the run's whole config, when it parses
};

/// The data directory for a checkpoint: `given` (--data-dir) when not empty; else the `data_dir` its run
/// recorded in config.json (beside the checkpoint, or one folder up for checkpoints/step-*.ckpt) when that
/// directory exists; else the default ($FLATMIN_DATA_DIR or Debian's Fashion-MNIST).
std::string run_data_dir(const std::string& checkpoint_path, const std::string& given);

/// The splits the checkpoint's run trained on: rebuilt from its config (RunConfig JSON: the split options and
/// the seed, split seed derive_seed(seed, kDataSplit)) and checked against the stored normalisation. Without a
/// config: the full Fashion-MNIST train/test sets normalised with the stored statistics.
Data rebuild_data(const training::CheckpointContents& ck, const std::string& data_dir, const std::string& name);
/// The same from Fashion-MNIST already read from `data_dir` (commands that measure several checkpoints).
Data rebuild_data(const training::CheckpointContents& ck, const data::TrainTest& raw, const std::string& data_dir,
                  const std::string& name);

/// The split named train | val | test of `d`, checked non-empty and against the model's input shape; throws
/// flatmin::Error with one line otherwise. `path` names the checkpoint in messages.
const data::Dataset& checked_split(const Data& d, const std::string& split, const training::CheckpointContents& ck,
                                   const std::string& path);

}  // namespace flatmin::cli
