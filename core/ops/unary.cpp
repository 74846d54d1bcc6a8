// Unary elementwise ops. Each forward is a scalar lambda; its backward, right below, is the
// derivative written with other ops (so it runs on any device).
#include <cmath>

#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "kernels/cpu/elementwise.h"

namespace mmg {

// out[i] = f(x[i]) for a floating x (bf16/f16 computed in f32); a contiguous result of x's dtype.
template <class F>
static Tensor unary_float(const char* op, const Tensor& x, F f) {
  MMG_CHECK(x.defined(), "{}: undefined tensor argument", op);
  MMG_CHECK(is_floating(x.dtype()), "{}: needs a floating dtype, got {} {}", op, dtype_name(x.dtype()),
            shape_str(x.shape()));
  Tensor xc = x.detach().to(compute_dtype(x.dtype())).contiguous();
  Tensor out = empty_like(xc);
  visit_float(xc.dtype(), op, [&]<class T>() {
    cpu::unary_kernel(xc.data<T>(), out.data<T>(), out.numel(), [&](T v) { return static_cast<T>(f(v)); });
  });
  return out.to(x.dtype());
}

// -x;  ∂/∂x = -1. Integers negate too (no gradient for them).
Tensor neg(const Tensor& x) {
  if (is_integral(x.dtype())) return sub(scalar_like(x, 0), x);
  Tensor out = unary_float("neg", x, [](auto v) { return -v; });
  return record_op("neg", out, {x}, [](const Tensor& g) -> Grads { return {neg(g)}; });
}

// e^x;  ∂/∂x = e^x (the output itself).
Tensor exp(const Tensor& x) {
  Tensor out = unary_float("exp", x, [](auto v) { return std::exp(v); });
  Tensor y = out.detach();
  return record_op("exp", out, {x}, [y](const Tensor& g) -> Grads { return {mul(g, y)}; });
}

// ln x;  ∂/∂x = 1/x.
Tensor log(const Tensor& x) {
  Tensor out = unary_float("log", x, [](auto v) { return std::log(v); });
  Tensor xd = x.detach();
  return record_op("log", out, {x}, [xd](const Tensor& g) -> Grads { return {div(g, xd)}; });
}

}  // namespace mmg
