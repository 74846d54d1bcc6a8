// Initialisers: fill a parameter in place from a Philox generator (default: the global one,
// see core/rng.h), so the same seed builds the same model on every device.
// fan_in / fan_out of a weight [out, in, k...] are in·Πk and out·Πk.
#pragma once
#include <optional>

#include "core/rng.h"
#include "core/tensor.h"

namespace mmg::nn::init {

void zeros_(Tensor& t);
void ones_(Tensor& t);
void constant_(Tensor& t, double value);
void uniform_(Tensor& t, double low, double high, Generator* gen = nullptr);
void normal_(Tensor& t, double mean, double std, Generator* gen = nullptr);
// N(mean, std²) restricted to [a, b] (absolute bounds; default ±2 std around the mean):
// out-of-range draws are drawn again, as in timm's trunc_normal_.
void trunc_normal_(Tensor& t, double std = 0.02, double mean = 0.0, std::optional<double> a = std::nullopt,
                   std::optional<double> b = std::nullopt, Generator* gen = nullptr);
// Glorot & Bengio (2010): U(±gain·√(6/(fan_in+fan_out))) and N(0, gain²·2/(fan_in+fan_out)).
void xavier_uniform_(Tensor& t, double gain = 1.0, Generator* gen = nullptr);
void xavier_normal_(Tensor& t, double gain = 1.0, Generator* gen = nullptr);
// He et al. (2015), fan_in mode, gain √(2/(1+a²)): U(±gain·√(3/fan_in)) and N(0, gain²/fan_in).
void kaiming_uniform_(Tensor& t, double a = 0.0, Generator* gen = nullptr);
void kaiming_normal_(Tensor& t, double a = 0.0, Generator* gen = nullptr);

int64_t fan_in(const Tensor& t);
int64_t fan_out(const Tensor& t);

}  // namespace mmg::nn::init
