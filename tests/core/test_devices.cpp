// Devices as the CPU build sees them: what happens to CUDA requests where no GPU is usable,
// and the device checks every op makes before it touches memory.
//
// To test the checks on any machine, a tensor "on cuda:0" is built here over host memory
// (Storage's constructor for memory owned elsewhere). Each op below must refuse it with an
// error naming the op and the devices — before reading a byte, so the host memory behind it
// is never at risk either way.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "core/mmgrad.h"

using namespace mmg;

namespace {

// A tensor of `shape` labelled cuda:0 over host memory kept alive by the storage itself.
Tensor labelled_cuda(const Shape& shape, DType dtype = DType::f32) {
  const size_t bytes = static_cast<size_t>(numel_of(shape)) * dtype_size(dtype);
  auto* block = new std::vector<unsigned char>(bytes + 1);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(block->data(), bytes, Device::cuda(0),
                                            [block](void*) { delete block; });
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(impl);
}

// Asserts that f throws an mmg::Error whose message contains every piece.
template <class F>
void check_error(F&& f, const std::vector<std::string>& pieces) {
  try {
    f();
    FAIL("expected an mmg::Error");
  } catch (const Error& e) {
    const std::string m = e.what();
    for (const std::string& p : pieces) CHECK_MESSAGE(m.find(p) != std::string::npos, "'", p, "' not in: ", m);
  }
}

}  // namespace

TEST_CASE("cuda devices without a usable GPU: every request says why") {
  if (cuda_device_count() > 0) {
    MESSAGE("a GPU is usable here; the no-GPU errors are not reachable (the cuda tests cover this machine)");
    return;
  }
  const std::string why = cuda_status();
  CHECK(!why.empty());
  CHECK(!device_unusable_reason(Device::cuda(0)).empty());
  CHECK(device_unusable_reason(Device::cpu()).empty());
  check_error([] { zeros({2, 3}).to(Device::cuda(0)); }, {"to: cannot move f32 [2,3] from cpu to cuda:0", why});
  check_error([] { empty({4}, {.device = Device::cuda(0)}); }, {"cuda:0", why});
  check_error([] { zeros({4}, {.device = Device::cuda(1)}); }, {"cuda:1", why});
  check_error([] { arange(5, {.dtype = DType::i64, .device = Device::cuda(0)}); }, {"cuda:0", why});
  check_error([] { randn({3}, {.device = Device::cuda(0)}); }, {"cuda:0", why});
  check_error([] { cuda_memory_stats(0); }, {"cuda_memory_stats on cuda:0", why});
  check_error([] { cuda_empty_cache(0); }, {"cuda_empty_cache on cuda:0", why});
  check_error([] { cuda_synchronize(0); }, {"cuda_synchronize on cuda:0", why});
}

TEST_CASE("external storage: a tensor over memory owned elsewhere calls its release once") {
  int released = 0;
  float values[3] = {1, 2, 3};
  {
    auto impl = std::make_shared<TensorImpl>();
    impl->storage = std::make_shared<Storage>(values, sizeof values, Device::cpu(), [&](void* p) {
      CHECK(p == values);
      ++released;
    });
    impl->shape = {3};
    impl->strides = {1};
    Tensor t(impl);
    CHECK(t.sum().item() == 6.0);
    Tensor v = t.slice(0, 1, 3);  // a view shares the storage
    CHECK(released == 0);
  }
  CHECK(released == 1);
}

TEST_CASE("ops given tensors on different devices name the op and both devices") {
  Tensor c = ones({2, 3});
  Tensor g = labelled_cuda({2, 3});
  check_error([&] { add(c, g); }, {"add: tensors on different devices", "on cpu", "on cuda:0"});
  check_error([&] { mul(g, c); }, {"mul: tensors on different devices", "on cuda:0", "on cpu"});
  check_error([&] { eq(c, g); }, {"eq: tensors on different devices"});
  check_error([&] { where(gt(c, scalar_like(c, 0)), c, g); }, {"where: tensors on different devices"});
  check_error([&] { matmul(c, labelled_cuda({3, 2})); }, {"matmul: tensors on different devices", "cuda:0"});
  check_error([&] { c.copy_(g); }, {"copy_: source on cuda:0 but destination on cpu"});
  check_error([&] { cross_entropy(labelled_cuda({2, 3}), tensor({0, 1}, {.dtype = DType::i64})); },
              {"cross_entropy: tensors on different devices"});
  check_error([&] { embedding(g, tensor({0, 1}, {.dtype = DType::i64})); }, {"embedding: tensors on different devices"});
}

TEST_CASE("dropout in evaluation mode or with p 0 returns its input on any device") {
  Tensor g = labelled_cuda({2, 3});
  CHECK(dropout(g, 0.5, /*training=*/false).is_same(g));
  CHECK(dropout(g, 0.0).is_same(g));
}

TEST_CASE("argument errors of the ops with new CUDA paths come before any device work") {
  // Checked on the host from shapes and dtypes alone, so a CUDA tensor gets the same errors
  // as a CPU one (and here, where the tensor is host memory labelled cuda:0, nothing runs).
  Tensor g = labelled_cuda({2, 3});
  check_error([&] { dropout(g, 1.5); }, {"dropout: probability p must be in [0, 1], got 1.5"});
  check_error([&] { gather(g, 1, labelled_cuda({2, 3}, DType::f32)); }, {"gather: index must be i64 or i32"});
  check_error([&] { gather(g, 1, labelled_cuda({3, 3}, DType::i64)); }, {"gather: index [3,3] is larger than the input [2,3]"});
  check_error([&] { var(g, {}, -1); }, {"var: correction must be >= 0"});
  check_error([&] { norm(g, -1.0); }, {"norm: p must be > 0"});
  check_error([&] { clip_loss(g, labelled_cuda({3, 3}), labelled_cuda({})); }, {"clip_loss: image [2,3] and text [3,3]"});
  check_error([&] { hinge_ranking_loss(g, ones({2, 3})); }, {"hinge_ranking_loss: tensors on different devices"});
  Tensor q = labelled_cuda({1, 1, 2, 4});
  check_error([&] { scaled_dot_product_attention(q, q, labelled_cuda({1, 1, 3, 4})); },
              {"scaled_dot_product_attention: v [1,1,3,4] must have k's shape [1,1,2,4]"});
  check_error([&] { scaled_dot_product_attention(q, q, q, ones({1, 2}, {.dtype = DType::boolean})); },
              {"scaled_dot_product_attention: tensors on different devices"});
}

TEST_CASE("a build without CUDA refuses CUDA tensors even in ops that have CUDA kernels") {
  if (cuda_compiled()) {
    MESSAGE("this build has CUDA: the CUDA kernels of these ops are tested in the cuda suite");
    return;
  }
  Tensor g = labelled_cuda({2, 3});
  const std::string why = cuda_status();
  CHECK(why.find("this build has no CUDA") != std::string::npos);
  check_error([&] { relu(g); }, {"cuda:0", why});
  check_error([&] { g.sum(); }, {"cuda:0", why});
  check_error([&] { g.to(DType::f64); }, {"cuda:0", why});
  check_error([&] { g.to(Device::cpu()); }, {"cuda:0", why});
  check_error([&] { labelled_cuda({1}).item(); }, {"cuda:0", why});
  // The ops whose CUDA paths came later refuse the same way.
  check_error([&] { var(g); }, {"cuda:0", why});
  check_error([&] { mmg::std(g); }, {"cuda:0", why});
  check_error([&] { logsumexp(g, {1}); }, {"cuda:0", why});
  check_error([&] { norm(g); }, {"cuda:0", why});
  check_error([&] { dropout(g, 0.5); }, {"dropout: f32 [2,3] is on cuda:0", why});
  check_error([&] { gather(g, 1, labelled_cuda({2, 3}, DType::i64)); }, {"gather: f32 [2,3] is on cuda:0", why});
  check_error([&] { clip_loss(g, g, labelled_cuda({})); }, {"clip_loss: f32 [2,3] is on cuda:0", why});
  check_error([&] { hinge_ranking_loss(g, g); }, {"hinge_ranking_loss: f32 [2,3] is on cuda:0", why});
  Tensor q = labelled_cuda({1, 1, 2, 4});
  check_error([&] { scaled_dot_product_attention(q, q, q); }, {"scaled_dot_product_attention: f32 [1,1,2,4] is on cuda:0", why});
  check_error([&] { gradcheck([](const std::vector<Tensor>& xs) { return xs[0]; }, {labelled_cuda({2}, DType::f64)}); },
              {"cuda:0", why});
}
