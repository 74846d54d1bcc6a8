// Writing files so that nothing is lost on failure: write a temporary file next to the
// target, flush it, then rename it over the target (rename is atomic on POSIX). A crash
// or a full disk leaves the old file intact and no half-written one.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace mmg {

void write_file_atomic(const std::string& path, std::string_view contents);
std::string read_file(const std::string& path);  // whole file; throws naming the path on failure

}  // namespace mmg
