#pragma once
/// The datasets people have on disk, each read into train and test sets that the splits, normalisation,
/// augmentation and every command use alike:
///   fashion-mnist  Debian's dataset-fashion-mnist (the default), or any directory of its four IDX files
///   idx            any IDX dataset under the MNIST names ({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]);
///                  the classes are 0 … the largest label
///   cifar10        CIFAR-10's binary distribution: data_batch_*.bin and test_batch.bin (in DIR or
///                  DIR/cifar-10-batches-bin); records of 1 label byte + 3×32×32 bytes
///   cifar100       CIFAR-100's: train.bin and test.bin (in DIR or DIR/cifar-100-binary); records of a coarse
///                  and a fine label byte + 3×32×32 bytes; fine (100 classes) or coarse (20) labels
///   folder         images per class: DIR/<class>/*.png|jpg|jpeg (libpng, libjpeg-turbo), or
///                  DIR/train/<class>/… and DIR/test/<class>/…; without train/ and test/, every fifth image of each
///                  class (in file-name order) is a test image. Classes in name order. Decoded once, then cached.
///   tensors        DIR/train.pt and DIR/test.pt written in Python: torch.save({"x": x, "y": y}, path), x of
///                  [N, C, H, W] or [N, D] (float or uint8 in 0…255), y int64 labels in 0 … classes − 1; an
///                  optional "classes" entry (int) sets the number of classes
/// Every reader fails with one flatmin::Error line naming the file and the problem.

#include <cstdint>
#include <string>
#include <vector>

#include <torch/arg.h>

#include "flatmin/core/progress.h"
#include "flatmin/data/dataset.h"

namespace flatmin::data {

struct DataSource {
  TORCH_ARG(std::string, kind) = "fashion-mnist";  ///< fashion-mnist | idx | cifar10 | cifar100 | folder | tensors
  /// The directory; "" = the default Fashion-MNIST directory (only for fashion-mnist).
  TORCH_ARG(std::string, dir) = "";
  /// cifar100: "fine" (100 classes) or "coarse" (20 superclasses).
  TORCH_ARG(std::string, labels) = "fine";
  /// folder: resize every image to image_size × image_size (antialiased bilinear); 0 = keep, and then all images
  /// must have one square size.
  TORCH_ARG(int64_t, image_size) = 0;
  /// folder: where decoded images are cached; "" = $FLATMIN_CACHE_DIR, else $XDG_CACHE_HOME/flatmin, else
  /// ~/.cache/flatmin. "none" = no cache.
  TORCH_ARG(std::string, cache_dir) = "";
};

/// The directory the source reads: its dir, or the default Fashion-MNIST directory when that is "".
std::string resolved_dir(const DataSource& source);

/// The kinds above, for option checks and messages.
const std::vector<std::string>& dataset_kinds();

/// Reads the source. Throws flatmin::Error (unknown kind, missing directory or file, damaged file, ...).
/// IDX images (fashion-mnist, idx) stay uint8 pixels: make_splits converts only the examples a split keeps
/// (a run of 100 examples per class need not convert all 70,000), to the same bits as load_idx_pair's.
/// `progress`, when given, shows the decoding of image folders (the one reader that takes long).
TrainTest load_dataset(const DataSource& source, Progress* progress = nullptr);

// ---- the readers, exposed for the fuzzers and the tests

enum class CifarLabels { kCifar10, kCifar100Fine, kCifar100Coarse };
/// Parses CIFAR binary records held in memory: uint8 images [N, 3, 32, 32] scaled to [0, 1] and int64 labels.
/// Throws flatmin::Error "<name>: ..." when the size is not a whole number of records or a label is out of range.
Dataset parse_cifar(const unsigned char* bytes, size_t size, CifarLabels labels, const std::string& name);
/// Reads and concatenates CIFAR files.
Dataset read_cifar(const std::vector<std::string>& paths, CifarLabels labels);

/// Parses a tensor file (torch.save of {"x", "y"[, "classes"]}) held in memory; `num_classes` 0 = from the
/// file's "classes" or the largest label + 1. Throws flatmin::Error "<name>: ..." on anything else.
Dataset parse_tensor_file(const unsigned char* bytes, size_t size, const std::string& name, int64_t num_classes = 0);

/// Decodes one PNG or JPEG file held in memory to uint8 [channels, H, W] (channels 1 or 3: grey or RGB; alpha
/// composited onto black). Throws flatmin::Error "<name>: ..." when it is neither, is damaged or truncated, or
/// has more than 2^26 pixels.
at::Tensor decode_image(const unsigned char* bytes, size_t size, int channels, const std::string& name);

}  // namespace flatmin::data
