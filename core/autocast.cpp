#include "core/autocast.h"

#include <atomic>

#include "core/error.h"
#include "kernels/gemm.h"

namespace mmg {

static thread_local std::optional<DType> g_autocast;

AutocastGuard::AutocastGuard(DType low, bool enabled) : previous_(g_autocast) {
  MMG_CHECK(low == DType::bf16 || low == DType::f16, "autocast: the low-precision dtype must be bf16 or f16, got {}",
            dtype_name(low));
  g_autocast = enabled ? std::optional<DType>(low) : std::nullopt;
}

AutocastGuard::~AutocastGuard() { g_autocast = previous_; }

std::optional<DType> autocast_dtype() { return g_autocast; }

Tensor autocast_to_low(const Tensor& x) {
  if (!g_autocast || !x.defined() || x.dtype() != DType::f32) return x;
  return x.to(*g_autocast);
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
