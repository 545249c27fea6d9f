// `flatmin landscape`: parses the job's options (jobs/options.h) and runs it (jobs/landscape.h).
#include <memory>

#include "commands.h"
#include "flatmin/jobs/landscape.h"
#include "flatmin/jobs/options.h"

namespace flatmin::cli {

Action add_landscape_command(CLI::App& app) {
  auto job = std::make_shared<jobs::LandscapeJob>();
  CLI::App* cmd = app.add_subcommand("landscape", "Loss landscapes of trained models (Li et al. 2018), 1-D or 2-D, or along the line between two");
  jobs::add_landscape_options(*cmd, *job);
  return [job] {
    jobs::run_landscape_job(*job);
    return 0;
  };
}

}  // namespace flatmin::cli
