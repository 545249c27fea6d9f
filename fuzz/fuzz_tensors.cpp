// libFuzzer target: the tensor-file reader (torch.save of {"x", "y"}, through LibTorch's unpickler) must reject
// any input with flatmin::Error, never crash, hang or trip a sanitizer.
#include <cstddef>
#include <cstdint>

#include "flatmin/core/error.h"
#include "flatmin/data/sources.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    flatmin::data::parse_tensor_file(data, size, "fuzz-input");
  } catch (const flatmin::Error&) {
  }
  return 0;
}
