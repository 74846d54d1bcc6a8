// Unary elementwise ops. Each forward is a scalar lambda; its backward, right below, is the
// derivative written with other ops (so it runs on any device).
//
// Kinks follow PyTorch: |x|' = sign(x) (0 at 0), relu'(0) = 0, and clamp passes the
// gradient wherever min ≤ x ≤ max (both ends included).
#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <type_traits>

#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/kernel_versions.h"
#include "core/ops.h"
#include "core/ops/elementwise_impl.h"
#include "core/profile.h"
#include "kernels/gelu.h"

namespace mmg {

// -x;  ∂/∂x = -1. Integers negate too (no gradient for them).
Tensor neg(const Tensor& x) {
  MMG_PROFILE_OP("neg");
  if (is_integral(x.dtype())) return sub(scalar_like(x, 0), x);
  Tensor out = unary_float_forward("neg", cuda::UnaryOp::neg, x, [](auto v) { return -v; });
  return record_op("neg", out, {x}, [](const Tensor& g) -> Grads { return {neg(g)}; });
}

// e^x;  ∂/∂x = e^x (the output itself).
Tensor exp(const Tensor& x) {
  MMG_PROFILE_OP("exp");
  Tensor out = unary_float_forward("exp", cuda::UnaryOp::exp, x, [](auto v) { return std::exp(v); });
  Tensor y = out.detach();
  return record_op("exp", out, {x}, [y](const Tensor& g) -> Grads { return {mul(g, y)}; });
}

// ln x;  ∂/∂x = 1/x.
Tensor log(const Tensor& x) {
  MMG_PROFILE_OP("log");
  Tensor out = unary_float_forward("log", cuda::UnaryOp::log, x, [](auto v) { return std::log(v); });
  Tensor xd = x.detach();
  return record_op("log", out, {x}, [xd](const Tensor& g) -> Grads { return {div(g, xd)}; });
}

// y = √x;  ∂y/∂x = 1/(2√x) = 1/(2y).
Tensor sqrt(const Tensor& x) {
  MMG_PROFILE_OP("sqrt");
  Tensor out = unary_float_forward("sqrt", cuda::UnaryOp::sqrt, x, [](auto v) { return std::sqrt(v); });
  Tensor y = out.detach();
  return record_op("sqrt", out, {x}, [y](const Tensor& g) -> Grads { return {div(g, y * 2.0)}; });
}

// y = 1/√x;  ∂y/∂x = -½·x^(-3/2) = -½·y³.
Tensor rsqrt(const Tensor& x) {
  MMG_PROFILE_OP("rsqrt");
  Tensor out = unary_float_forward("rsqrt", cuda::UnaryOp::rsqrt, x, [](auto v) { return decltype(v)(1) / std::sqrt(v); });
  Tensor y = out.detach();
  return record_op("rsqrt", out, {x}, [y](const Tensor& g) -> Grads { return {mul(g, y * y * y * -0.5)}; });
}

// sign(x) ∈ {-1, 0, 1} in dtype `dt`, built from two comparisons.
static Tensor sign_of(const Tensor& x, DType dt) {
  Tensor zero = scalar_like(x, 0);
  return gt(x, zero).to(dt) - lt(x, zero).to(dt);
}

// |x|;  ∂|x|/∂x = sign(x), which is 0 at x = 0. Integers work too (no gradient).
Tensor abs(const Tensor& x) {
  MMG_PROFILE_OP("abs");
  Tensor out = unary_numeric_forward("abs", cuda::UnaryOp::abs, x, [](auto v) {
    using T = decltype(v);
    if constexpr (std::is_floating_point_v<T>) return std::abs(v);  // |−0| = +0
    else if constexpr (std::is_unsigned_v<T>) return v;
    else return v < 0 ? T(-v) : v;
  });
  Tensor xd = x.detach();
  return record_op("abs", out, {x}, [xd](const Tensor& g) -> Grads { return {mul(g, sign_of(xd, g.dtype()))}; });
}

// y = tanh x;  ∂y/∂x = 1 − y².
Tensor tanh(const Tensor& x) {
  MMG_PROFILE_OP("tanh");
  Tensor out = unary_float_forward("tanh", cuda::UnaryOp::tanh, x, [](auto v) { return std::tanh(v); });
  Tensor y = out.detach();
  return record_op("tanh", out, {x}, [y](const Tensor& g) -> Grads { return {mul(g, 1.0 - y * y)}; });
}

// y = σ(x) = 1/(1 + e^(−x));  ∂y/∂x = y(1 − y).
// For x < 0 the same value is e^x/(1 + e^x), which never overflows e^(−x).
Tensor sigmoid(const Tensor& x) {
  MMG_PROFILE_OP("sigmoid");
  Tensor out = unary_float_forward("sigmoid", cuda::UnaryOp::sigmoid, x, [](auto v) {
    using T = decltype(v);
    if (v >= T(0)) return T(1) / (T(1) + std::exp(-v));
    T e = std::exp(v);
    return e / (T(1) + e);
  });
  Tensor y = out.detach();
  return record_op("sigmoid", out, {x}, [y](const Tensor& g) -> Grads { return {mul(g, y * (1.0 - y))}; });
}

// relu(x) = max(x, 0);  ∂/∂x = [x > 0] (0 at the kink x = 0). NaN passes through, as in
// PyTorch. Integers work too (no gradient).
Tensor relu(const Tensor& x) {
  MMG_PROFILE_OP("relu");
  Tensor out = unary_numeric_forward("relu", cuda::UnaryOp::relu, x, [](auto v) {
    using T = decltype(v);
    if constexpr (std::is_floating_point_v<T>) return (v > T(0) || std::isnan(v)) ? v : T(0);
    else return v > T(0) ? v : T(0);
  });
  Tensor xd = x.detach();
  return record_op("relu", out, {x}, [xd](const Tensor& g) -> Grads {
    return {mul(g, gt(xd, scalar_like(xd, 0)).to(g.dtype()))};
  });
}

// ---- GELU ----
// approx none:  y = x·Φ(x);  ∂y/∂x = Φ(x) + x·φ(x)  (Φ, φ: the standard normal CDF and density).
// approx tanh:  y = ½x(1 + tanh u),  u = √(2/π)(x + 0.044715x³);
//               ∂y/∂x = ½(1 + tanh u) + ½x(1 − tanh² u)·√(2/π)(1 + 3·0.044715x²).
// Both directions are one fused kernel (kernels/gelu.h): the backward, written with other
// ops, made a dozen passes over the MLP's widest activation.
Tensor gelu(const Tensor& x, GeluApprox approx) {
  MMG_PROFILE_OP("gelu");
  MMG_CHECK(x.defined(), "gelu: undefined tensor argument");
  MMG_CHECK(is_floating(x.dtype()), "gelu: needs a floating dtype, got {} {}", dtype_name(x.dtype()),
            shape_str(x.shape()));
  MMG_CHECK(approx == GeluApprox::none || approx == GeluApprox::tanh, "gelu: unknown approximation {}",
            static_cast<int>(approx));
  const bool tanh_approx = approx == GeluApprox::tanh;
  const DType compute = compute_dtype(x.dtype());
  Tensor xc = x.detach().to(compute).contiguous();
  Tensor y = empty_like(xc);
  visit_float(compute, "gelu", [&]<class T>() {
    if (on_cuda("gelu", xc)) {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(xc.device().index);
        auto* kernel = kernel_version("elementwise") == 2 ? cuda::gelu_forward_v2<T> : cuda::gelu_forward<T>;
        kernel(xc.data<T>(), y.data<T>(), y.numel(), tanh_approx);
      }
      return;
    }
    cpu::gelu_forward<T>(xc.data<T>(), y.data<T>(), y.numel(), tanh_approx);
  });
  const DType in_dtype = x.dtype();
  return record_op("gelu", y.to(in_dtype), {x}, [xc, compute, in_dtype, tanh_approx](const Tensor& g) -> Grads {
    Tensor gc = g.to(compute).contiguous();
    Tensor dx = empty_like(xc);
    visit_float(compute, "gelu", [&]<class T>() {
      if (on_cuda("gelu", xc)) {
        if constexpr (kWithCuda) {
          cuda::DeviceGuard guard(xc.device().index);
          auto* kernel = kernel_version("elementwise") == 2 ? cuda::gelu_backward_v2<T> : cuda::gelu_backward<T>;
          kernel(xc.data<T>(), gc.data<T>(), dx.data<T>(), dx.numel(), tanh_approx);
        }
        return;
      }
      cpu::gelu_backward<T>(xc.data<T>(), gc.data<T>(), dx.data<T>(), dx.numel(), tanh_approx);
    });
    return {dx.to(in_dtype)};
  });
}

// ---- GEGLU ----
// h = [a | g], the last dim cut in halves:  y = a · gelu(g);
// ∂y/∂a = gelu(g),  ∂y/∂g = a · gelu'(g)  (gelu' as above).
// On the CPU one fused kernel each way (kernels/gelu.h); on CUDA the same math composed of
// chunk, gelu and mul, whose kernels exist there.
Tensor geglu(const Tensor& h, GeluApprox approx) {
  MMG_PROFILE_OP("geglu");
  MMG_CHECK(h.defined(), "geglu: undefined tensor argument");
  MMG_CHECK(is_floating(h.dtype()), "geglu: needs a floating dtype, got {} {}", dtype_name(h.dtype()),
            shape_str(h.shape()));
  MMG_CHECK(h.dim() >= 1 && h.size(-1) % 2 == 0, "geglu: the last dim of {} must be even: two halves [a | g]",
            shape_str(h.shape()));
  MMG_CHECK(approx == GeluApprox::none || approx == GeluApprox::tanh, "geglu: unknown approximation {}",
            static_cast<int>(approx));
  if (h.device().is_cuda()) {
    std::vector<Tensor> halves = chunk(h, 2, -1);
    return mul(halves[0], gelu(halves[1], approx));
  }
  const bool tanh_approx = approx == GeluApprox::tanh;
  const DType compute = compute_dtype(h.dtype()), in_dtype = h.dtype();
  const int64_t hidden = h.size(-1) / 2, rows = numel_of(Shape(h.shape().begin(), h.shape().end() - 1));
  Shape out_shape = h.shape();
  out_shape.back() = hidden;
  Tensor hc = h.detach().to(compute).contiguous();
  Tensor y = empty(out_shape, {.dtype = compute, .device = h.device()});
  visit_float(compute, "geglu", [&]<class T>() {
    cpu::geglu_forward<T>(hc.data<T>(), y.data<T>(), rows, hidden, tanh_approx);
  });
  return record_op("geglu", y.to(in_dtype), {h}, [hc, compute, in_dtype, tanh_approx, rows, hidden](const Tensor& g) -> Grads {
    Tensor gc = g.to(compute).contiguous();
    Tensor dh = empty_like(hc);
    visit_float(compute, "geglu", [&]<class T>() {
      cpu::geglu_backward<T>(hc.data<T>(), gc.data<T>(), dh.data<T>(), rows, hidden, tanh_approx);
    });
    return {dh.to(in_dtype)};
  });
}

// ---- clamp ----
// y = min(max(x, lo), hi) with either bound optional;  ∂y/∂x = [lo ≤ x ≤ hi] (PyTorch's
// choice at the ends). NaN passes through. Integer x keeps its dtype and needs integral bounds.
Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max) {
  MMG_PROFILE_OP("clamp");
  MMG_CHECK(x.defined(), "clamp: undefined tensor argument");
  MMG_CHECK(min || max, "clamp: {} {}: at least one of min and max must be given", dtype_name(x.dtype()),
            shape_str(x.shape()));
  MMG_CHECK(!(min && std::isnan(*min)) && !(max && std::isnan(*max)), "clamp: a bound is NaN");
  MMG_CHECK(!(min && max) || *min <= *max, "clamp: min {} is greater than max {}", *min, *max);
  if (is_integral(x.dtype())) {
    for (std::optional<double> b : {min, max})
      MMG_CHECK(!b || std::floor(*b) == *b, "clamp: bound {} is not an integer but the tensor is {} {}", *b,
                dtype_name(x.dtype()), shape_str(x.shape()));
  }
  double lo = min.value_or(-INFINITY), hi = max.value_or(INFINITY);
  Tensor out = unary_numeric_forward("clamp", cuda::UnaryOp::clamp, x, [lo, hi](auto v) {
    using T = decltype(v);
    if constexpr (std::is_integral_v<T>) {
      // Bounds past T's range are first brought into it (i32 clamped to min 1e10 is all 2^31 − 1).
      double l = std::clamp(lo, double(std::numeric_limits<T>::lowest()), double(std::numeric_limits<T>::max()));
      double h = std::clamp(hi, double(std::numeric_limits<T>::lowest()), double(std::numeric_limits<T>::max()));
      if (static_cast<double>(v) < l) return static_cast<T>(l);
      if (static_cast<double>(v) > h) return static_cast<T>(h);
      return v;
    } else {
      return v < T(lo) ? T(lo) : (v > T(hi) ? T(hi) : v);
    }
  }, lo, hi);
  if (is_integral(x.dtype())) return out;
  // The mask compares in the compute dtype, as the forward did (bf16 x against f32 bounds).
  Tensor xc = x.detach().to(compute_dtype(x.dtype()));
  return record_op("clamp", out, {x}, [xc, lo, hi](const Tensor& g) -> Grads {
    Tensor inside = ones_like(xc);
    if (lo > -INFINITY) inside = inside * ge(xc, scalar_like(xc, lo)).to(xc.dtype());
    if (hi < INFINITY) inside = inside * le(xc, scalar_like(xc, hi)).to(xc.dtype());
    return {mul(g, inside.to(g.dtype()))};
  });
}

}  // namespace mmg
