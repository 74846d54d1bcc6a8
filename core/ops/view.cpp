// Views: new shapes and strides over the same storage. No data moves; writes through a
// view are seen by the original. The backward of a view maps the gradient back to the
// input's shape with the inverse view (or a sum, for expand).
#include <algorithm>
#include <numeric>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/profile.h"

namespace mmg {

// A TensorImpl over x's storage with the given geometry, x's dtype, and no autograd.
static Tensor make_view(const Tensor& x, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = x.storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = x.dtype();
  return Tensor(impl);
}

// Replace a single -1 in `shape` by the size that keeps numel.
static Shape infer_shape(const Shape& shape, int64_t numel, const char* op, const Shape& from) {
  Shape s = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      MMG_CHECK(infer < 0, "{}: only one dim can be -1 in {}", op, shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      MMG_CHECK(s[i] >= 0, "{}: invalid size {} in {}", op, s[i], shape_str(shape));
      known *= s[i];
    }
  }
  if (infer >= 0) {
    MMG_CHECK(known != 0 && numel % known == 0, "{}: cannot view {} ({} elements) as {}", op, shape_str(from), numel,
              shape_str(shape));
    s[infer] = numel / known;
  }
  MMG_CHECK(numel_of(s) == numel, "{}: cannot view {} ({} elements) as {} ({} elements)", op, shape_str(from), numel,
            shape_str(s), numel_of(s));
  return s;
}

// Strides for viewing (shape, strides) as `target` without copying, if possible. Input dims
// that are contiguous with each other form a "chunk" that can be split or merged freely;
// each chunk of the input must map onto whole dims of the target (PyTorch's rule).
static std::optional<Shape> view_strides(const Shape& shape, const Shape& strides, const Shape& target) {
  if (shape.empty() || numel_of(shape) == 0) return contiguous_strides(target);
  Shape out(target.size());
  int64_t view_d = static_cast<int64_t>(target.size()) - 1;
  int64_t chunk_base_stride = strides.back(), tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= shape[d];
    bool chunk_ends = d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride);
    if (!chunk_ends) continue;
    while (view_d >= 0 && (view_numel < tensor_numel || target[view_d] == 1)) {
      out[view_d] = view_numel * chunk_base_stride;
      view_numel *= target[view_d];
      --view_d;
    }
    if (view_numel != tensor_numel) return std::nullopt;
    if (d > 0) {
      chunk_base_stride = strides[d - 1];
      tensor_numel = view_numel = 1;
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}

Tensor view(const Tensor& x, const Shape& shape) {
  MMG_PROFILE_OP("view");
  Shape s = infer_shape(shape, x.numel(), "view", x.shape());
  auto strides = view_strides(x.shape(), x.strides(), s);
  MMG_CHECK(strides.has_value(),
            "view: cannot view {} with strides {} as {} without a copy (use reshape, or contiguous() first)",
            shape_str(x.shape()), shape_str(x.strides()), shape_str(s));
  Shape in_shape = x.shape();
  return record_op("view", make_view(x, s, *strides, x.offset()), {x},
                   [in_shape](const Tensor& g) -> Grads { return {reshape(g, in_shape)}; });
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  MMG_PROFILE_OP("reshape");
  Shape s = infer_shape(shape, x.numel(), "reshape", x.shape());
  if (view_strides(x.shape(), x.strides(), s)) return view(x, s);
  return view(x.contiguous(), s);
}

Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  MMG_PROFILE_OP("flatten");
  if (x.dim() == 0) return reshape(x, {1});
  int64_t s = wrap_dim(start_dim, x.dim(), "flatten", x.shape());
  int64_t e = wrap_dim(end_dim, x.dim(), "flatten", x.shape());
  MMG_CHECK(s <= e, "flatten: start_dim {} is after end_dim {} for {}", start_dim, end_dim, shape_str(x.shape()));
  Shape out(x.shape().begin(), x.shape().begin() + s);
  int64_t merged = 1;
  for (int64_t d = s; d <= e; ++d) merged *= x.shape()[d];
  out.push_back(merged);
  out.insert(out.end(), x.shape().begin() + e + 1, x.shape().end());
  return reshape(x, out);
}

Tensor permute(const Tensor& x, const Shape& dims) {
  MMG_PROFILE_OP("permute");
  int64_t n = x.dim();
  MMG_CHECK(static_cast<int64_t>(dims.size()) == n, "permute: {} dims given for a {}-d tensor {}", dims.size(), n,
            shape_str(x.shape()));
  Shape perm(n), shape(n), strides(n), inverse(n);
  std::vector<bool> seen(n, false);
  for (int64_t i = 0; i < n; ++i) {
    perm[i] = wrap_dim(dims[i], n, "permute", x.shape());
    MMG_CHECK(!seen[perm[i]], "permute: dim {} repeated in {}", perm[i], shape_str(dims));
    seen[perm[i]] = true;
    shape[i] = x.shape()[perm[i]];
    strides[i] = x.strides()[perm[i]];
    inverse[perm[i]] = i;
  }
  return record_op("permute", make_view(x, shape, strides, x.offset()), {x},
                   [inverse](const Tensor& g) -> Grads { return {permute(g, inverse)}; });
}

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  MMG_PROFILE_OP("transpose");
  int64_t n = x.dim();
  Shape perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  if (n > 0) std::swap(perm[wrap_dim(dim0, n, "transpose", x.shape())], perm[wrap_dim(dim1, n, "transpose", x.shape())]);
  return permute(x, perm);
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  MMG_PROFILE_OP("unsqueeze");
  int64_t d = wrap_dim(dim, x.dim() + 1, "unsqueeze", x.shape());
  Shape shape = x.shape(), strides = x.strides();
  int64_t st = d < x.dim() ? shape[d] * strides[d] : 1;
  shape.insert(shape.begin() + d, 1);
  strides.insert(strides.begin() + d, st);
  Shape in_shape = x.shape();
  return record_op("unsqueeze", make_view(x, shape, strides, x.offset()), {x},
                   [in_shape](const Tensor& g) -> Grads { return {reshape(g, in_shape)}; });
}

static Tensor squeeze_dims(const Tensor& x, const std::vector<bool>& drop, const char* name) {
  Shape shape, strides;
  for (int64_t i = 0; i < x.dim(); ++i)
    if (!drop[i]) { shape.push_back(x.shape()[i]); strides.push_back(x.strides()[i]); }
  Shape in_shape = x.shape();
  return record_op(name, make_view(x, shape, strides, x.offset()), {x},
                   [in_shape](const Tensor& g) -> Grads { return {reshape(g, in_shape)}; });
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  MMG_PROFILE_OP("squeeze");
  if (x.dim() == 0) return x;
  int64_t d = wrap_dim(dim, x.dim(), "squeeze", x.shape());
  std::vector<bool> drop(x.dim(), false);
  drop[d] = x.shape()[d] == 1;
  return squeeze_dims(x, drop, "squeeze");
}

Tensor squeeze(const Tensor& x) {
  MMG_PROFILE_OP("squeeze");
  std::vector<bool> drop(x.dim());
  for (int64_t i = 0; i < x.dim(); ++i) drop[i] = x.shape()[i] == 1;
  return squeeze_dims(x, drop, "squeeze");
}

Tensor expand(const Tensor& x, const Shape& shape) {
  MMG_PROFILE_OP("expand");
  int64_t n = static_cast<int64_t>(shape.size()), lead = n - x.dim();
  MMG_CHECK(lead >= 0, "expand: cannot expand {} to fewer dims {}", shape_str(x.shape()), shape_str(shape));
  Shape out(n), strides(n);
  for (int64_t i = 0; i < n; ++i) {
    if (i < lead) {
      MMG_CHECK(shape[i] >= 0, "expand: new leading dim {} cannot be -1 in {}", i, shape_str(shape));
      out[i] = shape[i];
      strides[i] = 0;
      continue;
    }
    int64_t have = x.shape()[i - lead];
    int64_t want = shape[i] == -1 ? have : shape[i];
    MMG_CHECK(have == want || have == 1, "expand: cannot expand {} to {}: dim {} has size {}, not 1",
              shape_str(x.shape()), shape_str(shape), i, have);
    out[i] = want;
    strides[i] = have == want ? x.strides()[i - lead] : 0;
  }
  if (out == x.shape()) return x;
  Shape in_shape = x.shape();
  return record_op("expand", make_view(x, out, strides, x.offset()), {x},
                   [in_shape](const Tensor& g) -> Grads { return {sum_to(g, in_shape)}; });
}

// Backward of every slicing view: scatter the gradient into zeros of the input's shape.
static Tensor slice_backward(const Tensor& g, const Shape& in_shape, int64_t dim, int64_t start, int64_t step) {
  Tensor gx = zeros(in_shape, {.dtype = g.dtype(), .device = g.device()});
  int64_t n = g.shape()[dim];
  if (n > 0) slice(gx, dim, start, start + (n - 1) * step + 1, step).copy_(g);
  return gx;
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  MMG_PROFILE_OP("slice");
  MMG_CHECK(x.dim() > 0, "slice: cannot slice a 0-d tensor");
  int64_t d = wrap_dim(dim, x.dim(), "slice", x.shape());
  MMG_CHECK(step > 0, "slice: step must be positive, got {}", step);
  int64_t size = x.shape()[d];
  // Python semantics: negative indices count from the end; out-of-range bounds clamp.
  if (start < 0) start += size;
  if (end < 0) end += size;
  start = std::clamp<int64_t>(start, 0, size);
  end = std::clamp<int64_t>(end, start, size);
  Shape shape = x.shape(), strides = x.strides();
  shape[d] = (end - start + step - 1) / step;
  strides[d] *= step;
  Shape in_shape = x.shape();
  return record_op("slice", make_view(x, shape, strides, x.offset() + start * x.strides()[d]), {x},
                   [in_shape, d, start, step](const Tensor& g) -> Grads {
                     return {slice_backward(g, in_shape, d, start, step)};
                   });
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  MMG_PROFILE_OP("narrow");
  MMG_CHECK(x.dim() > 0, "narrow: cannot narrow a 0-d tensor");
  int64_t d = wrap_dim(dim, x.dim(), "narrow", x.shape());
  int64_t size = x.shape()[d];
  if (start < 0) start += size;
  MMG_CHECK(start >= 0 && length >= 0 && start + length <= size,
            "narrow: start {} + length {} out of range for dim {} of {}", start, length, d, shape_str(x.shape()));
  return slice(x, d, start, start + length);
}

Tensor select(const Tensor& x, int64_t dim, int64_t index) {
  MMG_PROFILE_OP("select");
  MMG_CHECK(x.dim() > 0, "select: cannot select from a 0-d tensor");
  int64_t d = wrap_dim(dim, x.dim(), "select", x.shape());
  int64_t size = x.shape()[d];
  MMG_CHECK(index >= -size && index < size, "select: index {} out of range for dim {} of {}", index, d,
            shape_str(x.shape()));
  if (index < 0) index += size;
  return squeeze(narrow(x, d, index, 1), d);
}

}  // namespace mmg
