// Helpers for writing gradcheck battery cases (core/gradcheck/cases_<family>.cpp).
//
//   add(cases, "mul", "[3,1] * [1,4]", {f64({3,1}), f64({1,4})},
//       [](const Args& x) { return mul(x[0], x[1]); });
//
// Inputs are described, not built: each case draws them from its own seeded generator when
// it runs, so cases are independent of each other and of the order they run in.
#pragma once
#include <string>
#include <vector>

#include "core/gradcheck.h"
#include "core/ops.h"
#include "core/rng.h"

namespace mmg::gradcheck_cases {

using Args = std::vector<Tensor>;

// How to make one input.
struct Input {
  enum Kind { normal, positive, uniform01, indices, mask } kind = normal;
  Shape shape;
  int64_t high = 0;  // indices: [0, high)
};
inline Input f64(Shape s) { return {Input::normal, std::move(s)}; }          // N(0,1)
inline Input pos(Shape s) { return {Input::positive, std::move(s)}; }        // U[0.5, 2): log, sqrt, pow
inline Input unit(Shape s) { return {Input::uniform01, std::move(s)}; }      // U[0,1)
inline Input idx(Shape s, int64_t high) { return {Input::indices, std::move(s), high}; }  // i64 in [0, high)
inline Input mask(Shape s) { return {Input::mask, std::move(s)}; }           // bool, ~70% true

Tensor make_input(const Input& in, Generator& gen);

void add(std::vector<GradcheckCase>& cases, std::string op, std::string detail, std::vector<Input> inputs,
         GradcheckFn fn, GradcheckOptions options = {});

// One function per op family fills in its cases (called by gradcheck_battery()).
void add_view_cases(std::vector<GradcheckCase>& cases);
void add_elementwise_cases(std::vector<GradcheckCase>& cases);
void add_reduce_cases(std::vector<GradcheckCase>& cases);
void add_index_cases(std::vector<GradcheckCase>& cases);  // cases_index.cpp: joining, indexing, dropout
void add_pointwise_cases(std::vector<GradcheckCase>& cases);
void add_softmax_cases(std::vector<GradcheckCase>& cases);
void add_layer_norm_cases(std::vector<GradcheckCase>& cases);
void add_attention_cases(std::vector<GradcheckCase>& cases);
void add_reduce_more_cases(std::vector<GradcheckCase>& cases);
void add_matmul_cases(std::vector<GradcheckCase>& cases);
void add_losses_cases(std::vector<GradcheckCase>& cases);

}  // namespace mmg::gradcheck_cases
