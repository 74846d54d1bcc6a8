// Reductions over one or several dims: sum, mean, and sum_to (the backward of
// broadcasting). Each reduction moves the reduced dims last (rows_layout) and runs a row
// kernel; its backward broadcasts the gradient back over the reduced dims.
#include "core/ops/reduce_impl.h"

#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "kernels/reduce.h"

namespace mmg {

ReducePlan plan_reduce(const Tensor& x, const Shape& dims, bool keepdim, const char* op) {
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
  return permute(x, perm).contiguous();
}

// ---- sum ----
// out = Σ_{reduced dims} x;  ∂L/∂x = ∂L/∂out broadcast back over the reduced dims.
Tensor sum(const Tensor& x, const Shape& dims, bool keepdim) {
  ReducePlan plan = plan_reduce(x, dims, keepdim, "sum");
  DType result = is_floating(x.dtype()) ? x.dtype() : DType::i64;  // integer sums do not overflow i32
  DType compute = is_floating(x.dtype()) ? compute_dtype(x.dtype()) : DType::i64;
  Tensor xc = rows_layout(x.detach().to(compute), plan);
  Tensor out = empty(plan.out_shape, {.dtype = compute, .device = x.device()});
  visit_dtype(compute, [&]<class T>() {
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, int64_t>)
      cpu::sum_rows<T>(xc.data<T>(), out.data<T>(), plan.rows, plan.cols);
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
  MMG_CHECK(is_floating(x.dtype()), "mean: needs a floating dtype, got {} {}", dtype_name(x.dtype()),
            shape_str(x.shape()));
  ReducePlan plan = plan_reduce(x, dims, keepdim, "mean");
  return sum(x, dims, keepdim) * (1.0 / static_cast<double>(plan.cols));
}

// ---- sum_to ----
// Sum x down to `shape`, which x's shape was broadcast from: sum the leading dims x has in
// addition, and the dims where `shape` has 1 and x does not.
Tensor sum_to(const Tensor& x, const Shape& shape) {
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
