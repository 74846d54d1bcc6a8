// CUDA tests skip themselves, visibly, where no GPU is usable: the test prints why and
// exits with code 77, which CTest reports as "Skipped" (SKIP_RETURN_CODE in CMakeLists).
#pragma once
#include <cstdio>
#include <cstdlib>

#include "core/device.h"

namespace mmg::testing {

inline void require_gpu() {
  if (cuda_device_count() > 0) return;
  std::printf("SKIPPED: no usable GPU (%s)\n", cuda_status().c_str());
  std::fflush(stdout);
  std::exit(77);
}

}  // namespace mmg::testing
