#pragma once
/// Tensor shapes in error messages: "[2, 3, 28, 28]".

#include <string>

#include <c10/util/ArrayRef.h>

namespace flatmin {

inline std::string shape_string(c10::IntArrayRef sizes) {
  std::string s = "[";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

}  // namespace flatmin
