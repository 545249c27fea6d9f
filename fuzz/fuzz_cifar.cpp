// libFuzzer target: the CIFAR record parser (CIFAR-10, CIFAR-100 fine and coarse, chosen by the first byte)
// must reject any input with flatmin::Error, never crash, hang or trip a sanitizer.
#include <cstddef>
#include <cstdint>

#include "flatmin/core/error.h"
#include "flatmin/data/sources.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  using flatmin::data::CifarLabels;
  const CifarLabels labels[] = {CifarLabels::kCifar10, CifarLabels::kCifar100Fine, CifarLabels::kCifar100Coarse};
  try {
    flatmin::data::parse_cifar(data + 1, size - 1, labels[data[0] % 3], "fuzz-input");
  } catch (const flatmin::Error&) {
  }
  return 0;
}
