#pragma once
// Shared by the data readers.

#include <string>
#include <vector>

#include "flatmin/core/shape.h"

namespace flatmin::data {

/// The whole file; throws flatmin::Error "<path>: ..." when it cannot be opened or read (a directory too).
std::vector<unsigned char> read_file_bytes(const std::string& path);

struct DataSource;
struct TrainTest;
/// The `folder` kind of load_dataset.
TrainTest load_image_folder(const DataSource& source);

}  // namespace flatmin::data
