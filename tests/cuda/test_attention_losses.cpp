// scaled_dot_product_attention (v1), clip_loss and hinge_ranking_loss on CUDA against the
// CPU's fused kernels, forward and backward (dq, dk, dv; d image, d text, d logit scale).
//
// Attention: Sq = Sk and Sq != Sk both ways, causal with each, key masks with fully masked
// batch rows (zero output and gradients), head dims 1 and odd, key counts past the warp
// limit of the softmax kernel (1024), an explicit scale, bf16 inputs.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

using namespace mmg;
using namespace mmg::testing;

namespace {

struct AttnCase {
  int64_t B, H, Sq, Sk, D;
  bool causal, mask;
};

std::string name_of(const AttnCase& c, DType dt) {
  return "attention " + dtype_name(dt) + " B " + std::to_string(c.B) + " H " + std::to_string(c.H) + " Sq " +
         std::to_string(c.Sq) + " Sk " + std::to_string(c.Sk) + " D " + std::to_string(c.D) +
         (c.causal ? " causal" : "") + (c.mask ? " masked" : "");
}

// A key mask [B, Sk] with random holes; batch row 0 masks every key when B > 1.
Tensor key_mask_for(int64_t B, int64_t Sk) {
  Tensor m = gt(uniform({B, Sk}, DType::f32, 0, 1), scalar_tensor(0.3));
  if (B > 1) m = cat({zeros({1, Sk}, {.dtype = DType::boolean}), narrow(m, 0, 1, B - 1)}, 0);
  return m;
}

}  // namespace

TEST_CASE("cuda scaled_dot_product_attention: shapes, causal, key masks, forward and backward") {
  require_gpu();
  const std::vector<AttnCase> cases = {
      {1, 1, 1, 1, 1, false, false},   {2, 3, 5, 5, 8, false, false},  {2, 3, 5, 5, 8, true, false},
      {2, 2, 7, 13, 5, false, true},   {2, 2, 7, 13, 5, true, true},   {3, 1, 13, 7, 3, true, false},
      {2, 2, 13, 7, 16, false, true},  {1, 2, 33, 33, 32, true, true}, {2, 1, 3, 1100, 7, false, true},
      {1, 1, 1030, 1030, 4, true, false}};
  for (DType dt : {DType::f32, DType::f64}) {
    const double tol = dt == DType::f64 ? 1e-11 : 2e-5;
    for (const AttnCase& c : cases) {
      Tensor q = uniform({c.B, c.H, c.Sq, c.D}, dt, -1, 1);
      Tensor k = uniform({c.B, c.H, c.Sk, c.D}, dt, -1, 1);
      Tensor v = uniform({c.B, c.H, c.Sk, c.D}, dt, -1, 1);
      Tensor mask = c.mask ? key_mask_for(c.B, c.Sk) : Tensor();
      check_op_parity(name_of(c, dt), {q, k, v, mask},
                      [&](const std::vector<Tensor>& a) {
                        return scaled_dot_product_attention(a[0], a[1], a[2], a[3], c.causal);
                      },
                      tol, tol);
    }
  }
}

TEST_CASE("cuda scaled_dot_product_attention: explicit scale and bf16 inputs") {
  require_gpu();
  Tensor q = uniform({2, 2, 6, 8}, DType::f32, -1, 1), k = uniform({2, 2, 9, 8}, DType::f32, -1, 1);
  Tensor v = uniform({2, 2, 9, 8}, DType::f32, -1, 1);
  check_op_parity("attention scale 0.7", {q, k, v},
                  [](const std::vector<Tensor>& a) {
                    return scaled_dot_product_attention(a[0], a[1], a[2], Tensor(), true, 0.7);
                  },
                  2e-5, 2e-5);
  Tensor qb = q.to(DType::bf16), kb = k.to(DType::bf16), vb = v.to(DType::bf16);
  Tensor want = scaled_dot_product_attention(qb, kb, vb);
  Tensor got = scaled_dot_product_attention(qb.to(kGpu), kb.to(kGpu), vb.to(kGpu));
  check_parity(got, want, 1e-2, 1e-2, "attention bf16");
}

TEST_CASE("cuda clip_loss and hinge_ranking_loss: forward and every gradient") {
  require_gpu();
  for (DType dt : {DType::f32, DType::f64}) {
    const double tol = dt == DType::f64 ? 1e-11 : 2e-5;
    for (int64_t N : {1, 2, 7, 97}) {
      for (int64_t d : {1, 5, 64}) {
        const std::string shape = dtype_name(dt) + " N " + std::to_string(N) + " d " + std::to_string(d);
        // Normalised rows, as the models pass them.
        Tensor u = uniform({N, d}, dt, -1, 1), v = uniform({N, d}, dt, -1, 1);
        u = div(u, norm(u, 2.0, {1}, true));
        v = div(v, norm(v, 2.0, {1}, true));
        for (Shape scale_shape : std::vector<Shape>{{}, {1}}) {
          Tensor t = full(scale_shape, 2.6592, {.dtype = dt});  // log(1/0.07), CLIP's initial temperature
          check_op_parity("clip_loss " + shape + " scale " + shape_str(scale_shape), {u, v, t},
                          [](const std::vector<Tensor>& a) { return clip_loss(a[0], a[1], a[2]); }, tol, tol);
        }
        for (double margin : {0.2, 1.5}) {
          check_op_parity("hinge_ranking_loss " + shape + " margin " + std::to_string(margin), {u, v},
                          [&](const std::vector<Tensor>& a) { return hinge_ranking_loss(a[0], a[1], margin); }, tol,
                          tol);
        }
      }
    }
  }
}
