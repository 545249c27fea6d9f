// libFuzzer target: the checkpoint reader must reject any damaged input with flatmin::Error, never crash,
// hang or trip a sanitizer. Any other exception escapes and counts as a finding.
#include <cstddef>
#include <cstdint>

#include "flatmin/core/error.h"
#include "flatmin/training/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    flatmin::training::parse_checkpoint(data, size, "fuzz-input");
  } catch (const flatmin::Error&) {
  }
  return 0;
}
