#include "core/error.h"

#include <cstring>

namespace mmg {

// Keep the path from the project root on: "core/ops/matmul.cpp", not "/home/.../core/...".
static const char* project_relative(const char* file) {
  for (const char* dir : {"/core/", "/kernels/", "/nn/", "/models/", "/train/", "/bench/", "/tests/"}) {
    if (const char* p = std::strstr(file, dir)) return p + 1;
  }
  return file;
}

void throw_error(const char* file, int line, const std::string& message) {
  throw Error(fmt::format("{} (at {}:{})", message, project_relative(file), line));
}

}  // namespace mmg
