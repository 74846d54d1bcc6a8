// index_select and embedding on CUDA against the CPU: repeated indices (the scatter-add
// backward sums them, deterministically), rows never selected (gradient 0), every dim, an
// empty index, i32 indices, integer and bf16 tables — forward on poisoned outputs and the
// gradients; and an out-of-range index is an error naming it.
#include <doctest/doctest.h>

#include <string>

#include "tests/cuda/cuda_test_util.h"

using namespace mmg;
using namespace mmg::testing;

TEST_CASE("cuda index_select: every dim, repeated and missing indices, gradients") {
  require_gpu();
  for (DType dt : {DType::f32, DType::f64}) {
    for (int64_t d : {0, 1, 2}) {
      Tensor x = uniform({5, 7, 33}, dt, -1, 1);
      const int64_t size = x.size(d);
      for (int64_t n : {0, 1, 13, 40}) {
        Tensor idx = integers({n}, DType::i64, 0, size);  // repeats when n > size, misses some rows
        const std::string name = "index_select " + dtype_name(dt) + " dim " + std::to_string(d) + " n " + std::to_string(n);
        Tensor xc = x.clone().detach().requires_grad_(true), xg = x.to(kGpu).detach().requires_grad_(true);
        Tensor want = index_select(xc, d, idx);
        poison_like(want.shape(), dt);
        Tensor got = index_select(xg, d, idx.to(kGpu));
        check_parity(got, want, 0, 0, name + " forward");
        Tensor r = uniform(want.shape(), dt, -1, 1);
        (want * r).sum().backward();
        poison_like(x.shape(), dt);
        (got * r.to(kGpu)).sum().backward();
        check_parity(xg.grad(), xc.grad(), rtol_for(dt), atol_for(dt), name + " gradient");
      }
    }
  }
  Tensor ints = integers({9, 4}, DType::i64, -50, 50);
  Tensor i32 = integers({6}, DType::i32, 0, 9);
  check_parity(index_select(ints.to(kGpu), 0, i32.to(kGpu)), index_select(ints, 0, i32), 0, 0, "i64 table, i32 index");
}

TEST_CASE("cuda take_rows and put_rows: rows in any order, rows left empty, gradients, integer and bf16 tables") {
  require_gpu();
  for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
    Tensor x = uniform({37, 3, 11}, dt, -1, 1);
    // Every third row of 37, in reverse: 13 distinct rows; put back, 24 rows stay zero.
    std::vector<int64_t> rows;
    for (int64_t r = 36; r >= 0; r -= 3) rows.push_back(r);
    Tensor index = from_vector(rows);
    const std::string name = "take_rows/put_rows " + dtype_name(dt);
    Tensor xc = x.clone().detach().requires_grad_(true), xg = x.to(kGpu).detach().requires_grad_(true);
    Tensor want = put_rows(take_rows(xc, index) * 2.0, index, 37);
    poison_like(want.shape(), dt);
    Tensor got = put_rows(take_rows(xg, index.to(kGpu)) * 2.0, index.to(kGpu), 37);
    check_parity(got, want, 0, 0, name + " forward");
    Tensor r = uniform(want.shape(), dt, -1, 1);
    (want * r).sum().backward();
    poison_like(x.shape(), dt);
    (got * r.to(kGpu)).sum().backward();
    const double tol = dt == DType::bf16 ? 1e-2 : rtol_for(dt);
    check_parity(xg.grad(), xc.grad(), tol, tol, name + " gradient");
  }
  Tensor ints = integers({9, 4}, DType::i64, -50, 50);
  Tensor i32 = from_vector<int32_t>({7, 0, 3});
  check_parity(put_rows(ints.to(kGpu), from_vector<int64_t>({8, 0, 5, 1, 2, 3, 4, 6, 7}).to(kGpu), 10),
               put_rows(ints, from_vector<int64_t>({8, 0, 5, 1, 2, 3, 4, 6, 7}), 10), 0, 0, "i64 put_rows");
  check_parity(take_rows(ints.to(kGpu), i32.to(kGpu)), take_rows(ints, i32), 0, 0, "i64 take_rows, i32 index");
  CHECK_THROWS_WITH_AS(take_rows(ints.to(kGpu), from_vector<int64_t>({2, 2}).to(kGpu)),
                       doctest::Contains("take_rows: row 2 appears twice"), Error);
}

// The RowIndex overloads (index checked once, kept on the host and the device; put_rows's inverse
// map made once): against the CPU, forward and backward, from a host vector and a device tensor.
TEST_CASE("cuda take_rows and put_rows with a RowIndex: against the CPU, forward and backward") {
  require_gpu();
  std::vector<int64_t> rows;
  for (int64_t r = 40; r >= 0; r -= 4) rows.push_back(r);  // 11 of 41 rows, reversed
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = uniform({41, 5, 3}, dt, -1, 1), r = uniform({41, 5, 3}, dt, -1, 1);
    const RowIndex on_cpu(rows, 41);
    Tensor xc = x.clone().detach().requires_grad_(true);
    Tensor want = put_rows(take_rows(xc, on_cpu) * 2.0, on_cpu);
    (want * r).sum().backward();
    for (const RowIndex& on_gpu : {RowIndex(rows, 41, kGpu), RowIndex(from_vector(rows).to(kGpu), 41)}) {
      REQUIRE(on_gpu.index().device() == kGpu);
      Tensor xg = x.to(kGpu).detach().requires_grad_(true);
      poison_like(want.shape(), dt);
      Tensor got = put_rows(take_rows(xg, on_gpu) * 2.0, on_gpu);
      check_parity(got, want, 0, 0, "RowIndex take/put " + dtype_name(dt) + " forward");
      poison_like(x.shape(), dt);
      (got * r.to(kGpu)).sum().backward();
      check_parity(xg.grad(), xc.grad(), rtol_for(dt), rtol_for(dt),
                   "RowIndex take/put " + dtype_name(dt) + " gradient");
    }
  }
}

TEST_CASE("cuda embedding: token ids of any shape, frequent tokens, gradients, bf16") {
  require_gpu();
  for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
    Tensor w = uniform({11, 65}, dt, -1, 1);
    Tensor ids = integers({4, 37}, DType::i64, 0, 5);  // only 5 of 11 rows used, each many times
    Tensor wc = w.clone().detach().requires_grad_(true), wg = w.to(kGpu).detach().requires_grad_(true);
    Tensor want = embedding(wc, ids);
    poison_like(want.shape(), dt);
    Tensor got = embedding(wg, ids.to(kGpu));
    CHECK(got.shape() == Shape{4, 37, 65});
    check_parity(got, want, 0, 0, "embedding " + dtype_name(dt) + " forward");
    Tensor r = uniform(want.shape(), dt, -1, 1);
    (want * r).sum().backward();
    (got * r.to(kGpu)).sum().backward();
    const double tol = dt == DType::bf16 ? 1e-2 : rtol_for(dt);
    check_parity(wg.grad(), wc.grad(), tol, tol, "embedding " + dtype_name(dt) + " gradient");
  }
}

TEST_CASE("cuda indexing: an out-of-range index is an error naming it") {
  require_gpu();
  Tensor w = uniform({4, 3}, DType::f32, -1, 1).to(kGpu);
  CHECK_THROWS_WITH_AS(embedding(w, tensor({1, 4}, {.dtype = DType::i64}).to(kGpu)),
                       doctest::Contains("embedding: index 4 is out of range"), Error);
  CHECK_THROWS_WITH_AS(index_select(w, 1, tensor({-1}, {.dtype = DType::i64}).to(kGpu)),
                       doctest::Contains("index_select: index -1 is out of range"), Error);
}
