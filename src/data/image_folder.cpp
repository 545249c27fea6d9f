// Folders of images per class (PNG and JPEG, image_decode.cpp), cached as tensors after the first read.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include "flatmin/core/error.h"
#include "flatmin/data/sources.h"
#include "internal.h"


namespace flatmin::data {
namespace {

namespace fs = std::filesystem;

bool is_image(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const char* e : {".png", ".jpg", ".jpeg"})
    if (ext == e) return true;
  return false;
}

std::vector<fs::path> sorted_entries(const fs::path& dir, bool directories) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (directories ? entry.is_directory(ec) : (entry.is_regular_file(ec) && is_image(entry.path())))
      out.push_back(entry.path());
  }
  check(!ec, dir.string() + ": cannot list (" + ec.message() + ")");
  std::sort(out.begin(), out.end());
  return out;
}

struct Listing {
  std::vector<std::string> classes;
  std::vector<std::pair<fs::path, int64_t>> train, test;  ///< file and class index
};

/// root/train/<class>/… and root/test/<class>/…, or root/<class>/… with every fifth file of a class as test.
Listing list_images(const fs::path& root) {
  Listing l;
  std::error_code ec;
  const bool presplit = fs::is_directory(root / "train", ec) && fs::is_directory(root / "test", ec);
  const fs::path train_root = presplit ? root / "train" : root;
  for (const fs::path& dir : sorted_entries(train_root, true)) l.classes.push_back(dir.filename().string());
  check(l.classes.size() >= 2, train_root.string() + ": needs a folder per class (found " +
                                   std::to_string(l.classes.size()) + "), e.g. " + (train_root / "cat").string() + "/1.png");
  for (size_t c = 0; c < l.classes.size(); ++c) {
    const std::vector<fs::path> files = sorted_entries(train_root / l.classes[c], false);
    check(!files.empty(), (train_root / l.classes[c]).string() + ": no images (png, jpg, jpeg)");
    for (size_t i = 0; i < files.size(); ++i) {
      auto& split = !presplit && i % 5 == 4 ? l.test : l.train;
      split.emplace_back(files[i], static_cast<int64_t>(c));
    }
  }
  if (presplit) {
    for (const fs::path& dir : sorted_entries(root / "test", true)) {
      const std::string name = dir.filename().string();
      const auto it = std::find(l.classes.begin(), l.classes.end(), name);
      check(it != l.classes.end(), dir.string() + ": a test class that the training folder lacks");
      for (const fs::path& f : sorted_entries(dir, false)) l.test.emplace_back(f, it - l.classes.begin());
    }
  }
  check(!l.test.empty(), root.string() + ": no test images (each class needs 5 images, or use train/ and test/ folders)");
  return l;
}

/// What the cache depends on: the options and every file's name, size and modification time.
std::string cache_key(const fs::path& root, const Listing& l, int64_t image_size) {
  std::string key = "flatmin-image-folder-v1\n" + fs::absolute(root).string() + "\n" + std::to_string(image_size) + "\n";
  for (const auto* split : {&l.train, &l.test}) {
    for (const auto& [path, label] : *split) {
      std::error_code ec;
      const auto size = fs::file_size(path, ec);
      const auto time = fs::last_write_time(path, ec).time_since_epoch().count();
      key += path.string() + "\t" + std::to_string(label) + "\t" + std::to_string(size) + "\t" + std::to_string(time) + "\n";
    }
  }
  return key;
}

fs::path cache_path(const DataSource& source, const std::string& key) {
  fs::path dir;
  if (!source.cache_dir().empty()) {
    dir = source.cache_dir();
  } else if (const char* env = std::getenv("FLATMIN_CACHE_DIR"); env && *env) {
    dir = env;
  } else if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) {
    dir = fs::path(xdg) / "flatmin";
  } else {
    const char* home = std::getenv("HOME");
    dir = fs::path(home && *home ? home : "/tmp") / ".cache" / "flatmin";
  }
  uint64_t hash = 1469598103934665603ULL;  // FNV-1a of the key names the file
  for (unsigned char c : key) hash = (hash ^ c) * 1099511628211ULL;
  char name[40];
  std::snprintf(name, sizeof name, "images-%016llx.pt", static_cast<unsigned long long>(hash));
  return dir / name;
}

/// Decodes every image of `files` to `channels` (0: to 3 when any of them has colour, else 1) and, when
/// image_size > 0, to that square size. Each file is read once; only grey images among colour ones are decoded
/// a second time (to RGB, as libpng and libjpeg convert them).
Dataset decode_all(const std::vector<std::pair<fs::path, int64_t>>& files, int channels, int64_t image_size,
                   int64_t num_classes, const std::string& what, Progress* progress) {
  auto resized = [&](at::Tensor img) {
    if (image_size > 0 && (img.size(1) != image_size || img.size(2) != image_size)) {
      img = at::_upsample_bilinear2d_aa(img.unsqueeze(0).to(at::kFloat), {image_size, image_size}, false)
                .squeeze(0)
                .round_()
                .clamp_(0, 255)
                .to(at::kByte);
    }
    return img;
  };
  std::vector<at::Tensor> images;
  std::vector<size_t> grey;  // decoded with one channel while channels was 0
  std::vector<int64_t> labels;
  if (progress) progress->start("decoding " + what + " images", static_cast<int64_t>(files.size()));
  for (const auto& [path, label] : files) {
    const std::vector<unsigned char> bytes = read_file_bytes(path.string());
    const int c = channels > 0 ? channels : image_has_colour(bytes.data(), bytes.size(), path.string()) ? 3 : 1;
    if (channels == 0 && c == 1) grey.push_back(images.size());
    at::Tensor img = resized(decode_image(bytes.data(), bytes.size(), c, path.string()));
    if (!images.empty() && img.sizes().slice(1) != images.front().sizes().slice(1)) {
      throw Error(path.string() + ": " + std::to_string(img.size(2)) + "x" + std::to_string(img.size(1)) +
                  " pixels, but " + files.front().first.string() + " has " + std::to_string(images.front().size(2)) +
                  "x" + std::to_string(images.front().size(1)) + "; pass --image-size S to resize all to SxS");
    }
    images.push_back(img);
    labels.push_back(label);
    if (progress) progress->update(static_cast<int64_t>(images.size()));
  }
  if (channels == 0 && !grey.empty() && grey.size() < images.size()) {
    for (size_t i : grey) {  // colour among them: every image becomes RGB
      const fs::path& path = files[i].first;
      const std::vector<unsigned char> bytes = read_file_bytes(path.string());
      images[i] = resized(decode_image(bytes.data(), bytes.size(), 3, path.string()));
    }
  }
  Dataset d;
  d.inputs = at::stack(images);
  d.targets = at::tensor(labels, at::TensorOptions().dtype(at::kLong));
  d.num_classes = num_classes;
  return d;
}

/// The cached pixels when `cache` holds the images `key` describes; false when it is missing, damaged or stale.
bool read_cache(const fs::path& cache, const std::string& key, int64_t num_classes, TrainTest& out) {
  std::error_code ec;
  if (!fs::is_regular_file(cache, ec)) return false;
  try {
    const std::vector<unsigned char> bytes = read_file_bytes(cache.string());
    const auto dict = load_pickle(bytes.data(), bytes.size()).toGenericDict();
    if (dict.at("key").toStringRef() != key) return false;
    for (auto [split, name] : {std::pair<Dataset*, std::string>{&out.train, "train"}, {&out.test, "test"}}) {
      split->inputs = dict.at(name + "_x").toTensor();
      split->targets = dict.at(name + "_y").toTensor();
      split->num_classes = num_classes;
    }
    return true;
  } catch (const std::exception&) {
    return false;  // rebuilt by the caller
  }
}

/// uint8 pixels to floats in [0, 1].
TrainTest scaled(TrainTest t) {
  for (Dataset* d : {&t.train, &t.test}) d->inputs = float_inputs(d->inputs);
  return t;
}

}  // namespace

TrainTest load_image_folder(const DataSource& source, Progress* progress) {
  const fs::path root = source.dir();
  std::error_code ec;
  check(fs::is_directory(root, ec), root.string() + ": image folder not found");
  check(source.image_size() >= 0, "--image-size must be >= 0");
  const Listing l = list_images(root);
  const std::string key = cache_key(root, l, source.image_size());
  const bool use_cache = source.cache_dir() != "none";
  const fs::path cache = use_cache ? cache_path(source, key) : fs::path();
  const auto num_classes = static_cast<int64_t>(l.classes.size());
  TrainTest out;  // uint8 pixels until the end
  if (use_cache && read_cache(cache, key, num_classes, out)) return scaled(std::move(out));
  const auto started = std::chrono::steady_clock::now();
  out.train = decode_all(l.train, 0, source.image_size(), num_classes, "training", progress);
  out.test = decode_all(l.test, static_cast<int>(out.train.inputs.size(1)), source.image_size(), num_classes, "test",
                        progress);
  if (progress)
    progress->line("decoded " + std::to_string(l.train.size() + l.test.size()) + " images of " + root.string() +
                   " in " + std::to_string(static_cast<int>(std::chrono::duration<double>(
                                                               std::chrono::steady_clock::now() - started)
                                                               .count())) +
                   " s" + (use_cache ? "; cached in " + cache.string() : ""));
  check(out.train.inputs.sizes().slice(1) == out.test.inputs.sizes().slice(1),
        l.test.front().first.string() + ": test images " + shape_string(out.test.inputs.sizes().slice(1)) +
            " differ from the training images " + shape_string(out.train.inputs.sizes().slice(1)) +
            "; pass --image-size S");
  check(out.train.inputs.size(2) == out.train.inputs.size(3),
        l.train.front().first.string() + ": images are " + std::to_string(out.train.inputs.size(3)) + "x" +
            std::to_string(out.train.inputs.size(2)) + "; pass --image-size S to make them square");
  if (use_cache) {
    c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
    dict.insert("key", key);
    dict.insert("train_x", out.train.inputs);
    dict.insert("train_y", out.train.targets);
    dict.insert("test_x", out.test.inputs);
    dict.insert("test_y", out.test.targets);
    const std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
    fs::create_directories(cache.parent_path(), ec);
    const fs::path tmp = cache.string() + ".tmp" + std::to_string(::getpid());
    std::ofstream file(tmp, std::ios::binary);
    file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    file.close();
    if (file) fs::rename(tmp, cache, ec);  // a cache that cannot be written is only slower next time
    if (!file || ec) fs::remove(tmp, ec);
  }
  return scaled(std::move(out));
}

}  // namespace flatmin::data
