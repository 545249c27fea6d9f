// CIFAR-10 / CIFAR-100 binary distribution: fixed-size records of label byte(s) then 3×32×32 pixel bytes
// (the red, green and blue planes in row-major order).
#include <cstring>

#include <ATen/ATen.h>

#include "flatmin/core/error.h"
#include "flatmin/data/sources.h"
#include "internal.h"

namespace flatmin::data {
namespace {

constexpr int64_t kPixels = 3 * 32 * 32;

}  // namespace

Dataset parse_cifar(const unsigned char* bytes, size_t size, CifarLabels labels, const std::string& name) {
  const size_t label_bytes = labels == CifarLabels::kCifar10 ? 1 : 2;
  const size_t record = label_bytes + kPixels;
  // Which label byte, and how many classes: CIFAR-100 stores the coarse label first, then the fine one.
  const size_t label_at = labels == CifarLabels::kCifar100Fine ? 1 : 0;
  const int64_t classes = labels == CifarLabels::kCifar10 ? 10 : labels == CifarLabels::kCifar100Fine ? 100 : 20;
  const std::string format = labels == CifarLabels::kCifar10 ? "CIFAR-10" : "CIFAR-100";
  check(size > 0, name + ": empty file");
  check(size % record == 0, name + ": " + std::to_string(size) + " bytes is not a whole number of " + format +
                                " records of " + std::to_string(record) + " bytes (truncated, or another format)");
  const auto n = static_cast<int64_t>(size / record);
  at::Tensor pixels = at::empty({n, 3, 32, 32}, at::TensorOptions().dtype(at::kByte));
  at::Tensor targets = at::empty({n}, at::TensorOptions().dtype(at::kLong));
  auto* out = pixels.data_ptr<uint8_t>();
  auto* label = targets.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const unsigned char* r = bytes + static_cast<size_t>(i) * record;
    label[i] = r[label_at];
    if (label[i] >= classes) {
      throw Error(name + ": record " + std::to_string(i) + " has label " + std::to_string(label[i]) + ", out of range for " +
                  format + "'s " + std::to_string(classes) + (label_at == 1 ? " fine" : "") + " classes");
    }
    if (labels == CifarLabels::kCifar100Fine || labels == CifarLabels::kCifar100Coarse) {
      // Both bytes are checked whichever is used: a file whose other label is out of range is not CIFAR-100.
      const int64_t other = r[1 - label_at], other_classes = label_at == 1 ? 20 : 100;
      check(other < other_classes, name + ": record " + std::to_string(i) + " has " + (label_at == 1 ? "coarse" : "fine") +
                                       " label " + std::to_string(other) + ", out of range for CIFAR-100");
    }
    std::memcpy(out + i * kPixels, r + label_bytes, kPixels);
  }
  Dataset d;
  d.inputs = pixels.to(at::kFloat).div_(255.0f);
  d.targets = std::move(targets);
  d.num_classes = classes;
  return d;
}

Dataset read_cifar(const std::vector<std::string>& paths, CifarLabels labels) {
  check(!paths.empty(), "read_cifar: no files");
  std::vector<at::Tensor> inputs, targets;
  int64_t classes = 0;
  for (const std::string& path : paths) {
    const std::vector<unsigned char> bytes = read_file_bytes(path);
    Dataset d = parse_cifar(bytes.data(), bytes.size(), labels, path);
    inputs.push_back(d.inputs);
    targets.push_back(d.targets);
    classes = d.num_classes;
  }
  Dataset out;
  out.inputs = inputs.size() == 1 ? inputs[0] : at::cat(inputs);
  out.targets = targets.size() == 1 ? targets[0] : at::cat(targets);
  out.num_classes = classes;
  return out;
}

}  // namespace flatmin::data
