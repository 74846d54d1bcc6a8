#include "nn/clip.h"

#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"
#include "kernels/grad_norm.h"

namespace mmg::nn {

namespace {

// The gradients of one dtype that the fused CPU kernels take (kernels/grad_norm.h):
// contiguous f32 or f64 on the CPU.
struct CpuGrads {
  std::vector<Tensor> tensors;
  std::vector<int64_t> sizes;
  template <class T>
  std::vector<T*> data() const {
    std::vector<T*> d;
    for (const Tensor& t : tensors) d.push_back(t.data<T>());
    return d;
  }
};

bool fusable(const Tensor& g) {
  return g.device().is_cpu() && (g.dtype() == DType::f32 || g.dtype() == DType::f64) && g.is_contiguous();
}

// The defined gradients: the fusable ones by dtype (f32, f64), the rest as they are.
struct Gathered {
  CpuGrads f32, f64;
  std::vector<Tensor> other;
};

Gathered gather(const std::vector<Tensor>& params) {
  Gathered out;
  for (size_t i = 0; i < params.size(); ++i) {
    MMG_CHECK(params[i].defined(), "grad_norm: parameter {} of {} is undefined", i, params.size());
    Tensor g = params[i].grad();
    if (!g.defined()) continue;
    if (!fusable(g)) {
      out.other.push_back(g);
      continue;
    }
    CpuGrads& group = g.dtype() == DType::f32 ? out.f32 : out.f64;
    group.tensors.push_back(g);
    group.sizes.push_back(g.numel());
  }
  return out;
}

// Σ g² in f64 over every gradient: one fused pass per CPU dtype; the others (CUDA, bf16/f16,
// strided) as 0-d f64 tensors added up on the device of the first, one host read at the end.
double sum_of_squares(const Gathered& g) {
  NoGradGuard no_grad;
  double total = 0.0;
  if (!g.f32.tensors.empty()) {
    std::vector<float*> d = g.f32.data<float>();
    total += cpu::sum_of_squares<float>(d.data(), g.f32.sizes.data(), static_cast<int64_t>(d.size()));
  }
  if (!g.f64.tensors.empty()) {
    std::vector<double*> d = g.f64.data<double>();
    total += cpu::sum_of_squares<double>(d.data(), g.f64.sizes.data(), static_cast<int64_t>(d.size()));
  }
  Tensor rest;
  for (const Tensor& t : g.other) {
    Tensor t64 = t.to(DType::f64);
    Tensor squares = sum(t64 * t64);
    rest = rest.defined() ? rest + squares.to(rest.device()) : squares;
  }
  return rest.defined() ? total + rest.item() : total;
}

}  // namespace

double grad_norm(const std::vector<Tensor>& params) { return std::sqrt(sum_of_squares(gather(params))); }

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  MMG_CHECK(std::isfinite(max_norm) && max_norm > 0.0, "clip_grad_norm: max_norm must be finite and > 0, got {}",
            max_norm);
  const Gathered g = gather(params);
  const double norm = std::sqrt(sum_of_squares(g));
  if (!std::isfinite(norm) || norm <= max_norm) return norm;
  const double scale = max_norm / (norm + 1e-6);
  NoGradGuard no_grad;
  // The engine gives each leaf its own .grad tensor, so scaling it in place touches nothing else.
  auto scale_group = [scale]<class T>(const CpuGrads& group) {
    if (group.tensors.empty()) return;
    std::vector<T*> d = group.data<T>();
    cpu::scale_in_place<T>(d.data(), group.sizes.data(), static_cast<int64_t>(d.size()), scale);
    for (const Tensor& t : group.tensors) t.storage()->bump_version();  // written through raw pointers
  };
  scale_group.template operator()<float>(g.f32);
  scale_group.template operator()<double>(g.f64);
  for (Tensor t : g.other) t.copy_(t * scale);
  return norm;
}

}  // namespace mmg::nn
