// Dropout: during training, zero each element with probability p and scale the others by
// 1/(1−p), so the expected value of every element is unchanged. The mask is drawn from a
// Philox generator (kernels/dropout.h), so a seed reproduces it on any device: a CUDA tensor
// gets the same mask from kernels/dropout.h as a CPU tensor with the same (seed, offset).
#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "core/ops/device_checks.h"
#include "core/profile.h"
#include "core/rng.h"
#include "kernels/cuda/runtime.h"
#include "kernels/dropout.h"

namespace mmg {

// y = x · m,  m_i = keep_i / (1−p);  ∂L/∂x = ∂L/∂y · m with the same saved m.
// Identity (x itself) when !training or p = 0; all zeros when p = 1. Reserves x.numel()
// counters from the generator (the default one when gen is null) on every draw.
Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  MMG_PROFILE_OP("dropout");
  MMG_CHECK(x.defined(), "dropout: undefined tensor argument");
  MMG_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability p must be in [0, 1], got {} (input {})", p,
            shape_str(x.shape()));
  MMG_CHECK(is_floating(x.dtype()), "dropout: needs a floating dtype, got {} {}", dtype_name(x.dtype()),
            shape_str(x.shape()));
  if (!training || p == 0.0) return x;
  const bool cuda = on_cuda("dropout", x);  // before the draw: a refused call reserves nothing
  Generator& g = gen ? *gen : default_generator();
  uint64_t seed = g.seed(), base = g.reserve(static_cast<uint64_t>(x.numel()));
  DType cd = compute_dtype(x.dtype());
  Tensor xc = x.detach().to(cd).contiguous();
  Tensor out = empty_like(xc), mask = empty_like(xc);
  double scale = p < 1.0 ? 1.0 / (1.0 - p) : 0.0;
  visit_float(cd, "dropout", [&]<class T>() {
    if (cuda) {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(xc.device().index);
        cuda::dropout_forward<T>(xc.data<T>(), out.data<T>(), mask.data<T>(), xc.numel(), seed, base,
                                 static_cast<float>(p), static_cast<T>(scale));
      }
      return;
    }
    cpu::dropout_forward<T>(xc.data<T>(), out.data<T>(), mask.data<T>(), xc.numel(), seed, base,
                            static_cast<float>(p), static_cast<T>(scale));
  });
  return record_op("dropout", out.to(x.dtype()), {x}, [mask](const Tensor& gy) -> Grads { return {mul(gy, mask)}; });
}

}  // namespace mmg
