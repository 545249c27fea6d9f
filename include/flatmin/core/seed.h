#pragma once
/// Independent, reproducible seeds for the streams of one run (model init, data split, shuffling, noise)
/// derived from a single user seed, so that changing one stream's consumption never shifts another.

#include <cstdint>

namespace flatmin {

enum class SeedStream : uint64_t { kModelInit = 1, kDataSplit = 2, kShuffle = 3, kNoise = 4, kAugment = 5 };

/// SplitMix64 finaliser of (seed, stream): a well-mixed 64-bit value, different for every stream.
constexpr uint64_t derive_seed(uint64_t seed, SeedStream stream) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (static_cast<uint64_t>(stream) + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace flatmin
