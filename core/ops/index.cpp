// Joining, splitting and indexing: cat, stack, split, chunk, index_select, take_rows, put_rows,
// gather, masked_fill, embedding.
//
// The forwards move elements (kernels/index.h) in the input's own dtype — no conversion,
// so they work for integer and bool tensors too. Each backward sits below its forward:
// the gradient goes back to where each element came from, summed where one input element
// fed several outputs (a repeated index). Those scatter-adds are deterministic kernels.
#include <cmath>
#include <memory>
#include <string>

#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "core/ops/elementwise_impl.h"
#include "core/profile.h"
#include "kernels/cpu/copy.h"
#include "kernels/index.h"
#include "kernels/strided.h"

namespace mmg {

// "[2,3], [2,4], [5]": the shapes of a list of tensors, for error messages.
static std::string shapes_str(const std::vector<Tensor>& ts) {
  std::string s;
  for (size_t i = 0; i < ts.size(); ++i) s += (i ? ", " : "") + (ts[i].defined() ? shape_str(ts[i].shape()) : "undefined");
  return s;
}

static int64_t prod(const Shape& s, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end; ++i) p *= s[i];
  return p;
}

static void check_index_dtype(const char* op, const Tensor& index) {
  MMG_CHECK(index.dtype() == DType::i64 || index.dtype() == DType::i32, "{}: index must be i64 or i32, got {} {}", op,
            dtype_name(index.dtype()), shape_str(index.shape()));
}

// The indices as a contiguous i64 tensor (on the index's device), each checked to lie in
// [0, size). `where` says what is indexed, for the error: "index 7 is out of range for dim 0
// (size 5) of [5,3]". CUDA indices are checked on the host (a copy of n integers and a wait:
// the price of an error naming the bad index instead of a kernel fault); `host` receives
// them when asked.
static Tensor checked_index(const char* op, const Tensor& index, int64_t size, const std::string& where,
                            std::vector<int64_t>* host = nullptr) {
  Tensor idx = index.detach().to(DType::i64).contiguous();
  Tensor on_host = idx.to(Device::cpu());
  const int64_t* p = on_host.data<int64_t>();
  for (int64_t k = 0; k < idx.numel(); ++k)
    MMG_CHECK(p[k] >= 0 && p[k] < size, "{}: index {} is out of range for {} (size {})", op, p[k], where, size);
  if (host) host->assign(p, p + idx.numel());
  return idx;
}

// The inverse of an index for the CUDA scatter-add (kernels/index.h), in CSR form: the
// positions j with index[j] = k are positions[offsets[k] .. offsets[k+1]), j increasing.
// Built on the host by a counting sort, O(n + size), and copied to `device`.
struct InvertedIndex {
  Tensor offsets, positions;
};
static InvertedIndex invert_index(const std::vector<int64_t>& index, int64_t size, Device device) {
  std::vector<int64_t> offsets(static_cast<size_t>(size) + 1, 0), positions(index.size());
  for (int64_t k : index) ++offsets[k + 1];
  for (int64_t k = 0; k < size; ++k) offsets[k + 1] += offsets[k];
  std::vector<int64_t> next(offsets.begin(), offsets.end() - 1);
  for (size_t j = 0; j < index.size(); ++j) positions[next[index[j]]++] = static_cast<int64_t>(j);
  const TensorOptions opts{.dtype = DType::i64, .device = device};
  return {from_vector(offsets, {}, opts), from_vector(positions, {}, opts)};
}

// gx [outer, size, inner] = the scatter-add of g [outer, n, inner] by an inverted index, on CUDA.
static Tensor scatter_rows_cuda(const Tensor& g, const InvertedIndex& inv, const Shape& gx_shape, int64_t outer,
                                int64_t size, int64_t inner, int64_t n, const char* op) {
  DType cd = compute_dtype(g.dtype());
  Tensor gc = g.to(cd).contiguous();
  Tensor gx = empty(gx_shape, {.dtype = cd, .device = g.device()});  // every element written by the kernel
  visit_float(cd, op, [&]<class T>() {
    if constexpr (kWithCuda) {
      cuda::DeviceGuard guard(g.device().index);
      cuda::index_select_backward<T>(gc.data<T>(), inv.offsets.data<int64_t>(), inv.positions.data<int64_t>(),
                                     gx.data<T>(), outer, size, inner, n);
    }
  });
  return gx;
}

// ---- cat ----
// out = [t_0 | t_1 | ...] along dim; every other size must agree; the dtype is the
// promotion of all dtypes.  ∂L/∂t_k = the slab of ∂L/∂out that t_k filled (a view of it).
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  MMG_PROFILE_OP("cat");
  MMG_CHECK(!tensors.empty(), "cat: expected a non-empty list of tensors");
  std::string shapes = shapes_str(tensors);
  for (size_t i = 0; i < tensors.size(); ++i) MMG_CHECK(tensors[i].defined(), "cat: tensor {} is undefined ({})", i, shapes);
  const Tensor& first = tensors[0];
  MMG_CHECK(first.dim() > 0, "cat: cannot concatenate 0-d tensors ({})", shapes);
  int64_t d = wrap_dim(dim, first.dim(), "cat", first.shape());
  Shape out_shape = first.shape();
  out_shape[d] = 0;
  DType dtype = first.dtype();
  for (const Tensor& t : tensors) {
    check_same_device("cat", first, t);
    MMG_CHECK(t.dim() == first.dim(), "cat: tensors must have the same number of dims, got {}", shapes);
    for (int64_t k = 0; k < t.dim(); ++k)
      MMG_CHECK(k == d || t.shape()[k] == first.shape()[k], "cat: shapes {} must match except in dim {}", shapes, d);
    out_shape[d] += t.shape()[d];
    dtype = promote_types(dtype, t.dtype());
  }
  Tensor out = empty(out_shape, {.dtype = dtype, .device = first.device()});
  int64_t outer = prod(out_shape, 0, d), inner = prod(out_shape, d + 1, out_shape.size());
  Shape sizes;
  if (on_cuda("cat", out)) {
    // On CUDA each piece is copied into its slice of the output by the copy kernel, which
    // converts dtypes and reads any strides (no contiguous copy of the piece first).
    NoGradGuard no_grad;
    int64_t start = 0;
    for (const Tensor& t : tensors) {
      narrow(out, d, start, t.shape()[d]).copy_(t.detach());
      start += t.shape()[d];
      sizes.push_back(t.shape()[d]);
    }
  } else {
    int64_t col0 = 0;
    for (const Tensor& t : tensors) {
      Tensor tc = t.detach().to(dtype).contiguous();
      int64_t cols = t.shape()[d] * inner;
      visit_dtype(dtype, [&]<class T>() {
        cpu::cat_piece<T>(tc.data<T>(), out.data<T>(), outer, cols, out_shape[d] * inner, col0);
      });
      col0 += cols;
      sizes.push_back(t.shape()[d]);
    }
  }
  return record_op("cat", out, tensors, [d, sizes](const Tensor& g) -> Grads {
    Grads grads;
    int64_t start = 0;
    for (int64_t s : sizes) {
      grads.push_back(narrow(g, d, start, s));
      start += s;
    }
    return grads;
  });
}

// ---- stack ----
// stack(ts, dim) = cat of each t unsqueezed at dim: a new dim of size len(ts). All shapes
// must be equal. The gradient flows back through cat and unsqueeze.
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  MMG_PROFILE_OP("stack");
  MMG_CHECK(!tensors.empty(), "stack: expected a non-empty list of tensors");
  std::string shapes = shapes_str(tensors);
  for (size_t i = 0; i < tensors.size(); ++i)
    MMG_CHECK(tensors[i].defined(), "stack: tensor {} is undefined ({})", i, shapes);
  for (const Tensor& t : tensors)
    MMG_CHECK(t.shape() == tensors[0].shape(), "stack: all tensors must have the same shape, got {}", shapes);
  int64_t d = wrap_dim(dim, tensors[0].dim() + 1, "stack", tensors[0].shape());
  std::vector<Tensor> parts;
  for (const Tensor& t : tensors) parts.push_back(unsqueeze(t, d));
  return cat(parts, d);
}

// ---- split, chunk ----
// Views (narrow) of consecutive pieces of split_size along dim; the last may be smaller.
// Each piece's gradient flows back through its narrow.
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  MMG_PROFILE_OP("split");
  MMG_CHECK(x.defined(), "split: undefined tensor argument");
  MMG_CHECK(x.dim() > 0, "split: cannot split a 0-d tensor");
  int64_t d = wrap_dim(dim, x.dim(), "split", x.shape());
  int64_t size = x.shape()[d];
  MMG_CHECK(split_size > 0 || (split_size == 0 && size == 0),
            "split: split_size must be positive, got {} for dim {} of {}", split_size, d, shape_str(x.shape()));
  if (size == 0) return {narrow(x, d, 0, 0)};  // one empty piece, as PyTorch
  std::vector<Tensor> pieces;
  for (int64_t start = 0; start < size; start += split_size)
    pieces.push_back(narrow(x, d, start, std::min(split_size, size - start)));
  return pieces;
}

// PyTorch's chunk: pieces of ceil(size / chunks), so there may be fewer than `chunks`
// pieces (6 into 4 gives 3 pieces of 2). An empty dim gives `chunks` empty pieces.
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  MMG_PROFILE_OP("chunk");
  MMG_CHECK(x.defined(), "chunk: undefined tensor argument");
  MMG_CHECK(x.dim() > 0, "chunk: cannot chunk a 0-d tensor");
  int64_t d = wrap_dim(dim, x.dim(), "chunk", x.shape());
  MMG_CHECK(chunks > 0, "chunk: the number of chunks must be positive, got {} for {}", chunks, shape_str(x.shape()));
  int64_t size = x.shape()[d];
  if (size == 0) {
    std::vector<Tensor> pieces;
    for (int64_t k = 0; k < chunks; ++k) pieces.push_back(narrow(x, d, 0, 0));
    return pieces;
  }
  return split(x, (size + chunks - 1) / chunks, d);
}

// ---- index_select ----
// x viewed as [outer, size, inner]:  out[o, j, i] = x[o, index[j], i].
// ∂L/∂x[o, k, i] = Σ_{j: index[j] = k} ∂L/∂out[o, j, i]   (an index_add).
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  MMG_PROFILE_OP("index_select");
  MMG_CHECK(x.defined() && index.defined(), "index_select: undefined tensor argument");
  check_same_device("index_select", x, index);
  MMG_CHECK(x.dim() > 0, "index_select: cannot index a 0-d tensor");
  check_index_dtype("index_select", index);
  MMG_CHECK(index.dim() == 1, "index_select: index must be 1-D, got {} (input {})", shape_str(index.shape()),
            shape_str(x.shape()));
  int64_t d = wrap_dim(dim, x.dim(), "index_select", x.shape());
  int64_t size = x.shape()[d], n = index.numel();
  std::vector<int64_t> host;  // only CUDA's backward needs the indices on the host (invert_index)
  Tensor idx = checked_index("index_select", index, size, fmt::format("dim {} of {}", d, shape_str(x.shape())),
                             x.device().is_cuda() ? &host : nullptr);
  int64_t outer = prod(x.shape(), 0, d), inner = prod(x.shape(), d + 1, x.shape().size());
  Shape out_shape = x.shape();
  out_shape[d] = n;
  Tensor xc = x.detach().contiguous();
  Tensor out = empty(out_shape, {.dtype = x.dtype(), .device = x.device()});
  Shape in_shape = x.shape();
  if (on_cuda("index_select", out)) {
    visit_dtype(x.dtype(), [&]<class T>() {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(x.device().index);
        cuda::index_select_forward<T>(xc.data<T>(), idx.data<int64_t>(), out.data<T>(), outer, size, inner, n);
      }
    });
    if (!(x.requires_grad() && grad_mode_enabled())) return out;  // no backward: no inverse needed
    InvertedIndex inv = invert_index(host, size, x.device());
    return record_op("index_select", out, {x}, [inv, in_shape, outer, size, inner, n](const Tensor& g) -> Grads {
      return {scatter_rows_cuda(g, inv, in_shape, outer, size, inner, n, "index_select backward")};
    });
  }
  visit_dtype(x.dtype(), [&]<class T>() {
    cpu::index_select_forward<T>(xc.data<T>(), idx.data<int64_t>(), out.data<T>(), outer, size, inner, n);
  });
  return record_op("index_select", out, {x}, [idx, in_shape, outer, size, inner, n](const Tensor& g) -> Grads {
    DType cd = compute_dtype(g.dtype());
    Tensor gc = g.to(cd).contiguous();
    Tensor gx = zeros(in_shape, {.dtype = cd, .device = g.device()});
    visit_float(cd, "index_select backward", [&]<class T>() {
      cpu::index_select_backward<T>(gc.data<T>(), idx.data<int64_t>(), gx.data<T>(), outer, size, inner, n);
    });
    return {gx};
  });
}

// ---- take_rows, put_rows ----
// An index of distinct rows makes row gathering and row placing each other's adjoint:
//   take_rows:  out[i] = x[index[i]]                     ∂L/∂x = put_rows(∂L/∂out, index, R)
//   put_rows:   out[index[i]] = y[i], other rows zero    ∂L/∂y = take_rows(∂L/∂out, index)
// so neither backward needs index_select's scatter-add (which must sum repeats), only copies.

// Rows in [0, rows), each to appear once in `host`.
static void check_no_repeats(const char* op, const std::vector<int64_t>& host, int64_t rows, const Shape& shape) {
  std::vector<bool> seen(static_cast<size_t>(rows), false);
  for (int64_t r : host) {
    MMG_CHECK(!seen[r], "{}: row {} appears twice in the index (rows of {}); index_select allows repeats", op, r,
              shape_str(shape));
    seen[r] = true;
  }
}

// The index on the host, each entry checked to lie in [0, rows) and to appear once.
static std::vector<int64_t> distinct_rows(const char* op, const Tensor& index, int64_t rows, const Shape& shape) {
  check_index_dtype(op, index);
  MMG_CHECK(index.dim() == 1, "{}: index must be 1-D, got {} (rows of {})", op, shape_str(index.shape()),
            shape_str(shape));
  std::vector<int64_t> host;
  checked_index(op, index, rows, fmt::format("the {} rows of {}", rows, shape_str(shape)), &host);
  check_no_repeats(op, host, rows, shape);
  return host;
}

// A checked index: on the host (distinct, in range), on its device, and, for put_rows, the
// inverse map source[r] = the row of y placed at output row r, or -1 (a zero row).
struct RowIndex::Data {
  Tensor index;               // [n] i64, contiguous, on the index's device
  std::vector<int64_t> host;  // the same on the host
  std::vector<int64_t> source;
  Tensor device_source;  // CUDA: source with n for -1 (put_rows gathers from y with a zero row appended)
  int64_t rows = 0;
};
using CheckedRows = std::shared_ptr<const RowIndex::Data>;

// `index`: the same entries already on `device` (a tensor index the caller checked), or
// undefined, and then they are copied there from the host.
static CheckedRows make_rows(std::vector<int64_t> host, int64_t rows, Device device, const Tensor& index = Tensor()) {
  auto d = std::make_shared<RowIndex::Data>();
  const int64_t n = static_cast<int64_t>(host.size());
  d->rows = rows;
  d->source.assign(static_cast<size_t>(rows), -1);
  for (int64_t i = 0; i < n; ++i) d->source[host[i]] = i;
  const TensorOptions ints{.dtype = DType::i64, .device = device};
  d->index = index.defined() ? index.detach().to(DType::i64).contiguous() : from_vector(host, {n}, ints);
  if (device.is_cuda()) {
    std::vector<int64_t> src = d->source;
    for (int64_t& r : src)
      if (r < 0) r = n;
    d->device_source = from_vector(src, {rows}, ints);
  }
  d->host = std::move(host);
  return d;
}

RowIndex::RowIndex(const Tensor& index, int64_t rows) {
  MMG_CHECK(index.defined(), "RowIndex: undefined index");
  MMG_CHECK(rows >= 0, "RowIndex: rows must be >= 0, got {}", rows);
  data_ = make_rows(distinct_rows("RowIndex", index, rows, {rows}), rows, index.device(), index);
}

RowIndex::RowIndex(const std::vector<int64_t>& index, int64_t rows, Device device) {
  MMG_CHECK(rows >= 0, "RowIndex: rows must be >= 0, got {}", rows);
  for (int64_t r : index) MMG_CHECK(r >= 0 && r < rows, "RowIndex: index {} is out of range for {} rows", r, rows);
  check_no_repeats("RowIndex", index, rows, {rows});
  data_ = make_rows(index, rows, device);
}

static const RowIndex::Data& checked(const std::shared_ptr<const RowIndex::Data>& d) {
  MMG_CHECK(d != nullptr, "RowIndex: used before it was made (a default-constructed RowIndex)");
  return *d;
}
const Tensor& RowIndex::index() const { return checked(data_).index; }
int64_t RowIndex::size() const { return checked(data_).index.numel(); }
int64_t RowIndex::rows() const { return checked(data_).rows; }

// The two ops once their index is checked. Each backward calls the other directly with the
// same checked index: no second check (on CUDA, no second copy of the index to the host).
static Tensor put_checked(const Tensor& y, const CheckedRows& rows_of);

static Tensor take_checked(const Tensor& x, const CheckedRows& rows_of) {
  const int64_t R = x.size(0), n = rows_of->index.numel(), inner = prod(x.shape(), 1, x.shape().size());
  Shape out_shape = x.shape();
  out_shape[0] = n;
  Tensor xc = x.detach().contiguous();
  Tensor out = empty(out_shape, {.dtype = x.dtype(), .device = x.device()});
  if (on_cuda("take_rows", out)) {
    visit_dtype(x.dtype(), [&]<class T>() {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(x.device().index);
        cuda::index_select_forward<T>(xc.data<T>(), rows_of->index.data<int64_t>(), out.data<T>(), 1, R, inner, n);
      }
    });
  } else {
    visit_dtype(x.dtype(),
                [&]<class T>() { cpu::copy_rows<T>(xc.data<T>(), rows_of->host.data(), out.data<T>(), n, inner); });
  }
  return record_op("take_rows", out, {x}, [rows_of](const Tensor& g) -> Grads { return {put_checked(g, rows_of)}; });
}

static Tensor put_checked(const Tensor& y, const CheckedRows& rows_of) {
  const int64_t rows = rows_of->rows, n = y.size(0), inner = prod(y.shape(), 1, y.shape().size());
  Shape out_shape = y.shape();
  out_shape[0] = rows;
  Tensor yc = y.detach().contiguous();
  Tensor out = empty(out_shape, {.dtype = y.dtype(), .device = y.device()});
  if (on_cuda("put_rows", out)) {
    NoGradGuard no_grad;
    Shape zero_row = y.shape();
    zero_row[0] = 1;
    Tensor padded = cat({yc, zeros(zero_row, {.dtype = y.dtype(), .device = y.device()})}, 0);
    visit_dtype(y.dtype(), [&]<class T>() {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(y.device().index);
        cuda::index_select_forward<T>(padded.data<T>(), rows_of->device_source.data<int64_t>(), out.data<T>(), 1,
                                      n + 1, inner, rows);
      }
    });
  } else {
    visit_dtype(y.dtype(), [&]<class T>() {
      cpu::copy_rows<T>(yc.data<T>(), rows_of->source.data(), out.data<T>(), rows, inner);
    });
  }
  return record_op("put_rows", out, {y}, [rows_of](const Tensor& g) -> Grads { return {take_checked(g, rows_of)}; });
}

Tensor take_rows(const Tensor& x, const Tensor& index) {
  MMG_PROFILE_OP("take_rows");
  MMG_CHECK(x.defined() && index.defined(), "take_rows: undefined tensor argument");
  check_same_device("take_rows", x, index);
  MMG_CHECK(x.dim() > 0, "take_rows: cannot take rows of a 0-d tensor");
  return take_checked(x,
                      make_rows(distinct_rows("take_rows", index, x.size(0), x.shape()), x.size(0), x.device(), index));
}

Tensor put_rows(const Tensor& y, const Tensor& index, int64_t rows) {
  MMG_PROFILE_OP("put_rows");
  MMG_CHECK(y.defined() && index.defined(), "put_rows: undefined tensor argument");
  check_same_device("put_rows", y, index);
  MMG_CHECK(y.dim() > 0, "put_rows: cannot put rows of a 0-d tensor");
  MMG_CHECK(rows >= 0, "put_rows: rows must be >= 0, got {}", rows);
  MMG_CHECK(index.dim() == 1 && index.numel() == y.size(0),
            "put_rows: index {} must name one output row for each of the {} rows of y {}", shape_str(index.shape()),
            y.size(0), shape_str(y.shape()));
  Shape out_shape = y.shape();
  out_shape[0] = rows;
  return put_checked(y, make_rows(distinct_rows("put_rows", index, rows, out_shape), rows, y.device(), index));
}

Tensor take_rows(const Tensor& x, const RowIndex& index) {
  MMG_PROFILE_OP("take_rows");
  const CheckedRows& d = index.data_;
  MMG_CHECK(x.defined() && d, "take_rows: undefined tensor or RowIndex argument");
  MMG_CHECK(x.dim() > 0 && x.size(0) == d->rows, "take_rows: x {} must have the index's {} rows", shape_str(x.shape()),
            d->rows);
  check_same_device("take_rows", x, d->index);
  return take_checked(x, d);
}

Tensor put_rows(const Tensor& y, const RowIndex& index) {
  MMG_PROFILE_OP("put_rows");
  const CheckedRows& d = index.data_;
  MMG_CHECK(y.defined() && d, "put_rows: undefined tensor or RowIndex argument");
  MMG_CHECK(y.dim() > 0 && y.size(0) == d->index.numel(),
            "put_rows: y {} must have one row for each of the index's {} entries", shape_str(y.shape()),
            d->index.numel());
  check_same_device("put_rows", y, d->index);
  return put_checked(y, d);
}

// ---- gather ----
// torch.gather: out has the index's shape, and (for dim = 1 of a 3-d x)
//   out[a, b, c] = x[a, index[a, b, c], c]
// The index has x's number of dims and is no larger than x outside dim.
// ∂L/∂x is the scatter-add of ∂L/∂out to the same places. On CUDA the index is range-checked
// on the host like index_select's, and the backward's scatter-add gives each line along dim
// to one thread (kernels/index.h): deterministic, the CPU's order of terms.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  MMG_PROFILE_OP("gather");
  MMG_CHECK(x.defined() && index.defined(), "gather: undefined tensor argument");
  check_same_device("gather", x, index);
  MMG_CHECK(x.dim() > 0, "gather: cannot gather from a 0-d tensor");
  MMG_CHECK(x.dim() <= kMaxDims, "gather: input {} has more than {} dims", shape_str(x.shape()), kMaxDims);
  check_index_dtype("gather", index);
  MMG_CHECK(index.dim() == x.dim(), "gather: index {} must have as many dims as the input {}",
            shape_str(index.shape()), shape_str(x.shape()));
  int64_t d = wrap_dim(dim, x.dim(), "gather", x.shape());
  for (int64_t k = 0; k < x.dim(); ++k)
    MMG_CHECK(k == d || index.shape()[k] <= x.shape()[k],
              "gather: index {} is larger than the input {} in dim {} (gathering along dim {})",
              shape_str(index.shape()), shape_str(x.shape()), k, d);
  const bool cuda = on_cuda("gather", x);
  Tensor idx = checked_index("gather", index, x.shape()[d], fmt::format("dim {} of {}", d, shape_str(x.shape())));
  Tensor xd = x.detach();
  Tensor out = empty(index.shape(), {.dtype = x.dtype(), .device = x.device()});
  int ndim = static_cast<int>(x.dim());
  visit_dtype(x.dtype(), [&]<class T>() {
    if (cuda) {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(x.device().index);
        cuda::gather_forward<T>(static_cast<const T*>(xd.data_ptr()), xd.strides().data(), idx.data<int64_t>(),
                                out.data<T>(), ndim, idx.shape().data(), d);
      }
      return;
    }
    cpu::gather_forward<T>(xd.data<T>(), xd.strides().data(), idx.data<int64_t>(), out.data<T>(), ndim,
                           idx.shape().data(), d);
  });
  Shape in_shape = x.shape();
  return record_op("gather", out, {x}, [idx, in_shape, ndim, d, cuda](const Tensor& g) -> Grads {
    DType cd = compute_dtype(g.dtype());
    Tensor gc = g.to(cd).contiguous();
    check_same_device("gather backward", idx, gc);
    Tensor gx = zeros(in_shape, {.dtype = cd, .device = g.device()});
    visit_float(cd, "gather backward", [&]<class T>() {
      if (cuda) {
        if constexpr (kWithCuda) {
          cuda::DeviceGuard guard(gc.device().index);
          cuda::gather_backward<T>(gc.data<T>(), idx.data<int64_t>(), gx.data<T>(), gx.strides().data(), ndim,
                                   idx.shape().data(), d);
        }
        return;
      }
      cpu::gather_backward<T>(gc.data<T>(), idx.data<int64_t>(), gx.data<T>(), gx.strides().data(), ndim,
                              idx.shape().data(), d);
    });
    return {gx};
  });
}

// ---- masked_fill ----
// out = mask ? value : x, the bool mask broadcast to x's shape.
// ∂L/∂x = ∂L/∂out where the mask is false, 0 where it is true (those elements are constants).
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  MMG_PROFILE_OP("masked_fill");
  MMG_CHECK(x.defined() && mask.defined(), "masked_fill: undefined tensor argument");
  check_same_device("masked_fill", x, mask);
  MMG_CHECK(mask.dtype() == DType::boolean, "masked_fill: mask must be bool, got {} {}", dtype_name(mask.dtype()),
            shape_str(mask.shape()));
  bool broadcasts = mask.dim() <= x.dim();
  for (int64_t k = 1; broadcasts && k <= mask.dim(); ++k) {
    int64_t m = mask.shape()[mask.dim() - k], s = x.shape()[x.dim() - k];
    broadcasts = m == s || m == 1;
  }
  MMG_CHECK(broadcasts, "masked_fill: mask {} does not broadcast to the input {}", shape_str(mask.shape()),
            shape_str(x.shape()));
  MMG_CHECK(x.dim() <= kMaxDims, "masked_fill: input {} has more than {} dims", shape_str(x.shape()), kMaxDims);
  MMG_CHECK(is_floating(x.dtype()) || std::isfinite(value), "masked_fill: value {} cannot be stored in {} {}", value,
            dtype_name(x.dtype()), shape_str(x.shape()));
  Tensor xd = x.detach();
  Tensor m = expand(mask.detach(), x.shape());  // stride 0 along the broadcast dims
  Tensor out = empty(x.shape(), {.dtype = x.dtype(), .device = x.device()});
  if (on_cuda("masked_fill", x)) {
    // out = where(mask, value, x): the where kernel, the value a 0-d tensor read with stride 0.
    Tensor v = expand(scalar_tensor(value, {.dtype = x.dtype(), .device = x.device()}), x.shape());
    visit_dtype(x.dtype(), [&]<class T>() {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(x.device().index);
        cuda::where<T>(m.data<bool>(), m.strides().data(), static_cast<const T*>(v.data_ptr()), v.strides().data(),
                       static_cast<const T*>(xd.data_ptr()), xd.strides().data(), static_cast<T*>(out.data_ptr()),
                       static_cast<int>(x.dim()), x.shape().data(), x.numel());
      }
    });
  } else {
    visit_dtype(x.dtype(), [&]<class T>() {
      cpu::masked_fill<T>(xd.data<T>(), xd.strides().data(), m.data<bool>(), m.strides().data(),
                          cpu::convert_value<T>(value), out.data<T>(), static_cast<int>(x.dim()), x.shape().data());
    });
  }
  Tensor md = mask.detach();
  return record_op("masked_fill", out, {x}, [md](const Tensor& g) -> Grads { return {masked_fill(g, md, 0.0)}; });
}

// ---- embedding ----
// weight [V, D], indices of any shape:  out[..., :] = weight[indices[...], :], shape [..., D].
// ∂L/∂weight[v, :] = Σ_{positions p with indices[p] = v} ∂L/∂out[p, :]  (deterministic scatter-add).
Tensor embedding(const Tensor& weight, const Tensor& indices) {
  MMG_PROFILE_OP("embedding");
  MMG_CHECK(weight.defined() && indices.defined(), "embedding: undefined tensor argument");
  check_same_device("embedding", weight, indices);
  MMG_CHECK(weight.dim() == 2, "embedding: weight must be 2-D [V,D], got {}", shape_str(weight.shape()));
  check_index_dtype("embedding", indices);
  int64_t V = weight.shape()[0], D = weight.shape()[1], n = indices.numel();
  std::vector<int64_t> host;  // only CUDA's backward needs the indices on the host (invert_index)
  Tensor idx = checked_index("embedding", indices, V, fmt::format("the rows of weight {}", shape_str(weight.shape())),
                             weight.device().is_cuda() ? &host : nullptr);
  Shape out_shape = indices.shape();
  out_shape.push_back(D);
  Tensor wc = weight.detach().contiguous();
  Tensor out = empty(out_shape, {.dtype = weight.dtype(), .device = weight.device()});
  if (on_cuda("embedding", out)) {
    // The rows of weight [V, D] gathered: index_select with outer = 1, size = V, inner = D.
    visit_dtype(weight.dtype(), [&]<class T>() {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(weight.device().index);
        cuda::index_select_forward<T>(wc.data<T>(), idx.data<int64_t>(), out.data<T>(), 1, V, D, n);
      }
    });
    if (!(weight.requires_grad() && grad_mode_enabled())) return out;  // no backward: no inverse needed
    InvertedIndex inv = invert_index(host, V, weight.device());
    return record_op("embedding", out, {weight}, [inv, V, D, n](const Tensor& g) -> Grads {
      return {scatter_rows_cuda(g, inv, {V, D}, 1, V, D, n, "embedding backward")};
    });
  }
  visit_dtype(weight.dtype(), [&]<class T>() {
    cpu::embedding_forward<T>(wc.data<T>(), idx.data<int64_t>(), out.data<T>(), n, D);
  });
  return record_op("embedding", out, {weight}, [idx, V, D, n](const Tensor& g) -> Grads {
    DType cd = compute_dtype(g.dtype());
    Tensor gc = g.to(cd).contiguous();
    Tensor dw = zeros({V, D}, {.dtype = cd, .device = g.device()});
    visit_float(cd, "embedding backward", [&]<class T>() {
      cpu::embedding_backward<T>(gc.data<T>(), idx.data<int64_t>(), dw.data<T>(), n, D);
    });
    return {dw};
  });
}

}  // namespace mmg
