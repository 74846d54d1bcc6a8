// The caching allocator's policy (see core/caching_allocator.h for the why).
#include "core/caching_allocator.h"

#include <bit>
#include <limits>

#include "core/error.h"

namespace mmg {

size_t device_size_class(size_t n) {
  constexpr size_t kSmall = 512, kSmallLimit = size_t{1} << 20;
  n = std::max<size_t>(n, 1);
  if (n <= kSmallLimit) return (n + kSmall - 1) / kSmall * kSmall;
  if (n > std::numeric_limits<size_t>::max() / 2) return n;  // absurd sizes: no rounding (and no overflow)
  const size_t step = std::bit_floor(n) / 8;  // eight classes per power of two
  return (n + step - 1) / step * step;
}

std::string format_bytes(size_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 6) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.2f} {}", v, units[u]);
}

CachingAllocator::CachingAllocator(std::string device_name, Backend backend)
    : device_name_(std::move(device_name)), backend_(std::move(backend)) {}

void* CachingAllocator::allocate(size_t nbytes, size_t* capacity) {
  const size_t cls = device_size_class(nbytes);
  *capacity = cls;
  std::unique_lock<std::mutex> lock(mu_);
  void* p = nullptr;
  auto it = free_.find(cls);
  if (it != free_.end() && !it->second.empty()) {
    p = it->second.back();  // the most recently freed block of the class
    it->second.pop_back();
    stats_.cached -= cls;
    --stats_.cached_blocks;
    ++stats_.hits;
  } else {
    ++stats_.misses;
    p = backend_.malloc(cls);
    if (p == nullptr) {  // the idle blocks may be what the device is missing
      release_idle_locked();
      p = backend_.malloc(cls);
    }
    if (p == nullptr) {
      const DeviceMemoryStats s = stats_;
      lock.unlock();
      const std::string device_says = backend_.describe ? backend_.describe() : std::string("no report from the device");
      MMG_FAIL("{}: out of memory: asked for {} ({} bytes); this process holds {} in live tensors and {} reserved "
               "in all (its idle cached blocks were returned to the device before retrying); {}",
               device_name_, format_bytes(nbytes), nbytes, format_bytes(s.allocated), format_bytes(s.reserved),
               device_says);
    }
    stats_.reserved += cls;
    stats_.peak_reserved = std::max(stats_.peak_reserved, stats_.reserved);
  }
  stats_.allocated += cls;
  stats_.peak_allocated = std::max(stats_.peak_allocated, stats_.allocated);
  ++stats_.live_blocks;
  return p;
}

void CachingAllocator::deallocate(void* p, size_t capacity) {
  std::lock_guard<std::mutex> lock(mu_);
  free_[capacity].push_back(p);
  stats_.allocated -= capacity;
  --stats_.live_blocks;
  stats_.cached += capacity;
  ++stats_.cached_blocks;
}

void CachingAllocator::release_idle_locked() {
  for (auto& [cls, blocks] : free_) {
    for (void* p : blocks) backend_.free(p);
    stats_.reserved -= cls * blocks.size();
  }
  free_.clear();
  stats_.cached = 0;
  stats_.cached_blocks = 0;
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  release_idle_locked();
}

DeviceMemoryStats CachingAllocator::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_allocated = stats_.allocated;
  stats_.peak_reserved = stats_.reserved;
}

}  // namespace mmg
