// `flatmin export RUN --torchscript out.pt`: a trained model as a TorchScript file for Python's torch.jit.load,
// with its input standardisation beside it (out.pt.json).
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "flatmin/core/files.h"
#include "flatmin/core/error.h"
#include "flatmin/models/scripted.h"
#include "flatmin/training/checkpoint.h"
#include "flatmin/training/metrics_log.h"
#include "flatmin/training/pretrained.h"

namespace flatmin::cli {
namespace {

struct ExportArgs {
  std::string run;
  std::string torchscript;
};

int run_export(const ExportArgs& a) {
  const std::string path = training::resolve_init_path(a.run, "run or checkpoint to export");
  const training::CheckpointContents ck = training::load_checkpoint(path);
  models::export_torchscript(ck.model, ck.spec, a.torchscript);
  // What Python needs to feed it the inputs flatmin trained it on.
  nlohmann::ordered_json j;
  j["checkpoint"] = path;
  j["checksum"] = ck.checksum();
  j["model"] = ck.spec.name();
  j["input"] = {"N", ck.spec.in_channels(), ck.spec.image_size(), ck.spec.image_size()};
  j["num_classes"] = ck.spec.num_classes();
  j["normalize"] = {{"mean", ck.mean_values()}, {"std", ck.std_values()}};
  j["usage"] = "model = torch.jit.load(path); model.eval(); logits = model((x - mean[None, :, None, None]) / "
               "std[None, :, None, None]) with x in [0, 1]";
  flatmin::write_text_file(a.torchscript + ".json", j.dump(2) + "\n");
  std::cout << "flatmin export: " << path << " (" << ck.spec.name() << ", crc32 " << ck.checksum() << ") -> "
            << a.torchscript << "\ninputs [N, " << ck.spec.in_channels() << ", " << ck.spec.image_size() << ", "
            << ck.spec.image_size() << "] in [0, 1], standardised per channel as in training (mean "
            << nlohmann::json(ck.mean_values()).dump() << ", std " << nlohmann::json(ck.std_values()).dump()
            << "; also in " << a.torchscript << ".json)\nin Python: model = torch.jit.load(\"" << a.torchscript
            << "\"); model.eval()\n";
  return 0;
}

}  // namespace

Action add_export_command(CLI::App& app) {
  auto args = std::make_shared<ExportArgs>();
  CLI::App* cmd = app.add_subcommand("export", "Write a trained model for PyTorch (TorchScript)");
  cmd->footer(
      "The file opens in Python with torch.jit.load and gives the logits flatmin computes; the inputs are\n"
      "standardised as in training (mean and std per channel: printed, and in OUT.json).\n\n"
      "Examples:\n"
      "  flatmin export runs/nso-cnn-seed0 --torchscript nso.pt\n"
      "  python3 -c 'import torch; m = torch.jit.load(\"nso.pt\"); m.eval(); print(m(torch.zeros(1, 1, 28, 28)))'");
  cmd->add_option("run", args->run, "A run directory (its model.ckpt) or a checkpoint file")->required();
  cmd->add_option("--torchscript", args->torchscript, "Output TorchScript file")->required();
  return [args] { return run_export(*args); };
}

}  // namespace flatmin::cli
