// Reductions over one or several dims: sum, mean, max/min (with indices), argmax, var, std,
// logsumexp, norm, and sum_to (the backward of broadcasting).
//
// Most reductions move the reduced dims last (rows_layout: no copy when they already are
// last in a contiguous tensor) and run a row kernel from kernels/reduce.h. sum also reads a
// contiguous [outer, n, inner] block in place, so summing the leading dims (dim 0 of [N, D])
// copies nothing either. Each backward, right below its forward, broadcasts the gradient
// back over the reduced dims: reshape it to the keepdim shape, and let mul/expand spread it.
#include "core/ops/reduce_impl.h"

#include <cmath>
#include <limits>
#include <optional>

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "core/ops/device_checks.h"
#include "core/profile.h"
#include "kernels/cuda/runtime.h"
#include "kernels/reduce.h"

namespace mmg {

ReducePlan plan_reduce(const Tensor& x, const Shape& dims, bool keepdim, const char* op) {
  MMG_CHECK(x.defined(), "{}: undefined tensor argument", op);
  ReducePlan p;
  int64_t n = x.dim();
  p.reduced.assign(n, dims.empty());
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, n, op, x.shape());
    if (n == 0) continue;
    MMG_CHECK(!p.reduced[w], "{}: dim {} repeated in {}", op, w, shape_str(dims));
    p.reduced[w] = true;
  }
  for (int64_t i = 0; i < n; ++i) {
    int64_t s = x.shape()[i];
    p.kept_shape.push_back(p.reduced[i] ? 1 : s);
    if (!p.reduced[i] || keepdim) p.out_shape.push_back(p.reduced[i] ? 1 : s);
    (p.reduced[i] ? p.cols : p.rows) *= s;
  }
  return p;
}

Tensor rows_layout(const Tensor& x, const ReducePlan& plan) {
  Shape perm;
  for (int64_t i = 0; i < x.dim(); ++i)
    if (!plan.reduced[i]) perm.push_back(i);
  for (int64_t i = 0; i < x.dim(); ++i)
    if (plan.reduced[i]) perm.push_back(i);
  bool identity = true;
  for (int64_t i = 0; i < x.dim(); ++i) identity = identity && perm[i] == i;
  if (identity) return x.contiguous();  // x itself when it is contiguous: no copy, no new view
  return permute(x, perm).contiguous();
}

// The reduced dims of a contiguous x form one consecutive block when, skipping size-1 dims,
// the dims read kept…kept reduced…reduced kept…kept. Then x is [outer, n, inner] in memory.
struct Block {
  int64_t outer = 1, n = 1, inner = 1;
};
static std::optional<Block> as_block(const Tensor& x, const ReducePlan& plan) {
  if (!x.is_contiguous()) return std::nullopt;
  Block b;
  int stage = 0;  // 0: before the reduced block, 1: inside it, 2: after it
  for (int64_t i = 0; i < x.dim(); ++i) {
    int64_t s = x.shape()[i];
    if (s == 1) continue;
    if (plan.reduced[i]) {
      if (stage == 2) return std::nullopt;
      stage = 1;
      b.n *= s;
    } else {
      if (stage == 1) stage = 2;
      (stage == 0 ? b.outer : b.inner) *= s;
    }
  }
  return b;
}

// ---- sum ----
// out = Σ_{reduced dims} x;  ∂L/∂x = ∂L/∂out broadcast back over the reduced dims.
Tensor sum(const Tensor& x, const Shape& dims, bool keepdim) {
  MMG_PROFILE_OP("sum");
  ReducePlan plan = plan_reduce(x, dims, keepdim, "sum");
  DType result = is_floating(x.dtype()) ? x.dtype() : DType::i64;  // integer sums do not overflow i32
  DType compute = is_floating(x.dtype()) ? compute_dtype(x.dtype()) : DType::i64;
  Tensor xs = x.detach().to(compute);
  std::optional<Block> block = as_block(xs, plan);
  Tensor xc = block ? xs : rows_layout(xs, plan);
  Tensor out = empty(plan.out_shape, {.dtype = compute, .device = x.device()});
  const bool cuda = on_cuda("sum", xc);
  visit_dtype(compute, [&]<class T>() {
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, int64_t>) {
      if (cuda) {
        if constexpr (kWithCuda) {
          cuda::DeviceGuard guard(xc.device().index);
          if (block && block->inner > 1) cuda::sum_mid<T>(xc.data<T>(), out.data<T>(), block->outer, block->n, block->inner);
          else cuda::sum_rows<T>(xc.data<T>(), out.data<T>(), plan.rows, plan.cols);
        }
        return;
      }
      if (block && block->inner > 1) cpu::sum_mid<T>(xc.data<T>(), out.data<T>(), block->outer, block->n, block->inner);
      else cpu::sum_rows<T>(xc.data<T>(), out.data<T>(), plan.rows, plan.cols);
    }
  });
  out = out.to(result);
  Shape in_shape = x.shape(), kept = plan.kept_shape;
  return record_op("sum", out, {x}, [in_shape, kept](const Tensor& g) -> Grads {
    return {expand(reshape(g, kept), in_shape)};
  });
}

// ---- mean ----
// out = (1/n) Σ x over the reduced dims (n = their element count).
Tensor mean(const Tensor& x, const Shape& dims, bool keepdim) {
  MMG_PROFILE_OP("mean");
  MMG_CHECK(x.defined(), "mean: undefined tensor argument");
  MMG_CHECK(is_floating(x.dtype()), "mean: needs a floating dtype, got {} {}", dtype_name(x.dtype()),
            shape_str(x.shape()));
  ReducePlan plan = plan_reduce(x, dims, keepdim, "mean");
  return sum(x, dims, keepdim) * (1.0 / static_cast<double>(plan.cols));
}

// ---- max / min along a dim, argmax ----
// values = max_{c} x[..., c, ...] (over dim), indices = the first c holding it. A NaN wins:
// a row holding NaN gives NaN and the index of its first NaN (PyTorch does the same).

// The forward alone (no autograd). Integers and bool run too; bool is compared as u8.
template <bool Max>
static ValuesIndices extreme_forward(const Tensor& x, const ReducePlan& plan, const char* op) {
  MMG_CHECK(plan.cols > 0, "{}: cannot reduce {} elements of {}: the reduction has no identity", op, plan.cols,
            shape_str(x.shape()));
  DType compute = x.dtype() == DType::boolean ? DType::u8 : compute_dtype(x.dtype());
  Tensor xc = rows_layout(x.detach().to(compute), plan);
  Tensor values = empty(plan.out_shape, {.dtype = compute, .device = x.device()});
  Tensor indices = empty(plan.out_shape, {.dtype = DType::i64, .device = x.device()});
  const bool cuda = on_cuda(op, xc);
  visit_arith(compute, op, [&]<class T>() {
    if (cuda) {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(xc.device().index);
        if constexpr (Max) cuda::max_rows<T>(xc.data<T>(), values.data<T>(), indices.data<int64_t>(), plan.rows, plan.cols);
        else cuda::min_rows<T>(xc.data<T>(), values.data<T>(), indices.data<int64_t>(), plan.rows, plan.cols);
      }
      return;
    }
    if constexpr (Max) cpu::max_rows<T>(xc.data<T>(), values.data<T>(), indices.data<int64_t>(), plan.rows, plan.cols);
    else cpu::min_rows<T>(xc.data<T>(), values.data<T>(), indices.data<int64_t>(), plan.rows, plan.cols);
  });
  return {values.to(x.dtype()), indices};
}

// ∂L/∂x of picking one element per row along dim d: g goes to the picked position, 0
// elsewhere. The one-hot mask eq(arange(size_d), index) has size_d along d and 1 elsewhere;
// the index (keepdim shape) has 1 along d: together they broadcast to x's shape.
static Tensor scatter_to_index(const Tensor& g, const Tensor& index, const Shape& in_shape, const Shape& kept,
                               int64_t d) {
  if (in_shape.empty()) return g;  // a 0-d input: its one element was picked
  Shape positions_shape(in_shape.size(), 1);
  positions_shape[d] = in_shape[d];
  Tensor positions = reshape(arange(in_shape[d], {.dtype = DType::i64, .device = g.device()}), positions_shape);
  Tensor one_hot = eq(positions, reshape(index, kept)).to(g.dtype());
  return mul(one_hot, reshape(g, kept));
}

template <bool Max>
static ValuesIndices extreme_dim(const Tensor& x, int64_t dim, bool keepdim, const char* op) {
  ReducePlan plan = plan_reduce(x, {dim}, keepdim, op);
  ValuesIndices vi = extreme_forward<Max>(x, plan, op);
  int64_t d = x.dim() == 0 ? 0 : wrap_dim(dim, x.dim(), op, x.shape());
  Shape in_shape = x.shape(), kept = plan.kept_shape;
  Tensor index = vi.indices;
  vi.values = record_op(op, vi.values, {x}, [index, in_shape, kept, d](const Tensor& g) -> Grads {
    return {scatter_to_index(g, index, in_shape, kept, d)};
  });
  return vi;
}

ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim) { return extreme_dim<true>(x, dim, keepdim, "max"); }
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim) { return extreme_dim<false>(x, dim, keepdim, "min"); }

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  MMG_PROFILE_OP("argmax");
  return extreme_forward<true>(x, plan_reduce(x, {dim}, keepdim, "argmax"), "argmax").indices;
}

// ---- max / min over all elements ----
// The gradient is shared evenly among the elements equal to the result (PyTorch's rule: with
// k ties each gets g/k). When the result is NaN, the NaNs share it.
template <bool Max>
static Tensor extreme_all(const Tensor& x, const char* op) {
  MMG_PROFILE_OP(op);
  Tensor value = extreme_forward<Max>(x, plan_reduce(x, {}, false, op), op).values;
  Tensor xd = x.detach(), vd = value.detach();
  return record_op(op, value, {x}, [xd, vd](const Tensor& g) -> Grads {
    DType dt = g.dtype();
    Tensor ties = add(eq(xd, vd).to(dt), mul(ne(xd, xd).to(dt), ne(vd, vd).to(dt)));  // x = v, or both NaN
    return {mul(ties, div(g, sum(ties)))};
  });
}

Tensor max(const Tensor& x) { return extreme_all<true>(x, "max"); }
Tensor min(const Tensor& x) { return extreme_all<false>(x, "min"); }

// ---- shared by the floating-only reductions below ----
// Each runs its row kernel on the CPU or on CUDA (kernels/reduce.h, the same formulas
// in double); the backwards are composed of ops, so they run on either device as they are.
static void check_floating(const Tensor& x, const char* op) {
  MMG_CHECK(x.defined(), "{}: undefined tensor argument", op);
  MMG_CHECK(is_floating(x.dtype()), "{}: needs a floating dtype, got {} {}", op, dtype_name(x.dtype()),
            shape_str(x.shape()));
}

// 1 where t == 0, else 0: added to a denominator that may be 0, it makes 0/0 into 0/1.
static Tensor zero_indicator(const Tensor& t) { return eq(t, scalar_like(t, 0)).to(t.dtype()); }

// sign(x) ∈ {−1, 0, 1}
static Tensor sign_of(const Tensor& x) {
  Tensor zero = scalar_like(x, 0);
  return sub(gt(x, zero).to(x.dtype()), lt(x, zero).to(x.dtype()));
}

// ---- var / std ----
// mean = (1/n) Σ x,  var = Σ (x − mean)² / (n − c)   (c: the correction, 1 = Bessel's),
//   ∂var/∂x = 2 (x − mean) / (n − c),      std = √var,  ∂std/∂x = (x − mean) / ((n − c)·std).
// As in PyTorch the divisor is max(0, n − c): c ≥ n gives inf (NaN where Σ(x − mean)² = 0, so
// the variance of one element with c = 1 is NaN), and so does the gradient. Where std = 0
// (all elements equal) its gradient is 0 — every x − mean is 0 — rather than 0/0.
template <bool Std>
static Tensor var_or_std(const Tensor& x, const Shape& dims, int64_t correction, bool keepdim, const char* op) {
  check_floating(x, op);
  MMG_CHECK(correction >= 0, "{}: correction must be >= 0, got {} (for {})", op, correction, shape_str(x.shape()));
  ReducePlan plan = plan_reduce(x, dims, keepdim, op);
  DType compute = compute_dtype(x.dtype());
  Tensor xd = x.detach().to(compute);
  Tensor xc = rows_layout(xd, plan);
  Tensor out = empty(plan.out_shape, {.dtype = compute, .device = x.device()});
  Tensor mu = empty(plan.kept_shape, {.dtype = compute, .device = x.device()});
  const bool cuda = on_cuda(op, xc);
  visit_float(compute, op, [&]<class T>() {
    if (cuda) {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(xc.device().index);
        if constexpr (Std) cuda::std_rows<T>(xc.data<T>(), out.data<T>(), mu.data<T>(), plan.rows, plan.cols, correction);
        else cuda::var_rows<T>(xc.data<T>(), out.data<T>(), mu.data<T>(), plan.rows, plan.cols, correction);
      }
      return;
    }
    if constexpr (Std) cpu::std_rows<T>(xc.data<T>(), out.data<T>(), mu.data<T>(), plan.rows, plan.cols, correction);
    else cpu::var_rows<T>(xc.data<T>(), out.data<T>(), mu.data<T>(), plan.rows, plan.cols, correction);
  });
  double dof = std::max<double>(0.0, static_cast<double>(plan.cols - correction));
  Shape kept = plan.kept_shape;
  Tensor sd = reshape(out, kept);  // std in the keepdim shape (used by std's backward only)
  Tensor result = out.to(x.dtype());
  return record_op(op, result, {x}, [xd, mu, sd, kept, dof](const Tensor& g) -> Grads {
    Tensor gk = reshape(g.to(xd.dtype()), kept);
    Tensor centred = sub(xd, mu);
    if constexpr (Std) return {mul(div(centred, add(sd, zero_indicator(sd)) * dof), gk)};
    else return {mul(centred * (2.0 / dof), gk)};
  });
}

Tensor var(const Tensor& x, const Shape& dims, int64_t correction, bool keepdim) {
  MMG_PROFILE_OP("var");
  return var_or_std<false>(x, dims, correction, keepdim, "var");
}
Tensor std(const Tensor& x, const Shape& dims, int64_t correction, bool keepdim) {
  MMG_PROFILE_OP("std");
  return var_or_std<true>(x, dims, correction, keepdim, "std");
}

// ---- logsumexp ----
// lse = log Σ exp(x) over the dims, computed as m + log Σ exp(x − m) with m the max, so no
// exp overflows. A row of −inf gives −inf.
//   ∂lse/∂x = exp(x − lse)  (the softmax of x over the dims).
// In a row of −inf that would be exp(−inf + inf) = NaN; the kernel's `shift` is lse with −inf
// replaced by 0, so such a row gets gradient 0 (PyTorch gives NaN there).
Tensor logsumexp(const Tensor& x_in, const Shape& dims, bool keepdim) {
  MMG_PROFILE_OP("logsumexp");
  const Tensor x = autocast_to_f32(x_in);
  check_floating(x, "logsumexp");
  ReducePlan plan = plan_reduce(x, dims, keepdim, "logsumexp");
  DType compute = compute_dtype(x.dtype());
  Tensor xd = x.detach().to(compute);
  Tensor xc = rows_layout(xd, plan);
  Tensor out = empty(plan.out_shape, {.dtype = compute, .device = x.device()});
  Tensor shift = empty(plan.kept_shape, {.dtype = compute, .device = x.device()});
  const bool cuda = on_cuda("logsumexp", xc);
  visit_float(compute, "logsumexp", [&]<class T>() {
    if (cuda) {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(xc.device().index);
        cuda::logsumexp_rows<T>(xc.data<T>(), out.data<T>(), shift.data<T>(), plan.rows, plan.cols);
      }
      return;
    }
    cpu::logsumexp_rows<T>(xc.data<T>(), out.data<T>(), shift.data<T>(), plan.rows, plan.cols);
  });
  Shape kept = plan.kept_shape;
  return record_op("logsumexp", out.to(x.dtype()), {x}, [xd, shift, kept](const Tensor& g) -> Grads {
    return {mul(exp(sub(xd, shift)), reshape(g.to(xd.dtype()), kept))};
  });
}

// ---- norm ----
// ‖x‖_p = (Σ |x|^p)^(1/p) over the dims, for p > 0; p = inf is max |x|. Gradients:
//   p = 2:    x / ‖x‖                         (0 where ‖x‖ = 0, not 0/0: the subgradient 0)
//   p = 1:    sign(x)                         (0 at x = 0)
//   p = inf:  sign(x)·[|x| = ‖x‖] / #ties      (shared among the elements reaching the max)
//   other p:  sign(x)·(|x| / ‖x‖)^(p−1)        (0 at x = 0 and where ‖x‖ = 0, as PyTorch)
// The sum of |x|^p is accumulated in double without rescaling: it overflows only beyond
// |x| ~ 1e154 (for p = 2).
static Tensor norm_backward(const Tensor& xd, const Tensor& nk, double p, const Shape& dims, const Tensor& gk) {
  Tensor sgn = sign_of(xd);
  if (p == 2) return mul(div(xd, add(nk, zero_indicator(nk))), gk);
  if (p == 1) return mul(sgn, gk);
  Tensor ax = mul(xd, sgn);  // |x|
  if (std::isinf(p)) {
    Tensor at_max = eq(ax, nk).to(xd.dtype());
    return mul(mul(sgn, at_max), div(gk, sum(at_max, dims, /*keepdim=*/true)));
  }
  // (|x|/‖x‖)^(p−1) as exp((p−1)·log r), with r = 1 where x = 0 (sign then zeroes it), so
  // no log(0) appears: p < 1 would otherwise give inf · 0.
  Tensor r = div(add(ax, zero_indicator(xd)), add(nk, zero_indicator(nk)));
  return mul(mul(sgn, exp(log(r) * (p - 1.0))), gk);
}

Tensor norm(const Tensor& x, double p, const Shape& dims, bool keepdim) {
  MMG_PROFILE_OP("norm");
  check_floating(x, "norm");
  MMG_CHECK(p > 0, "norm: p must be > 0 (or inf), got {} (for {})", p, shape_str(x.shape()));
  ReducePlan plan = plan_reduce(x, dims, keepdim, "norm");
  DType compute = compute_dtype(x.dtype());
  Tensor xd = x.detach().to(compute);
  Tensor xc = rows_layout(xd, plan);
  Tensor out = empty(plan.out_shape, {.dtype = compute, .device = x.device()});
  const bool cuda = on_cuda("norm", xc);
  visit_float(compute, "norm", [&]<class T>() {
    if (cuda) {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(xc.device().index);
        cuda::norm_rows<T>(xc.data<T>(), out.data<T>(), plan.rows, plan.cols, p);
      }
      return;
    }
    cpu::norm_rows<T>(xc.data<T>(), out.data<T>(), plan.rows, plan.cols, p);
  });
  Shape kept = plan.kept_shape;
  Tensor nk = reshape(out, kept);
  return record_op("norm", out.to(x.dtype()), {x}, [xd, nk, p, dims, kept](const Tensor& g) -> Grads {
    return {norm_backward(xd, nk, p, dims, reshape(g.to(xd.dtype()), kept))};
  });
}

// ---- sum_to ----
// Sum x down to `shape`, which x's shape was broadcast from: sum the leading dims x has in
// addition, and the dims where `shape` has 1 and x does not.
Tensor sum_to(const Tensor& x, const Shape& shape) {
  MMG_PROFILE_OP("sum_to");
  if (x.shape() == shape) return x;
  int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  MMG_CHECK(lead >= 0, "sum_to: cannot sum {} to the larger rank {}", shape_str(x.shape()), shape_str(shape));
  Shape dims;
  for (int64_t i = 0; i < x.dim(); ++i) {
    if (i < lead) { dims.push_back(i); continue; }
    int64_t want = shape[i - lead];
    MMG_CHECK(want == x.shape()[i] || want == 1, "sum_to: {} was not broadcast from {}", shape_str(x.shape()),
              shape_str(shape));
    if (want == 1 && x.shape()[i] != 1) dims.push_back(i);
  }
  Tensor s = dims.empty() ? x : sum(x, dims, /*keepdim=*/true);
  return reshape(s, shape);
}

}  // namespace mmg
