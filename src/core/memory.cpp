#include "flatmin/core/memory.h"

#include <atomic>
#include <mutex>
#include <unordered_map>

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
  c10::DataPtr allocate(size_t n) const override {
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
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
};

}  // namespace

MemoryCounter& MemoryCounter::install() {
  static MemoryCounter* counter = [] {
    static CountingAllocator allocator;
    c10::SetCPUAllocator(&allocator, /*priority=*/10);
    return new MemoryCounter();
  }();
  return *counter;
}

int64_t MemoryCounter::live() const { return live_bytes.load(); }
int64_t MemoryCounter::peak() const { return peak_bytes.load(); }
void MemoryCounter::reset_peak() { peak_bytes.store(live_bytes.load()); }

}  // namespace flatmin
