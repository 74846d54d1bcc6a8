// layer_norm over the trailing `normalized_shape` dims, on the fused kernels
// (kernels/layer_norm.h).
//
// x [..., *normalized_shape] is seen as rows × cols with cols = numel(normalized_shape):
//   y = (x − μ)/√(σ² + eps) ⊙ weight + bias   per row (biased variance, as PyTorch)
// The forward saves each row's μ and rstd = 1/√(σ² + eps); the backward kernel uses them to
// give dx, and dweight/dbias summed over rows (deterministically, whatever the thread count).
// Mixed dtypes promote like arithmetic; bf16/f16 are computed in f32 and returned as is.
// On CUDA the same rows go to kernels/cuda/layer_norm.h, in the version the kernel lab's
// family "layer_norm" names (core/kernel_versions.h) when each kernel runs.
#include <cmath>

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/kernel_versions.h"
#include "core/ops.h"
#include "core/ops/elementwise_impl.h"
#include "kernels/cuda/layer_norm.h"
#include "kernels/cuda/runtime.h"
#include "kernels/layer_norm.h"

namespace mmg {

// weight or bias: undefined, or a floating tensor of exactly normalized_shape, on x's device.
static void check_affine(const char* what, const Tensor& p, const Tensor& x, const Shape& normalized_shape) {
  if (!p.defined()) return;
  MMG_CHECK(is_floating(p.dtype()), "layer_norm: {} needs a floating dtype, got {} {}", what, dtype_name(p.dtype()),
            shape_str(p.shape()));
  MMG_CHECK(p.shape() == normalized_shape, "layer_norm: {} has shape {} but normalized_shape is {}", what,
            shape_str(p.shape()), shape_str(normalized_shape));
  check_same_device("layer_norm", x, p);
}

Tensor layer_norm(const Tensor& x_in, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  MMG_CHECK(x_in.defined(), "layer_norm: undefined tensor argument");
  const Tensor x = autocast_to_f32(x_in);
  MMG_CHECK(is_floating(x.dtype()), "layer_norm: needs a floating dtype, got {} {}", dtype_name(x.dtype()),
            shape_str(x.shape()));
  const int64_t k = static_cast<int64_t>(normalized_shape.size());
  MMG_CHECK(k >= 1, "layer_norm: normalized_shape must name at least one dim (input {})", shape_str(x.shape()));
  bool trailing = k <= x.dim();
  for (int64_t i = 0; trailing && i < k; ++i) trailing = x.size(x.dim() - k + i) == normalized_shape[i];
  MMG_CHECK(trailing, "layer_norm: input {} does not end with normalized_shape {}", shape_str(x.shape()),
            shape_str(normalized_shape));
  const int64_t cols = numel_of(normalized_shape);
  MMG_CHECK(cols > 0, "layer_norm: normalized_shape {} has no elements to normalise", shape_str(normalized_shape));
  MMG_CHECK(eps >= 0 && std::isfinite(eps), "layer_norm: eps must be finite and >= 0, got {}", eps);
  check_affine("weight", weight, x, normalized_shape);
  check_affine("bias", bias, x, normalized_shape);

  DType result = x.dtype();
  if (weight.defined()) result = promote_types(result, weight.dtype());
  if (bias.defined()) result = promote_types(result, bias.dtype());
  const DType compute = compute_dtype(result);
  const int64_t rows = x.numel() / cols;

  auto prepare = [compute](const Tensor& t) { return t.defined() ? t.detach().to(compute).contiguous() : Tensor(); };
  Tensor xc = prepare(x), wc = prepare(weight), bc = prepare(bias);
  const Device device = x.device();
  const bool cuda = on_cuda("layer_norm", x);
  Tensor y = empty(x.shape(), {.dtype = compute, .device = device});
  Tensor mean = empty({rows}, {.dtype = compute, .device = device}), rstd = empty({rows}, {.dtype = compute, .device = device});
  visit_float(compute, "layer_norm", [&]<class T>() {
    if (cuda) {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(device.index);
        auto* kernel = kernel_version("layer_norm") == 2 ? cuda::layer_norm_forward_v2<T> : cuda::layer_norm_forward<T>;
        kernel(xc.data<T>(), wc.defined() ? wc.data<T>() : nullptr, bc.defined() ? bc.data<T>() : nullptr, y.data<T>(),
               mean.data<T>(), rstd.data<T>(), rows, cols, static_cast<T>(eps));
      }
      return;
    }
    cpu::layer_norm_forward<T>(xc.data<T>(), wc.defined() ? wc.data<T>() : nullptr,
                               bc.defined() ? bc.data<T>() : nullptr, y.data<T>(), mean.data<T>(), rstd.data<T>(),
                               rows, cols, static_cast<T>(eps));
  });
  Tensor out = y.to(result);

  // Backward: only the gradients some input asks for are computed.
  const bool need_x = x.requires_grad();
  const bool need_w = weight.defined() && weight.requires_grad();
  const bool need_b = bias.defined() && bias.requires_grad();
  const DType x_dtype = x.dtype(), w_dtype = weight.defined() ? weight.dtype() : result,
              b_dtype = bias.defined() ? bias.dtype() : result;
  const Shape x_shape = x.shape();
  return record_op("layer_norm", out, {x, weight, bias},
                   [=](const Tensor& g) -> Grads {
                     Tensor gc = g.to(compute).contiguous();
                     check_same_device("layer_norm", xc, gc);
                     const TensorOptions opts{.dtype = compute, .device = device};
                     Tensor dx = need_x ? empty(x_shape, opts) : Tensor();
                     Tensor dw = need_w ? empty(normalized_shape, opts) : Tensor();
                     Tensor db = need_b ? empty(normalized_shape, opts) : Tensor();
                     visit_float(compute, "layer_norm", [&]<class T>() {
                       auto ptr = [](const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; };
                       if (cuda) {
                         if constexpr (kWithCuda) {
                           // Scratch for the per-row-block partial sums of dγ/dβ.
                           Tensor work = empty({cuda::layer_norm_backward_workspace(rows, cols)}, opts);
                           cuda::DeviceGuard guard(device.index);
                           auto* kernel = kernel_version("layer_norm") == 2 ? cuda::layer_norm_backward_v2<T>
                                                                            : cuda::layer_norm_backward<T>;
                           kernel(xc.data<T>(), ptr(wc), mean.data<T>(), rstd.data<T>(), gc.data<T>(), ptr(dx),
                                  ptr(dw), ptr(db), rows, cols, work.data<T>());
                         }
                         return;
                       }
                       cpu::layer_norm_backward<T>(xc.data<T>(), ptr(wc), mean.data<T>(), rstd.data<T>(),
                                                   gc.data<T>(), ptr(dx), ptr(dw), ptr(db), rows, cols);
                     });
                     return {need_x ? dx.to(x_dtype) : Tensor(), need_w ? dw.to(w_dtype) : Tensor(),
                             need_b ? db.to(b_dtype) : Tensor()};
                   });
}

}  // namespace mmg
