// mmg::Error — the one exception type of the engine.
//
// Every bad input (wrong shape, dtype, device, corrupt file) becomes an Error whose message
// names the op and the values at fault, e.g.
//   matmul: [2,3] @ [4,5]: inner sizes 3 and 4 differ
// MMG_CHECK adds the source file and line so a reader can find the check that fired.
#pragma once
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <stdexcept>
#include <string>

namespace mmg {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

[[noreturn]] void throw_error(const char* file, int line, const std::string& message);

}  // namespace mmg

// MMG_CHECK(cond, "fmt string", args...): throws mmg::Error with the formatted message
// followed by " (at core/ops/matmul.cpp:42)".
#define MMG_CHECK(cond, ...)                                            \
  do {                                                                  \
    if (!(cond)) ::mmg::throw_error(__FILE__, __LINE__, fmt::format(__VA_ARGS__)); \
  } while (0)

#define MMG_FAIL(...) ::mmg::throw_error(__FILE__, __LINE__, fmt::format(__VA_ARGS__))
