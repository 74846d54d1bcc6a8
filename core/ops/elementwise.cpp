// Binary elementwise ops with NumPy broadcasting, and the arithmetic operators.
//
// Each op is a forward (a lambda on scalars handed to binary_forward) and, right below it,
// its backward in the math's own notation. Broadcasting in the forward becomes a sum in
// the backward: if a was [3,1] and the output [3,4], ∂L/∂a sums ∂L/∂out over the 4 columns
// (sum_to).
#include "core/ops/elementwise_impl.h"

#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "kernels/cpu/elementwise.h"

namespace mmg {

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  MMG_CHECK(a.device() == b.device(), "{}: tensors on different devices: {} {} on {} and {} {} on {}", op,
            dtype_name(a.dtype()), shape_str(a.shape()), a.device().str(), dtype_name(b.dtype()),
            shape_str(b.shape()), b.device().str());
}

Tensor binary_forward_impl(const char* op, const Tensor& a, const Tensor& b, DType result, bool compare,
                           const std::function<void(DType compute, const Tensor& a, const Tensor& b, Tensor& out)>& run) {
  MMG_CHECK(a.defined() && b.defined(), "{}: undefined tensor argument", op);
  check_same_device(op, a, b);
  Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  MMG_CHECK(shape.size() <= static_cast<size_t>(kMaxDims), "{}: result {} has more than {} dims", op,
            shape_str(shape), kMaxDims);
  DType common = promote_types(a.dtype(), b.dtype());
  DType compute = compute_dtype(common);
  if (!compare && compute == DType::boolean) compute = DType::i64;  // true + true = 2, as integers
  Tensor ac = expand(a.detach().to(compute), shape);
  Tensor bc = expand(b.detach().to(compute), shape);
  Tensor out = empty(shape, {.dtype = compare ? DType::boolean : compute, .device = a.device()});
  run(compute, ac, bc, out);
  return out.dtype() == result ? out : out.to(result);
}

// ---- add, sub, mul, div ----
// out = a ∘ b elementwise, in the promoted dtype of a and b.
template <class F>
static Tensor arith(const char* op, const Tensor& a, const Tensor& b, F f) {
  DType result = promote_types(a.dtype(), b.dtype());
  if (result == DType::boolean) result = DType::i64;
  return binary_forward</*Compare=*/false>(op, a, b, result, f);
}

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = arith("add", a, b, [](auto x, auto y) { return x + y; });
  Shape sa = a.shape(), sb = b.shape();
  // ∂(a+b)/∂a = 1, ∂(a+b)/∂b = 1
  return record_op("add", out, {a, b}, [sa, sb](const Tensor& g) -> Grads { return {sum_to(g, sa), sum_to(g, sb)}; });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = arith("sub", a, b, [](auto x, auto y) { return x - y; });
  Shape sa = a.shape(), sb = b.shape();
  // ∂(a-b)/∂a = 1, ∂(a-b)/∂b = -1
  return record_op("sub", out, {a, b},
                   [sa, sb](const Tensor& g) -> Grads { return {sum_to(g, sa), sum_to(neg(g), sb)}; });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = arith("mul", a, b, [](auto x, auto y) { return x * y; });
  Tensor ad = a.detach(), bd = b.detach();
  // ∂(a·b)/∂a = b, ∂(a·b)/∂b = a
  return record_op("mul", out, {a, b}, [ad, bd](const Tensor& g) -> Grads {
    return {sum_to(mul(g, bd), ad.shape()), sum_to(mul(g, ad), bd.shape())};
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  // Integer division would truncate; like PyTorch's true division, integers divide as f32.
  bool integral = is_integral(a.dtype()) && is_integral(b.dtype());
  Tensor out = arith("div", integral ? a.to(DType::f32) : a, b, [](auto x, auto y) { return x / y; });
  Tensor ad = a.detach(), bd = b.detach();
  // ∂(a/b)/∂a = 1/b, ∂(a/b)/∂b = -a/b²
  return record_op("div", out, {a, b}, [ad, bd](const Tensor& g) -> Grads {
    return {sum_to(div(g, bd), ad.shape()), sum_to(neg(div(mul(g, ad), mul(bd, bd))), bd.shape())};
  });
}

// ---- operators ----
Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& a) { return neg(a); }
// A Python-like scalar keeps the tensor's dtype: x_f32 * 0.5 stays f32, i64 + 1 stays i64.
Tensor operator+(const Tensor& a, double b) { return add(a, scalar_like(a, b)); }
Tensor operator-(const Tensor& a, double b) { return sub(a, scalar_like(a, b)); }
Tensor operator*(const Tensor& a, double b) { return mul(a, scalar_like(a, b)); }
Tensor operator/(const Tensor& a, double b) {
  return div(a, is_integral(a.dtype()) ? scalar_tensor(b) : scalar_like(a, b));
}
Tensor operator+(double a, const Tensor& b) { return add(scalar_like(b, a), b); }
Tensor operator-(double a, const Tensor& b) { return sub(scalar_like(b, a), b); }
Tensor operator*(double a, const Tensor& b) { return mul(scalar_like(b, a), b); }
Tensor operator/(double a, const Tensor& b) {
  return div(is_integral(b.dtype()) ? scalar_tensor(a) : scalar_like(b, a), b);
}

}  // namespace mmg

namespace mmg {

// ---- comparisons: bool results, no gradient ----
template <class F>
static Tensor compare(const char* op, const Tensor& a, const Tensor& b, F f) {
  return binary_forward</*Compare=*/true>(op, a, b, DType::boolean, f);
}
Tensor eq(const Tensor& a, const Tensor& b) { return compare("eq", a, b, [](auto x, auto y) { return x == y; }); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare("ne", a, b, [](auto x, auto y) { return x != y; }); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare("lt", a, b, [](auto x, auto y) { return x < y; }); }
Tensor le(const Tensor& a, const Tensor& b) { return compare("le", a, b, [](auto x, auto y) { return x <= y; }); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare("gt", a, b, [](auto x, auto y) { return x > y; }); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare("ge", a, b, [](auto x, auto y) { return x >= y; }); }

}  // namespace mmg
