#include "flatmin/core/memory.h"

#include <atomic>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include <ATen/ATen.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

namespace flatmin {
namespace {

std::mutex sizes_mutex;
std::unordered_map<void*, size_t> sizes;
std::atomic<int64_t> live_bytes{0}, peak_bytes{0};

void release(void* data) {
  size_t n = 0;
  {
    std::lock_guard<std::mutex> lock(sizes_mutex);
    auto it = sizes.find(data);
    if (it != sizes.end()) {
      n = it->second;
      sizes.erase(it);
    }
  }
  live_bytes.fetch_sub(static_cast<int64_t>(n));
  c10::free_cpu(data);
}

// Memory comes from c10's own aligned allocation; data and context are the same pointer, as raw_allocate
// (used by convolutions) requires.
class CountingAllocator final : public c10::Allocator {
 public:
  // LibTorch 2.3 made allocate() non-const and added copy_data() (pure virtual): both forms of allocate
  // and copy_data are declared, without `override`, so that each LibTorch overrides the ones it has.
  c10::DataPtr allocate(size_t n) const { return counted_allocation(n); }
  c10::DataPtr allocate(size_t n) { return counted_allocation(n); }
  void copy_data(void* dest, const void* src, std::size_t count) const {
    if (count > 0) std::memcpy(dest, src, count);
  }
  c10::DeleterFnPtr raw_deleter() const { return &release; }

 private:
  static c10::DataPtr counted_allocation(size_t n) {
    void* data = c10::alloc_cpu(n);
    {
      std::lock_guard<std::mutex> lock(sizes_mutex);
      sizes[data] = n;
    }
    const int64_t live = live_bytes.fetch_add(static_cast<int64_t>(n)) + static_cast<int64_t>(n);
    int64_t peak = peak_bytes.load();
    while (live > peak && !peak_bytes.compare_exchange_weak(peak, live)) {
    }
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }
};

// Whether tensors created now are counted: LibTorch may serve CPU tensors from an allocator of its own that
// SetCPUAllocator does not replace. A 1 MiB tensor must move the count by at least 1 MiB.
bool probe_counts() {
  const int64_t before = live_bytes.load();
  const at::Tensor probe = at::empty({1 << 18}, at::TensorOptions().dtype(at::kFloat));
  return live_bytes.load() - before >= static_cast<int64_t>(probe.nbytes());
}

}  // namespace

MemoryCounter& MemoryCounter::install() {
  static MemoryCounter* counter = [] {
    static CountingAllocator allocator;
    c10::SetCPUAllocator(&allocator, /*priority=*/10);
    auto* created = new MemoryCounter();
    created->counting_ = probe_counts();
    return created;
  }();
  return *counter;
}

int64_t MemoryCounter::live() const { return live_bytes.load(); }
int64_t MemoryCounter::peak() const { return peak_bytes.load(); }
void MemoryCounter::reset_peak() { peak_bytes.store(live_bytes.load()); }

}  // namespace flatmin
