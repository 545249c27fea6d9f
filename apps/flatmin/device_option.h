#pragma once
// --device and --precision, alike in every command that computes: one help text, one parser.
#include <string>

#include <CLI/CLI.hpp>

namespace flatmin::cli {

inline CLI::Option* add_device_option(CLI::App* cmd, std::string* device, const std::string& group) {
  return cmd
      ->add_option("--device", *device,
                   "cpu | cuda | cuda:N: where the model, batches, noise and measures live (cuda needs flatmin "
                   "built against a CUDA LibTorch: docs/GPU.md)")
      ->group(group);
}

inline CLI::Option* add_precision_option(CLI::App* cmd, std::string* precision, const std::string& group) {
  return cmd
      ->add_option("--precision", *precision,
                   "fp32 | bf16: forward passes in bf16 autocast (weights, gradients, noise and the methods' "
                   "combination stay fp32)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->group(group);
}

}  // namespace flatmin::cli
