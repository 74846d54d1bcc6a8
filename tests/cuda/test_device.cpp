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
