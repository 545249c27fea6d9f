// Built in place of image_decode.cpp where libpng or libjpeg is missing (a GPU machine with a pip LibTorch
// and no Debian packages): every other data source works; image folders say what is missing.
#include <ATen/ATen.h>

#include "flatmin/core/error.h"
#include "flatmin/data/sources.h"
#include "internal.h"

namespace flatmin::data {
namespace {

[[noreturn]] void unavailable(const std::string& name) {
  throw Error(name + ": this flatmin was built without libpng and libjpeg, which image folders need "
                     "(install libpng-dev and libjpeg-dev, then rebuild)");
}

}  // namespace

at::Tensor decode_image(const unsigned char*, size_t, int, const std::string& name) { unavailable(name); }

bool image_has_colour(const unsigned char*, size_t, const std::string& name) { unavailable(name); }

}  // namespace flatmin::data
