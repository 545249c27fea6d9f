// `flatmin sensing`: parses the job's options (jobs/options.h) and runs it (jobs/sensing.h).
#include <memory>

#include "commands.h"
#include "flatmin/jobs/options.h"
#include "flatmin/jobs/sensing.h"

namespace flatmin::cli {

Action add_sensing_command(CLI::App& app) {
  auto job = std::make_shared<jobs::SensingJob>();
  CLI::App* cmd = app.add_subcommand(
      "sensing", "Matrix sensing simulation (NSO paper §3.1 / TMLR Figure 6): GD vs WP-GD vs NSO on UUᵀ ≈ X*");
  jobs::add_sensing_options(*cmd, *job);
  return [job] { return jobs::run_sensing_job(*job).diverged ? kExitDiverged : 0; };
}

}  // namespace flatmin::cli
