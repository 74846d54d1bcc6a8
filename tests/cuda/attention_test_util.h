// What the attention tests on CUDA share (test_attention_versions.cpp, test_attention_dropout.cpp,
// test_attention_mma.cpp, test_attention_short.cpp): the versions of the "attention" family that
// take a dtype, the key masks, and the parity of one case forward and backward against the CPU op.
//
// check_attention_parity runs one call of the op on CPU leaves and on GPU leaves of the same
// inputs, with the output and gradient memory poisoned first (a row a kernel forgets is NaN),
// and compares out, dq, dk and dv. The CPU side runs in `reference` (the inputs' own dtype, or
// f32 for the 16-bit kernels: the reference is then the f32 op on the same rounded inputs),
// and the GPU results are widened to it before they are compared.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

namespace mmg::testing {

// How many versions the attention family has (0 if it is missing: the tests then fail on
// their REQUIRE rather than pass with nothing checked).
inline int attention_version_count() {
  for (const KernelFamily& f : kernel_families())
    if (f.name == "attention") return static_cast<int>(f.versions.size());
  return 0;
}

// The versions that take inputs of dtype dt: v1 and v2 every floating dtype (16-bit inputs
// computed in f32 copies), v3 and v4 — tensor cores — bf16 and f16 only.
inline std::vector<int> attention_versions_for(DType dt) {
  std::vector<int> v;
  const bool half = dt == DType::bf16 || dt == DType::f16;
  for (int i = 1; i <= attention_version_count(); ++i)
    if (i <= 2 || half) v.push_back(i);
  return v;
}

// A key mask [B, Sk] with random holes; batch row 0 masks every key when B > 1, so its
// queries see nothing: zero output, zero gradients.
inline Tensor key_mask_for(int64_t B, int64_t Sk) {
  Tensor m = gt(uniform({B, Sk}, DType::f32, 0, 1), scalar_tensor(0.3));
  if (B > 1) m = cat({zeros({1, Sk}, {.dtype = DType::boolean}), narrow(m, 0, 1, B - 1)}, 0);
  return m;
}

// A leaf copy of t on `device` that requires grad.
inline Tensor leaf(const Tensor& t, Device device) {
  Tensor l = t.to(device).detach().clone();
  l.requires_grad_(true);
  return l;
}

// |got − want| ≤ atol + rtol·|want| with atol = abs + scaled·max(max|want|, floor): the 16-bit
// kernels' error is relative to the terms each output sums (inputs and dO in [−1, 1], kept
// weights up to 1/(1−p)), so their floor follows the tensor's scale, and `floor` keeps it from
// vanishing where the terms cancel (with one key, dQ and dK are 0 in exact arithmetic, and the
// kernel's are sums of the rounding of dS = z·dP − Δ over every query).
struct AttentionTolerance {
  double rtol = 0, abs = 0, scaled = 0, floor = 0;
};

// The 16-bit kernels (v3, v4) against the f32 op on the same rounded inputs: P and dS are rounded
// once to 8 (bf16) or 11 (f16) bits. tests/kernels/test_attention_mma_tiling.cpp runs the
// kernels' algorithm with that rounding on the host and stays within half of these.
inline AttentionTolerance half_attention_tolerance(DType dt) {
  if (dt == DType::bf16) return {.rtol = 2e-2, .scaled = 1e-2, .floor = 2.0};
  return {.rtol = 4e-3, .scaled = 2e-3, .floor = 2.0};
}

inline void check_attention_close(const Tensor& got, const Tensor& want, const AttentionTolerance& tol,
                                  const std::string& what) {
  double peak = 0;
  for (double w : want.to_vector<double>())
    if (std::isfinite(w)) peak = std::max(peak, std::abs(w));
  check_parity(got.to(Device::cpu()).to(want.dtype()), want, tol.rtol, tol.abs + tol.scaled * std::max(peak, tol.floor),
               what);
}

// One case forward and backward: sdpa(q, k, v, mask, on_gpu) is the op call (on_gpu tells
// which side it is, for a caller that keeps a generator per side); the gradients are those
// of Σ out ⊙ r. q, k, v, r live on the CPU in the dtype the GPU is to see; the CPU side runs
// on copies converted to `reference`.
template <class F>
inline void check_attention_parity(const std::string& name, const Tensor& q, const Tensor& k, const Tensor& v,
                                   const Tensor& mask, const Tensor& r, DType reference, F sdpa,
                                   const AttentionTolerance& tol) {
  const DType dt = q.dtype();
  Tensor qc = leaf(q.to(reference), Device::cpu()), kc = leaf(k.to(reference), Device::cpu()),
         vc = leaf(v.to(reference), Device::cpu());
  Tensor want = sdpa(qc, kc, vc, mask, false);
  sum(mul(want, r.to(reference))).backward();

  Tensor qg = leaf(q, kGpu), kg = leaf(k, kGpu), vg = leaf(v, kGpu);
  Tensor mg = mask.defined() ? mask.to(kGpu) : Tensor();
  poison_outputs(static_cast<size_t>(want.numel()) * dtype_size(dt), 8);
  Tensor got = sdpa(qg, kg, vg, mg, true);
  REQUIRE(got.device() == kGpu);
  CHECK(got.dtype() == dt);
  check_attention_close(got, want, tol, name + " out");

  // The gradient buffers come from poisoned blocks too.
  poison_outputs(static_cast<size_t>(q.numel()) * dtype_size(dt), 8);
  poison_outputs(static_cast<size_t>(k.numel()) * dtype_size(dt), 8);
  sum(mul(got, r.to(kGpu))).backward();
  REQUIRE(qg.grad().defined());
  REQUIRE(kg.grad().defined());
  REQUIRE(vg.grad().defined());
  check_attention_close(qg.grad(), qc.grad(), tol, name + " dq");
  check_attention_close(kg.grad(), kc.grad(), tol, name + " dk");
  check_attention_close(vg.grad(), vc.grad(), tol, name + " dv");
}

// A tensor-core case (versions 3 and 4): shapes, causal, a key mask, dropout p.
struct HalfAttentionCase {
  int64_t B, H, Sq, Sk, D;
  bool causal, mask;
  double p = 0.0;  // dropout
};

inline std::string half_attention_case_name(const std::string& version, const HalfAttentionCase& c, DType dt) {
  return version + " " + dtype_name(dt) + " B " + std::to_string(c.B) + " H " + std::to_string(c.H) + " Sq " +
         std::to_string(c.Sq) + " Sk " + std::to_string(c.Sk) + " D " + std::to_string(c.D) +
         (c.causal ? " causal" : "") + (c.mask ? " masked" : "") + (c.p > 0 ? " p " + std::to_string(c.p) : "");
}

// One case in dtype dt on fresh random inputs against the f32 CPU op, both sides drawing their
// dropout masks from generators with the same seed. The caller holds the version guard.
inline void check_half_attention_case(const std::string& version, const HalfAttentionCase& c, DType dt) {
  Tensor q = uniform({c.B, c.H, c.Sq, c.D}, dt, -1, 1);
  Tensor k = uniform({c.B, c.H, c.Sk, c.D}, dt, -1, 1);
  Tensor v = uniform({c.B, c.H, c.Sk, c.D}, dt, -1, 1);
  Tensor mask = c.mask ? key_mask_for(c.B, c.Sk) : Tensor();
  Tensor r = uniform({c.B, c.H, c.Sq, c.D}, dt, -1, 1);
  Generator gc(static_cast<uint64_t>(integers({1}, DType::i64, 0, int64_t(1) << 40).item())), gg = gc;
  const bool causal = c.causal;
  const double p = c.p;
  check_attention_parity(
      half_attention_case_name(version, c, dt), q, k, v, mask, r, DType::f32,
      [&gc, &gg, causal, p](const Tensor& a, const Tensor& b, const Tensor& w, const Tensor& m, bool gpu) {
        return scaled_dot_product_attention(a, b, w, m, causal, std::nullopt, p, gpu ? &gg : &gc);
      },
      half_attention_tolerance(dt));
  CHECK(gg.offset() == gc.offset());
}

}  // namespace mmg::testing
