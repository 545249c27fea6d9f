// The options of `flatmin landscape`, defined once for the CLI and Python.
#include <string>
#include <vector>

#include "flatmin/jobs/options.h"

namespace flatmin::jobs {

void add_landscape_options(CLI::App& cmd, LandscapeJob& job) {
  cmd.footer(
      "Random directions are Gaussian, drawn from --seed (the same for every model of one architecture) and\n"
      "normalised filter by filter to each model's weights; biases and BatchNorm parameters get a zero direction\n"
      "unless --include-bias-bn. Every point is written to OUT/landscape.csv as it is measured; rerunning the\n"
      "same command continues an interrupted grid. Figures: OUT/landscape-*.{gp,dat,svg,png}.\n\n"
      "  flatmin landscape --checkpoint runs/sgd,runs/nso --labels sgd,nso          # 1-D, one line per model\n"
      "  flatmin landscape --checkpoint runs/nso --dims 2 --points 21 --out runs/nso/plane\n"
      "  flatmin landscape --checkpoint runs/sgd --to runs/nso                      # the line between two minima");
  cmd.option_defaults()->always_capture_default();
  cmd.add_option("--checkpoint", job.checkpoints(), "model.ckpt files or run directories, comma-separated")
      ->required()
      ->delimiter(',');
  cmd.add_option("--labels", job.labels(), "Names of the models in the figures (default: their run directories)")->delimiter(',');
  cmd.add_option("--to", job.to(), "A second model: the landscape along the line from --checkpoint (t = 0) to it (t = 1), weights and BatchNorm statistics");
  cmd.add_option("--dims", job.dims(), "1 or 2 random directions")->check(CLI::IsMember({1, 2}));
  cmd.add_option("--range", job.range(), "lo,hi of each axis")
      ->delimiter(',')
      ->expected(2)
      ->default_str("-1,1 (with --to: -0.5,1.5)");
  cmd.add_option("--points", job.points(), "Points per axis")
      ->check(integer_in(2, 100000))
      ->default_str("41 (1-D), 21 (2-D)");
  cmd.add_option("--split", job.split(), "train | val | test")->check(CLI::IsMember({"train", "val", "test"}));
  cmd.add_option("--examples", job.examples(), "Random examples of the split (0 = all)")->check(integer_in(0));
  cmd.add_option("--batch-size", job.batch_size(), "Examples per forward pass")->check(integer_in(1, 1048576));
  cmd.add_flag("--include-bias-bn", job.include_bias_bn(), "Move biases and BatchNorm parameters too (normalised as one filter each)");
  cmd.add_option("--seed", job.seed(), "Seed of the directions");
  cmd.add_option("--sample-seed", job.sample_seed(), "Seed of the examples drawn from the split");
  cmd.add_option("--data-dir", job.data_dir(),
                  "Data directory (default: each run's own, from its config.json, of the kind it recorded; else env FLATMIN_DATA_DIR)");
  cmd.add_option("--out", job.out(), "Output directory (default: landscape/ next to the first checkpoint)");
  cmd.add_option("--formats", job.formats(), "svg and/or png")->delimiter(',')->check(CLI::IsMember({"svg", "png"}));
  cmd.add_option("--threads", job.threads(), "Intra-op threads (0 = 1 for mlp and cnn, all cores for resnet)")
      ->check(integer_in(0, 1024));
  cmd.add_option("--progress", job.progress(), "auto | bar | lines | quiet")
      ->check(CLI::IsMember({"auto", "bar", "lines", "quiet"}));
  add_device_option(&cmd, &job.device(), "");
}

}  // namespace flatmin::jobs
