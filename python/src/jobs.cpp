// flatmin.train, .measure, .landscape and .sensing from Python: the options of the CLI's commands, parsed by
// their one definition (flatmin/jobs/options.h), then the same library calls as the CLI's.
#include <algorithm>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <pybind11/stl.h>

#include "bindings.h"
#include "flatmin/core/error.h"
#include "flatmin/core/runtime.h"
#include "flatmin/jobs/geometry.h"
#include "flatmin/jobs/landscape.h"
#include "flatmin/jobs/options.h"
#include "flatmin/jobs/sensing.h"
#include "flatmin/jobs/train.h"
#include "flatmin/reports/report.h"

namespace py = pybind11;

namespace flatmin::python {
namespace {

/// A job's options parsed from `args` (["--sigma", "0.02", "--augment", ...]) as the CLI parses them: the same
/// checks, the same one-line messages (as flatmin.Error).
template <class Job, class Add, class Finish>
Job parsed(const std::string& name, std::vector<std::string> args, Add add, Finish finish) {
  Job job;
  CLI::App app(name, name);
  add(app, job);
  try {
    std::reverse(args.begin(), args.end());  // CLI11 takes a vector in reverse order
    app.parse(args);
    finish(app, job);
  } catch (const CLI::Error& e) {
    throw Error(name + ": " + e.what());
  }
  return job;
}

/// The long names of the options `add` defines ("per-class", ...), and the flags among them.
template <class Job, class Add>
py::dict option_names(Add add) {
  Job job;
  CLI::App app;
  add(app, job);
  py::list options, flags;
  for (const CLI::Option* option : app.get_options()) {
    if (option->get_lnames().empty() || option->get_lnames().front() == "help") continue;
    (option->get_expected_max() == 0 ? flags : options).append(option->get_lnames().front());
  }
  return py::dict(py::arg("options") = options, py::arg("flags") = flags);
}

template <class Job, class Add>
std::string help_text(const std::string& name, Add add) {
  Job job;
  CLI::App app(name, name);
  add(app, job);
  return app.help();
}

/// `run()` without the GIL (the job calls no Python, and LibTorch's autograd engine refuses it), after which the
/// caller's Python process gets its thread count back: a job sets the threads its run uses, as the CLI does.
template <class Run>
auto without_gil(Run run) {
  struct RestoreThreads {
    int threads = at::get_num_threads();
    ~RestoreThreads() { set_num_threads(threads); }
  } restore;
  py::gil_scoped_release release;
  return run();
}

}  // namespace

void bind_jobs(py::module_& m) {
  m.def(
      "train",
      [](std::vector<std::string> args) {
        const jobs::TrainJob job =
            parsed<jobs::TrainJob>("flatmin.train", std::move(args), jobs::add_train_options, jobs::finish_train_options);
        const jobs::TrainOutcome outcome =
            without_gil([&] { return jobs::run_train_job(job, "flatmin.train(resume=\"{}\")"); });
        const char* status = outcome.status == jobs::JobStatus::kFinished      ? "finished"
                             : outcome.status == jobs::JobStatus::kInterrupted ? "interrupted"
                                                                                : "diverged";
        return py::dict(py::arg("status") = status, py::arg("out") = outcome.out_dir,
                        py::arg("message") = outcome.message, py::arg("last_checkpoint") = outcome.last_checkpoint,
                        py::arg("summary") = outcome.summary_json);
      },
      py::arg("args"));
  m.def(
      "measure",
      [](std::vector<std::string> args) {
        const jobs::GeometryJob job = parsed<jobs::GeometryJob>(
            "flatmin.measure", std::move(args), jobs::add_geometry_options, [](const CLI::App&, jobs::GeometryJob&) {});
        const jobs::GeometryOutcome outcome = without_gil([&] { return jobs::run_geometry_job(job); });
        return py::dict(py::arg("out") = outcome.out_path, py::arg("json") = outcome.json);
      },
      py::arg("args"));
  m.def("measure_options", [] { return option_names<jobs::GeometryJob>(jobs::add_geometry_options); });
  m.def("measure_help", [] { return help_text<jobs::GeometryJob>("flatmin.measure", jobs::add_geometry_options); });
  m.def(
      "landscape",
      [](std::vector<std::string> args) {
        const jobs::LandscapeJob job = parsed<jobs::LandscapeJob>(
            "flatmin.landscape", std::move(args), jobs::add_landscape_options, [](const CLI::App&, jobs::LandscapeJob&) {});
        return without_gil([&] { return jobs::run_landscape_job(job); });
      },
      py::arg("args"));
  m.def("landscape_options", [] { return option_names<jobs::LandscapeJob>(jobs::add_landscape_options); });
  m.def("landscape_help", [] { return help_text<jobs::LandscapeJob>("flatmin.landscape", jobs::add_landscape_options); });
  m.def(
      "sensing",
      [](std::vector<std::string> args) {
        const jobs::SensingJob job = parsed<jobs::SensingJob>("flatmin.sensing", std::move(args), jobs::add_sensing_options,
                                                              [](const CLI::App&, jobs::SensingJob&) {});
        const jobs::SensingOutcome outcome = without_gil([&] { return jobs::run_sensing_job(job); });
        return py::dict(py::arg("out") = outcome.out_dir, py::arg("diverged") = outcome.diverged);
      },
      py::arg("args"));
  m.def("sensing_options", [] { return option_names<jobs::SensingJob>(jobs::add_sensing_options); });
  m.def("sensing_help", [] { return help_text<jobs::SensingJob>("flatmin.sensing", jobs::add_sensing_options); });
  m.def(
      "report",
      [](const std::string& root, const std::string& out, bool plots, std::vector<std::string> formats) {
        const reports::WrittenReport written = without_gil([&] {
          return reports::write_report(root, reports::ReportOptions().out(out).plots(plots).formats(formats));
        });
        return py::dict(py::arg("out") = written.out_dir, py::arg("summary") = written.summary,
                        py::arg("warnings") = written.warnings, py::arg("files") = written.files);
      },
      py::arg("root"), py::arg("out"), py::arg("plots"), py::arg("formats"));
  m.def("train_options", [] { return option_names<jobs::TrainJob>(jobs::add_train_options); });
  m.def("train_help", [] { return help_text<jobs::TrainJob>("flatmin.train", jobs::add_train_options); });
}

}  // namespace flatmin::python
