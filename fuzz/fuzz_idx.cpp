// libFuzzer target: the IDX parser must reject any input with flatmin::Error, never crash, hang, leak or
// trip a sanitizer. Any other exception escapes and counts as a finding.
#include <cstddef>
#include <cstdint>

#include "flatmin/core/error.h"
#include "flatmin/data/idx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    flatmin::data::parse_idx(data, size, "fuzz-input");
  } catch (const flatmin::Error&) {
  }
  return 0;
}
