// The CUDA runtime as the engine sees it. Skips (exit 77) where no GPU is usable.
#include <doctest/doctest.h>

#include "core/device.h"
#include "tests/cuda/cuda_test_util.h"

using namespace mmg;

TEST_CASE("a GPU is found and described") {
  testing::require_gpu();
  CHECK(cuda_compiled());
  CHECK(cuda_device_count() >= 1);
  std::string s = cuda_status();
  CHECK(s.find("GPU") != std::string::npos);
  CHECK(s.find("sm_") != std::string::npos);
}

TEST_CASE("profile on a GPU: each outermost scope waits for its kernels, so a row holds their time") {
  testing::require_gpu();
  Tensor a = ones({4096, 4096}, {.device = testing::kGpu}), b = ones({4096, 4096}, {.device = testing::kGpu});
  Tensor warm = matmul(a, b);  // cuBLAS's handle and workspace, outside the profile
  cuda_synchronize(0);
  profile::start(/*cuda_device=*/0);
  Tensor c = matmul(a, b);  // 137 GFLOP: milliseconds of kernel time, microseconds to launch
  profile::stop();
  const std::vector<profile::Entry> rows = profile::entries();
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].name == "matmul");
  CHECK(rows[0].calls == 1);
  CHECK(rows[0].seconds > 5e-4);
  CHECK(c.to(Device::cpu()).to_vector<float>()[12345] == 4096.0f);
}
