// flatmin command-line tool: a thin layer over the library. Errors a user can fix print one line and
// exit non-zero (2: bad usage, 1: the run failed); no LibTorch backtraces.
#include <iostream>

#include <CLI/CLI.hpp>
#include <c10/util/Exception.h>

#include "commands.h"
#include "flatmin/core/error.h"
#include "flatmin/core/runtime.h"

int main(int argc, char** argv) {
  flatmin::tune_malloc_for_training();
  CLI::App app{
      "flatmin: train neural networks toward flat minima (Noise Stability Optimization and its peers)\n"
      "and measure flatness, on LibTorch.\n\n"
      "Start with:  flatmin train            (NSO on Fashion-MNIST with the defaults)\n"
      "             flatmin train --help     (every option, with its default)\n"
      "             flatmin geometry --checkpoint runs/<run>   (flatness of a trained model)\n"
      "             flatmin landscape --checkpoint runs/<run>  (its loss along filter-normalised directions)\n"
      "             flatmin train --model-file model.pt        (your own TorchScript model)\n"
      "             flatmin export runs/<run> --torchscript out.pt  (a trained model back to PyTorch)\n"
      "             flatmin sweep experiments/finetune.toml    (many runs from one file, resumable)\n"
      "             flatmin report <sweep root>                (its tables, figures and HTML page)\n"
      "             flatmin launch --nproc 2 -- train ...      (one run in several processes: c10d, Gloo)",
      "flatmin"};
  app.require_subcommand(1);
  app.set_version_flag("--version", flatmin::version_string());
  const flatmin::cli::Action train = flatmin::cli::add_train_command(app);
  const flatmin::cli::Action geometry = flatmin::cli::add_geometry_command(app);
  const flatmin::cli::Action landscape = flatmin::cli::add_landscape_command(app);
  const flatmin::cli::Action exporter = flatmin::cli::add_export_command(app);
  const flatmin::cli::Action sensing = flatmin::cli::add_sensing_command(app);
  const flatmin::cli::Action sweep = flatmin::cli::add_sweep_command(app);
  const flatmin::cli::Action report = flatmin::cli::add_report_command(app);
  const flatmin::cli::Action launch = flatmin::cli::add_launch_command(app);
  if (argc < 2) {
    std::cerr << app.help() << "\nerror: missing command (try: flatmin train)\n";
    return 2;
  }
  std::string commands;
  bool known = false;
  for (const CLI::App* sub : app.get_subcommands({})) {
    commands += (commands.empty() ? "" : ", ") + sub->get_name();
    known = known || sub->get_name() == argv[1];
  }
  if (argv[1][0] != '-' && !known) {
    std::cerr << "error: unknown command '" << argv[1] << "' (commands: " << commands << "; see flatmin --help)\n";
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help and --version exit 0; usage errors 2
  }
  try {
    if (app.got_subcommand("train")) return train();
    if (app.got_subcommand("geometry")) return geometry();
    if (app.got_subcommand("landscape")) return landscape();
    if (app.got_subcommand("export")) return exporter();
    if (app.got_subcommand("sensing")) return sensing();
    if (app.got_subcommand("sweep")) return sweep();
    if (app.got_subcommand("report")) return report();
    if (app.got_subcommand("launch")) return launch();
    return 2;
  } catch (const CLI::Error& e) {  // an option conflict found after parsing
    std::cerr << "error: " << e.what() << '\n';
    return 2;
  } catch (const flatmin::UsageError& e) {
    std::cerr << "error: " << e.what() << '\n';
    return 2;
  } catch (const flatmin::Error& e) {
    std::cerr << "error: " << e.what() << '\n';
  } catch (const c10::Error& e) {
    std::cerr << "error: " << e.what_without_backtrace() << '\n';
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << '\n';
  }
  return 1;
}
