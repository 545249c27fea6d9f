// `flatmin train`: parses the job's options (jobs/options.h) and runs it (jobs/train.h).
#include <iostream>
#include <memory>

#include "commands.h"
#include "flatmin/jobs/options.h"
#include "flatmin/jobs/train.h"

namespace flatmin::cli {

Action add_train_command(CLI::App& app) {
  auto job = std::make_shared<jobs::TrainJob>();
  CLI::App* cmd = app.add_subcommand(
      "train", "Train a model with SGD, WP-SGD, NSO or the SAM family (SAM, USAM, ASAM, RSAM, bSAM, CR-SAM)");
  jobs::add_train_options(*cmd, *job);
  return [job, cmd] {
    jobs::finish_train_options(*cmd, *job);
    const jobs::TrainOutcome outcome = jobs::run_train_job(*job);
    if (outcome.status == jobs::JobStatus::kDiverged) {
      std::cerr << "error: " << outcome.message << "\n";
      if (!outcome.last_checkpoint.empty()) std::cerr << "the last good checkpoint is intact: " << outcome.last_checkpoint << "\n";
    }
    return outcome.exit_code();
  };
}

}  // namespace flatmin::cli
