#pragma once
// Shared by the data readers.

#include <string>
#include <vector>

#include <ATen/core/ivalue.h>

#include "flatmin/core/progress.h"
#include "flatmin/core/shape.h"

namespace flatmin::data {

/// The whole file; throws flatmin::Error "<path>: ..." when it cannot be opened or read (a directory too).
std::vector<unsigned char> read_file_bytes(const std::string& path);

/// What torch.save (or torch::pickle_save) wrote, read without reading past `size`; throws what LibTorch throws.
c10::IValue load_pickle(const unsigned char* bytes, size_t size);

/// Whether a PNG or JPEG image has colour (from its header); throws flatmin::Error "<name>: ..." otherwise.
bool image_has_colour(const unsigned char* bytes, size_t size, const std::string& name);

struct DataSource;
struct TrainTest;
/// The `folder` kind of load_dataset.
TrainTest load_image_folder(const DataSource& source, Progress* progress);

/// load_idx_directory with the images left as uint8 pixels (Dataset::inputs): load_dataset's IDX kinds.
TrainTest load_idx_pixels(const std::string& dir, int64_t num_classes);

}  // namespace flatmin::data
