// The pinned-memory pool's policy (see core/pinned_memory.h for the why).
#include "core/pinned_memory.h"

#include <algorithm>
#include <cstddef>
#include <exception>

#include "core/caching_allocator.h"
#include "core/error.h"

namespace mmg {

PinnedPool::PinnedPool(Backend backend, size_t cache_limit)
    : backend_(std::move(backend)), cache_limit_(cache_limit) {}

PinnedPool::~PinnedPool() {
  try {
    empty_cache();
  } catch (const std::exception&) {  // a destructor must not throw: what CUDA refused to free is lost
  }
}

// Every copy that read the block has run.
bool PinnedPool::ready_locked(const Block& b) {
  for (const auto& [device, fence] : b.fences)
    if (!backend_.done(fence)) return false;
  return true;
}

void* PinnedPool::allocate(size_t nbytes, size_t* capacity) {
  const size_t cls = device_size_class(nbytes);
  *capacity = cls;
  std::lock_guard<std::mutex> lock(mu_);
  // The oldest idle block of the class whose copies have run (the oldest is the likeliest).
  std::vector<void*>& idle = free_[cls];
  for (auto it = idle.begin(); it != idle.end(); ++it) {
    Block& b = blocks_.at(*it);
    if (!ready_locked(b)) continue;
    void* p = *it;
    idle.erase(it);
    b.live = true;
    stats_.cached -= cls;
    --stats_.cached_blocks;
    ++stats_.hits;
    stats_.allocated += cls;
    stats_.peak_allocated = std::max(stats_.peak_allocated, stats_.allocated);
    ++stats_.live_blocks;
    return p;
  }
  ++stats_.misses;
  void* p = backend_.malloc(cls);
  if (p == nullptr) {  // the idle blocks may be what the system is missing
    release_ready_locked();
    p = backend_.malloc(cls);
  }
  if (p == nullptr) return nullptr;
  blocks_[p] = Block{cls, true, {}};
  stats_.reserved += cls;
  stats_.peak_reserved = std::max(stats_.peak_reserved, stats_.reserved);
  stats_.allocated += cls;
  stats_.peak_allocated = std::max(stats_.peak_allocated, stats_.allocated);
  ++stats_.live_blocks;
  return p;
}

void PinnedPool::deallocate(void* block) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = blocks_.find(block);
  MMG_CHECK(it != blocks_.end() && it->second.live, "pinned memory: {} is not a live block of the pool", block);
  Block& b = it->second;
  b.live = false;
  free_[b.size].push_back(block);
  stats_.allocated -= b.size;
  --stats_.live_blocks;
  stats_.cached += b.size;
  ++stats_.cached_blocks;
  if (stats_.cached <= cache_limit_) return;
  // Called from storage destructors, which must not throw: if CUDA fails while blocks are
  // returned, they stay cached and the next call that checks CUDA reports the error.
  try {
    release_ready_locked(cache_limit_);
  } catch (const std::exception&) {
  }
}

void PinnedPool::record_use(void* block, int device) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = blocks_.find(block);
  MMG_CHECK(it != blocks_.end() && it->second.live, "pinned memory: {} is not a live block of the pool", block);
  std::vector<std::pair<int, void*>>& fences = it->second.fences;
  auto f = std::find_if(fences.begin(), fences.end(), [device](const auto& df) { return df.first == device; });
  if (f != fences.end()) {
    f->second = backend_.record(device, f->second);  // one stream per device: the new mark passes after the old
  } else {
    fences.emplace_back(device, backend_.record(device, nullptr));
  }
  ++stats_.fences;
}

bool PinnedPool::owns(const void* p) {
  std::lock_guard<std::mutex> lock(mu_);
  return blocks_.count(const_cast<void*>(p)) != 0;
}

// Those still read by a copy stay; the oldest of each class go first. Each block leaves the
// pool's books before it is returned, so a CUDA failure part-way leaves them consistent (the
// block is then lost, not dangling).
void PinnedPool::release_ready_locked(size_t keep) {
  for (auto& [cls, idle] : free_) {
    for (size_t i = 0; i < idle.size() && stats_.cached > keep;) {
      void* p = idle[i];
      auto it = blocks_.find(p);
      if (!ready_locked(it->second)) {
        ++i;
        continue;
      }
      const std::vector<std::pair<int, void*>> fences = std::move(it->second.fences);
      idle.erase(idle.begin() + static_cast<std::ptrdiff_t>(i));
      blocks_.erase(it);
      stats_.reserved -= cls;
      stats_.cached -= cls;
      --stats_.cached_blocks;
      for (const auto& [device, fence] : fences) backend_.destroy(fence);
      backend_.free(p);
    }
  }
}

void PinnedPool::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [cls, idle] : free_)
    for (void* p : idle)
      for (const auto& [device, fence] : blocks_.at(p).fences) backend_.wait(fence);
  release_ready_locked();
}

PinnedMemoryStats PinnedPool::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  PinnedMemoryStats s = stats_;
  s.busy_blocks = 0;
  for (const auto& [cls, idle] : free_)
    for (void* p : idle) s.busy_blocks += ready_locked(blocks_.at(p)) ? 0 : 1;
  return s;
}

void PinnedPool::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_allocated = stats_.allocated;
  stats_.peak_reserved = stats_.reserved;
}

}  // namespace mmg
