// IDX reader/writer: bit-exact round trips, the big-endian layout, and rejection of malformed files.
#include <chrono>
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "flatmin/core/error.h"
#include "flatmin/data/dataset.h"
#include "flatmin/data/idx.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace idx_test {

namespace fs = std::filesystem;
using flatmin::data::parse_idx;
using flatmin::data::read_idx;
using flatmin::data::write_idx;

namespace {

using Bytes = std::vector<unsigned char>;

/// A fresh directory under the system temp dir, removed with its contents at the end of the test.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("flatmin_test_idx_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

void write_bytes(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

uint32_t crc32_of(const Bytes& data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char byte : data) {
    crc ^= byte;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

void push_le32(Bytes& out, uint32_t v) {
  for (int k = 0; k < 4; ++k) out.push_back(static_cast<unsigned char>(v >> (8 * k)));
}

/// A gzip member holding `raw` in stored (uncompressed) deflate blocks: lets the tests wrap arbitrary,
/// malformed IDX images without linking zlib themselves (the library links it privately).
Bytes gzip_bytes(const Bytes& raw) {
  Bytes out = {0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff};
  size_t pos = 0;
  do {
    const size_t n = std::min<size_t>(raw.size() - pos, 65535);
    const bool final_block = pos + n == raw.size();
    out.push_back(final_block ? 1 : 0);  // BFINAL, BTYPE 00 (stored)
    out.push_back(static_cast<unsigned char>(n));
    out.push_back(static_cast<unsigned char>(n >> 8));
    out.push_back(static_cast<unsigned char>(~n));
    out.push_back(static_cast<unsigned char>(~n >> 8));
    out.insert(out.end(), raw.begin() + static_cast<std::ptrdiff_t>(pos),
               raw.begin() + static_cast<std::ptrdiff_t>(pos + n));
    pos += n;
  } while (pos < raw.size());
  push_le32(out, crc32_of(raw));
  push_le32(out, static_cast<uint32_t>(raw.size()));
  return out;
}

/// `t` as a really compressed IDX file (by the library's own writer, i.e. zlib).
Bytes deflated_idx(const at::Tensor& t) {
  TempDir dir;
  const std::string path = dir.file("deflated.gz");
  write_idx(path, t, /*gzip=*/true);
  return read_bytes(path);
}

Bytes deflated_idx(int64_t n) { return deflated_idx(at::arange(n, at::kInt).remainder(7).to(at::kByte)); }

/// An IDX header: magic, type code, ndim, big-endian dims.
Bytes idx_header(unsigned char type, const std::vector<uint32_t>& dims) {
  Bytes b = {0, 0, type, static_cast<unsigned char>(dims.size())};
  for (uint32_t d : dims) {
    for (int k = 3; k >= 0; --k) b.push_back(static_cast<unsigned char>(d >> (8 * k)));
  }
  return b;
}

Bytes uint8_idx(const std::vector<uint32_t>& dims, size_t payload) {
  Bytes b = idx_header(0x08, dims);
  for (size_t i = 0; i < payload; ++i) b.push_back(static_cast<unsigned char>(i * 7));
  return b;
}

/// Expects read_idx(path) to throw a flatmin::Error whose message names the file and says `keyword`.
void expect_rejected(const std::string& path, const std::string& keyword) {
  try {
    read_idx(path);
    ADD_FAILURE() << path << ": accepted, expected an error mentioning '" << keyword << "'";
  } catch (const flatmin::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << "message does not name the file: " << msg;
    EXPECT_NE(msg.find(keyword), std::string::npos) << "message lacks '" << keyword << "': " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "message is not one line: " << msg;
  }
}

void expect_rejected_bytes(const Bytes& bytes, const std::string& keyword, bool gzip = false) {
  TempDir dir;
  const std::string path = dir.file(gzip ? "bad.idx.gz" : "bad.idx");
  write_bytes(path, gzip ? gzip_bytes(bytes) : bytes);
  expect_rejected(path, keyword);
}

/// A tensor whose every bit is random: NaN payloads, infinities, denormals and -0 all occur for floats.
at::Tensor random_bits(at::IntArrayRef shape, at::ScalarType dtype, uint64_t seed) {
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
  std::mt19937_64 rng(seed);
  auto* p = static_cast<unsigned char*>(t.data_ptr());
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<unsigned char>(rng());
  return t;
}

bool bit_equal(const at::Tensor& a, const at::Tensor& b) {
  return a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes() && a.is_contiguous() &&
         b.is_contiguous() && (a.nbytes() == 0 || std::memcmp(a.data_ptr(), b.data_ptr(), a.nbytes()) == 0);
}

struct RoundTripCase {
  at::ScalarType dtype;
  bool gzip;
};

class IdxRoundTrip : public ::testing::TestWithParam<RoundTripCase> {};

TEST_P(IdxRoundTrip, BitExactForEveryShape) {
  const auto [dtype, gzip] = GetParam();
  TempDir dir;
  const std::vector<std::vector<int64_t>> shapes = {
      {1}, {17}, {3, 5}, {4, 3, 7}, {2, 3, 4, 5}, {2, 1, 3, 1, 2}, {1, 2, 1, 2, 1, 2, 1, 3}, {0}, {3, 0, 2}};
  uint64_t seed = 1;
  for (const auto& shape : shapes) {
    const at::Tensor t = random_bits(shape, dtype, seed++);
    const std::string path = dir.file("t" + std::to_string(seed) + (gzip ? ".gz" : ""));
    write_idx(path, t, gzip);
    const Bytes raw = read_bytes(path);
    ASSERT_GE(raw.size(), 2u);
    EXPECT_EQ(raw[0] == 0x1f && raw[1] == 0x8b, gzip) << "gzip magic present iff requested";
    const at::Tensor back = read_idx(path);
    EXPECT_TRUE(bit_equal(t, back)) << "shape " << t.sizes() << " dtype " << dtype;
  }
}

TEST_P(IdxRoundTrip, NonContiguousInputIsWrittenInLogicalOrder) {
  const auto [dtype, gzip] = GetParam();
  TempDir dir;
  const at::Tensor t = random_bits({6, 5}, dtype, 99).t();  // [5, 6], transposed strides
  ASSERT_FALSE(t.is_contiguous());
  const std::string path = dir.file("t.idx");
  write_idx(path, t, gzip);
  EXPECT_TRUE(bit_equal(t.contiguous(), read_idx(path)));
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, IdxRoundTrip,
                         ::testing::Values(RoundTripCase{at::kByte, false}, RoundTripCase{at::kByte, true},
                                           RoundTripCase{at::kChar, false}, RoundTripCase{at::kChar, true},
                                           RoundTripCase{at::kShort, false}, RoundTripCase{at::kShort, true},
                                           RoundTripCase{at::kInt, false}, RoundTripCase{at::kInt, true},
                                           RoundTripCase{at::kFloat, false}, RoundTripCase{at::kFloat, true},
                                           RoundTripCase{at::kDouble, false}, RoundTripCase{at::kDouble, true}),
                         [](const auto& info) {
                           return std::string(c10::toString(info.param.dtype)) +
                                  (info.param.gzip ? "_gzip" : "_plain");
                         });

TEST(Idx, WritesBigEndianBytesExactly) {
  TempDir dir;
  const std::string path = dir.file("be.idx");
  write_idx(path, at::tensor({0x01020304, -2}, at::TensorOptions().dtype(at::kInt)));
  const Bytes expected = {0, 0, 0x0C, 1, 0, 0, 0, 2, 0x01, 0x02, 0x03, 0x04, 0xFF, 0xFF, 0xFF, 0xFE};
  EXPECT_EQ(read_bytes(path), expected);
}

TEST(Idx, ParsesBigEndianValues) {
  // int16 [2]: 0x0102, -1; float32 [1]: 1.5f = 0x3FC00000; float64 [1]: -2.0 = 0xC000000000000000.
  Bytes s = idx_header(0x0B, {2});
  s.insert(s.end(), {0x01, 0x02, 0xFF, 0xFF});
  const at::Tensor a = parse_idx(s.data(), s.size(), "mem");
  ASSERT_EQ(a.scalar_type(), at::kShort);
  EXPECT_EQ(a[0].item<int>(), 0x0102);
  EXPECT_EQ(a[1].item<int>(), -1);

  Bytes f = idx_header(0x0D, {1});
  f.insert(f.end(), {0x3F, 0xC0, 0x00, 0x00});
  const at::Tensor b = parse_idx(f.data(), f.size(), "mem");
  ASSERT_EQ(b.scalar_type(), at::kFloat);
  EXPECT_EQ(b[0].item<float>(), 1.5f);

  Bytes d = idx_header(0x0E, {1, 1});
  d.insert(d.end(), {0xC0, 0, 0, 0, 0, 0, 0, 0});
  const at::Tensor c = parse_idx(d.data(), d.size(), "mem");
  ASSERT_EQ(c.scalar_type(), at::kDouble);
  EXPECT_EQ(c.sizes(), at::IntArrayRef({1, 1}));
  EXPECT_EQ(c[0][0].item<double>(), -2.0);

  Bytes i8 = idx_header(0x09, {2});
  i8.insert(i8.end(), {0x80, 0x7F});
  const at::Tensor e = parse_idx(i8.data(), i8.size(), "mem");
  ASSERT_EQ(e.scalar_type(), at::kChar);
  EXPECT_EQ(e[0].item<int>(), -128);
  EXPECT_EQ(e[1].item<int>(), 127);
}

TEST(Idx, GzipIsDetectedByMagicNotByName) {
  TempDir dir;
  const at::Tensor t = random_bits({4, 4}, at::kByte, 5);
  write_idx(dir.file("compressed_without_suffix"), t, /*gzip=*/true);
  write_idx(dir.file("plain_with_suffix.gz"), t, /*gzip=*/false);
  EXPECT_TRUE(bit_equal(t, read_idx(dir.file("compressed_without_suffix"))));
  EXPECT_TRUE(bit_equal(t, read_idx(dir.file("plain_with_suffix.gz"))));
}

TEST(Idx, ConcatenatedGzipMembersAreOneStream) {
  TempDir dir;
  const Bytes raw = uint8_idx({10}, 10);
  Bytes gz = gzip_bytes(Bytes(raw.begin(), raw.begin() + 7));
  const Bytes second = gzip_bytes(Bytes(raw.begin() + 7, raw.end()));
  gz.insert(gz.end(), second.begin(), second.end());
  write_bytes(dir.file("two.gz"), gz);
  const at::Tensor t = read_idx(dir.file("two.gz"));
  ASSERT_EQ(t.numel(), 10);
  EXPECT_EQ(std::memcmp(t.data_ptr(), raw.data() + 8, 10), 0);
}

TEST(Idx, ZeroDimensionIsLegalWithEmptyPayload) {
  const Bytes b = uint8_idx({0, 1000000}, 0);
  const at::Tensor t = parse_idx(b.data(), b.size(), "empty.idx");
  EXPECT_EQ(t.sizes(), at::IntArrayRef({0, 1000000}));
  expect_rejected_bytes(uint8_idx({3, 0}, 1), "trailing bytes");
}

// Found by fuzz_idx: an empty shape whose other dimensions overflow LibTorch's stride computation used to
// escape as a c10::Error. It must be a flatmin::Error like any other bad header.
TEST(IdxMalformed, EmptyShapeWithHugeOtherDimensions) {
  const Bytes b = {0x00, 0x00, 0x08, 0x05, 0x05, 0xfb, 0xfa, 0x00, 0x00, 0x00, 0x24, 0x0f,
                   0x66, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0xdc, 0x90, 0x60, 0x00};
  expect_rejected_bytes(b, "too large");
}

TEST(IdxMalformed, BadMagic) {
  Bytes b = uint8_idx({4}, 4);
  b[1] = 0x08;
  expect_rejected_bytes(b, "magic");
  b = uint8_idx({4}, 4);
  b[0] = 0x01;
  expect_rejected_bytes(b, "magic", /*gzip=*/true);
}

TEST(IdxMalformed, UnknownTypeCode) {
  for (unsigned char code : {0x00, 0x07, 0x0A, 0x0F, 0xFF}) {
    Bytes b = uint8_idx({4}, 4);
    b[2] = code;
    expect_rejected_bytes(b, "type code");
  }
}

TEST(IdxMalformed, NdimZeroOrAboveEight) {
  expect_rejected_bytes({0, 0, 0x08, 0}, "ndim");
  Bytes nine = idx_header(0x08, std::vector<uint32_t>(9, 1));
  nine.push_back(42);
  expect_rejected_bytes(nine, "ndim");
}

TEST(IdxMalformed, TruncatedHeader) {
  expect_rejected_bytes({0, 0, 0x08}, "truncated");
  expect_rejected_bytes({0, 0, 0x08, 3, 0, 0, 0, 5, 0, 0}, "truncated");
}

TEST(IdxMalformed, TruncatedPayload) {
  expect_rejected_bytes(uint8_idx({2, 5}, 7), "truncated: expected 10 payload bytes, found 7");
  Bytes f = idx_header(0x0D, {3});  // 12 payload bytes expected
  f.insert(f.end(), 11, 0);
  expect_rejected_bytes(f, "truncated: expected 12 payload bytes, found 11");
  expect_rejected_bytes(uint8_idx({2, 5}, 7), "truncated", /*gzip=*/true);
}

TEST(IdxMalformed, TrailingBytes) {
  expect_rejected_bytes(uint8_idx({2, 5}, 11), "trailing bytes");
  expect_rejected_bytes(uint8_idx({2, 5}, 11), "trailing bytes", /*gzip=*/true);
}

TEST(IdxMalformed, EmptyFile) {
  expect_rejected_bytes({}, "empty");
}

TEST(IdxMalformed, NonexistentFileAndDirectory) {
  TempDir dir;
  expect_rejected(dir.file("no_such_file.idx"), "cannot open");
  fs::create_directories(dir.file("a_directory"));
  expect_rejected(dir.file("a_directory"), "directory");
}

TEST(IdxMalformed, HugeDimensionsWithTinyPayloadFailFast) {
  const auto start = std::chrono::steady_clock::now();
  // 10^12 bytes claimed (just under the 2^40 cap), 8 present: must be "truncated", never an allocation.
  expect_rejected_bytes(uint8_idx({1000000, 1000000}, 8), "truncated: expected 1000000000000 payload bytes");
  expect_rejected_bytes(uint8_idx({1000000, 1000000}, 8), "truncated", /*gzip=*/true);
  // Past the cap, and products that overflow 64 bits.
  expect_rejected_bytes(uint8_idx({65536, 65536, 65536}, 8), "too large");
  Bytes overflow = idx_header(0x0E, std::vector<uint32_t>(8, 0xFFFFFFFFu));
  overflow.insert(overflow.end(), 16, 0);
  expect_rejected_bytes(overflow, "too large");
  expect_rejected_bytes(overflow, "too large", /*gzip=*/true);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST(IdxMalformed, GzipBombStopsAtTheDeclaredSize) {
  // A header declaring 16 bytes, then a second gzip member inflating to 64 MiB: rejected as soon as the
  // output passes the declared size (the test's time limit would catch a full inflate of a bigger one).
  Bytes bomb = gzip_bytes(uint8_idx({16}, 16));
  const Bytes zeros = deflated_idx(at::zeros({int64_t{64} << 20}, at::kByte));
  EXPECT_LT(zeros.size(), size_t{1} << 20);
  bomb.insert(bomb.end(), zeros.begin(), zeros.end());
  TempDir dir;
  write_bytes(dir.file("bomb.gz"), bomb);
  expect_rejected(dir.file("bomb.gz"), "trailing bytes");
}

TEST(IdxMalformed, TruncatedGzip) {
  for (const Bytes& gz : {deflated_idx(64 * 64), gzip_bytes(uint8_idx({64, 64}, 64 * 64))}) {
    for (size_t keep : {size_t{2}, size_t{10}, gz.size() / 2, gz.size() - 4, gz.size() - 1}) {
      TempDir dir;
      const std::string path = dir.file("cut.gz");
      write_bytes(path, Bytes(gz.begin(), gz.begin() + static_cast<std::ptrdiff_t>(keep)));
      expect_rejected(path, "truncated gzip");
    }
  }
}

TEST(IdxMalformed, CorruptGzip) {
  const Bytes gz = deflated_idx(64 * 64);
  {  // CRC-32 in the trailer no longer matches the data.
    Bytes bad = gz;
    bad[bad.size() - 8] ^= 0x5A;
    TempDir dir;
    write_bytes(dir.file("crc.gz"), bad);
    expect_rejected(dir.file("crc.gz"), "corrupt gzip");
  }
  {  // Unknown compression method in the gzip header.
    Bytes bad = gz;
    bad[2] = 0x07;
    TempDir dir;
    write_bytes(dir.file("method.gz"), bad);
    expect_rejected(dir.file("method.gz"), "corrupt gzip");
  }
  {  // Garbage after the stream's end.
    Bytes bad = gz;
    bad.insert(bad.end(), {0xDE, 0xAD, 0xBE, 0xEF});
    TempDir dir;
    write_bytes(dir.file("tail.gz"), bad);
    expect_rejected(dir.file("tail.gz"), "corrupt gzip");
  }
  {  // Scrambled deflate data: never garbage out, always an error (corrupt, or truncated when the
     // damage makes the stream look longer than the file).
    std::mt19937 rng(7);
    for (int trial = 0; trial < 20; ++trial) {
      Bytes bad = gz;
      for (size_t i = 12; i < bad.size() - 8; i += 3) bad[i] = static_cast<unsigned char>(rng());
      TempDir dir;
      write_bytes(dir.file("scrambled.gz"), bad);
      EXPECT_THROW(read_idx(dir.file("scrambled.gz")), flatmin::Error);
    }
  }
}

TEST(IdxMalformed, ParseIdxNamesTheImage) {
  const Bytes b = {1, 2, 3, 4};
  try {
    parse_idx(b.data(), b.size(), "fuzz-input-17");
    FAIL() << "accepted bad magic";
  } catch (const flatmin::Error& e) {
    EXPECT_NE(std::string(e.what()).find("fuzz-input-17: bad magic"), std::string::npos) << e.what();
  }
}

TEST(IdxWrite, RejectsWhatIdxCannotHold) {
  TempDir dir;
  const std::string path = dir.file("out.idx");
  EXPECT_THROW(write_idx(path, at::zeros({3}, at::kLong)), flatmin::Error);
  EXPECT_THROW(write_idx(path, at::zeros({3}, at::kBool)), flatmin::Error);
  EXPECT_THROW(write_idx(path, at::zeros({}, at::kByte)), flatmin::Error);
  EXPECT_THROW(write_idx(path, at::zeros(std::vector<int64_t>(9, 1), at::kByte)), flatmin::Error);
  EXPECT_THROW(write_idx(path, at::Tensor()), flatmin::Error);
  // A file that cannot be opened for writing is left alone, not deleted.
  const std::string read_only = dir.file("read_only.idx");
  write_idx(read_only, at::ones({3}, at::kByte));
  fs::permissions(read_only, fs::perms::owner_read, fs::perm_options::replace);
  if (::access(read_only.c_str(), W_OK) != 0) {  // (root may write anyway)
    EXPECT_THROW(write_idx(read_only, at::zeros({3}, at::kByte)), flatmin::Error);
    EXPECT_TRUE(fs::exists(read_only));
  }
  try {
    write_idx(dir.file("no_such_dir/out.idx"), at::zeros({3}, at::kByte));
    FAIL() << "wrote into a missing directory";
  } catch (const flatmin::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no_such_dir/out.idx: cannot open"), std::string::npos) << e.what();
  }
}

TEST(IdxFashionMnist, RealFilesHaveTheExpectedShapesAndClassCounts) {
  const std::string dir = flatmin::data::default_fashion_mnist_dir();
  // No skip: the real data is part of the setup (scripts/setup.sh installs it); its absence is a failure.
  ASSERT_TRUE(fs::exists(dir + "/train-images-idx3-ubyte.gz") || fs::exists(dir + "/train-images-idx3-ubyte"))
      << "Fashion-MNIST not installed in " << dir << " (Debian package dataset-fashion-mnist)";

  auto open = [&](const std::string& name) {
    return read_idx(fs::exists(dir + "/" + name) ? dir + "/" + name : dir + "/" + name + ".gz");
  };
  struct Part {
    const char* images;
    const char* labels;
    int64_t n;
  };
  for (const Part& part : {Part{"train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000},
                           Part{"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000}}) {
    const at::Tensor images = open(part.images);
    EXPECT_EQ(images.scalar_type(), at::kByte);
    EXPECT_EQ(images.sizes(), at::IntArrayRef({part.n, 28, 28}));
    EXPECT_GT(images.to(at::kFloat).mean().item<double>(), 50.0) << "images look blank";
    const at::Tensor labels = open(part.labels);
    EXPECT_EQ(labels.scalar_type(), at::kByte);
    ASSERT_EQ(labels.sizes(), at::IntArrayRef({part.n}));
    EXPECT_EQ(labels.max().item<int>(), 9);
    const at::Tensor counts = labels.to(at::kLong).bincount();
    ASSERT_EQ(counts.numel(), 10);
    for (int c = 0; c < 10; ++c) EXPECT_EQ(counts[c].item<int64_t>(), part.n / 10) << "class " << c;
  }
}

}  // namespace

}  // namespace idx_test
