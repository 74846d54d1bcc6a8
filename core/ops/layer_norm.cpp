// layer_norm over the trailing `normalized_shape` dims, on the fused kernels
// (kernels/layer_norm.h).
//
// x [..., *normalized_shape] is seen as rows × cols with cols = numel(normalized_shape):
//   y = (x − μ)/√(σ² + eps) ⊙ weight + bias   per row (biased variance, as PyTorch)
// The forward saves each row's μ and rstd = 1/√(σ² + eps); the backward kernel uses them to
// give dx, and dweight/dbias summed over rows (deterministically, whatever the thread count).
//
// Dtypes, as PyTorch:
//  - a bf16/f16 x whose weight and bias are each absent, of x's dtype or f32 (the usual
//    mix: 16-bit activations, f32 parameters) goes to the kernels as it is. They widen each
//    element to f32 as they read it, compute in f32, and round once as they store: y and dx
//    come out in x's dtype, the saved μ and rstd are f32, dweight/dbias are summed in f32
//    and come out in each parameter's own dtype;
//  - any other mix promotes like arithmetic (f32 x with f64 weight: f64), computed in the
//    promoted dtype (bf16 x with an f16 weight: f32).
// On CUDA the same rows go to kernels/layer_norm.h, in the version the kernel lab's
// family "layer_norm" names (core/kernel_versions.h) when each kernel runs. Under autocast
// (core/autocast.h) a 16-bit x is first cast to f32 and the result is f32: layer_norm is on
// PyTorch's autocast-to-f32 list, and it keeps a transformer's residual stream in f32.
#include <cmath>

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/kernel_versions.h"
#include "core/ops.h"
#include "core/ops/elementwise_impl.h"
#include "core/profile.h"
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

// The dtypes the kernels run with: x, y, dy, dx in `act`; weight, bias and their gradients
// in `param`; μ, rstd and the dγ/dβ scratch in `stats` (acc_t of act).
struct LayerNormTypes {
  DType act, param, stats;
};

static bool is_16bit(DType t) { return t == DType::bf16 || t == DType::f16; }

static LayerNormTypes layer_norm_types(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  auto fits_16bit = [&](const Tensor& p) {
    return !p.defined() || p.dtype() == x.dtype() || p.dtype() == DType::f32;
  };
  if (is_16bit(x.dtype()) && fits_16bit(weight) && fits_16bit(bias)) {
    const bool f32_param = (weight.defined() && weight.dtype() == DType::f32) ||
                           (bias.defined() && bias.dtype() == DType::f32);
    return {x.dtype(), f32_param ? DType::f32 : x.dtype(), DType::f32};
  }
  DType result = x.dtype();
  if (weight.defined()) result = promote_types(result, weight.dtype());
  if (bias.defined()) result = promote_types(result, bias.dtype());
  const DType compute = compute_dtype(result);
  return {compute, compute, compute};
}

// f.template operator()<T, P>() for the (activation, parameter) storage types of `t`.
template <class F>
static void visit_layer_norm_types(const LayerNormTypes& t, F&& f) {
  auto with_act = [&]<class T>() {
    if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) {
      if (t.param == DType::f32) return f.template operator()<T, float>();
    }
    return f.template operator()<T, T>();
  };
  switch (t.act) {
    case DType::bf16: return with_act.template operator()<bf16>();
    case DType::f16: return with_act.template operator()<f16>();
    default: return visit_float(t.act, "layer_norm", with_act);
  }
}

Tensor layer_norm(const Tensor& x_in, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  MMG_PROFILE_OP("layer_norm");
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

  const LayerNormTypes types = layer_norm_types(x, weight, bias);
  const int64_t rows = x.numel() / cols;

  auto prepare = [](const Tensor& t, DType dt) { return t.defined() ? t.detach().to(dt).contiguous() : Tensor(); };
  Tensor xc = prepare(x, types.act), wc = prepare(weight, types.param), bc = prepare(bias, types.param);
  const Device device = x.device();
  const bool cuda = on_cuda("layer_norm", x);
  Tensor y = empty(x.shape(), {.dtype = types.act, .device = device});
  const TensorOptions stats_opts{.dtype = types.stats, .device = device};
  Tensor mean = empty({rows}, stats_opts), rstd = empty({rows}, stats_opts);
  visit_layer_norm_types(types, [&]<class T, class P>() {
    using A = acc_t<T>;
    const P* w = wc.defined() ? wc.data<P>() : nullptr;
    const P* b = bc.defined() ? bc.data<P>() : nullptr;
    if (cuda) {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(device.index);
        using Forward = void (*)(const T*, const P*, const P*, T*, A*, A*, int64_t, int64_t, A);
        const Forward kernel = kernel_version("layer_norm") == 2 ? Forward(cuda::layer_norm_forward_v2<T, P>)
                                                                 : Forward(cuda::layer_norm_forward<T, P>);
        kernel(xc.data<T>(), w, b, y.data<T>(), mean.data<A>(), rstd.data<A>(), rows, cols, static_cast<A>(eps));
      }
      return;
    }
    cpu::layer_norm_forward<T, P>(xc.data<T>(), w, b, y.data<T>(), mean.data<A>(), rstd.data<A>(), rows, cols,
                                  static_cast<A>(eps));
  });
  const Tensor& out = y;  // in act's dtype: x's own, or the promoted one

  // Backward: only the gradients some input asks for are computed.
  const bool need_x = x.requires_grad();
  const bool need_w = weight.defined() && weight.requires_grad();
  const bool need_b = bias.defined() && bias.requires_grad();
  const DType x_dtype = x.dtype(), w_dtype = weight.defined() ? weight.dtype() : types.param,
              b_dtype = bias.defined() ? bias.dtype() : types.param;
  const Shape x_shape = x.shape();
  return record_op("layer_norm", out, {x, weight, bias},
                   [=](const Tensor& g) -> Grads {
                     Tensor gc = g.to(types.act).contiguous();
                     check_same_device("layer_norm", xc, gc);
                     Tensor dx = need_x ? empty(x_shape, {.dtype = types.act, .device = device}) : Tensor();
                     const TensorOptions popts{.dtype = types.param, .device = device};
                     Tensor dw = need_w ? empty(normalized_shape, popts) : Tensor();
                     Tensor db = need_b ? empty(normalized_shape, popts) : Tensor();
                     visit_layer_norm_types(types, [&]<class T, class P>() {
                       using A = acc_t<T>;
                       T* dxp = dx.defined() ? dx.data<T>() : nullptr;
                       P* dwp = dw.defined() ? dw.data<P>() : nullptr;
                       P* dbp = db.defined() ? db.data<P>() : nullptr;
                       const P* wp = wc.defined() ? wc.data<P>() : nullptr;
                       if (cuda) {
                         if constexpr (kWithCuda) {
                           // Scratch for the per-row-block partial sums of dγ/dβ, in f32 (f64).
                           Tensor work = empty({cuda::layer_norm_backward_workspace(rows, cols)},
                                               {.dtype = types.stats, .device = device});
                           cuda::DeviceGuard guard(device.index);
                           using Backward = void (*)(const T*, const P*, const A*, const A*, const T*, T*, P*, P*,
                                                     int64_t, int64_t, A*);
                           const Backward kernel = kernel_version("layer_norm") == 2
                                                       ? Backward(cuda::layer_norm_backward_v2<T, P>)
                                                       : Backward(cuda::layer_norm_backward<T, P>);
                           kernel(xc.data<T>(), wp, mean.data<A>(), rstd.data<A>(), gc.data<T>(), dxp, dwp, dbp,
                                  rows, cols, work.data<A>());
                         }
                         return;
                       }
                       cpu::layer_norm_backward<T, P>(xc.data<T>(), wp, mean.data<A>(), rstd.data<A>(),
                                                      gc.data<T>(), dxp, dwp, dbp, rows, cols);
                     });
                     return {need_x ? dx.to(x_dtype) : Tensor(), need_w ? dw.to(w_dtype) : Tensor(),
                             need_b ? db.to(b_dtype) : Tensor()};
                   });
}

}  // namespace mmg
