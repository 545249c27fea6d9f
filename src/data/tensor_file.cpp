// Tensors prepared in Python: torch.save({"x": x, "y": y}, path), read with LibTorch's unpickler.
#include <algorithm>
#include <cstring>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <torch/csrc/jit/serialization/import_read.h>

#include "flatmin/core/error.h"
#include "flatmin/data/sources.h"
#include "internal.h"

namespace flatmin::data {
namespace {

constexpr const char* kHowTo = "write it with torch.save({\"x\": x, \"y\": y}, path)";

/// The bytes as the zip reader sees them, never past their end. (torch::pickle_load's own reader copies
/// whatever a damaged zip directory asks for: a heap overflow, found by fuzzing.)
class BoundedReader final : public caffe2::serialize::ReadAdapterInterface {
 public:
  BoundedReader(const unsigned char* bytes, size_t size) : bytes_(bytes), size_(size) {}
  size_t size() const override { return size_; }
  size_t read(uint64_t pos, void* buf, size_t n, const char* what) const override {
    if (pos >= size_) return 0;
    const size_t count = std::min<uint64_t>(n, size_ - pos);
    std::memcpy(buf, bytes_ + pos, count);
    return count;
  }

 private:
  const unsigned char* bytes_;
  size_t size_;
};

/// Walks a pickle's opcodes and checks that every argument lies within it and every memo index is plausible:
/// LibTorch's unpickler allocates a declared string length before it looks for the bytes, and memory for twice a
/// memo index (allocations of 4 and 28 GB from damaged files, found by fuzzing).
void check_pickle(const unsigned char* p, size_t n) {
  size_t i = 0;
  auto need = [&](uint64_t k) {
    if (k > n - i) throw std::runtime_error("damaged pickle: an argument runs past its end");
  };
  auto skip_line = [&] {
    const void* newline = std::memchr(p + i, '\n', n - i);
    if (newline == nullptr) throw std::runtime_error("damaged pickle: an unterminated line");
    i = static_cast<size_t>(static_cast<const unsigned char*>(newline) - p) + 1;
  };
  auto little_endian = [&](int bytes) {
    need(bytes);
    uint64_t v = 0;
    for (int b = 0; b < bytes; ++b) v |= uint64_t{p[i + b]} << (8 * b);
    i += bytes;
    return v;
  };
  auto length = [&](int bytes) {
    const uint64_t v = little_endian(bytes);
    need(v);
    return v;
  };
  while (i < n) {
    const unsigned char op = p[i++];
    switch (op) {
      case '.':  // STOP
        return;
      case '(': case '0': case '1': case '2': case 'N': case 0x88: case 0x89: case ']': case 'a': case 'e': case 'l':
      case ')': case 't': case 0x85: case 0x86: case 0x87: case '}': case 'd': case 's': case 'u': case 'b':
      case 'R': case 0x81: case 'Q': case 0x8f: case 0x90: case 0x91: case 0x92: case 0x93: case 0x94: case 0x97:
      case 0x98:
        break;
      case 'K': case 'h': case 'q': case 0x80: case 0x82:
        need(1), i += 1;
        break;
      case 'M': case 0x83:
        need(2), i += 2;
        break;
      case 'j': case 'r': {
        // Memo indices: LibTorch reserves twice the index; a real one is below the number of opcodes so far.
        const size_t at = i;
        const uint64_t index = little_endian(4);
        if (index > at) throw std::runtime_error("damaged pickle: memo index " + std::to_string(index) + " out of range");
        break;
      }
      case 'J': case 0x84:
        need(4), i += 4;
        break;
      case 'G': case 0x95:
        need(8), i += 8;
        break;
      case 'U': case 'C': case 0x8c: case 0x8a:
        i += length(1);
        break;
      case 'T': case 'B': case 'X': case 0x8b:
        i += length(4);
        break;
      case 0x8d: case 0x8e: case 0x96:
        i += length(8);
        break;
      case 'c':
        skip_line();
        skip_line();
        break;
      case 'I': case 'L': case 'S': case 'V': case 'F': case 'P': case 'g': case 'p':
        skip_line();
        break;
      default:
        throw std::runtime_error("damaged pickle: unknown opcode " + std::to_string(op));
    }
  }
  throw std::runtime_error("damaged pickle: no STOP opcode");
}

/// Whether every element of `t` lies inside its storage: the unpickler takes a damaged file's sizes, strides and
/// offset as they come, and reading such a tensor reads past its storage (found by fuzzing).
bool within_storage(const at::Tensor& t) {
  if (!t.has_storage() || t.device() != at::kCPU) return false;
  for (int64_t d = 0; d < t.dim(); ++d)
    if (t.size(d) == 0) return true;  // empty: nothing is read
  int64_t last = t.storage_offset();
  if (last < 0) return false;
  for (int64_t d = 0; d < t.dim(); ++d) {
    int64_t extent = 0;
    if (t.size(d) < 0 || t.stride(d) < 0 || __builtin_mul_overflow(t.size(d) - 1, t.stride(d), &extent) ||
        __builtin_add_overflow(last, extent, &last))
      return false;
  }
  int64_t bytes = 0;
  return !__builtin_mul_overflow(last + 1, static_cast<int64_t>(t.element_size()), &bytes) &&
         static_cast<uint64_t>(bytes) <= t.storage().nbytes();
}

}  // namespace

c10::IValue load_pickle(const unsigned char* bytes, size_t size) {
  caffe2::serialize::PyTorchStreamReader reader(std::make_shared<BoundedReader>(bytes, size));
  if (!reader.hasRecord("data.pkl")) throw std::runtime_error("no data.pkl record");
  const auto [pickle, pickle_size] = reader.getRecord("data.pkl");
  check_pickle(static_cast<const unsigned char*>(pickle.get()), pickle_size);
  return torch::jit::readArchiveAndTensors("data", "", "", c10::nullopt, c10::nullopt, c10::nullopt, reader);
}

Dataset parse_tensor_file(const unsigned char* bytes, size_t size, const std::string& name, int64_t num_classes) {
  check(size > 0, name + ": empty file");
  c10::IValue value;
  try {
    value = load_pickle(bytes, size);
  } catch (const c10::Error& e) {
    throw Error(name + ": not a torch.save file (" + first_line(e.what_without_backtrace()) + "); " + kHowTo);
  } catch (const std::exception& e) {
    throw Error(name + ": not a torch.save file (" + first_line(e.what()) + "); " + kHowTo);
  }
  check(value.isGenericDict(), name + ": holds a " + value.tagKind() + ", not a dict; " + kHowTo);
  at::Tensor x, y;
  int64_t file_classes = 0;
  for (const auto& entry : value.toGenericDict()) {
    check(entry.key().isString(), name + ": dict keys must be strings; " + kHowTo);
    const std::string& key = entry.key().toStringRef();
    const c10::IValue& v = entry.value();
    if (key == "x" || key == "y") {
      check(v.isTensor(), name + ": \"" + key + "\" is a " + v.tagKind() + ", not a tensor");
      check(within_storage(v.toTensor()), name + ": \"" + key + "\" is damaged (its shape exceeds its data)");
      (key == "x" ? x : y) = v.toTensor();
    } else if (key == "classes") {
      check(v.isInt() && v.toInt() >= 1, name + ": \"classes\" must be an int >= 1");
      file_classes = v.toInt();
    } else {
      throw Error(name + ": unexpected key \"" + key + "\" (expected x, y and optionally classes)");
    }
  }
  check(x.defined() && y.defined(), name + ": needs both \"x\" and \"y\"; " + kHowTo);
  check(x.dim() == 4 || x.dim() == 2, name + ": x must be [N, C, H, W] or [N, D], got " + shape_string(x.sizes()));
  check(y.dim() == 1, name + ": y must be [N], got " + shape_string(y.sizes()));
  check(x.size(0) == y.size(0), name + ": x holds " + std::to_string(x.size(0)) + " examples, y " +
                                    std::to_string(y.size(0)) + " labels");
  check(x.scalar_type() == at::kByte || at::isFloatingType(x.scalar_type()),
        name + ": x must be float or uint8, got " + std::string(c10::toString(x.scalar_type())));
  check(y.scalar_type() == at::kLong, name + ": y must be int64 labels (y.long() in Python), got " +
                                          std::string(c10::toString(y.scalar_type())));
  check(x.numel() > 0, name + ": no examples");
  Dataset d;
  // A [N, D] file is D channels of 1×1: the MLP sees D features (and a convolutional model says it cannot).
  d.inputs = (x.dim() == 2 ? x.view({x.size(0), x.size(1), 1, 1}) : x).contiguous();
  d.inputs = x.scalar_type() == at::kByte ? d.inputs.to(at::kFloat).div_(255.0f) : d.inputs.to(at::kFloat);
  check(at::isfinite(d.inputs).all().item<bool>(), name + ": x holds NaN or infinite values");
  d.targets = y.contiguous();
  const int64_t lo = y.min().item<int64_t>(), hi = y.max().item<int64_t>();
  d.num_classes = num_classes > 0 ? num_classes : file_classes > 0 ? file_classes : hi + 1;
  check(lo >= 0 && hi < d.num_classes, name + ": label " + std::to_string(lo < 0 ? lo : hi) + " out of range for " +
                                           std::to_string(d.num_classes) + " classes");
  return d;
}

}  // namespace flatmin::data
