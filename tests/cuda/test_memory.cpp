// The CUDA caching allocator on a real device: block reuse, statistics, empty_cache, the
// out-of-memory error, and the device guard. Skips (exit 77) where no GPU is usable.
#include <doctest/doctest.h>

#include <string>

#include "kernels/cuda/runtime.h"
#include "tests/cuda/cuda_test_util.h"

using namespace mmg;
using namespace mmg::testing;

TEST_CASE("cuda allocator: a freed block is reused by the next tensor of its size class") {
  require_gpu();
  const DeviceMemoryStats before = cuda_memory_stats(0);
  void* first = nullptr;
  {
    Tensor a = empty({1000, 37}, {.device = kGpu});  // 148000 bytes
    first = a.data_ptr();
  }
  Tensor b = empty({37, 1000}, {.device = kGpu});  // same bytes: same class
  CHECK(b.data_ptr() == first);
  const DeviceMemoryStats after = cuda_memory_stats(0);
  CHECK(after.hits >= before.hits + 1);
}

TEST_CASE("cuda allocator: allocated, reserved, cached and peak follow the live tensors") {
  require_gpu();
  cuda_empty_cache(0);
  cuda_reset_peak_memory(0);
  const DeviceMemoryStats s0 = cuda_memory_stats(0);
  CHECK(s0.cached == 0);
  CHECK(s0.reserved == s0.allocated);
  const size_t cls = device_size_class(size_t{3} << 20);  // 3 MiB
  {
    Tensor t = empty({3 << 18}, {.device = kGpu});  // 3 MiB of f32
    const DeviceMemoryStats s1 = cuda_memory_stats(0);
    CHECK(s1.allocated == s0.allocated + cls);
    CHECK(s1.reserved >= s0.reserved + cls);
    CHECK(s1.peak_allocated >= s1.allocated);
    CHECK(s1.live_blocks == s0.live_blocks + 1);
  }
  const DeviceMemoryStats s2 = cuda_memory_stats(0);
  CHECK(s2.allocated == s0.allocated);
  CHECK(s2.cached >= cls);
  CHECK(s2.peak_allocated >= s0.allocated + cls);
  cuda_empty_cache(0);
  const DeviceMemoryStats s3 = cuda_memory_stats(0);
  CHECK(s3.cached == 0);
  CHECK(s3.reserved == s3.allocated);
}

TEST_CASE("cuda allocator: an absurd request is an Error saying what was asked for and what is held") {
  require_gpu();
  Tensor keep = ones({1 << 20}, {.device = kGpu});  // something held: 4 MiB
  const int64_t absurd = int64_t{1} << 48;           // 1 PiB of f32
  try {
    empty({absurd}, {.device = kGpu});
    FAIL("expected an out-of-memory error");
  } catch (const Error& e) {
    const std::string m = e.what();
    INFO(m);
    CHECK(m.find("cuda:0: out of memory") != std::string::npos);
    CHECK(m.find("asked for 1.00 PiB") != std::string::npos);
    CHECK(m.find("in live tensors") != std::string::npos);
    CHECK(m.find("the device reports") != std::string::npos);
  }
  // The device is still usable afterwards.
  CHECK(keep.sum().item() == doctest::Approx(1 << 20));
}

TEST_CASE("cuda device guard: ops run on their tensors' device and leave the current device alone") {
  require_gpu();
  if (cuda_device_count() < 2) {
    MESSAGE("one GPU: only the single-device half of this test runs");
  }
  const int last = cuda_device_count() - 1;
  int current = 0;
  if constexpr (kWithCuda) current = cuda::current_device();  // (this file also builds without CUDA, and skips)
  Tensor x = uniform({64}, DType::f32, -1, 1);
  Tensor g = x.to(Device::cuda(last));
  Tensor y = (g * 2.0 + 1.0).to(Device::cpu());
  check_parity(y, x * 2.0 + 1.0, 0, 0, "on the last device");
  if constexpr (kWithCuda) CHECK(cuda::current_device() == current);
  if (last > 0) {
    Tensor g0 = g.to(Device::cuda(0));  // device to device
    check_parity(g0.to(Device::cpu()), x, 0, 0, "copied between devices");
  }
}
