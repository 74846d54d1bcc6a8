#include "core/device.h"

#include "core/error.h"

#ifdef MMG_WITH_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace mmg {

Device Device::parse(const std::string& text) {
  if (text == "cpu") return cpu();
  if (text == "cuda") return cuda(0);
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5) {
    int index = 0;
    for (char c : text.substr(5)) {
      MMG_CHECK(c >= '0' && c <= '9', "device: cannot parse '{}' (expected cpu, cuda or cuda:N)", text);
      index = index * 10 + (c - '0');
    }
    return cuda(index);
  }
  MMG_FAIL("device: cannot parse '{}' (expected cpu, cuda or cuda:N)", text);
}

std::string Device::str() const { return is_cpu() ? "cpu" : fmt::format("cuda:{}", index); }

#ifdef MMG_WITH_CUDA
bool cuda_compiled() { return true; }
int cuda_device_count() { return cuda::device_count(); }
std::string cuda_status() { return cuda::status(); }
std::string cuda_device_name(int index) {
  return index >= 0 && index < cuda::device_count() ? cuda::device_name(index) : std::string();
}
#else
bool cuda_compiled() { return false; }
int cuda_device_count() { return 0; }
std::string cuda_status() { return "this build has no CUDA (configured with MMG_CUDA=OFF or nvcc not found)"; }
std::string cuda_device_name(int) { return ""; }
#endif

std::string device_unusable_reason(Device device) {
  if (device.is_cpu()) return "";
  if (!cuda_compiled()) return cuda_status();
  const int count = cuda_device_count();
  if (count == 0) return cuda_status();
  if (device.index < 0 || device.index >= count)
    return fmt::format("this machine has {} GPU(s), cuda:0 to cuda:{}", count, count - 1);
  return "";
}

}  // namespace mmg
