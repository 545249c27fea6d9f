// Writes the seed corpora of the fuzzers from the library itself, so they always match the formats:
//   make_seeds <idx dir> <checkpoint dir> [<cifar dir> <tensors dir> <image dir>]
#include <filesystem>
#include <iostream>

#include <torch/torch.h>

#include "data/dataset_files.h"
#include "flatmin/data/idx.h"
#include "flatmin/training/checkpoint.h"

int main(int argc, char** argv) {
  if (argc != 3 && argc != 6) {
    std::cerr << "usage: make_seeds <idx dir> <checkpoint dir> [<cifar dir> <tensors dir> <image dir>]\n";
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
  if (argc == 6) {
    // The first byte of a CIFAR or image seed picks the variant the fuzzer parses (see the targets).
    using namespace flatmin::testing;
    const std::filesystem::path cifar = argv[3], tensors = argv[4], image = argv[5];
    auto [x, y] = synthetic_images(2, 3, 32, 32, 10, 1);
    write_bytes(cifar / "cifar10.bin", std::string(1, '\0') + cifar_records(x, y));
    write_bytes(cifar / "cifar100.bin", std::string(1, '\1') + cifar_records(x, y, y));
    write_bytes(tensors / "uint8.pt", tensor_file(x, y));
    write_bytes(tensors / "float.pt", tensor_file(torch::rand({3, 4}), torch::tensor({0, 1, 0}, torch::kLong), 2));
    auto [small, labels] = synthetic_images(3, 3, 6, 5, 2, 2);
    for (const char* ext : {".png", ".jpg"}) {
      const std::filesystem::path file = image / (std::string("seed") + ext);
      write_image(file, small[0]);
      std::ifstream in(file, std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(in)), {});
      write_bytes(image / (std::string("rgb") + ext), std::string(1, '\1') + bytes);
      write_bytes(image / (std::string("grey") + ext), std::string(1, '\0') + bytes);
      std::filesystem::remove(file);
    }
  }
  return 0;
}
