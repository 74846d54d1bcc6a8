#include "core/autocast.h"

#include <atomic>
#include <map>
#include <memory>
#include <utility>

#include "core/autograd.h"
#include "core/error.h"
#include "kernels/gemm.h"

namespace mmg {

static thread_local std::optional<DType> g_autocast;
static thread_local int g_guard_depth = 0;  // AutocastGuards alive in this thread
static thread_local bool g_cache_enabled = true;

// ---- the weight-cast cache (see core/autocast.h) ----

namespace {

struct CastEntry {
  Tensor source;                     // keeps the weight alive, so no other tensor takes its address
  std::shared_ptr<Storage> storage;  // the storage the cast was read from, kept alive for the same reason
  uint64_t version = 0;              // its version then
  Tensor cast;                       // the low-precision copy, outside any graph
  uint64_t cast_version = 0;         // its storage's version when made (a write into it also stales it)
};

struct CastCache {
  std::map<std::pair<const TensorImpl*, DType>, CastEntry> entries;
  int64_t hits = 0, misses = 0;
};

thread_local CastCache g_cast_cache;

// A weight: what is cast again and again with the same values. Activations are new tensors
// at every use and would only fill the cache.
bool cacheable(const Tensor& x) { return g_cache_enabled && x.requires_grad() && x.is_leaf(); }

// x's values as `low`: the cached copy when x still views the bytes it was made from, else a
// fresh one (kept for the next use). Has no graph; the caller records the cast.
Tensor cached_cast(const Tensor& x, DType low) {
  CastEntry& e = g_cast_cache.entries[{x.impl(), low}];
  if (e.cast.defined() && e.storage == x.storage() && e.version == x.storage()->version() &&
      e.cast.storage()->version() == e.cast_version) {
    ++g_cast_cache.hits;
    return e.cast.detach();  // a new handle on the same bytes
  }
  ++g_cast_cache.misses;
  NoGradGuard no_grad;
  Tensor cast = x.detach().to(low);
  e = CastEntry{x, x.storage(), x.storage()->version(), cast, cast.storage()->version()};
  return e.cast.detach();
}

}  // namespace

AutocastGuard::AutocastGuard(DType low, bool enabled, bool cache)
    : previous_(g_autocast), previous_cache_(g_cache_enabled) {
  MMG_CHECK(low == DType::bf16 || low == DType::f16, "autocast: the low-precision dtype must be bf16 or f16, got {}",
            dtype_name(low));
  g_autocast = enabled ? std::optional<DType>(low) : std::nullopt;
  g_cache_enabled = cache;
  ++g_guard_depth;
}

AutocastGuard::~AutocastGuard() {
  g_autocast = previous_;
  g_cache_enabled = previous_cache_;
  if (--g_guard_depth == 0) g_cast_cache.entries.clear();
}

std::optional<DType> autocast_dtype() { return g_autocast; }

AutocastCacheStats autocast_cache_stats() {
  return {g_cast_cache.hits, g_cast_cache.misses, static_cast<int64_t>(g_cast_cache.entries.size())};
}

Tensor autocast_to_low(const Tensor& x) {
  if (!g_autocast || !x.defined() || x.dtype() != DType::f32) return x;
  if (!cacheable(x)) return x.to(*g_autocast);
  // The same node Tensor::to records: each use sends its own gradient back, converted to f32.
  return record_op("to", cached_cast(x, *g_autocast), {x}, [](const Tensor& g) -> Grads { return {g.to(DType::f32)}; });
}

Tensor autocast_to_f32(const Tensor& x) {
  if (!g_autocast || !x.defined() || (x.dtype() != DType::bf16 && x.dtype() != DType::f16)) return x;
  return x.to(DType::f32);
}

bool any_16bit(std::initializer_list<Tensor> xs) {
  for (const Tensor& x : xs)
    if (x.defined() && (x.dtype() == DType::bf16 || x.dtype() == DType::f16)) return true;
  return false;
}

static std::atomic<bool> g_allow_tf32{false};

void set_allow_tf32(bool allow) {
  g_allow_tf32 = allow;
  if constexpr (kWithCuda) cuda::set_gemm_tf32(allow);
}

bool allow_tf32() { return g_allow_tf32; }

}  // namespace mmg
