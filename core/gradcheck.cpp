#include "core/gradcheck.h"

#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/rng.h"

namespace mmg {

static Shape unravel(int64_t i, const Shape& shape) {
  Shape idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = shape[d] ? i % shape[d] : 0;
    i = shape[d] ? i / shape[d] : 0;
  }
  return idx;
}

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, const GradcheckOptions& opt) {
  // f64 leaf copies of the checked inputs.
  std::vector<Tensor> xs;
  std::vector<bool> checked;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& in = inputs[i];
    bool check = in.defined() && (opt.check.empty() ? is_floating(in.dtype()) : opt.check.at(i));
    MMG_CHECK(!check || is_floating(in.dtype()), "gradcheck: input {} has dtype {}; only floating inputs can be checked",
              i, dtype_name(in.dtype()));
    Tensor x = in;
    if (check) {
      x = in.detach().to(DType::f64).clone();
      x.requires_grad_(true);
    }
    xs.push_back(x);
    checked.push_back(check);
  }

  // L = Σ f(x) ⊙ r with a fixed projection r.
  Generator gen(0x6a09e667f3bcc908ull);
  Tensor r;
  auto loss = [&](const std::vector<Tensor>& args) {
    Tensor y = fn(args);
    MMG_CHECK(is_floating(y.dtype()), "gradcheck: the function returned a {} tensor; it must be floating",
              dtype_name(y.dtype()));
    if (!r.defined()) r = randn(y.shape(), {.dtype = DType::f64, .device = y.device()}, &gen);
    return sum(mul(y.to(DType::f64), r));
  };

  Tensor L = loss(xs);
  GradcheckResult res;
  if (L.requires_grad()) L.backward();

  double worst_ratio = -1;
  for (size_t i = 0; i < xs.size(); ++i) {
    if (!checked[i]) continue;
    Tensor x = xs[i];
    Tensor g = x.grad();
    std::vector<double> analytic = g.defined() ? g.to_vector<double>() : std::vector<double>(x.numel(), 0.0);
    // x is a fresh contiguous f64 copy. On the CPU its elements are written through a host
    // pointer; on a device through a one-element view filled by the device's fill kernel (the
    // function itself then runs on the device, as it would in use).
    const bool on_host = x.device().is_cpu();
    const std::vector<double> values = x.to_vector<double>();
    Tensor flat = reshape(x.detach(), {x.numel()});
    auto set_element = [&](int64_t k, double value) {
      if (on_host) x.data<double>()[k] = value;
      else narrow(flat, 0, k, 1).fill_(value);
    };
    for (int64_t k = 0; k < x.numel(); ++k) {
      double numeric;
      {
        NoGradGuard no_grad;
        const double saved = values[k];
        set_element(k, saved + opt.eps);
        double plus = loss(xs).item();
        set_element(k, saved - opt.eps);
        double minus = loss(xs).item();
        set_element(k, saved);
        numeric = (plus - minus) / (2 * opt.eps);
      }
      double abs_err = std::abs(analytic[k] - numeric);
      // Relative to the larger magnitude; elements that are ~0 on both sides have no scale.
      double scale = std::max(std::abs(analytic[k]), std::abs(numeric));
      double rel_err = scale > 1e-6 ? abs_err / scale : 0.0;
      double ratio = abs_err / (opt.atol + opt.rtol * std::abs(numeric));
      if (std::isnan(analytic[k]) || std::isnan(numeric)) ratio = INFINITY;
      res.max_abs_err = std::max(res.max_abs_err, abs_err);
      res.max_rel_err = std::max(res.max_rel_err, rel_err);
      ++res.elements_checked;
      if (ratio > worst_ratio) {
        worst_ratio = ratio;
        res.worst_input = static_cast<int64_t>(i);
        res.worst_index = unravel(k, x.shape());
        res.analytic = analytic[k];
        res.numeric = numeric;
      }
    }
  }
  res.ok = worst_ratio <= 1.0;
  res.message = res.worst_input < 0
                    ? "PASS (no differentiable input)"
                    : fmt::format("{}: worst element input {} index {}: analytic {:.8g}, numeric {:.8g} "
                                  "(abs err {:.3g}, rel err {:.3g}; atol {:g}, rtol {:g})",
                                  res.ok ? "PASS" : "FAIL", res.worst_input, shape_str(res.worst_index), res.analytic,
                                  res.numeric, std::abs(res.analytic - res.numeric),
                                  std::abs(res.analytic - res.numeric) / std::max(std::abs(res.numeric), 1e-12),
                                  opt.atol, opt.rtol);
  return res;
}

GradcheckResult run_case(const GradcheckCase& c) { return gradcheck(c.fn, c.make_inputs(), c.options); }

}  // namespace mmg
