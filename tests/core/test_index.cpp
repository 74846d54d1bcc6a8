// cat, stack, split, chunk, index_select, take_rows, put_rows, gather, masked_fill, embedding: values against
// naive loops over multi-indices, non-contiguous inputs, negative dims, gradients against
// naive scatter-adds, determinism across thread counts, and the error messages.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "core/mmgrad.h"
#include "kernels/cpu/parallel.h"

using namespace mmg;

namespace {

const TensorOptions f64o{.dtype = DType::f64};

// Row-major offset of a multi-index in `shape`.
int64_t at(const Shape& shape, const Shape& idx) {
  int64_t off = 0;
  for (size_t d = 0; d < shape.size(); ++d) off = off * shape[d] + idx[d];
  return off;
}

// Every multi-index of `shape`, in row-major order.
std::vector<Shape> all_indices(const Shape& shape) {
  std::vector<Shape> out;
  int64_t n = numel_of(shape);
  for (int64_t k = 0; k < n; ++k) {
    Shape idx(shape.size());
    int64_t r = k;
    for (size_t d = shape.size(); d-- > 0;) {
      idx[d] = r % shape[d];
      r /= shape[d];
    }
    out.push_back(idx);
  }
  return out;
}

std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }

// Reference cat: for each output position, find the piece its coordinate along d falls in.
std::vector<double> naive_cat(const std::vector<Tensor>& ts, int64_t d, const Shape& out_shape) {
  std::vector<double> out(numel_of(out_shape));
  for (const Shape& idx : all_indices(out_shape)) {
    Shape in = idx;
    for (const Tensor& t : ts) {
      if (in[d] < t.shape()[d]) {
        out[at(out_shape, idx)] = vals(t)[at(t.shape(), in)];
        break;
      }
      in[d] -= t.shape()[d];
    }
  }
  return out;
}

// Restores the thread count when a test changes it.
struct ThreadsGuard {
  int saved = cpu::num_threads();
  ~ThreadsGuard() { cpu::set_num_threads(saved); }
};

}  // namespace

// ---------------------------------------------------------------- cat, stack
TEST_CASE("cat joins along any dim, negative dims included, values against loops") {
  Generator g(1);
  Shape base = {2, 3, 4};
  for (int64_t dim : {0, 1, 2, -1, -3}) {
    int64_t d = dim < 0 ? dim + 3 : dim;
    std::vector<Tensor> ts;
    for (int64_t s : {2, 1, 3}) {
      Shape sh = base;
      sh[d] = s;
      ts.push_back(randn(sh, f64o, &g));
    }
    Tensor out = cat(ts, dim);
    Shape want = base;
    want[d] = 6;
    CAPTURE(dim);
    REQUIRE(out.shape() == want);
    CHECK(vals(out) == naive_cat(ts, d, want));
  }
}

TEST_CASE("cat of non-contiguous inputs, mixed dtypes (promoted), integers and bools") {
  Generator g(2);
  Tensor a = randn({4, 2}, f64o, &g).transpose(0, 1);       // [2,4], strides [1,2]
  Tensor b = randn({2, 9}, f64o, &g).slice(1, 0, 9, 3);     // [2,3], stride 3 along dim 1
  Tensor out = cat({a, b}, 1);
  CHECK(out.shape() == Shape{2, 7});
  CHECK(vals(out) == naive_cat({a.contiguous(), b.contiguous()}, 1, {2, 7}));

  Tensor ids = from_vector<int64_t>({1, 2, 3}, {1, 3});
  Tensor f = tensor({{0.5, 1.5, 2.5}});
  Tensor mixed = cat({ids, f}, 0);
  CHECK(mixed.dtype() == DType::f32);
  CHECK(vals(mixed) == std::vector<double>{1, 2, 3, 0.5, 1.5, 2.5});

  Tensor ints = cat({ids, from_vector<int64_t>({7}, {1, 1})}, -1);
  CHECK(ints.dtype() == DType::i64);
  CHECK(ints.to_vector<int64_t>() == std::vector<int64_t>{1, 2, 3, 7});

  Tensor flags = cat({gt(tensor({1, -1}), scalar_tensor(0.0)), gt(tensor({2}), scalar_tensor(0.0))});
  CHECK(flags.dtype() == DType::boolean);
  CHECK(vals(flags) == std::vector<double>{1, 0, 1});
}

TEST_CASE("cat backward: each input receives its slab of the gradient, in its own dtype") {
  Generator g(3);
  Tensor a = randn({2, 3}, f64o, &g).requires_grad_();
  Tensor b = randn({2, 2}, {.dtype = DType::f32}, &g).requires_grad_();
  Tensor w = randn({2, 5}, f64o, &g);
  Tensor y = cat({a, b}, 1);
  CHECK(y.dtype() == DType::f64);
  sum(y * w).backward();
  auto vw = vals(w), ga = vals(a.grad()), gb = vals(b.grad());
  CHECK(b.grad().dtype() == DType::f32);
  for (int64_t i = 0; i < 2; ++i) {
    for (int64_t j = 0; j < 3; ++j) CHECK(ga[i * 3 + j] == vw[i * 5 + j]);
    for (int64_t j = 0; j < 2; ++j) CHECK(gb[i * 2 + j] == doctest::Approx(vw[i * 5 + 3 + j]).epsilon(1e-6));
  }
}

TEST_CASE("cat errors list the shapes") {
  CHECK_THROWS_WITH_AS(cat({zeros({2, 3}), zeros({3, 3})}, 1),
                       doctest::Contains("cat: shapes [2,3], [3,3] must match except in dim 1"), Error);
  CHECK_THROWS_WITH_AS(cat({zeros({2, 3}), zeros({3})}),
                       doctest::Contains("cat: tensors must have the same number of dims, got [2,3], [3]"), Error);
  CHECK_THROWS_WITH_AS(cat({}), doctest::Contains("cat: expected a non-empty list of tensors"), Error);
  CHECK_THROWS_WITH_AS(cat({scalar_tensor(1), scalar_tensor(2)}),
                       doctest::Contains("cat: cannot concatenate 0-d tensors ([], [])"), Error);
  CHECK_THROWS_WITH_AS(cat({zeros({2, 3}), Tensor()}), doctest::Contains("cat: tensor 1 is undefined ([2,3], undefined)"),
                       Error);
  CHECK_THROWS_WITH_AS(cat({zeros({2, 3})}, 2), doctest::Contains("cat: dim 2 out of range for [2,3]"), Error);
}

TEST_CASE("stack adds a dim at any position, values against loops, gradient") {
  Generator g(4);
  std::vector<Tensor> ts;
  for (int k = 0; k < 3; ++k) ts.push_back(randn({2, 5}, f64o, &g));
  for (int64_t dim : {0, 1, 2, -1, -3}) {
    int64_t d = dim < 0 ? dim + 3 : dim;
    Tensor out = stack(ts, dim);
    Shape want = {2, 5};
    want.insert(want.begin() + d, 3);
    CAPTURE(dim);
    REQUIRE(out.shape() == want);
    auto o = vals(out);
    int mismatches = 0;
    for (const Shape& idx : all_indices(want)) {
      Shape in = idx;
      int64_t k = in[d];
      in.erase(in.begin() + d);
      mismatches += o[at(want, idx)] != vals(ts[k])[at({2, 5}, in)];
    }
    CHECK(mismatches == 0);
  }
  Tensor a = randn({4}, f64o, &g).requires_grad_(), b = randn({4}, f64o, &g).requires_grad_();
  sum(stack({a, b}, -1) * tensor({1.0, 10.0}, f64o)).backward();
  CHECK(vals(a.grad()) == std::vector<double>(4, 1.0));
  CHECK(vals(b.grad()) == std::vector<double>(4, 10.0));
}

TEST_CASE("stack errors list the shapes") {
  CHECK_THROWS_WITH_AS(stack({zeros({2, 3}), zeros({2, 4})}),
                       doctest::Contains("stack: all tensors must have the same shape, got [2,3], [2,4]"), Error);
  CHECK_THROWS_WITH_AS(stack({}), doctest::Contains("stack: expected a non-empty list of tensors"), Error);
  CHECK_THROWS_WITH_AS(stack({zeros({2, 3})}, 3), doctest::Contains("stack: dim 3 out of range for [2,3]"), Error);
}

// ---------------------------------------------------------------- split, chunk
namespace {
Shape sizes_along(const std::vector<Tensor>& pieces, int64_t d) {
  Shape s;
  for (const Tensor& p : pieces) s.push_back(p.shape()[d]);
  return s;
}
}  // namespace

TEST_CASE("split gives views of split_size, the last smaller") {
  Tensor x = arange(30, {.dtype = DType::f64}).reshape({10, 3});
  auto p = split(x, 3, 0);
  CHECK(sizes_along(p, 0) == Shape{3, 3, 3, 1});
  for (size_t k = 0; k < p.size(); ++k) {
    CHECK(p[k].storage().get() == x.storage().get());  // a view, not a copy
    auto v = vals(p[k]);
    for (size_t e = 0; e < v.size(); ++e) CHECK(v[e] == static_cast<double>(9 * k + e));
  }
  auto q = split(x.transpose(0, 1), 4, -1);  // [3,10] along the last dim
  CHECK(sizes_along(q, 1) == Shape{4, 4, 2});
  CHECK(vals(q[2]) == std::vector<double>{24, 27, 1 + 24, 1 + 27, 2 + 24, 2 + 27});
  CHECK(split(x, 20, 0).size() == 1);
  auto e = split(zeros({0, 3}), 2, 0);
  CHECK(e.size() == 1);
  CHECK(e[0].shape() == Shape{0, 3});
}

TEST_CASE("chunk follows PyTorch: pieces of ceil(size / chunks)") {
  auto pieces = [](int64_t size, int64_t chunks) { return sizes_along(chunk(zeros({2, size}), chunks, 1), 1); };
  CHECK(pieces(6, 4) == Shape{2, 2, 2});  // fewer pieces than asked
  CHECK(pieces(5, 3) == Shape{2, 2, 1});
  CHECK(pieces(10, 3) == Shape{4, 4, 2});
  CHECK(pieces(3, 5) == Shape{1, 1, 1});
  CHECK(pieces(6, 3) == Shape{2, 2, 2});
  CHECK(pieces(0, 3) == Shape{0, 0, 0});
  Tensor x = arange(12, {.dtype = DType::f64}).reshape({4, 3});
  auto c = chunk(x, 2, -2);
  CHECK(vals(c[1]) == std::vector<double>{6, 7, 8, 9, 10, 11});
}

TEST_CASE("split and chunk pass gradients back through each piece") {
  Tensor x = zeros({10, 2}, f64o).requires_grad_();
  auto p = split(x, 3, 0);
  (sum(p[0]) * 2.0 + sum(p[3]) * 5.0).backward();
  auto gx = vals(x.grad());
  for (int64_t r = 0; r < 10; ++r)
    for (int64_t c = 0; c < 2; ++c) CHECK(gx[r * 2 + c] == (r < 3 ? 2.0 : r == 9 ? 5.0 : 0.0));
  Tensor y = zeros({2, 5}, f64o).requires_grad_();
  auto q = chunk(y, 2, 1);  // [2,3], [2,2]
  sum(q[1] * 3.0).backward();
  CHECK(vals(y.grad()) == std::vector<double>{0, 0, 0, 3, 3, 0, 0, 0, 3, 3});
}

TEST_CASE("split and chunk errors") {
  CHECK_THROWS_WITH_AS(split(zeros({4, 3}), 0, 0),
                       doctest::Contains("split: split_size must be positive, got 0 for dim 0 of [4,3]"), Error);
  CHECK_THROWS_WITH_AS(chunk(zeros({4, 3}), 0, 1),
                       doctest::Contains("chunk: the number of chunks must be positive, got 0 for [4,3]"), Error);
  CHECK_THROWS_WITH_AS(split(scalar_tensor(1), 1), doctest::Contains("split: cannot split a 0-d tensor"), Error);
  CHECK_THROWS_WITH_AS(chunk(zeros({4}), 2, 1), doctest::Contains("chunk: dim 1 out of range for [4]"), Error);
}

// ---------------------------------------------------------------- index_select
TEST_CASE("index_select along every dim, with i64 and i32 indices, values against loops") {
  Generator g(5);
  Tensor x = randn({4, 5, 3}, f64o, &g);
  auto vx = vals(x);
  std::vector<int64_t> raw = {2, 0, 2, 1, 2, 0};
  for (int64_t dim : {0, 1, 2, -1, -2}) {
    int64_t d = dim < 0 ? dim + 3 : dim;
    for (DType it : {DType::i64, DType::i32}) {
      Tensor index = from_vector<int64_t>(raw).to(it);
      Tensor out = index_select(x, dim, index);
      Shape want = x.shape();
      want[d] = 6;
      CAPTURE(dim);
      REQUIRE(out.shape() == want);
      auto o = vals(out);
      int mismatches = 0;
      for (const Shape& idx : all_indices(want)) {
        Shape in = idx;
        in[d] = raw[idx[d]];
        mismatches += o[at(want, idx)] != vx[at(x.shape(), in)];
      }
      CHECK(mismatches == 0);
    }
  }
}

TEST_CASE("index_select on non-contiguous and integer inputs") {
  Generator g(6);
  Tensor base = randn({3, 4, 5}, f64o, &g);
  Tensor x = base.permute({2, 0, 1});  // [5,3,4], not contiguous
  Tensor index = from_vector<int64_t>({2, 2, 0});
  CHECK(vals(index_select(x, 1, index)) == vals(index_select(x.contiguous(), 1, index)));
  Tensor direct = index_select(x, 0, from_vector<int64_t>({4}));
  CHECK(vals(direct) == vals(base.contiguous().slice(2, 4, 5).permute({2, 0, 1}).contiguous()));
  Tensor ids = from_vector<int64_t>({10, 11, 12, 13});
  CHECK(index_select(ids, 0, from_vector<int32_t>({3, 0})).to_vector<int64_t>() == std::vector<int64_t>{13, 10});
}

// ---------------------------------------------------------------- take_rows, put_rows
TEST_CASE("take_rows and put_rows: values against loops, each the other's backward, every storage dtype") {
  Generator g(8);
  Tensor x = randn({6, 2, 3}, f64o, &g);
  const std::vector<int64_t> rows = {4, 0, 5, 2};
  Tensor index = from_vector<int64_t>(rows);
  Tensor taken = take_rows(x, index);
  REQUIRE(taken.shape() == Shape{4, 2, 3});
  for (size_t i = 0; i < rows.size(); ++i)
    CHECK(vals(select(taken, 0, static_cast<int64_t>(i))) == vals(select(x, 0, rows[i])));
  Tensor put = put_rows(taken, index, 6);
  REQUIRE(put.shape() == Shape{6, 2, 3});
  for (int64_t r = 0; r < 6; ++r) {
    CAPTURE(r);
    const bool named = std::find(rows.begin(), rows.end(), r) != rows.end();
    CHECK(vals(select(put, 0, r)) == (named ? vals(select(x, 0, r)) : std::vector<double>(6, 0.0)));
  }
  // Adjoint: the gradient of take_rows is put_rows of the gradient, and back.
  Tensor xl = x.clone().requires_grad_(true);
  Tensor w = randn({4, 2, 3}, f64o, &g);
  sum(take_rows(xl, index) * w).backward();
  CHECK(vals(xl.grad()) == vals(put_rows(w, index, 6)));
  Tensor yl = taken.detach().requires_grad_(true);
  Tensor v = randn({6, 2, 3}, f64o, &g);
  sum(put_rows(yl, index, 6) * v).backward();
  CHECK(vals(yl.grad()) == vals(take_rows(v, index)));
  // Pure copies: integer, bool and half tables, strided inputs, i32 indices.
  Tensor ids = from_vector<int64_t>({10, 11, 12, 13});
  CHECK(take_rows(ids, from_vector<int32_t>({3, 0})).to_vector<int64_t>() == std::vector<int64_t>{13, 10});
  CHECK(put_rows(ids, from_vector<int64_t>({1, 0, 4, 2}), 6).to_vector<int64_t>() ==
        std::vector<int64_t>{11, 10, 13, 0, 12, 0});
  Tensor flags = from_vector<bool>({true, false, true});
  CHECK(put_rows(flags, from_vector<int64_t>({2, 0, 1}), 4).to_vector<int64_t>() == std::vector<int64_t>{0, 1, 1, 0});
  Tensor half = x.to(DType::bf16);
  CHECK(vals(take_rows(half, index)) == vals(taken.to(DType::bf16)));
  Tensor strided = x.permute({1, 0, 2});  // [2,6,3]
  CHECK(vals(take_rows(strided, from_vector<int64_t>({1}))) == vals(strided.contiguous().slice(0, 1, 2)));
  CHECK(take_rows(x, from_vector<int64_t>(std::vector<int64_t>{})).shape() == Shape{0, 2, 3});
  CHECK(vals(put_rows(x.slice(0, 0, 0), from_vector<int64_t>(std::vector<int64_t>{}), 2)) ==
        std::vector<double>(12, 0.0));
}

// A RowIndex is the index checked once: the same values and gradients as the tensor index,
// from a tensor or a host vector, and its own errors.
TEST_CASE("take_rows and put_rows with a RowIndex: the tensor index's values and gradients, errors named") {
  Tensor x = randn({7, 2, 3}, {.dtype = DType::f64});
  const std::vector<int64_t> rows{5, 0, 3, 6};
  Tensor index = from_vector(rows);
  for (const RowIndex& ri : {RowIndex(index, 7), RowIndex(rows, 7), RowIndex(from_vector<int32_t>({5, 0, 3, 6}), 7)}) {
    CHECK(ri.size() == 4);
    CHECK(ri.rows() == 7);
    CHECK(ri.index().to_vector<int64_t>() == rows);
    CHECK(take_rows(x, ri).to_vector<double>() == take_rows(x, index).to_vector<double>());
    Tensor y = randn({4, 2, 3}, {.dtype = DType::f64});
    CHECK(put_rows(y, ri).to_vector<double>() == put_rows(y, index, 7).to_vector<double>());
    // The gradients through a chain of both, against the tensor-index ops.
    Tensor a = x.clone().requires_grad_(), b = x.clone().requires_grad_();
    Tensor w = randn({7, 2, 3}, {.dtype = DType::f64});
    sum(put_rows(take_rows(a, ri) * 3.0, ri) * w).backward();
    sum(put_rows(take_rows(b, index) * 3.0, index, 7) * w).backward();
    CHECK(a.grad().to_vector<double>() == b.grad().to_vector<double>());
  }
  GradcheckResult res = gradcheck([](const std::vector<Tensor>& in) {
    const RowIndex ri(std::vector<int64_t>{2, 0, 4}, 5);
    return put_rows(take_rows(in[0], ri).exp(), ri);
  }, {randn({5, 3}, {.dtype = DType::f64})});
  CHECK_MESSAGE(res.ok, res.message);

  CHECK_THROWS_WITH_AS(RowIndex(std::vector<int64_t>{1, 3, 1}, 5), doctest::Contains("RowIndex: row 1 appears twice"),
                       Error);
  CHECK_THROWS_WITH_AS(RowIndex(std::vector<int64_t>{5}, 5),
                       doctest::Contains("RowIndex: index 5 is out of range for 5 rows"), Error);
  CHECK_THROWS_WITH_AS(RowIndex(from_vector<int64_t>({0, 0}), 3), doctest::Contains("RowIndex: row 0 appears twice"),
                       Error);
  CHECK_THROWS_WITH_AS(RowIndex(from_vector<int64_t>({1}), -2),
                       doctest::Contains("RowIndex: rows must be >= 0, got -2"), Error);
  const RowIndex ri(rows, 7);
  CHECK_THROWS_WITH_AS(take_rows(randn({6, 3}), ri),
                       doctest::Contains("take_rows: x [6,3] must have the index's 7 rows"), Error);
  CHECK_THROWS_WITH_AS(put_rows(randn({3, 3}), ri),
                       doctest::Contains("put_rows: y [3,3] must have one row for each of the index's 4 entries"),
                       Error);
  CHECK_THROWS_WITH_AS(take_rows(x, RowIndex()), doctest::Contains("take_rows: undefined tensor or RowIndex argument"),
                       Error);
  CHECK_THROWS_WITH_AS(RowIndex().size(), doctest::Contains("RowIndex: used before it was made"), Error);
}

TEST_CASE("take_rows and put_rows: a repeated or out-of-range row, or a count that does not fit, is named") {
  Tensor x = randn({5, 3});
  CHECK_THROWS_WITH_AS(take_rows(x, from_vector<int64_t>({1, 3, 1})),
                       doctest::Contains("take_rows: row 1 appears twice in the index (rows of [5,3])"), Error);
  CHECK_THROWS_WITH_AS(take_rows(x, from_vector<int64_t>({5})),
                       doctest::Contains("take_rows: index 5 is out of range for the 5 rows of [5,3]"), Error);
  CHECK_THROWS_WITH_AS(take_rows(x, from_vector<int64_t>({0, 1}).view({1, 2})),
                       doctest::Contains("take_rows: index must be 1-D, got [1,2]"), Error);
  CHECK_THROWS_WITH_AS(take_rows(x, from_vector<double>({0.0})), doctest::Contains("index must be i64 or i32"), Error);
  CHECK_THROWS_WITH_AS(put_rows(x, from_vector<int64_t>({0, 1}), 4),
                       doctest::Contains("put_rows: index [2] must name one output row for each of the 5 rows"), Error);
  CHECK_THROWS_WITH_AS(put_rows(x, from_vector<int64_t>({0, 1, 2, 3, 3}), 6),
                       doctest::Contains("put_rows: row 3 appears twice"), Error);
  CHECK_THROWS_WITH_AS(put_rows(x, from_vector<int64_t>({0, 1, 2, 3, 4}), 4),
                       doctest::Contains("put_rows: index 4 is out of range for the 4 rows of [4,3]"), Error);
  CHECK_THROWS_WITH_AS(put_rows(x, from_vector<int64_t>({0, 1, 2, 3, 4}), -1),
                       doctest::Contains("put_rows: rows must be >= 0, got -1"), Error);
}

TEST_CASE("index_select backward sums the gradient of repeated indices") {
  Generator g(7);
  Tensor x = randn({3, 4, 2}, f64o, &g).requires_grad_();
  std::vector<int64_t> raw = {1, 3, 1, 1, 0};
  Tensor out = index_select(x, 1, from_vector<int64_t>(raw));
  Tensor w = randn(out.shape(), f64o, &g);
  sum(out * w).backward();
  std::vector<double> want(24, 0.0);
  auto vw = vals(w);
  for (const Shape& idx : all_indices(out.shape())) {
    Shape in = idx;
    in[1] = raw[idx[1]];
    want[at(x.shape(), in)] += vw[at(out.shape(), idx)];
  }
  CHECK(allclose(x.grad(), from_vector<double>(want, x.shape()), 1e-12, 1e-12));
}

TEST_CASE("index_select errors name the index, its size, the dtypes") {
  Tensor x = zeros({4, 5});
  CHECK_THROWS_WITH_AS(index_select(x, 0, from_vector<int64_t>({1, 4})),
                       doctest::Contains("index_select: index 4 is out of range for dim 0 of [4,5] (size 4)"), Error);
  CHECK_THROWS_WITH_AS(index_select(x, -1, from_vector<int32_t>({-1})),
                       doctest::Contains("index_select: index -1 is out of range for dim 1 of [4,5] (size 5)"), Error);
  CHECK_THROWS_WITH_AS(index_select(x, 0, from_vector<int64_t>({0, 1, 2, 3}, {2, 2})),
                       doctest::Contains("index_select: index must be 1-D, got [2,2] (input [4,5])"), Error);
  CHECK_THROWS_WITH_AS(index_select(x, 0, tensor({1.0})),
                       doctest::Contains("index_select: index must be i64 or i32, got f32 [1]"), Error);
  CHECK_THROWS_WITH_AS(index_select(x, 2, from_vector<int64_t>({0})),
                       doctest::Contains("index_select: dim 2 out of range for [4,5]"), Error);
}

// ---------------------------------------------------------------- gather
namespace {
// out[p] = x[p with coordinate d replaced by index[p]], over the index's shape.
std::vector<double> naive_gather(const Tensor& x, int64_t d, const Tensor& index) {
  auto vx = vals(x);
  auto vi = index.to_vector<int64_t>();
  std::vector<double> out;
  for (const Shape& idx : all_indices(index.shape())) {
    Shape in = idx;
    in[d] = vi[at(index.shape(), idx)];
    out.push_back(vx[at(x.shape(), in)]);
  }
  return out;
}
}  // namespace

TEST_CASE("gather follows torch.gather, values against loops") {
  Generator g(8);
  Tensor x = randn({3, 5}, f64o, &g);
  Tensor i1 = randint(0, 5, {3, 7}, {.dtype = DType::i64}, &g);
  CHECK(vals(gather(x, 1, i1)) == naive_gather(x, 1, i1));
  CHECK(vals(gather(x, -1, i1.to(DType::i32))) == naive_gather(x, 1, i1));
  Tensor i0 = randint(0, 3, {4, 2}, {.dtype = DType::i64}, &g);  // smaller than x in dim 1
  CHECK(vals(gather(x, 0, i0)) == naive_gather(x, 0, i0));
  Tensor x3 = randn({4, 6, 3}, f64o, &g);
  Tensor i3 = randint(0, 6, {2, 5, 2}, {.dtype = DType::i64}, &g);
  Tensor o3 = gather(x3, 1, i3);
  CHECK(o3.shape() == Shape{2, 5, 2});
  CHECK(vals(o3) == naive_gather(x3, 1, i3));
  Tensor xt = randn({5, 3}, f64o, &g).transpose(0, 1);  // non-contiguous [3,5]
  CHECK(vals(gather(xt, 1, i1)) == naive_gather(xt.contiguous(), 1, i1));
  Tensor ints = arange(6).reshape({2, 3});
  CHECK(gather(ints, 1, from_vector<int64_t>({2, 2, 0, 1}, {2, 2})).to_vector<int64_t>() ==
        std::vector<int64_t>{2, 2, 3, 4});
}

TEST_CASE("gather backward is the scatter-add of the gradient") {
  Generator g(9);
  Tensor x = randn({4, 6, 3}, f64o, &g).requires_grad_();
  Tensor index = randint(0, 6, {3, 9, 2}, {.dtype = DType::i64}, &g);  // repeats along dim 1
  Tensor out = gather(x, 1, index);
  Tensor w = randn(out.shape(), f64o, &g);
  sum(out * w).backward();
  std::vector<double> want(x.numel(), 0.0);
  auto vw = vals(w);
  auto vi = index.to_vector<int64_t>();
  for (const Shape& idx : all_indices(index.shape())) {
    Shape in = idx;
    in[1] = vi[at(index.shape(), idx)];
    want[at(x.shape(), in)] += vw[at(index.shape(), idx)];
  }
  CHECK(allclose(x.grad(), from_vector<double>(want, x.shape()), 1e-12, 1e-12));
}

TEST_CASE("gather errors name the shapes and the index") {
  Tensor x = zeros({3, 5});
  CHECK_THROWS_WITH_AS(gather(x, 1, from_vector<int64_t>({0, 1, 2})),
                       doctest::Contains("gather: index [3] must have as many dims as the input [3,5]"), Error);
  CHECK_THROWS_WITH_AS(gather(x, 1, zeros({4, 2}, {.dtype = DType::i64})),
                       doctest::Contains("gather: index [4,2] is larger than the input [3,5] in dim 0"), Error);
  CHECK_THROWS_WITH_AS(gather(x, 1, from_vector<int64_t>({0, 5}, {1, 2})),
                       doctest::Contains("gather: index 5 is out of range for dim 1 of [3,5] (size 5)"), Error);
  CHECK_THROWS_WITH_AS(gather(x, 0, zeros({1, 1})), doctest::Contains("gather: index must be i64 or i32, got f32 [1,1]"),
                       Error);
}

// ---------------------------------------------------------------- masked_fill
TEST_CASE("masked_fill broadcasts the mask, values against loops") {
  Generator g(10);
  for (Shape mshape : {Shape{3, 5}, Shape{5}, Shape{3, 1}, Shape{}}) {
    Tensor x = randn({3, 5}, f64o, &g);
    Tensor m = gt(randn(mshape, f64o, &g), scalar_tensor(0.0));
    Tensor out = masked_fill(x, m, -7.5);
    auto vx = vals(x), vm = vals(m.expand({3, 5}).contiguous()), o = vals(out);
    CAPTURE(shape_str(mshape));
    for (size_t k = 0; k < o.size(); ++k) CHECK(o[k] == (vm[k] != 0 ? -7.5 : vx[k]));
  }
  Tensor xt = randn({5, 3}, f64o, &g).transpose(0, 1);  // non-contiguous
  Tensor m = gt(randn({5}, f64o, &g), scalar_tensor(0.0));
  CHECK(vals(masked_fill(xt, m, 2.0)) == vals(masked_fill(xt.contiguous(), m, 2.0)));
  Tensor ids = arange(4);
  Tensor filled = masked_fill(ids, gt(ids, scalar_tensor(1, {.dtype = DType::i64})), 9);
  CHECK(filled.dtype() == DType::i64);
  CHECK(filled.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 9, 9});
  Tensor h = masked_fill(tensor({1.0, 2.0}).to(DType::bf16), gt(tensor({1, -1}), scalar_tensor(0.0)), 0.25);
  CHECK(h.dtype() == DType::bf16);
  CHECK(vals(h) == std::vector<double>{0.25, 2.0});
}

TEST_CASE("masked_fill gradient is zero where masked") {
  Generator g(11);
  Tensor x = randn({2, 3, 4}, f64o, &g).requires_grad_();
  Tensor m = gt(randn({3, 1}, f64o, &g), scalar_tensor(0.0));
  Tensor w = randn({2, 3, 4}, f64o, &g);
  sum(masked_fill(x, m, 1e9) * w).backward();
  auto gx = vals(x.grad()), vw = vals(w), vm = vals(m.expand({2, 3, 4}).contiguous());
  for (size_t k = 0; k < gx.size(); ++k) CHECK(gx[k] == (vm[k] != 0 ? 0.0 : vw[k]));
}

TEST_CASE("masked_fill errors") {
  Tensor x = zeros({3, 5});
  CHECK_THROWS_WITH_AS(masked_fill(x, zeros({5}), 1.0), doctest::Contains("masked_fill: mask must be bool, got f32 [5]"),
                       Error);
  Tensor m4 = gt(zeros({4}), scalar_tensor(0.0));
  CHECK_THROWS_WITH_AS(masked_fill(x, m4, 1.0),
                       doctest::Contains("masked_fill: mask [4] does not broadcast to the input [3,5]"), Error);
  Tensor m3 = gt(zeros({2, 3, 5}), scalar_tensor(0.0));
  CHECK_THROWS_WITH_AS(masked_fill(x, m3, 1.0),
                       doctest::Contains("masked_fill: mask [2,3,5] does not broadcast to the input [3,5]"), Error);
  CHECK_THROWS_WITH_AS(masked_fill(arange(3), gt(arange(3), scalar_tensor(0.0)), INFINITY),
                       doctest::Contains("masked_fill: value inf cannot be stored in i64 [3]"), Error);
}

// ---------------------------------------------------------------- embedding
TEST_CASE("embedding looks up rows for indices of any shape") {
  Generator g(12);
  Tensor w = randn({7, 4}, f64o, &g);
  auto vw = vals(w);
  std::vector<int64_t> raw = {0, 6, 3, 3, 0, 6};
  for (DType it : {DType::i64, DType::i32}) {
    Tensor out = embedding(w, from_vector<int64_t>(raw, {2, 3}).to(it));
    REQUIRE(out.shape() == Shape{2, 3, 4});
    auto o = vals(out);
    for (int64_t p = 0; p < 6; ++p)
      for (int64_t d = 0; d < 4; ++d) CHECK(o[p * 4 + d] == vw[raw[p] * 4 + d]);
  }
  Tensor five = scalar_tensor(5, {.dtype = DType::i64});
  CHECK(embedding(w, five).shape() == Shape{4});  // a 0-d index gives one row
  CHECK(vals(embedding(w, five)) == std::vector<double>(vw.begin() + 20, vw.begin() + 24));
  Tensor wt = randn({4, 7}, f64o, &g).transpose(0, 1);  // non-contiguous weight
  Tensor idx = from_vector<int64_t>({1, 5});
  CHECK(vals(embedding(wt, idx)) == vals(embedding(wt.contiguous(), idx)));
}

TEST_CASE("embedding backward: a repeated index receives the sum of its gradients") {
  Generator g(13);
  Tensor w = randn({5, 3}, f64o, &g).requires_grad_();
  std::vector<int64_t> raw = {4, 1, 4, 4, 0, 1, 4};
  Tensor out = embedding(w, from_vector<int64_t>(raw));
  Tensor up = randn(out.shape(), f64o, &g);
  sum(out * up).backward();
  std::vector<double> want(15, 0.0);
  auto vu = vals(up);
  for (size_t p = 0; p < raw.size(); ++p)
    for (int64_t d = 0; d < 3; ++d) want[raw[p] * 3 + d] += vu[p * 3 + d];
  CHECK(allclose(w.grad(), from_vector<double>(want, {5, 3}), 1e-12, 1e-12));
  auto gw = vals(w.grad());
  for (int64_t d = 0; d < 3; ++d) CHECK(gw[2 * 3 + d] == 0.0);  // row 2 is never used
  CHECK(gw[3 * 3] == 0.0);
}

TEST_CASE("the scatter-add backwards do not depend on the thread count") {
  ThreadsGuard guard;
  Generator g(14);
  Tensor w = randn({13, 37}, {}, &g);  // f32: a different summation order would change bits
  Tensor ids = randint(0, 13, {5000}, {.dtype = DType::i64}, &g);
  Tensor up = randn({5000, 37}, {}, &g);
  Tensor x = randn({64, 40, 9}, {}, &g);  // big enough that every kernel splits its work
  Tensor gi = randint(0, 40, {64, 300, 9}, {.dtype = DType::i64}, &g);
  Tensor gup = randn({64, 300, 9}, {}, &g);
  Tensor si = randint(0, 40, {500}, {.dtype = DType::i64}, &g);
  Tensor sup = randn({64, 500, 9}, {}, &g);
  auto grads = [&](int threads) {
    cpu::set_num_threads(threads);
    Tensor wl = w.detach().requires_grad_(), xl = x.detach().requires_grad_(), xs = x.detach().requires_grad_();
    sum(embedding(wl, ids) * up).backward();
    sum(gather(xl, 1, gi) * gup).backward();
    sum(index_select(xs, 1, si) * sup).backward();
    return std::vector<Tensor>{wl.grad(), xl.grad(), xs.grad()};
  };
  auto one = grads(1);
  for (int threads : {2, 3, 7}) {
    auto many = grads(threads);
    CAPTURE(threads);
    for (size_t k = 0; k < one.size(); ++k) CHECK(one[k].to_vector<float>() == many[k].to_vector<float>());
  }
}

TEST_CASE("embedding errors name the index and the table size") {
  Tensor w = zeros({7, 4});
  CHECK_THROWS_WITH_AS(embedding(w, from_vector<int64_t>({2, 7})),
                       doctest::Contains("embedding: index 7 is out of range for the rows of weight [7,4] (size 7)"),
                       Error);
  CHECK_THROWS_WITH_AS(embedding(w, from_vector<int32_t>({-3})), doctest::Contains("embedding: index -3 is out of range"),
                       Error);
  CHECK_THROWS_WITH_AS(embedding(zeros({2, 3, 4}), from_vector<int64_t>({0})),
                       doctest::Contains("embedding: weight must be 2-D [V,D], got [2,3,4]"), Error);
  CHECK_THROWS_WITH_AS(embedding(w, tensor({1.0})), doctest::Contains("embedding: index must be i64 or i32, got f32 [1]"),
                       Error);
}
