// `flatmin geometry`: parses the job's options (jobs/options.h) and runs it (jobs/geometry.h).
#include <memory>

#include "commands.h"
#include "flatmin/jobs/geometry.h"
#include "flatmin/jobs/options.h"

namespace flatmin::cli {

Action add_geometry_command(CLI::App& app) {
  auto job = std::make_shared<jobs::GeometryJob>();
  CLI::App* cmd = app.add_subcommand("geometry", "Measure the flatness of a trained model (Hessian trace, eigenvalues, "
                                                 "density, perturbation gap, ...)");
  jobs::add_geometry_options(*cmd, *job);
  return [job] {
    jobs::run_geometry_job(*job);
    return 0;
  };
}

}  // namespace flatmin::cli
