#pragma once
// Small datasets written in the exact formats flatmin reads (CIFAR binary records, torch.save tensor files,
// PNG/JPEG images, IDX), for the reader tests and the command-line tests.

#include <filesystem>
#include <fstream>
#include <string>

#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/torch.h>

#include "flatmin/data/idx.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#ifdef __clang__
// stb's JPEG writer left-shifts negative ints (UBSan's shift-base): the test data's writer, not flatmin's code.
#pragma clang attribute push(__attribute__((no_sanitize("undefined"))), apply_to = function)
#endif
#include <stb/stb_image_write.h>
#ifdef __clang__
#pragma clang attribute pop
#endif
#pragma GCC diagnostic pop

namespace flatmin::testing {

/// Learnable images: uint8 [n, c, h, w] of dim noise with a bright square whose place depends on the class.
inline std::pair<at::Tensor, at::Tensor> synthetic_images(int64_t n, int64_t c, int64_t h, int64_t w, int64_t classes,
                                                          uint64_t seed) {
  torch::manual_seed(seed);
  at::Tensor labels = torch::arange(n, torch::kLong).remainder(classes);
  at::Tensor images = torch::randint(0, 60, {n, c, h, w}, torch::kByte);
  const int64_t side = std::max<int64_t>(2, std::min(h, w) / 4);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = labels[i].item<int64_t>();
    const int64_t y = (k * 3) % std::max<int64_t>(1, h - side), x = (k * 5) % std::max<int64_t>(1, w - side);
    images[i].narrow(1, y, side).narrow(2, x, side).fill_(200 + k % 50);
  }
  return {images, labels};
}

inline void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// CIFAR records: [coarse label,] label, 3072 pixel bytes (the planes in order). `coarse` undefined = CIFAR-10.
inline std::string cifar_records(const at::Tensor& images, const at::Tensor& labels, const at::Tensor& coarse = {}) {
  std::string out;
  const at::Tensor px = images.contiguous();
  for (int64_t i = 0; i < images.size(0); ++i) {
    if (coarse.defined()) out.push_back(static_cast<char>(coarse[i].item<int64_t>()));
    out.push_back(static_cast<char>(labels[i].item<int64_t>()));
    out.append(static_cast<const char*>(px[i].data_ptr()), 3 * 32 * 32);
  }
  return out;
}

/// torch.save({"x": x, "y": y}) as Python writes it (torch::pickle_save writes that format).
inline std::string tensor_file(const at::Tensor& x, const at::Tensor& y, int64_t classes = 0) {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
  dict.insert("x", x);
  dict.insert("y", y);
  if (classes > 0) dict.insert("classes", classes);
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
  return std::string(bytes.begin(), bytes.end());
}

/// Writes uint8 [c, h, w] as PNG or JPEG (.jpg, .jpeg) by the extension.
inline void write_image(const std::filesystem::path& path, const at::Tensor& chw) {
  std::filesystem::create_directories(path.parent_path());
  const at::Tensor hwc = chw.permute({1, 2, 0}).contiguous();
  const int h = static_cast<int>(chw.size(1)), w = static_cast<int>(chw.size(2)), c = static_cast<int>(chw.size(0));
  const std::string ext = path.extension().string();
  const std::string p = path.string();
  if (ext == ".png") stbi_write_png(p.c_str(), w, h, c, hwc.data_ptr(), w * c);
  if (ext == ".jpg" || ext == ".jpeg") stbi_write_jpg(p.c_str(), w, h, c, hwc.data_ptr(), 95);
}

/// A whole dataset of each kind under `root`: root/cifar10, root/cifar100, root/folder, root/tensors, root/idx.
inline void write_all_kinds(const std::filesystem::path& root) {
  namespace fs = std::filesystem;
  {
    auto [x, y] = synthetic_images(300, 3, 32, 32, 10, 1);
    write_bytes(root / "cifar10" / "data_batch_1.bin", cifar_records(x.slice(0, 0, 150), y.slice(0, 0, 150)));
    write_bytes(root / "cifar10" / "data_batch_2.bin", cifar_records(x.slice(0, 150, 250), y.slice(0, 150, 250)));
    write_bytes(root / "cifar10" / "test_batch.bin", cifar_records(x.slice(0, 250), y.slice(0, 250)));
  }
  {
    auto [x, y] = synthetic_images(300, 3, 32, 32, 100, 2);
    const at::Tensor coarse = y.div(5, "floor");
    write_bytes(root / "cifar100" / "cifar-100-binary" / "train.bin",
                cifar_records(x.slice(0, 0, 250), y.slice(0, 0, 250), coarse.slice(0, 0, 250)));
    write_bytes(root / "cifar100" / "cifar-100-binary" / "test.bin",
                cifar_records(x.slice(0, 250), y.slice(0, 250), coarse.slice(0, 250)));
  }
  {
    auto [x, y] = synthetic_images(60, 3, 20, 20, 3, 3);
    const char* names[] = {"cat", "dog", "fox"};
    const char* exts[] = {".png", ".jpg", ".jpeg"};
    for (int64_t i = 0; i < x.size(0); ++i) {
      const int64_t k = y[i].item<int64_t>();
      char file[32];
      std::snprintf(file, sizeof file, "%03lld%s", static_cast<long long>(i), exts[i % 3]);
      write_image(root / "folder" / names[k] / file, x[i]);
    }
  }
  {
    auto [x, y] = synthetic_images(200, 1, 12, 12, 4, 4);
    write_bytes(root / "tensors" / "train.pt", tensor_file(x.slice(0, 0, 150), y.slice(0, 0, 150)));
    write_bytes(root / "tensors" / "test.pt", tensor_file(x.slice(0, 150).to(torch::kFloat).div(255), y.slice(0, 150)));
  }
  {
    auto [x, y] = synthetic_images(200, 1, 16, 16, 3, 5);
    fs::create_directories(root / "idx");
    data::write_idx((root / "idx" / "train-images-idx3-ubyte").string(), x.slice(0, 0, 150).squeeze(1));
    data::write_idx((root / "idx" / "train-labels-idx1-ubyte").string(), y.slice(0, 0, 150).to(torch::kByte));
    data::write_idx((root / "idx" / "t10k-images-idx3-ubyte.gz").string(), x.slice(0, 150).squeeze(1), true);
    data::write_idx((root / "idx" / "t10k-labels-idx1-ubyte.gz").string(), y.slice(0, 150).to(torch::kByte), true);
  }
}

}  // namespace flatmin::testing
