#pragma once
/// IDX files (the MNIST / Fashion-MNIST container): a 4-byte magic {0, 0, type, ndim}, ndim big-endian
/// uint32 dimensions, then the payload in big-endian element order. gzip-compressed files are detected by
/// their own magic bytes, not by the file name.

#include <string>

#include <ATen/Tensor.h>

namespace flatmin::data {

/// Reads an IDX file (plain or gzip). Returns a contiguous CPU tensor with the file's dimensions and
/// element type (uint8, int8, int16, int32, float32, float64).
/// Throws flatmin::Error "<path>: <problem>" when the file cannot be opened, the magic number is wrong,
/// the type code is unknown, ndim is 0 or above 8, the payload would exceed 2^40 bytes, the payload is
/// shorter (truncated) or longer (trailing bytes) than the header says, or the gzip stream is corrupt or
/// truncated. A dimension of 0 is legal (with an empty payload); concatenated gzip members are one stream.
/// Never allocates more than the payload actually present (a lying header cannot exhaust memory).
at::Tensor read_idx(const std::string& path);

/// Parses an IDX image held in memory (what read_idx does after reading the file); `name` is used in
/// error messages. Exposed for the fuzzer and for tests.
at::Tensor parse_idx(const unsigned char* bytes, size_t size, const std::string& name);

/// Writes `tensor` (one of the IDX element types, 1 to 8 dimensions) as an IDX file, gzip-compressed
/// when `gzip` is true. Throws flatmin::Error on an unsupported dtype or an I/O failure.
void write_idx(const std::string& path, const at::Tensor& tensor, bool gzip = false);

}  // namespace flatmin::data
