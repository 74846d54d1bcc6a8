// Binary elementwise ops with NumPy broadcasting, and the arithmetic operators.
//
// Each op is a forward (a lambda on scalars handed to binary_forward) and, right below it,
// its backward in the math's own notation. Broadcasting in the forward becomes a sum in
// the backward: if a was [3,1] and the output [3,4], ∂L/∂a sums ∂L/∂out over the 4 columns
// (sum_to).
#include "core/ops/elementwise_impl.h"

#include <cmath>
#include <string_view>

#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "core/profile.h"
#include "kernels/cpu/elementwise.h"

namespace mmg {

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
  if (compute == DType::boolean && on_cuda(op, a)) compute = DType::u8;  // the CUDA kernels compare bools as 0/1
  Tensor ac = expand(a.detach().to(compute), shape);
  Tensor bc = expand(b.detach().to(compute), shape);
  Tensor out = empty(shape, {.dtype = compare ? DType::boolean : compute, .device = a.device()});
  run(compute, ac, bc, out);
  return out.dtype() == result ? out : out.to(result);
}

void accumulate_into(const Tensor& acc, const Tensor& g) {
  const char* op = "accumulate_into";
  MMG_CHECK(acc.defined() && g.defined() && acc.shape() == g.shape() && acc.dtype() == g.dtype() &&
                (acc.dtype() == DType::f32 || acc.dtype() == DType::f64) && acc.is_contiguous(),
            "{}: internal error: acc {} {} and g {} {} must be one shape and floating dtype, acc contiguous", op,
            acc.defined() ? dtype_name(acc.dtype()) : "undefined", acc.defined() ? shape_str(acc.shape()) : "",
            g.defined() ? dtype_name(g.dtype()) : "undefined", g.defined() ? shape_str(g.shape()) : "");
  check_same_device(op, acc, g);
  binary_into</*Compare=*/false>(op, cuda::BinaryOp::add, acc.dtype(), acc, g, acc,
                                 [](auto x, auto y) { return x + y; });  // add's own lambda and kernel
  acc.storage()->bump_version();
}

// ---- add, sub, mul, div ----
// out = a ∘ b elementwise, in the promoted dtype of a and b.
template <class F>
static Tensor arith(const char* op, cuda::BinaryOp code, const Tensor& a, const Tensor& b, F f) {
  DType result = promote_types(a.dtype(), b.dtype());
  if (result == DType::boolean) result = DType::i64;
  return binary_forward</*Compare=*/false>(op, code, a, b, result, f);
}

Tensor add(const Tensor& a, const Tensor& b) {
  MMG_PROFILE_OP("add");
  Tensor out = arith("add", cuda::BinaryOp::add, a, b, [](auto x, auto y) { return x + y; });
  Shape sa = a.shape(), sb = b.shape();
  // ∂(a+b)/∂a = 1, ∂(a+b)/∂b = 1
  return record_op("add", out, {a, b}, [sa, sb](const Tensor& g) -> Grads { return {sum_to(g, sa), sum_to(g, sb)}; });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  MMG_PROFILE_OP("sub");
  Tensor out = arith("sub", cuda::BinaryOp::sub, a, b, [](auto x, auto y) { return x - y; });
  Shape sa = a.shape(), sb = b.shape();
  // ∂(a-b)/∂a = 1, ∂(a-b)/∂b = -1
  return record_op("sub", out, {a, b},
                   [sa, sb](const Tensor& g) -> Grads { return {sum_to(g, sa), sum_to(neg(g), sb)}; });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  MMG_PROFILE_OP("mul");
  Tensor out = arith("mul", cuda::BinaryOp::mul, a, b, [](auto x, auto y) { return x * y; });
  Tensor ad = a.detach(), bd = b.detach();
  // ∂(a·b)/∂a = b, ∂(a·b)/∂b = a
  return record_op("mul", out, {a, b}, [ad, bd](const Tensor& g) -> Grads {
    return {sum_to(mul(g, bd), ad.shape()), sum_to(mul(g, ad), bd.shape())};
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  MMG_PROFILE_OP("div");
  // Integer division would truncate; like PyTorch's true division, integers divide as f32.
  bool integral = is_integral(a.dtype()) && is_integral(b.dtype());
  Tensor out = arith("div", cuda::BinaryOp::div, integral ? a.to(DType::f32) : a, b, [](auto x, auto y) { return x / y; });
  Tensor ad = a.detach(), bd = b.detach();
  // ∂(a/b)/∂a = 1/b, ∂(a/b)/∂b = -a/b²
  return record_op("div", out, {a, b}, [ad, bd](const Tensor& g) -> Grads {
    return {sum_to(div(g, bd), ad.shape()), sum_to(neg(div(mul(g, ad), mul(bd, bd))), bd.shape())};
  });
}

// ---- pow ----
// Float-only: the promoted dtype of the operands must be floating.
static void check_pow_dtypes(const Tensor& a, const Tensor& b) {
  MMG_CHECK(a.defined() && b.defined(), "pow: undefined tensor argument");
  MMG_CHECK(is_floating(promote_types(a.dtype(), b.dtype())), "pow: needs a floating dtype, got {} {} and {} {}",
            dtype_name(a.dtype()), shape_str(a.shape()), dtype_name(b.dtype()), shape_str(b.shape()));
}

// a ∧ b for bool tensors (bool · bool multiplies as integers 0/1).
static Tensor both(const Tensor& a, const Tensor& b) { return mul(a, b).to(DType::boolean); }

// y = a^b;  ∂y/∂a = b·a^(b−1),  ∂y/∂b = a^b·ln a.
// Where b = 0, ∂y/∂a = 0 (a^b is constant 1 even at a = 0, where b·a^(b−1) would be 0·∞).
// Where a = 0 and b ≥ 0, ∂y/∂b = 0 (the limit of a^b·ln a; the formula gives 0·(−∞)).
// Elsewhere ln a of a negative a is NaN: d/db needs a > 0. These are PyTorch's choices.
Tensor pow(const Tensor& a, const Tensor& b) {
  MMG_PROFILE_OP("pow");
  check_pow_dtypes(a, b);
  Tensor out = arith("pow", cuda::BinaryOp::pow, a, b, [](auto x, auto y) { return std::pow(x, y); });
  // Saved in the result's dtype: an integer base with a float exponent still has a float ln a.
  Tensor ad = a.detach().to(out.dtype()), bd = b.detach().to(out.dtype()), y = out.detach();
  bool need_a = a.requires_grad(), need_b = b.requires_grad();
  return record_op("pow", out, {a, b}, [ad, bd, y, need_a, need_b](const Tensor& g) -> Grads {
    Tensor zero = scalar_like(g, 0), da, db;
    if (need_a) da = sum_to(where(eq(bd, zero), zero, g * bd * pow(ad, bd - 1.0)), ad.shape());
    if (need_b) db = sum_to(where(both(eq(ad, zero), ge(bd, zero)), zero, g * y * log(ad)), bd.shape());
    return {da, db};
  });
}

// y = a^p for a constant p;  ∂y/∂a = p·a^(p−1). p = 0 gives gradient 0 everywhere; p = 1 and
// p = 2 are computed exactly (a and a·a, no std::pow).
Tensor pow(const Tensor& a, double p) {
  MMG_PROFILE_OP("pow");
  MMG_CHECK(a.defined(), "pow: undefined tensor argument");
  MMG_CHECK(is_floating(a.dtype()), "pow: needs a floating dtype, got {} {}", dtype_name(a.dtype()),
            shape_str(a.shape()));
  Tensor out = unary_float_forward("pow", cuda::UnaryOp::pow, a, [p](auto v) {
    using T = decltype(v);
    if (p == 2.0) return v * v;
    if (p == 1.0) return v;
    return static_cast<T>(std::pow(v, static_cast<T>(p)));
  }, p);
  Tensor ad = a.detach();
  return record_op("pow", out, {a}, [ad, p](const Tensor& g) -> Grads {
    if (p == 0.0) return {zeros_like(g)};
    if (p == 1.0) return {g};
    if (p == 2.0) return {g * ad * 2.0};
    return {g * pow(ad, p - 1.0) * p};
  });
}

// ---- maximum, minimum ----
// y = max(a, b);  ∂y/∂a = [a > b] + ½[a = b],  ∂y/∂b = [b > a] + ½[a = b]: at a tie the
// gradient is split evenly (PyTorch's choice). NaN propagates. Integers work (no gradient).
template <class Pick>
static Tensor extremum(const char* op, cuda::BinaryOp code, const Tensor& a, const Tensor& b, Pick a_wins) {
  Tensor out = arith(op, code, a, b, [a_wins](auto x, auto y) {
    if constexpr (std::is_floating_point_v<decltype(x)>) {
      if (std::isnan(x)) return x;
    }
    return a_wins(x, y) ? x : y;  // y NaN: a_wins is false, y is picked
  });
  Tensor ad = a.detach(), bd = b.detach();
  bool is_max = std::string_view(op) == "maximum";
  return record_op(op, out, {a, b}, [ad, bd, is_max](const Tensor& g) -> Grads {
    DType dt = g.dtype();
    Tensor a_wins = (is_max ? gt(ad, bd) : lt(ad, bd)).to(dt);
    Tensor b_wins = (is_max ? lt(ad, bd) : gt(ad, bd)).to(dt);
    Tensor tie = eq(ad, bd).to(dt) * 0.5;
    return {sum_to(g * (a_wins + tie), ad.shape()), sum_to(g * (b_wins + tie), bd.shape())};
  });
}

Tensor maximum(const Tensor& a, const Tensor& b) {
  MMG_PROFILE_OP("maximum");
  return extremum("maximum", cuda::BinaryOp::maximum, a, b, [](auto x, auto y) { return x > y; });
}
Tensor minimum(const Tensor& a, const Tensor& b) {
  MMG_PROFILE_OP("minimum");
  return extremum("minimum", cuda::BinaryOp::minimum, a, b, [](auto x, auto y) { return x < y; });
}

// ---- where ----
// y = cond ? a : b elementwise, all three broadcast together; y has the promoted dtype of a
// and b (any dtype: nothing is computed, values are only picked).
// ∂y/∂a = [cond], ∂y/∂b = [¬cond], each summed back to its input's shape.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  MMG_PROFILE_OP("where");
  MMG_CHECK(cond.defined() && a.defined() && b.defined(), "where: undefined tensor argument");
  MMG_CHECK(cond.dtype() == DType::boolean, "where: condition must be bool, got {} {}", dtype_name(cond.dtype()),
            shape_str(cond.shape()));
  check_same_device("where", cond, a);
  check_same_device("where", a, b);
  Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  MMG_CHECK(shape.size() <= static_cast<size_t>(kMaxDims), "where: result {} has more than {} dims",
            shape_str(shape), kMaxDims);
  DType dt = promote_types(a.dtype(), b.dtype());
  Tensor cc = expand(cond.detach(), shape);
  Tensor ac = expand(a.detach().to(dt), shape);
  Tensor bc = expand(b.detach().to(dt), shape);
  Tensor out = empty(shape, {.dtype = dt, .device = a.device()});
  visit_dtype(dt, [&]<class T>() {
    if (on_cuda("where", out)) {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(out.device().index);
        cuda::where<T>(cc.data<bool>(), cc.strides().data(), static_cast<const T*>(ac.data_ptr()), ac.strides().data(),
                       static_cast<const T*>(bc.data_ptr()), bc.strides().data(), static_cast<T*>(out.data_ptr()),
                       static_cast<int>(out.dim()), out.shape().data(), out.numel());
      }
      return;
    }
    cpu::ternary_kernel(cc.data<bool>(), cc.strides().data(), static_cast<const T*>(ac.data_ptr()),
                        ac.strides().data(), static_cast<const T*>(bc.data_ptr()), bc.strides().data(),
                        static_cast<T*>(out.data_ptr()), static_cast<int>(out.dim()), out.shape().data(), out.numel(),
                        [](bool c, T x, T y) { return c ? x : y; });
  });
  Tensor cd = cond.detach();
  Shape sa = a.shape(), sb = b.shape();
  return record_op("where", out, {a, b}, [cd, sa, sb](const Tensor& g) -> Grads {
    Tensor zero = scalar_like(g, 0);
    return {sum_to(where(cd, g, zero), sa), sum_to(where(cd, zero, g), sb)};
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
  return div(a, is_integral(a.dtype()) ? scalar_tensor(b, {.device = a.device()}) : scalar_like(a, b));
}
Tensor operator+(double a, const Tensor& b) { return add(scalar_like(b, a), b); }
Tensor operator-(double a, const Tensor& b) { return sub(scalar_like(b, a), b); }
Tensor operator*(double a, const Tensor& b) { return mul(scalar_like(b, a), b); }
Tensor operator/(double a, const Tensor& b) {
  return div(is_integral(b.dtype()) ? scalar_tensor(a, {.device = b.device()}) : scalar_like(b, a), b);
}

}  // namespace mmg

namespace mmg {

// ---- comparisons: bool results, no gradient ----
template <class F>
static Tensor compare(const char* op, cuda::BinaryOp code, const Tensor& a, const Tensor& b, F f) {
  MMG_PROFILE_OP(op);
  return binary_forward</*Compare=*/true>(op, code, a, b, DType::boolean, f);
}
Tensor eq(const Tensor& a, const Tensor& b) { return compare("eq", cuda::BinaryOp::eq, a, b, [](auto x, auto y) { return x == y; }); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare("ne", cuda::BinaryOp::ne, a, b, [](auto x, auto y) { return x != y; }); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare("lt", cuda::BinaryOp::lt, a, b, [](auto x, auto y) { return x < y; }); }
Tensor le(const Tensor& a, const Tensor& b) { return compare("le", cuda::BinaryOp::le, a, b, [](auto x, auto y) { return x <= y; }); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare("gt", cuda::BinaryOp::gt, a, b, [](auto x, auto y) { return x > y; }); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare("ge", cuda::BinaryOp::ge, a, b, [](auto x, auto y) { return x >= y; }); }

}  // namespace mmg
