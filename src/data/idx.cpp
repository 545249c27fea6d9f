#include "flatmin/data/idx.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include <ATen/ATen.h>
#include <sys/stat.h>
#include <zlib.h>

#include "flatmin/core/error.h"
#include "internal.h"

namespace flatmin::data {
namespace {

constexpr int kMaxDims = 8;
/// Largest payload accepted (1 TiB): far above any real dataset, far below what overflows anything.
constexpr uint64_t kMaxPayloadBytes = uint64_t{1} << 40;
constexpr size_t kIoChunk = size_t{1} << 20;

struct Header {
  at::ScalarType dtype;
  std::vector<int64_t> dims;
  size_t header_bytes;   // 4 + 4 * ndim
  uint64_t payload_bytes;
};

std::optional<at::ScalarType> dtype_of_code(unsigned char code) {
  switch (code) {
    case 0x08: return at::kByte;
    case 0x09: return at::kChar;
    case 0x0B: return at::kShort;
    case 0x0C: return at::kInt;
    case 0x0D: return at::kFloat;
    case 0x0E: return at::kDouble;
    default: return std::nullopt;
  }
}

std::optional<unsigned char> code_of_dtype(at::ScalarType dtype) {
  switch (dtype) {
    case at::kByte: return 0x08;
    case at::kChar: return 0x09;
    case at::kShort: return 0x0B;
    case at::kInt: return 0x0C;
    case at::kFloat: return 0x0D;
    case at::kDouble: return 0x0E;
    default: return std::nullopt;
  }
}

std::string hex_byte(unsigned char b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", b);
  return buf;
}

uint32_t load_be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

/// Validates as much of the header as `size` bytes hold, so that a bad stream is rejected as soon as its
/// first bytes are seen. Returns the header once complete, nullopt while bytes are still missing.
std::optional<Header> try_parse_header(const unsigned char* bytes, size_t size, const std::string& name) {
  if (size >= 2) {
    check(bytes[0] == 0 && bytes[1] == 0, name + ": bad magic number (expected 00 00, found " +
                                              hex_byte(bytes[0]) + " " + hex_byte(bytes[1]) + "); not an IDX file");
  }
  std::optional<at::ScalarType> dtype;
  if (size >= 3) {
    dtype = dtype_of_code(bytes[2]);
    check(dtype.has_value(), name + ": unknown IDX type code " + hex_byte(bytes[2]) +
                                 " (valid: 0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E)");
  }
  if (size < 4) return std::nullopt;
  const int ndim = bytes[3];
  check(ndim >= 1 && ndim <= kMaxDims,
        name + ": invalid ndim " + std::to_string(ndim) + " (must be 1 to " + std::to_string(kMaxDims) + ")");
  Header header;
  header.dtype = *dtype;
  header.header_bytes = 4 + 4 * static_cast<size_t>(ndim);
  if (size < header.header_bytes) return std::nullopt;

  const uint64_t element_size = c10::elementSize(header.dtype);
  header.dims.resize(ndim);
  bool empty = false;
  for (int d = 0; d < ndim; ++d) {
    header.dims[d] = load_be32(bytes + 4 + 4 * d);
    empty = empty || header.dims[d] == 0;
  }
  // The shape must be sane even when a zero dimension makes it empty: LibTorch computes strides from the
  // other dimensions and rejects (throws on) products that overflow. Division keeps the running product
  // below the limit without ever overflowing.
  uint64_t total = element_size;
  for (int64_t dim : header.dims) {
    const auto d = std::max<uint64_t>(static_cast<uint64_t>(dim), 1);
    check(total <= kMaxPayloadBytes / d, name + ": dimensions too large (payload exceeds 2^40 bytes)");
    total *= d;
  }
  header.payload_bytes = empty ? 0 : total;
  return header;
}

std::string errno_text() { return std::strerror(errno); }

bool is_gzip(const std::vector<unsigned char>& data) {
  return data.size() >= 2 && data[0] == 0x1f && data[1] == 0x8b;
}

/// Inflates one or more concatenated gzip members. Decompression stops as soon as the IDX header is
/// invalid or the output exceeds what the header declares, so neither a bad file nor a gzip bomb can
/// make it allocate much more than the data the file legitimately holds.
std::vector<unsigned char> gunzip(const std::vector<unsigned char>& in, const std::string& path) {
  z_stream stream{};
  // 16 + MAX_WBITS: gzip wrapper only, with its CRC-32 and length checked by zlib.
  check(inflateInit2(&stream, 16 + MAX_WBITS) == Z_OK, path + ": cannot initialise zlib");
  struct Guard {
    z_stream* s;
    ~Guard() { inflateEnd(s); }
  } guard{&stream};

  std::vector<unsigned char> out;
  std::optional<Header> header;
  size_t in_pos = 0;  // input handed to zlib so far (avail_in is a 32-bit uInt, so fed in pieces)
  while (true) {
    if (stream.avail_in == 0 && in_pos < in.size()) {
      const size_t n = std::min(in.size() - in_pos, size_t{1} << 30);
      stream.next_in = const_cast<Bytef*>(in.data() + in_pos);
      stream.avail_in = static_cast<uInt>(n);
      in_pos += n;
    }
    const size_t old_size = out.size();
    const size_t grow = std::clamp(old_size, size_t{1} << 16, size_t{1} << 24);
    out.resize(old_size + grow);
    stream.next_out = out.data() + old_size;
    stream.avail_out = static_cast<uInt>(grow);
    const int rc = inflate(&stream, Z_NO_FLUSH);
    out.resize(old_size + grow - stream.avail_out);

    if (rc == Z_DATA_ERROR) {
      throw Error(path + ": corrupt gzip stream (" + (stream.msg ? stream.msg : "data error") + ")");
    }
    check(rc != Z_MEM_ERROR, path + ": out of memory while decompressing");
    check(rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR,
          path + ": gzip decompression failed (zlib error " + std::to_string(rc) + ")");

    if (!header) header = try_parse_header(out.data(), out.size(), path);
    if (header && out.size() - header->header_bytes > header->payload_bytes) {
      throw Error(path + ": trailing bytes: expected " + std::to_string(header->payload_bytes) +
                  " payload bytes, found at least " + std::to_string(out.size() - header->header_bytes));
    }

    const size_t consumed = static_cast<size_t>(stream.next_in - in.data());
    const bool input_left = consumed < in.size();
    if (rc == Z_STREAM_END) {
      if (!input_left) break;
      // Another member may follow (gzip allows concatenation); anything else is garbage.
      const size_t left = in.size() - consumed;
      check(left >= 2 && in[consumed] == 0x1f && in[consumed + 1] == 0x8b,
            path + ": corrupt gzip stream (" + std::to_string(left) + " unexpected bytes after its end)");
      check(inflateReset(&stream) == Z_OK, path + ": cannot reset zlib");
      continue;
    }
    // Output space is always given, so Z_BUF_ERROR means zlib needs input that the file lacks.
    check(!(rc == Z_BUF_ERROR && !input_left), path + ": truncated gzip stream (unexpected end of file)");
  }
  return out;
}

inline void byteswap(unsigned char* p, size_t width) { std::reverse(p, p + width); }

constexpr bool host_is_little_endian() {
#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  return false;
#else
  return true;
#endif
}

/// Copies `count` elements of `width` bytes, converting between big-endian and host order.
void copy_big_endian(unsigned char* dst, const unsigned char* src, size_t count, size_t width) {
  if (count == 0) return;  // an empty tensor's data pointer may be null, and memcpy's must not be
  std::memcpy(dst, src, count * width);
  if (width == 1 || !host_is_little_endian()) return;
  for (size_t i = 0; i < count; ++i) byteswap(dst + i * width, width);
}

/// Output for write_idx: a plain FILE or a gzFile.
class Sink {
 public:
  Sink(const std::string& path, bool gzip) : path_(path), gzip_(gzip) {
    errno = 0;
    if (gzip_) {
      gz_ = gzopen(path.c_str(), "wb6");
      check(gz_ != nullptr, path + ": cannot open for writing (" + errno_text() + ")");
    } else {
      file_ = std::fopen(path.c_str(), "wb");
      check(file_ != nullptr, path + ": cannot open for writing (" + errno_text() + ")");
    }
  }
  ~Sink() {
    if (gz_) gzclose(gz_);
    if (file_) std::fclose(file_);
  }
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;

  void write(const unsigned char* data, size_t n) {
    if (n == 0) return;
    if (gzip_) {
      const int written = gzwrite(gz_, data, static_cast<unsigned>(n));
      check(written == static_cast<int>(n), path_ + ": write error (" + gz_message() + ")");
    } else {
      check(std::fwrite(data, 1, n, file_) == n, path_ + ": write error (" + errno_text() + ")");
    }
  }

  void close() {
    if (gzip_) {
      const int rc = gzclose(gz_);
      gz_ = nullptr;
      check(rc == Z_OK, path_ + ": write error while closing (zlib error " + std::to_string(rc) + ")");
    } else {
      const int rc = std::fclose(file_);
      file_ = nullptr;
      check(rc == 0, path_ + ": write error while closing (" + errno_text() + ")");
    }
  }

 private:
  std::string gz_message() {
    int errnum = 0;
    const char* msg = gzerror(gz_, &errnum);
    return errnum == Z_ERRNO ? errno_text() : std::string(msg ? msg : "zlib error");
  }

  std::string path_;
  bool gzip_;
  gzFile gz_ = nullptr;
  FILE* file_ = nullptr;
};

}  // namespace

at::Tensor parse_idx(const unsigned char* bytes, size_t size, const std::string& name) {
  check(size > 0, name + ": empty file");
  const std::optional<Header> header = try_parse_header(bytes, size, name);
  if (!header) {
    const size_t needed = size >= 4 ? 4 + 4 * static_cast<size_t>(bytes[3]) : 4;
    throw Error(name + ": truncated header: expected " + std::to_string(needed) + " bytes, found " +
                std::to_string(size));
  }
  const uint64_t found = size - header->header_bytes;
  check(found >= header->payload_bytes, name + ": truncated: expected " + std::to_string(header->payload_bytes) +
                                            " payload bytes, found " + std::to_string(found));
  check(found == header->payload_bytes, name + ": trailing bytes: expected " +
                                            std::to_string(header->payload_bytes) + " payload bytes, found " +
                                            std::to_string(found));
  // Allocated only now, after the payload has been seen to be all there.
  at::Tensor out = at::empty(header->dims, at::TensorOptions().dtype(header->dtype));
  copy_big_endian(static_cast<unsigned char*>(out.data_ptr()), bytes + header->header_bytes,
                  static_cast<size_t>(out.numel()), out.element_size());
  return out;
}

at::Tensor read_idx(const std::string& path) {
  std::vector<unsigned char> data = read_file_bytes(path);
  if (is_gzip(data)) data = gunzip(data, path);
  return parse_idx(data.data(), data.size(), path);
}

void write_idx(const std::string& path, const at::Tensor& tensor, bool gzip) {
  check(tensor.defined(), path + ": cannot write an undefined tensor");
  const std::optional<unsigned char> code = code_of_dtype(tensor.scalar_type());
  check(code.has_value(), path + ": unsupported dtype " + std::string(c10::toString(tensor.scalar_type())) +
                              " for IDX (valid: uint8, int8, int16, int32, float32, float64)");
  const int64_t ndim = tensor.dim();
  check(ndim >= 1 && ndim <= kMaxDims,
        path + ": IDX holds 1 to 8 dimensions, the tensor has " + std::to_string(ndim));
  for (int64_t size : tensor.sizes()) {
    check(size <= int64_t{0xFFFFFFFF}, path + ": dimension " + std::to_string(size) + " exceeds 2^32 - 1");
  }
  check(static_cast<uint64_t>(tensor.nbytes()) <= kMaxPayloadBytes, path + ": tensor exceeds 2^40 bytes");

  const at::Tensor src = tensor.to(at::kCPU).contiguous();
  std::vector<unsigned char> buffer(4 + 4 * ndim);
  buffer[0] = 0;
  buffer[1] = 0;
  buffer[2] = *code;
  buffer[3] = static_cast<unsigned char>(ndim);
  for (int64_t d = 0; d < ndim; ++d) {
    const auto v = static_cast<uint32_t>(src.size(d));
    for (int b = 0; b < 4; ++b) buffer[4 + 4 * d + b] = static_cast<unsigned char>(v >> (24 - 8 * b));
  }

  Sink sink(path, gzip);  // outside the try: a file that could not be opened is not ours to remove
  try {
    sink.write(buffer.data(), buffer.size());
    // Converted in chunks, so writing never doubles the tensor's memory.
    const size_t width = src.element_size();
    const size_t per_chunk = kIoChunk / width;
    const auto* data = static_cast<const unsigned char*>(src.data_ptr());
    buffer.resize(per_chunk * width);
    for (size_t done = 0, total = static_cast<size_t>(src.numel()); done < total; done += per_chunk) {
      const size_t count = std::min(per_chunk, total - done);
      copy_big_endian(buffer.data(), data + done * width, count, width);
      sink.write(buffer.data(), count * width);
    }
    sink.close();
  } catch (const Error&) {
    std::remove(path.c_str());  // no half-written file left behind
    throw;
  }
}

/// Reads the whole file; the buffer grows only as bytes arrive (reserved up to the file's real size).
std::vector<unsigned char> read_file_bytes(const std::string& path) {
  errno = 0;
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  check(file != nullptr, path + ": cannot open for reading (" + errno_text() + ")");
  struct stat info {};
  check(::fstat(::fileno(file.get()), &info) == 0, path + ": cannot stat (" + errno_text() + ")");
  check(!S_ISDIR(info.st_mode), path + ": is a directory, not a file");
  std::vector<unsigned char> data;
  // Only a regular file's size is trustworthy (pipes and devices report 0 or nonsense).
  if (S_ISREG(info.st_mode) && info.st_size > 0) data.reserve(static_cast<size_t>(info.st_size));
  while (true) {
    const size_t old_size = data.size();
    data.resize(old_size + kIoChunk);
    const size_t got = std::fread(data.data() + old_size, 1, kIoChunk, file.get());
    data.resize(old_size + got);
    if (got < kIoChunk) break;
  }
  check(!std::ferror(file.get()), path + ": read error (" + errno_text() + ")");
  return data;
}


}  // namespace flatmin::data
