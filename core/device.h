// Device: where a tensor's storage lives — "cpu" or "cuda:N".
#pragma once
#include <string>

namespace mmg {

enum class DeviceType : uint8_t { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  static Device cpu() { return {DeviceType::cpu, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::cuda, index}; }
  static Device parse(const std::string& text);  // "cpu", "cuda", "cuda:1"

  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
  std::string str() const;
  bool operator==(const Device& o) const { return type == o.type && (is_cpu() || index == o.index); }
  bool operator!=(const Device& o) const { return !(*this == o); }
};

// True in builds compiled with the CUDA sources. Calls into the CUDA kernels (mmg::cuda,
// declared in every build in kernels/<family>.h and kernels/cuda/runtime.h) sit under
// `if constexpr (kWithCuda)`, so a build without CUDA never references them.
#ifdef MMG_WITH_CUDA
inline constexpr bool kWithCuda = true;
#else
inline constexpr bool kWithCuda = false;
#endif

// Whether this build was compiled with the CUDA sources (MMG_CUDA).
bool cuda_compiled();
// Number of usable CUDA devices: 0 in a CPU-only build or when the driver finds no GPU.
int cuda_device_count();
// A one-line description of why CUDA is or is not usable, for error messages and `mmg info`.
std::string cuda_status();
// The driver's name for GPU `index` ("NVIDIA H100 80GB HBM3"); empty in a CPU-only build, for a
// GPU that is not there, or when the driver cannot say.
std::string cuda_device_name(int index);
// Why tensors cannot be placed on `device` ("no usable GPU: CUDA driver version is
// insufficient for CUDA runtime version", "this machine has 1 GPU(s), cuda:0 to cuda:0"), or an
// empty string when they can. The CPU is always usable.
std::string device_unusable_reason(Device device);

}  // namespace mmg
