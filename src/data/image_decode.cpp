// PNG (libpng's simplified API) and JPEG (libjpeg-turbo) decoding. Both libraries are in Debian and
// continuously fuzzed upstream; stb_image, tried first, failed our own fuzzer within a minute (an out-of-bounds
// write while building a JPEG Huffman table).
#include <csetjmp>
#include <cstdio>
#include <memory>
#include <vector>

#include <ATen/ATen.h>
#include <jpeglib.h>
#include <png.h>

#include "flatmin/core/error.h"
#include "flatmin/data/sources.h"
#include "internal.h"

namespace flatmin::data {
namespace {

/// Images larger than this many pixels are refused before decoding (a lying header cannot exhaust memory).
constexpr int64_t kMaxPixels = int64_t{1} << 26;

bool is_png(const unsigned char* b, size_t n) { return n >= 8 && png_sig_cmp(b, 0, 8) == 0; }
bool is_jpeg(const unsigned char* b, size_t n) { return n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF; }

void check_pixels(int64_t w, int64_t h, const std::string& name) {
  check(w > 0 && h > 0 && w * h <= kMaxPixels,
        name + ": image of " + std::to_string(w) + "x" + std::to_string(h) + " pixels is empty or too large");
}

// ---- PNG

struct PngImage {
  png_image image{};
  PngImage() { image.version = PNG_IMAGE_VERSION; }
  ~PngImage() { png_image_free(&image); }
};

void png_header(PngImage& png, const unsigned char* bytes, size_t size, const std::string& name) {
  if (!png_image_begin_read_from_memory(&png.image, bytes, size))
    throw Error(name + ": corrupt PNG (" + std::string(png.image.message) + ")");
  check_pixels(png.image.width, png.image.height, name);
}

at::Tensor decode_png(const unsigned char* bytes, size_t size, int channels, const std::string& name) {
  PngImage png;
  png_header(png, bytes, size, name);
  png.image.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;  // alpha composited onto black
  at::Tensor hwc = at::empty({png.image.height, png.image.width, channels}, at::TensorOptions().dtype(at::kByte));
  if (!png_image_finish_read(&png.image, nullptr, hwc.data_ptr(), 0, nullptr))
    throw Error(name + ": corrupt PNG (" + std::string(png.image.message) + ")");
  return hwc;
}

// ---- JPEG: libjpeg reports errors through a callback that must not return; it longjmps back here. Only
// plain C structs live between setjmp and longjmp.

struct JpegErrors {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void jpeg_fail(j_common_ptr cinfo) {
  auto* errors = reinterpret_cast<JpegErrors*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, errors->message);
  std::longjmp(errors->jump, 1);
}

/// Warnings (level < 0: corrupt or truncated data that libjpeg would pad with grey) fail too.
void jpeg_message(j_common_ptr cinfo, int level) {
  if (level < 0) jpeg_fail(cinfo);
}

/// Decodes into `out` (HWC), or only reads the header when `out` is null; returns "" or libjpeg's message.
std::string run_jpeg(const unsigned char* bytes, size_t size, int channels, std::vector<unsigned char>* out,
                     int64_t* width, int64_t* height, int* components) {
  jpeg_decompress_struct cinfo;
  JpegErrors errors;
  cinfo.err = jpeg_std_error(&errors.mgr);
  errors.mgr.error_exit = jpeg_fail;
  errors.mgr.emit_message = jpeg_message;
  if (setjmp(errors.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return errors.message;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  *width = cinfo.image_width;
  *height = cinfo.image_height;
  *components = cinfo.num_components;
  if (out == nullptr || *width <= 0 || *height <= 0 || *width * *height > kMaxPixels) {
    jpeg_destroy_decompress(&cinfo);
    return "";
  }
  cinfo.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  const size_t row_bytes = static_cast<size_t>(cinfo.output_width) * static_cast<size_t>(cinfo.output_components);
  out->resize(row_bytes * cinfo.output_height);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out->data() + row_bytes * cinfo.output_scanline;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return "";
}

at::Tensor decode_jpeg(const unsigned char* bytes, size_t size, int channels, const std::string& name) {
  std::vector<unsigned char> pixels;
  int64_t w = 0, h = 0;
  int components = 0;
  std::string error = run_jpeg(bytes, size, channels, nullptr, &w, &h, &components);
  if (error.empty()) {
    check_pixels(w, h, name);
    error = run_jpeg(bytes, size, channels, &pixels, &w, &h, &components);
  }
  if (!error.empty()) throw Error(name + ": corrupt JPEG (" + error + ")");
  return at::from_blob(pixels.data(), {h, w, channels}, at::TensorOptions().dtype(at::kByte)).clone();
}

}  // namespace

at::Tensor decode_image(const unsigned char* bytes, size_t size, int channels, const std::string& name) {
  check(channels == 1 || channels == 3, name + ": channels must be 1 or 3");
  at::Tensor hwc;
  if (is_png(bytes, size)) {
    hwc = decode_png(bytes, size, channels, name);
  } else if (is_jpeg(bytes, size)) {
    hwc = decode_jpeg(bytes, size, channels, name);
  } else {
    throw Error(name + ": not a PNG or JPEG image");
  }
  // Rows of interleaved channels (HWC): LibTorch wants the channel planes first.
  return hwc.permute({2, 0, 1}).contiguous();
}

bool image_has_colour(const unsigned char* bytes, size_t size, const std::string& name) {
  if (is_png(bytes, size)) {
    PngImage png;
    png_header(png, bytes, size, name);
    return (png.image.format & PNG_FORMAT_FLAG_COLOR) != 0;
  }
  if (is_jpeg(bytes, size)) {
    int64_t w = 0, h = 0;
    int components = 0;
    const std::string error = run_jpeg(bytes, size, 3, nullptr, &w, &h, &components);
    if (!error.empty()) throw Error(name + ": corrupt JPEG (" + error + ")");
    return components >= 3;
  }
  throw Error(name + ": not a PNG or JPEG image");
}

}  // namespace flatmin::data
