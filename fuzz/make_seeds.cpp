// Writes the seed corpora of the fuzzers from the library itself, so they always match the formats:
//   make_seeds <idx dir> <checkpoint dir>
#include <filesystem>
#include <iostream>

#include <torch/torch.h>

#include "flatmin/data/idx.h"
#include "flatmin/training/checkpoint.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: make_seeds <idx dir> <checkpoint dir>\n";
    return 2;
  }
  const std::filesystem::path idx = argv[1], ckpt = argv[2];
  std::filesystem::create_directories(idx);
  std::filesystem::create_directories(ckpt);
  torch::manual_seed(0);
  using flatmin::data::write_idx;
  write_idx((idx / "images.idx").string(), torch::randint(0, 256, {3, 4, 4}, torch::kByte));
  write_idx((idx / "images.idx.gz").string(), torch::randint(0, 256, {3, 4, 4}, torch::kByte), true);
  write_idx((idx / "labels.idx").string(), torch::randint(0, 10, {5}, torch::kByte));
  write_idx((idx / "float.idx").string(), torch::randn({2, 3}));
  write_idx((idx / "double.idx.gz").string(), torch::randn({2, 2}, torch::kDouble), true);
  write_idx((idx / "int16.idx").string(), torch::randint(-100, 100, {4}, torch::kShort));
  const auto spec = flatmin::models::ModelSpec().name("mlp").width(1).image_size(4).num_classes(2);
  flatmin::training::save_checkpoint((ckpt / "mlp.ckpt").string(), spec, flatmin::models::make_model(spec), "{}",
                                     torch::zeros({1}), torch::ones({1}), 1);
  return 0;
}
