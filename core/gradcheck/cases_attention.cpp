// Gradcheck cases for scaled_dot_product_attention: self- and cross-attention (Sq != Sk),
// key-padding masks, causal, a batch whose keys are all masked, masked queries, and dropout on the
// weights.
#include "core/gradcheck/cases.h"

namespace mmg::gradcheck_cases {

void add_attention_cases(std::vector<GradcheckCase>& c) {
  add(c, "scaled_dot_product_attention", "q,k,v [2,2,5,3]", {f64({2, 2, 5, 3}), f64({2, 2, 5, 3}), f64({2, 2, 5, 3})},
      [](const Args& x) { return scaled_dot_product_attention(x[0], x[1], x[2]); });
  add(c, "scaled_dot_product_attention", "causal, q,k,v [1,2,6,4]",
      {f64({1, 2, 6, 4}), f64({1, 2, 6, 4}), f64({1, 2, 6, 4})},
      [](const Args& x) { return scaled_dot_product_attention(x[0], x[1], x[2], Tensor(), true); });
  add(c, "scaled_dot_product_attention", "cross Sq=3 Sk=7, key_mask [2,7], scale 0.7",
      {f64({2, 1, 3, 4}), f64({2, 1, 7, 4}), f64({2, 1, 7, 4}), mask({2, 7})},
      [](const Args& x) { return scaled_dot_product_attention(x[0], x[1], x[2], x[3], false, 0.7); });
  add(c, "scaled_dot_product_attention", "causal Sq=7 > Sk=3, key_mask [2,3]",
      {f64({2, 2, 7, 2}), f64({2, 2, 3, 2}), f64({2, 2, 3, 2}), mask({2, 3})},
      [](const Args& x) { return scaled_dot_product_attention(x[0], x[1], x[2], x[3], true); });
  add(c, "scaled_dot_product_attention", "batch 1 fully masked, q,k,v [2,1,4,3]",
      {f64({2, 1, 4, 3}), f64({2, 1, 4, 3}), f64({2, 1, 4, 3})}, [](const Args& x) {
        // On the inputs' device, so that the battery runs on CUDA too (tests/cuda/test_gradcheck.cpp).
        Tensor m = from_vector<bool>({true, false, true, true, false, false, false, false}, {2, 4},
                                     {.dtype = DType::boolean, .device = x[0].device()});
        return scaled_dot_product_attention(x[0], x[1], x[2], m);
      });
  add(c, "scaled_dot_product_attention", "query_mask [2,5] (right-padded, one gap), key_mask [2,6]",
      {f64({2, 2, 5, 3}), f64({2, 2, 6, 3}), f64({2, 2, 6, 3}), mask({2, 6})}, [](const Args& x) {
        Tensor qm = from_vector<bool>({true, true, true, false, false, true, false, true, true, false}, {2, 5},
                                      {.dtype = DType::boolean, .device = x[0].device()});
        return scaled_dot_product_attention(x[0], x[1], x[2], x[3], false, std::nullopt, 0.0, nullptr, qm);
      });
  // Dropout: a generator made inside fn, so every evaluation draws the same mask.
  add(c, "scaled_dot_product_attention", "dropout 0.3, q,k,v [2,2,5,3]",
      {f64({2, 2, 5, 3}), f64({2, 2, 5, 3}), f64({2, 2, 5, 3})}, [](const Args& x) {
        Generator g(17);
        return scaled_dot_product_attention(x[0], x[1], x[2], Tensor(), false, std::nullopt, 0.3, &g);
      });
  add(c, "scaled_dot_product_attention", "dropout 0.5, causal Sq=6 > Sk=4, key_mask [2,4]",
      {f64({2, 2, 6, 3}), f64({2, 2, 4, 3}), f64({2, 2, 4, 3}), mask({2, 4})}, [](const Args& x) {
        Generator g(23);
        return scaled_dot_product_attention(x[0], x[1], x[2], x[3], true, std::nullopt, 0.5, &g);
      });
}

}  // namespace mmg::gradcheck_cases
