#include "core/kernel_versions.h"

#include <atomic>

#include "core/error.h"

namespace mmg {

// The families and what each version is. A new version is one more line here and one more
// branch in its op.
const std::vector<KernelFamily>& kernel_families() {
  static const std::vector<KernelFamily> families = {
      {"attention",
       {"scores through device memory: gemm, masked softmax, gemm (O(S²) memory)",
        "flash: tiles of K/V streamed through shared memory, online softmax, O(S) memory (f32/f64)",
        "flash on tensor cores: mma.sync m16n8k16 with f32 accumulation, bf16/f16 inputs only",
        "version 3 with a forward for short keys (Sk <= 256): each head's K/V resident in shared memory, "
        "16-row query chunks per warp; version 3's backward, and its forward where Sk > 256"},
       2},  // v3 and v4 opt-in until they have run on a GPU
      {"clip_loss",
       {"composed: N×N logits through matmul and two cross-entropies (O(N²) memory)",
        "fused: row and column log-sum-exp by tiles, O(N·d) memory",
        "fused on tensor cores: mma.sync m16n8k16 with f32 accumulation, bf16/f16 inputs only"},
       2},  // v3 opt-in until it has run on a GPU
      {"copy",
       {"one thread an element; a transposing copy reads with a stride",
        "a transposing copy through 32x32 shared-memory tiles, coalesced reads and writes; other copies as version 1"},
       1},  // v2 stays opt-in until it has run on a GPU
      {"elementwise",
       {"unary, binary, gelu: one element a thread, scalar loads",
        "16-byte packs where the layout and alignment allow (contiguous, scalar or row-bias operands); else version 1"},
       1},  // v2 stays opt-in until it has run on a GPU
      {"hinge_ranking_loss",
       {"composed: N×N scores through matmul, relu and masked_fill (O(N²) memory)",
        "fused: both hinges of each score by tiles, O(N·d) memory"},
       2},
      {"layer_norm", {"two-pass mean and variance, scalar loads", "Welford statistics in one pass, 16-byte packs"}, 1},
      {"linear",
       {"bias copied into y, the GEMM accumulating onto it (beta = 1); bias gradient by a reduction over the rows",
        "cuBLASLt epilogues: the bias added as the GEMM writes y (BIAS), the bias gradient from the weight-gradient "
        "GEMM (BGRADB); version 1 where cuBLASLt has no such kernel"},
       1},  // v2 stays opt-in until it has run on a GPU (as softmax and layer_norm)
      {"softmax", {"three passes (max, sum, write), scalar loads", "online max and sum in one pass, 16-byte packs"}, 1},
  };
  return families;
}

static std::atomic<int> chosen[16];  // 0 = the default; one slot per family

static size_t family_index(std::string_view family) {
  const auto& families = kernel_families();
  MMG_CHECK(families.size() <= std::size(chosen), "kernel versions: {} families, room for {}", families.size(),
            std::size(chosen));
  for (size_t i = 0; i < families.size(); ++i)
    if (families[i].name == family) return i;
  std::string known;
  for (const KernelFamily& f : families) known += (known.empty() ? "" : ", ") + f.name;
  MMG_FAIL("kernel versions: unknown kernel family '{}' (families with versions: {})", family, known);
}

int kernel_version(std::string_view family) {
  const size_t i = family_index(family);
  const int v = chosen[i].load(std::memory_order_relaxed);
  return v != 0 ? v : kernel_families()[i].default_version;
}

void set_kernel_version(std::string_view family, int version) {
  const size_t i = family_index(family);
  const KernelFamily& f = kernel_families()[i];
  MMG_CHECK(version >= 1 && version <= static_cast<int>(f.versions.size()),
            "kernel versions: '{}' has versions 1 to {}, got {}", f.name, f.versions.size(), version);
  chosen[i].store(version, std::memory_order_relaxed);
}

KernelVersionGuard::KernelVersionGuard(std::string_view family, int version)
    : family_(family), previous_(kernel_version(family)) {
  set_kernel_version(family, version);
}

KernelVersionGuard::~KernelVersionGuard() { set_kernel_version(family_, previous_); }

}  // namespace mmg
