// Host-to-device copies through pinned memory (core/pinned_memory.h, core/cuda_memory.h):
// pinned and pageable tensors of every dtype and odd sizes reach the device byte for byte,
// blocking or not; a pageable source may be overwritten as soon as to() returns (it went
// through a staging block); a pinned block is not handed out again while a queued copy still
// reads it; copies past the staging limit; the pool's statistics and empty_cache.
#include <doctest/doctest.h>

#include <string>
#include <thread>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

using namespace mmg;
using namespace mmg::testing;

namespace {

const DType kAll[] = {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8, DType::boolean};

Tensor sample(const Shape& s, DType dt) { return uniform(s, DType::f64, 0, 100).to(dt); }

// Queues a few milliseconds of work on the device, so that a copy queued next is still waiting
// when the host goes on.
Tensor keep_device_busy() {
  Tensor a = uniform({2048, 2048}, DType::f32, -1, 1).to(kGpu);
  Tensor c = a;
  for (int i = 0; i < 8; ++i) c = matmul(c, a) * (1.0 / 2048);
  return c;
}

}  // namespace

TEST_CASE("cuda pinned copies: pinned and pageable tensors, blocking or not, keep every byte for every dtype and odd size") {
  require_gpu();
  REQUIRE(pinned_memory_available());
  for (DType dt : kAll) {
    for (const Shape& s : odd_shapes()) {
      Tensor x = sample(s, dt);
      Tensor p = x.pin_memory();
      CHECK(p.is_pinned());
      for (bool non_blocking : {false, true}) {
        const std::string what = dtype_name(dt) + " " + shape_str(s) + (non_blocking ? " non_blocking" : " blocking");
        poison_like(s, dt);
        check_parity(p.to(kGpu, non_blocking).to(Device::cpu()), x, 0, 0, "pinned " + what);
        poison_like(s, dt);
        check_parity(x.to(kGpu, non_blocking).to(Device::cpu()), x, 0, 0, "pageable " + what);
      }
    }
  }
}

TEST_CASE("cuda pinned copies: a pageable source may be overwritten as soon as to() returns") {
  require_gpu();
  Tensor busy = keep_device_busy();
  Tensor x = sample({1000, 37}, DType::f32);
  const std::vector<float> want = x.to_vector<float>();
  Tensor g = x.to(kGpu);  // staged: queued behind the matmuls, from a copy of x's bytes
  x.fill_(-1);
  CHECK(g.to_vector<float>() == want);
  CHECK(busy.device() == kGpu);
}

TEST_CASE("cuda pinned copies: a pinned block is not reused while a queued copy still reads it") {
  require_gpu();
  const Shape s{517, 33};
  Tensor x = sample(s, DType::f32);
  const std::vector<float> want = x.to_vector<float>();
  Tensor busy = keep_device_busy();
  const PinnedMemoryStats before = pinned_memory_stats();
  Tensor g;
  void* block = nullptr;
  {
    Tensor p = x.pin_memory();
    block = p.storage()->data();
    g = p.to(kGpu, /*non_blocking=*/true);  // one DMA from p, queued behind the matmuls
  }  // p is gone; its block goes back to the pool with the copy's event on it
  CHECK(pinned_memory_stats().fences >= before.fences + 1);
  // Pinned tensors of the same size class, overwritten at once: the device must receive x's
  // values whatever the host writes here (p's block is handed out only after the copy ran).
  const bool copy_pending = pinned_memory_stats().busy_blocks > 0;
  std::vector<Tensor> others;
  bool took_block = false;
  for (int i = 0; i < 4; ++i) {
    Tensor q = empty(s, {.pinned = true});
    q.fill_(-7);
    took_block |= q.storage()->data() == block;
    others.push_back(q);
  }
  CHECK(g.to_vector<float>() == want);
  // Which way it went (the timing is the device's): the guard is exercised when the copy was
  // still queued as the blocks were taken, and then p's block was not among them.
  MESSAGE("copy still queued when the blocks were taken: " << copy_pending << "; p's block among them: " << took_block);
  // Once the device is idle, the block is free again: the next request of its class takes a
  // cached block instead of page-locking a new one.
  others.clear();
  cuda_synchronize(0);
  CHECK(pinned_memory_stats().busy_blocks == 0);
  const PinnedMemoryStats s1 = pinned_memory_stats();
  Tensor again = empty(s, {.pinned = true});
  CHECK(pinned_memory_stats().hits == s1.hits + 1);
  CHECK(busy.device() == kGpu);
}

TEST_CASE("cuda pinned copies: past the staging limit, pageable and pinned, round trips exact") {
  require_gpu();
  const int64_t n = static_cast<int64_t>(kStagingLimit / 4) + 12345;  // f32: just over the limit
  Tensor x = uniform({n}, DType::f32, -1, 1);
  check_parity(x.to(kGpu).to(Device::cpu()), x, 0, 0, "pageable, over the staging limit");
  Tensor p = x.pin_memory();
  check_parity(p.to(kGpu).to(Device::cpu()), x, 0, 0, "pinned blocking, over the staging limit");
  check_parity(p.to(kGpu, true).to(Device::cpu()), x, 0, 0, "pinned non_blocking, over the staging limit");
}

TEST_CASE("cuda pinned memory: statistics follow the pinned tensors, empty_cache returns the idle blocks") {
  require_gpu();
  cuda_synchronize(0);
  pinned_empty_cache();
  pinned_reset_peak_memory();
  const PinnedMemoryStats s0 = pinned_memory_stats();
  CHECK(s0.cached == 0);
  CHECK(s0.reserved == s0.allocated);
  const size_t cls = device_size_class(size_t{3} << 20);
  {
    Tensor t = empty({3 << 18}, {.pinned = true});  // 3 MiB of f32
    CHECK(t.is_pinned());
    const PinnedMemoryStats s1 = pinned_memory_stats();
    CHECK(s1.allocated == s0.allocated + cls);
    CHECK(s1.reserved >= s0.reserved + cls);
    CHECK(s1.live_blocks == s0.live_blocks + 1);
    CHECK(s1.peak_allocated >= s1.allocated);
    Tensor g = t.to(kGpu, true);
    CHECK(pinned_memory_stats().fences == s1.fences + 1);
  }
  const PinnedMemoryStats s2 = pinned_memory_stats();
  CHECK(s2.allocated == s0.allocated);
  CHECK(s2.cached >= cls);
  pinned_empty_cache();  // waits for the copy if it has not run yet
  const PinnedMemoryStats s3 = pinned_memory_stats();
  CHECK(s3.cached == 0);
  CHECK(s3.busy_blocks == 0);
  CHECK(s3.reserved == s3.allocated);
}

TEST_CASE("cuda pinned copies: a batch pinned on another thread, then moved without blocking (the trainer's path)") {
  require_gpu();
  std::vector<Tensor> want, pinned;
  std::thread loader([&] {
    for (int i = 0; i < 6; ++i) {
      Tensor t = sample({64, 3, 17, 19}, i % 2 ? DType::f32 : DType::i64);
      want.push_back(t);
      pinned.push_back(t.pin_memory());
    }
  });
  loader.join();
  std::vector<Tensor> on_device;
  for (const Tensor& p : pinned) on_device.push_back(p.to(kGpu, /*non_blocking=*/true));
  pinned.clear();  // the batch is dropped at once, as in the training loop
  for (size_t i = 0; i < want.size(); ++i)
    check_parity(on_device[i].to(Device::cpu()), want[i], 0, 0, "batch tensor " + std::to_string(i));
}
