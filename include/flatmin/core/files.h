#pragma once
/// Files every layer writes: run metadata, reports, sweep manifests.

#include <string>

namespace flatmin {

/// Writes `text` to `path` atomically (temporary file, then rename): a reader never sees half of it.
/// Throws flatmin::Error on failure.
void write_text_file(const std::string& path, const std::string& text);

}  // namespace flatmin
