#pragma once
/// Counting LibTorch's CPU memory: how many tensor bytes are live, and the peak since a reset. The memory
/// figures of bench_step (and the memory tests) come from it: a method's extra memory is counted, not guessed.

#include <cstdint>

namespace flatmin {

class MemoryCounter {
 public:
  /// Installs the counting allocator as LibTorch's CPU allocator (once; later calls return the same
  /// counter). Tensors allocated before keep their own deleters and are not counted. Costs a lock per
  /// allocation: for measurement, not for training.
  static MemoryCounter& install();

  /// Whether allocations are seen at all: install() checks it with a probe tensor. When false, live() and
  /// peak() stay 0 and a report must say "not counted" rather than print zeros.
  bool counting() const { return counting_; }
  int64_t live() const;  ///< bytes of CPU tensor storage allocated through it and not yet freed
  int64_t peak() const;  ///< the largest `live()` since install() or the last reset_peak()
  void reset_peak();     ///< peak ← live

 private:
  MemoryCounter() = default;
  bool counting_ = false;
};

}  // namespace flatmin
