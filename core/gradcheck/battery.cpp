// The built-in gradcheck battery: every family adds its cases here.
#include "core/gradcheck/cases.h"

namespace mmg {

namespace gradcheck_cases {

Tensor make_input(const Input& in, Generator& gen) {
  TensorOptions f64o{.dtype = DType::f64};
  switch (in.kind) {
    case Input::normal: return randn(in.shape, f64o, &gen);
    case Input::positive: return rand(in.shape, f64o, &gen) * 1.5 + 0.5;
    case Input::uniform01: return rand(in.shape, f64o, &gen);
    case Input::indices: return randint(0, in.high, in.shape, {.dtype = DType::i64}, &gen);
    case Input::mask: return lt(rand(in.shape, f64o, &gen), scalar_tensor(0.7, f64o));
  }
  return Tensor();
}

void add(std::vector<GradcheckCase>& cases, std::string op, std::string detail, std::vector<Input> inputs,
         GradcheckFn fn, GradcheckOptions options) {
  uint64_t seed = 1000 + cases.size();
  cases.push_back({std::move(op), std::move(detail),
                   [inputs, seed]() {
                     Generator gen(seed);
                     std::vector<Tensor> xs;
                     for (const Input& in : inputs) xs.push_back(make_input(in, gen));
                     return xs;
                   },
                   std::move(fn), std::move(options)});
}

}  // namespace gradcheck_cases

std::vector<GradcheckCase> gradcheck_battery() {
  using namespace gradcheck_cases;
  std::vector<GradcheckCase> cases;
  add_view_cases(cases);
  add_elementwise_cases(cases);
  add_reduce_cases(cases);
  add_index_cases(cases);
  add_pointwise_cases(cases);
  add_softmax_cases(cases);
  add_layer_norm_cases(cases);
  add_attention_cases(cases);
  add_reduce_more_cases(cases);
  add_matmul_cases(cases);
  add_losses_cases(cases);
  return cases;
}

}  // namespace mmg
