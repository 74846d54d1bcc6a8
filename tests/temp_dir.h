// A fresh, empty folder under the system's temp directory for one test, removed with everything
// in it when the test ends. Names carry the process id and a counter, so tests running at the
// same time (ctest -j) never share one.
#pragma once
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace mmg::test {

struct TempDir {
  std::filesystem::path path;

  explicit TempDir(const std::string& prefix = "mmg_test") {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           fmt::format("{}_{}_{}", prefix, static_cast<long>(::getpid()), counter++);
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string str() const { return path.string(); }
  std::string file(const std::string& name) const { return (path / name).string(); }
  // The names in the folder, sorted.
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(path)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
};

}  // namespace mmg::test
