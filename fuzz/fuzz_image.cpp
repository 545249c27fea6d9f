// libFuzzer target: image decoding (PNG through libpng, JPEG through libjpeg-turbo) must reject any input with
// flatmin::Error, never crash, hang or trip a sanitizer; grey and colour, chosen by the first byte.
#include <cstddef>
#include <cstdint>

#include "flatmin/core/error.h"
#include "flatmin/data/sources.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  try {
    flatmin::data::decode_image(data + 1, size - 1, data[0] % 2 ? 3 : 1, "fuzz-input");
  } catch (const flatmin::Error&) {
  }
  return 0;
}
