// Storage: a block of bytes on one device, shared by every tensor that views it.
#pragma once
#include <cstddef>
#include <memory>

#include "core/device.h"

namespace mmg {

class Storage {
 public:
  Storage(size_t nbytes, Device device);  // uninitialised memory
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
};

}  // namespace mmg
