// The kernel lab's switch: which version of a CUDA kernel family the ops run.
//
// A family may keep several versions side by side (DESIGN.md: v1 naive, v2 tiled, v3 tensor
// cores, ...), each teaching one step of optimisation. All of them pass the same parity tests;
// the op runs the family's default (its best) unless a test, a benchmark or a reader asks for
// another:
//
//   mmg::KernelVersionGuard v1("attention", 1);   // until the end of this scope
//   Tensor o = scaled_dot_product_attention(q, k, v);
//
// `mmg bench --kernel attention --version N` sets it the same way. The CPU has one version of
// each kernel; the setting only changes which CUDA path an op takes.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace mmg {

struct KernelFamily {
  std::string name;                   // "attention"
  std::vector<std::string> versions;  // versions[i] describes version i + 1
  int default_version;                // the one the ops use unless told otherwise
};

// Every family with more than one version, in a fixed order.
const std::vector<KernelFamily>& kernel_families();

// The version the ops run now (the default unless set). Unknown family: mmg::Error.
int kernel_version(std::string_view family);

// Makes the ops run `version` (1-based) of `family`; mmg::Error naming the family and the
// versions it has when either is unknown. Process-wide, like the number of threads.
void set_kernel_version(std::string_view family, int version);

// Sets a version for one scope and restores the previous one.
class KernelVersionGuard {
 public:
  KernelVersionGuard(std::string_view family, int version);
  ~KernelVersionGuard();
  KernelVersionGuard(const KernelVersionGuard&) = delete;
  KernelVersionGuard& operator=(const KernelVersionGuard&) = delete;

 private:
  std::string family_;
  int previous_;
};

}  // namespace mmg
