#include "nn/init.h"

#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"

namespace mmg::nn::init {

// Writes `values` into the parameter without recording the write.
static void assign(Tensor& t, const Tensor& values) {
  NoGradGuard no_grad;
  t.detach().copy_(values);
}

// Draws in f64 on t's device: rand/randn make their numbers on the host and copy them once,
// so a parameter on CUDA gets the same values from the same generator as one on the CPU.
static TensorOptions f64_like(const Tensor& t) { return {.dtype = DType::f64, .device = t.device()}; }

void zeros_(Tensor& t) { constant_(t, 0.0); }
void ones_(Tensor& t) { constant_(t, 1.0); }
void constant_(Tensor& t, double value) {
  NoGradGuard no_grad;
  t.detach().fill_(value);
}

void uniform_(Tensor& t, double low, double high, Generator* gen) {
  MMG_CHECK(low <= high, "uniform_: low {} > high {}", low, high);
  assign(t, rand(t.shape(), f64_like(t), gen) * (high - low) + low);
}

void normal_(Tensor& t, double mean, double std, Generator* gen) {
  MMG_CHECK(std >= 0, "normal_: negative std {}", std);
  assign(t, randn(t.shape(), f64_like(t), gen) * std + mean);
}

void trunc_normal_(Tensor& t, double std, double mean, std::optional<double> a, std::optional<double> b,
                   Generator* gen) {
  double lo = a.value_or(mean - 2 * std), hi = b.value_or(mean + 2 * std);
  MMG_CHECK(lo < hi, "trunc_normal_: empty range [{}, {}]", lo, hi);
  std::vector<double> v = (randn(t.shape(), f64_like(t), gen) * std + mean).to_vector<double>();
  // Redraw what fell outside, in rounds, from the same generator: deterministic per seed.
  for (int round = 0; round < 100; ++round) {
    std::vector<size_t> bad;
    for (size_t i = 0; i < v.size(); ++i)
      if (v[i] < lo || v[i] > hi) bad.push_back(i);
    if (bad.empty()) break;
    auto redraw = (randn({static_cast<int64_t>(bad.size())}, {.dtype = DType::f64}, gen) * std + mean).to_vector<double>();
    for (size_t j = 0; j < bad.size(); ++j) v[bad[j]] = redraw[j];
  }
  for (double& x : v) x = std::clamp(x, lo, hi);  // a range far in the tail may still miss after 100 rounds
  assign(t, from_vector(v, t.shape(), f64_like(t)));
}

int64_t fan_in(const Tensor& t) {
  MMG_CHECK(t.dim() >= 2, "init: fan_in needs a weight with at least 2 dims, got {}", shape_str(t.shape()));
  return t.numel() / t.size(0);
}

int64_t fan_out(const Tensor& t) {
  MMG_CHECK(t.dim() >= 2, "init: fan_out needs a weight with at least 2 dims, got {}", shape_str(t.shape()));
  return t.numel() / t.size(1);
}

void xavier_uniform_(Tensor& t, double gain, Generator* gen) {
  double bound = gain * std::sqrt(6.0 / static_cast<double>(fan_in(t) + fan_out(t)));
  uniform_(t, -bound, bound, gen);
}

void xavier_normal_(Tensor& t, double gain, Generator* gen) {
  normal_(t, 0.0, gain * std::sqrt(2.0 / static_cast<double>(fan_in(t) + fan_out(t))), gen);
}

void kaiming_uniform_(Tensor& t, double a, Generator* gen) {
  double gain = std::sqrt(2.0 / (1.0 + a * a));
  double bound = gain * std::sqrt(3.0 / static_cast<double>(fan_in(t)));
  uniform_(t, -bound, bound, gen);
}

void kaiming_normal_(Tensor& t, double a, Generator* gen) {
  double gain = std::sqrt(2.0 / (1.0 + a * a));
  normal_(t, 0.0, gain / std::sqrt(static_cast<double>(fan_in(t))), gen);
}

}  // namespace mmg::nn::init
