#include "core/io/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace mmg {

void write_file_atomic(const std::string& path, std::string_view contents) {
  std::string tmp = fmt::format("{}.tmp.{}", path, static_cast<long>(::getpid()));
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  MMG_CHECK(f != nullptr, "write {}: cannot create temporary file {}: {}", path, tmp, std::strerror(errno));
  size_t written = contents.empty() ? 0 : std::fwrite(contents.data(), 1, contents.size(), f);
  bool ok = written == contents.size() && std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  int err = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    MMG_FAIL("write {}: writing {} bytes failed: {}", path, contents.size(), std::strerror(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    std::remove(tmp.c_str());
    MMG_FAIL("write {}: cannot rename the temporary file into place: {}", path, std::strerror(err));
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MMG_CHECK(in.good(), "read {}: cannot open: {}", path, std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  MMG_CHECK(!in.bad(), "read {}: read error", path);
  return ss.str();
}

}  // namespace mmg
