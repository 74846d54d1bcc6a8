// Copies on CUDA: host↔device round trips of every dtype, dtype conversion on the device
// (bit-identical to the CPU's: the same conversion code), contiguous() of strided views,
// copy_ with broadcasting into a strided destination, fills, item and to_vector; both
// versions of the copy kernel on transposes (v2 tiles them through shared memory).
#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

using namespace mmg;
using namespace mmg::testing;

namespace {

const DType kAll[] = {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8, DType::boolean};

// Values every dtype holds and every conversion defines: [0, 100) with fractions (float to
// integer truncates; negative floats to u8 would be undefined behaviour on both devices).
Tensor sample(const Shape& s, DType dt) { return uniform(s, DType::f64, 0, 100).to(dt); }

}  // namespace

TEST_CASE("cuda copies: host to device to host keeps every byte, for every dtype and odd size") {
  require_gpu();
  for (DType dt : kAll) {
    for (const Shape& s : odd_shapes()) {
      Tensor x = sample(s, dt);
      poison_like(s, dt);
      Tensor g = x.to(kGpu);
      CHECK(g.device() == kGpu);
      CHECK(g.dtype() == dt);
      check_parity(g.to(Device::cpu()), x, 0, 0, "round trip " + dtype_name(dt) + " " + shape_str(s));
    }
  }
}

TEST_CASE("cuda copies: dtype conversion on the device equals the CPU's, for every pair") {
  require_gpu();
  for (DType from : kAll) {
    Tensor x = sample({3, 257}, from);
    Tensor g = x.to(kGpu);
    for (DType to : kAll) {
      poison_like({3, 257}, to);
      Tensor got = g.to(to);
      CHECK(got.device() == kGpu);
      check_parity(got, x.to(to), 0, 0, dtype_name(from) + " -> " + dtype_name(to));
    }
  }
  // Specials through the half types: NaN, ±inf, overflow to inf, ties to even, subnormals.
  Tensor special = tensor({NAN, INFINITY, -INFINITY, 65520.0, 1e-8, -0.0, 1.00048828125, 3.0e38},
                          {.dtype = DType::f32});
  for (DType to : {DType::bf16, DType::f16, DType::f64}) {
    check_parity(special.to(kGpu).to(to), special.to(to), 0, 0, "specials f32 -> " + dtype_name(to));
  }
}

TEST_CASE("cuda copies: contiguous() of transposed, sliced, expanded and permuted views") {
  require_gpu();
  for (DType dt : {DType::f32, DType::f64, DType::i64, DType::bf16}) {
    Tensor x = sample({5, 7, 33}, dt);
    Tensor g = x.to(kGpu);
    auto both = [&](auto view, const std::string& what) {
      Tensor want = view(x).contiguous();
      poison_like(want.shape(), dt);
      Tensor got = view(g).contiguous();
      CHECK(got.is_contiguous());
      check_parity(got, want, 0, 0, what + " " + dtype_name(dt));
    };
    both([](const Tensor& t) { return t.transpose(0, 2); }, "transpose");
    both([](const Tensor& t) { return t.permute({1, 2, 0}); }, "permute");
    both([](const Tensor& t) { return t.slice(2, 1, 30, 3); }, "slice with step");
    both([](const Tensor& t) { return select(t.slice(0, 1, 4), 1, 6); }, "slice and select");
    both([](const Tensor& t) { return t.slice(1, 0, 1).expand({5, 9, 33}); }, "expand");
    both([](const Tensor& t) { return t.unsqueeze(1).expand({5, 3, 7, 33}).transpose(0, 3); }, "expand and transpose");
  }
}

TEST_CASE("cuda copies: copy_ broadcasts into a strided destination, fill_ and clone") {
  require_gpu();
  Tensor dst_cpu = sample({6, 11}, DType::f32);
  Tensor dst_gpu = dst_cpu.to(kGpu);
  Tensor row = sample({11}, DType::f64);  // converts while copying
  {
    NoGradGuard no_grad;
    dst_cpu.transpose(0, 1).slice(1, 1, 5).copy_(row.slice(0, 0, 11).unsqueeze(1));
    dst_gpu.transpose(0, 1).slice(1, 1, 5).copy_(row.to(kGpu).slice(0, 0, 11).unsqueeze(1));
  }
  check_parity(dst_gpu, dst_cpu, 0, 0, "copy_ into a strided view");
  // A copy between overlapping views of one storage goes through a temporary.
  Tensor sq_cpu = sample({9, 9}, DType::f32), sq_gpu = sq_cpu.to(kGpu);
  sq_cpu.copy_(sq_cpu.transpose(0, 1));
  sq_gpu.copy_(sq_gpu.transpose(0, 1));
  check_parity(sq_gpu, sq_cpu, 0, 0, "copy_ from an overlapping transpose");
  dst_gpu.slice(0, 2, 4).fill_(-3.5);
  dst_cpu.slice(0, 2, 4).fill_(-3.5);
  check_parity(dst_gpu, dst_cpu, 0, 0, "fill_ of a slice");
  check_parity(dst_gpu.clone(), dst_cpu, 0, 0, "clone");
}

TEST_CASE("cuda factories: zeros, ones, full of every dtype, arange and randn match the CPU") {
  require_gpu();
  for (DType dt : kAll) {
    for (const Shape& s : odd_shapes()) {
      poison_like(s, dt);
      check_parity(zeros(s, {.dtype = dt, .device = kGpu}), zeros(s, {.dtype = dt}), 0, 0, "zeros " + dtype_name(dt));
      poison_like(s, dt);
      check_parity(ones(s, {.dtype = dt, .device = kGpu}), ones(s, {.dtype = dt}), 0, 0, "ones " + dtype_name(dt));
      poison_like(s, dt);
      check_parity(full(s, 7.75, {.dtype = dt, .device = kGpu}), full(s, 7.75, {.dtype = dt}), 0, 0,
                   "full " + dtype_name(dt));
    }
  }
  check_parity(arange(0, 1000, 3, {.dtype = DType::i64, .device = kGpu}), arange(0, 1000, 3), 0, 0, "arange");
  Generator a(42), b(42);
  check_parity(randn({5, 77}, {.device = kGpu}, &a), randn({5, 77}, {}, &b), 0, 0, "randn: the same Philox draws");
  Tensor r = ones({3}, {.device = kGpu, .requires_grad = true});
  CHECK(r.requires_grad());
  CHECK(r.device() == kGpu);
}

TEST_CASE("cuda copies: item, to_vector, and the gradient of to(device) goes back to the source") {
  require_gpu();
  Tensor x = sample({4, 5}, DType::f32);
  Tensor g = x.to(kGpu);
  CHECK(select(g.slice(0, 2, 3), 1, 4).item() == select(x.slice(0, 2, 3), 1, 4).item());
  CHECK(g.to_vector<float>() == x.to_vector<float>());
  CHECK(g.transpose(0, 1).to_vector<double>() == x.transpose(0, 1).to_vector<double>());
  Tensor leaf = x.clone().detach().requires_grad_(true);
  Tensor y = (leaf.to(kGpu) * 3.0).sum();
  y.backward();
  REQUIRE(leaf.grad().defined());
  CHECK(leaf.grad().device().is_cpu());
  check_parity(leaf.grad(), full({4, 5}, 3.0), 0, 0, "gradient through to(cuda)");
}

// ---- both versions of the "copy" family (v2: transposes through shared-memory tiles) ----

namespace {

template <class F>
void for_each_copy_version(F body) {
  const KernelFamily* fam = nullptr;
  for (const KernelFamily& f : kernel_families())
    if (f.name == "copy") fam = &f;
  REQUIRE_MESSAGE(fam != nullptr, "no kernel family copy");
  for (int v = 1; v <= static_cast<int>(fam->versions.size()); ++v) {
    KernelVersionGuard guard("copy", v);
    INFO("copy version " << v);
    body();
  }
}

// view(x) on each device, copied to a contiguous tensor of dtype `to` (one converting copy
// from the strided view), output poisoned first: equal to the CPU's bit for bit.
void check_view_copy(const Tensor& x, DType to, const std::function<Tensor(const Tensor&)>& view,
                     const std::string& what) {
  Tensor want = view(x).to(to).contiguous();
  Tensor g = x.to(kGpu);
  poison_like(want.shape(), to);
  Tensor got = view(g).to(to).contiguous();
  CHECK(got.is_contiguous());
  CHECK(got.device() == kGpu);
  check_parity(got, want, 0, 0, what + " " + dtype_name(x.dtype()) + " -> " + dtype_name(to));
}

}  // namespace

TEST_CASE("cuda copies v1 and v2: transposes of odd and ragged shapes, batched, converting, poisoned") {
  require_gpu();
  const std::vector<std::pair<DType, DType>> pairs = {
      {DType::f32, DType::f32},  {DType::f64, DType::f64}, {DType::bf16, DType::bf16}, {DType::f16, DType::f16},
      {DType::i64, DType::i64},  {DType::u8, DType::u8},   {DType::boolean, DType::boolean},
      {DType::f32, DType::bf16}, {DType::bf16, DType::f32}, {DType::f64, DType::f16},  {DType::i32, DType::f64},
      {DType::f32, DType::u8}};
  for_each_copy_version([&] {
    for (const auto& [from, to] : pairs) {
      // 2-D transposes: sides of 1 (no plane), 7 (too thin for tiles), 8, 33, 65, 197 (ragged tiles).
      for (const Shape& s : {Shape{1, 1}, Shape{7, 33}, Shape{33, 7}, Shape{8, 8}, Shape{33, 33}, Shape{197, 65},
                             Shape{65, 197}, Shape{9, 1029}, Shape{1, 300}}) {
        check_view_copy(sample(s, from), to, [](const Tensor& t) { return t.transpose(0, 1); },
                        "transpose " + shape_str(s));
      }
      // Batched: kᵀ of attention [B·H, S, D] → [B·H, D, S]; two batch dims; a head permute
      // (rows of D stay contiguous: no transpose); a transpose of a sliced view.
      check_view_copy(sample({6, 197, 64}, from), to, [](const Tensor& t) { return t.transpose(1, 2); },
                      "batched transpose [6,197,64]");
      check_view_copy(sample({2, 3, 33, 40}, from), to, [](const Tensor& t) { return t.transpose(2, 3); },
                      "batched transpose [2,3,33,40]");
      check_view_copy(sample({2, 9, 3, 10}, from), to, [](const Tensor& t) { return t.permute({2, 0, 3, 1}); },
                      "permute (2,0,3,1) of [2,9,3,10]");
      check_view_copy(sample({2, 5, 33, 16}, from), to, [](const Tensor& t) { return t.permute({0, 2, 1, 3}); },
                      "head permute [2,5,33,16]");
      check_view_copy(sample({40, 70}, from), to, [](const Tensor& t) { return t.slice(1, 3, 60).transpose(0, 1); },
                      "transpose of a column slice");
      check_view_copy(sample({40, 70}, from), to, [](const Tensor& t) { return t.slice(1, 0, 70, 2).transpose(0, 1); },
                      "transpose of a slice with a step");
    }
    // More tiles than blocks (65536): the blocks loop over the tiles.
    check_view_copy(sample({70000, 8, 8}, DType::f32), DType::f32, [](const Tensor& t) { return t.transpose(1, 2); },
                    "70000 transposed 8x8 tiles");
    // Copying into a transposed (strided) destination, converting on the way.
    for (const Shape& s : {Shape{33, 65}, Shape{197, 64}, Shape{8, 1}}) {
      Tensor src = sample(s, DType::f64);
      Tensor dst_cpu = sample({s[1], s[0]}, DType::f32), dst_gpu = dst_cpu.to(kGpu);
      NoGradGuard no_grad;
      dst_cpu.transpose(0, 1).copy_(src);
      dst_gpu.transpose(0, 1).copy_(src.to(kGpu));
      check_parity(dst_gpu, dst_cpu, 0, 0, "copy_ into a transposed destination " + shape_str(s));
    }
  });
}
