#include <doctest/doctest.h>

#include "core/error.h"
#include <fmt/format.h>

#include "core/kernel_versions.h"

using namespace mmg;

TEST_CASE("kernel versions: every family starts at its default, and a guard sets and restores a version") {
  REQUIRE(!kernel_families().empty());
  for (const KernelFamily& f : kernel_families()) {
    CHECK(f.default_version >= 1);
    CHECK(f.default_version <= static_cast<int>(f.versions.size()));
    CHECK(kernel_version(f.name) == f.default_version);
    for (int v = 1; v <= static_cast<int>(f.versions.size()); ++v) {
      {
        KernelVersionGuard guard(f.name, v);
        CHECK(kernel_version(f.name) == v);
      }
      CHECK(kernel_version(f.name) == f.default_version);
    }
  }
}

TEST_CASE("kernel versions: an unknown family or version is an error naming what exists") {
  const KernelFamily& f = kernel_families().front();
  const int n = static_cast<int>(f.versions.size());
  CHECK_THROWS_WITH_AS(set_kernel_version("no-such-kernel", 1),
                       doctest::Contains("unknown kernel family 'no-such-kernel'"), Error);
  CHECK_THROWS_WITH_AS(set_kernel_version(f.name, n + 1),
                       doctest::Contains(fmt::format("'{}' has versions 1 to {}, got {}", f.name, n, n + 1).c_str()), Error);
  CHECK_THROWS_WITH_AS(set_kernel_version(f.name, 0), doctest::Contains("got 0"), Error);
  CHECK(kernel_version(f.name) == f.default_version);
}
