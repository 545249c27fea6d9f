#pragma once
/// The data a run trained on, for the jobs that measure its checkpoints (geometry, landscape).

#include <optional>
#include <string>

#include "flatmin/data/dataset.h"
#include "flatmin/data/sources.h"
#include "flatmin/training/checkpoint.h"
#include "flatmin/training/run.h"

namespace flatmin::jobs {

struct RunData {
  data::Splits splits;
  std::string source;
  bool has_val = false;
  uint64_t run_seed = 0;
  bool has_run_seed = false;
  std::optional<training::RunConfig> config;  ///< the run's whole config, when it parses
};

/// The source a run's config.json recorded (older runs: Fashion-MNIST in their data_dir); nullopt when the file
/// is missing or names none.
std::optional<data::DataSource> recorded_data_source(const std::string& config_path);

/// The data source of a checkpoint: the one its run recorded in config.json (beside the checkpoint, or one
/// folder up for checkpoints/step-*.ckpt), its directory replaced by `given_dir` (--data-dir) when not empty.
/// A recorded Fashion-MNIST directory that is gone gives the default ($FLATMIN_DATA_DIR or Debian's), which is
/// checked against the checkpoint's statistics; no record at all gives Fashion-MNIST.
data::DataSource run_data_source(const std::string& checkpoint_path, const std::string& given_dir);
/// "cifar10 in /data/cifar" for messages and JSON.
std::string describe(const data::DataSource& source);

/// The splits the checkpoint's run trained on: rebuilt from its config (RunConfig JSON: the split options and
/// the seed, split seed derive_seed(seed, kDataSplit)) and checked against the stored normalisation. Without a
/// config: the full train/test sets normalised with the stored statistics.
RunData rebuild_data(const training::CheckpointContents& ck, const data::DataSource& source, const std::string& name);
/// The same from data already read (commands that measure several checkpoints); `what` names it in messages.
RunData rebuild_data(const training::CheckpointContents& ck, const data::TrainTest& raw, const std::string& what,
                  const std::string& name);

/// The split named train | val | test of `d`, checked non-empty and against the model's input shape; throws
/// flatmin::Error with one line otherwise. `path` names the checkpoint in messages.
const data::Dataset& checked_split(const RunData& d, const std::string& split, const training::CheckpointContents& ck,
                                   const std::string& path);

}  // namespace flatmin::jobs
