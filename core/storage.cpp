#include "core/storage.h"

#include <cstdlib>
#include <new>

#include "core/error.h"

namespace mmg {

// 64-byte alignment: a cache line, and enough for any vector load.
static constexpr size_t kAlign = 64;

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  MMG_CHECK(device.is_cpu(),
            "storage: cannot allocate {} bytes on {}: tensors on CUDA need the CUDA backend, and {}",
            nbytes, device.str(), cuda_status());
  size_t rounded = (std::max<size_t>(nbytes, 1) + kAlign - 1) / kAlign * kAlign;
  data_ = std::aligned_alloc(kAlign, rounded);
  MMG_CHECK(data_ != nullptr, "storage: out of memory allocating {} bytes on cpu", nbytes);
}

Storage::~Storage() { std::free(data_); }

}  // namespace mmg
