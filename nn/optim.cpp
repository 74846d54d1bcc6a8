#include "nn/optim.h"

#include <cmath>
#include <set>

#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "core/ops/device_checks.h"
#include "kernels/adamw.h"
#include "kernels/cuda/runtime.h"

namespace mmg::nn {

// ---- grouping ----

static bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<ParamGroup> param_groups_for(const Module& model, double lr, double weight_decay,
                                         const std::vector<std::string>& no_decay_suffixes) {
  ParamGroup decay{.params = {}, .lr = lr, .weight_decay = weight_decay};
  ParamGroup no_decay{.params = {}, .lr = lr, .weight_decay = 0.0};
  for (auto& [name, p] : model.named_parameters()) {
    if (!p.requires_grad()) continue;  // frozen: not trained at all
    bool exempt = p.dim() < 2;
    for (const auto& suffix : no_decay_suffixes) exempt = exempt || ends_with(name, suffix);
    (exempt ? no_decay : decay).params.emplace_back(name, p);
  }
  std::vector<ParamGroup> groups;
  if (!decay.params.empty()) groups.push_back(std::move(decay));
  if (!no_decay.params.empty()) groups.push_back(std::move(no_decay));
  return groups;
}

std::vector<ParamGroup> with_lr_scales(std::vector<ParamGroup> groups, const std::map<std::string, double>& lr_scales) {
  if (lr_scales.empty()) return groups;
  std::map<std::string, int64_t> matched;  // key -> parameters it took
  for (const auto& [key, scale] : lr_scales) {
    MMG_CHECK(!key.empty(), "with_lr_scales: an empty name prefix would match every parameter; set the lr instead");
    MMG_CHECK(std::isfinite(scale) && scale > 0.0, "with_lr_scales: the scale of '{}' must be finite and > 0, got {}",
              key, scale);
    matched[key] = 0;
  }
  auto longest_key = [&](const std::string& name) -> const std::string* {
    const std::string* best = nullptr;
    for (const auto& [key, scale] : lr_scales)
      if (name.compare(0, key.size(), key) == 0 && (!best || key.size() > best->size())) best = &key;
    return best;
  };
  const std::string example = groups.empty() || groups.front().params.empty() ? "" : groups.front().params.front().first;
  std::vector<ParamGroup> base, scaled;
  for (ParamGroup& g : groups) {
    ParamGroup kept = g;
    kept.params.clear();
    std::map<std::string, ParamGroup> by_key;
    for (auto& entry : g.params) {
      const std::string* key = longest_key(entry.first);
      if (!key) {
        kept.params.push_back(std::move(entry));
        continue;
      }
      matched[*key] += 1;
      auto [it, fresh] = by_key.try_emplace(*key, g);
      if (fresh) {
        it->second.params.clear();
        it->second.lr = g.lr * lr_scales.at(*key);
        it->second.lr_scale = g.lr_scale * lr_scales.at(*key);
      }
      it->second.params.push_back(std::move(entry));
    }
    if (!kept.params.empty()) base.push_back(std::move(kept));
    for (auto& [key, sg] : by_key) scaled.push_back(std::move(sg));
  }
  for (const auto& [key, count] : matched)
    MMG_CHECK(count > 0, "with_lr_scales: no trainable parameter's name starts with '{}' (names look like '{}')", key,
              example);
  for (ParamGroup& g : scaled) base.push_back(std::move(g));
  return base;
}

// ---- the base class ----

static void check_rate(const std::string& type, const char* what, double value) {
  MMG_CHECK(std::isfinite(value) && value >= 0.0, "{}: {} must be finite and >= 0, got {}", type, what, value);
}

Optimizer::Optimizer(std::vector<ParamGroup> groups, const std::string& type)
    : type_(type), groups_(std::move(groups)) {
  std::set<std::string> names;
  std::set<const TensorImpl*> seen;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& g = groups_[gi];
    check_rate(type_, "lr", g.lr);
    check_rate(type_, "weight_decay", g.weight_decay);
    MMG_CHECK(std::isfinite(g.lr_scale) && g.lr_scale > 0.0, "{}: lr_scale of group {} must be finite and > 0, got {}",
              type_, gi, g.lr_scale);
    for (const auto& [name, p] : g.params) {
      MMG_CHECK(!name.empty(), "{}: group {} has a parameter with an empty name", type_, gi);
      MMG_CHECK(p.defined(), "{}: parameter '{}' is undefined", type_, name);
      MMG_CHECK(is_floating(p.dtype()), "{}: parameter '{}' has dtype {}; only floating parameters can be trained",
                type_, name, dtype_name(p.dtype()));
      MMG_CHECK(p.is_leaf(), "{}: parameter '{}' {} is not a leaf (it was computed by '{}'); optimise the leaf it "
                "came from", type_, name, shape_str(p.shape()), p.grad_fn()->name);
      MMG_CHECK(names.insert(name).second, "{}: parameter name '{}' appears twice", type_, name);
      MMG_CHECK(seen.insert(p.impl()).second, "{}: parameter '{}' is the same tensor as an earlier parameter", type_,
                name);
    }
  }
  MMG_CHECK(!names.empty(), "{}: no parameters to optimise (are they all frozen?)", type_);
  counters_["step"] = 0;
}

Tensor Optimizer::zero_state_like(const Tensor& param) {
  return zeros(param.shape(), {.dtype = compute_dtype(param.dtype()), .device = param.device()});
}

Tensor& Optimizer::on_param_device(Tensor& state, const Tensor& param) {
  if (state.device() != param.device()) state = state.to(param.device());
  return state;
}

Tensor& Optimizer::state_for(const std::string& key, const Tensor& param) {
  return on_param_device(state_.at(key), param);
}

void Optimizer::step() {
  NoGradGuard no_grad;
  for (const ParamGroup& group : groups_) {
    for (const auto& [name, p] : group.params) {
      Tensor grad = p.grad();
      if (!grad.defined()) continue;  // frozen or unused this step
      Tensor data = p.detach();
      update(group, name, data, grad.to(compute_dtype(p.dtype())));
    }
  }
  counters_["step"] += 1;
}

void Optimizer::zero_grad() {
  for (ParamGroup& group : groups_)
    for (auto& [name, p] : group.params) p.zero_grad();
}

double Optimizer::lr() const { return groups_.front().lr / groups_.front().lr_scale; }

void Optimizer::set_lr(double lr) {
  check_rate(type_, "lr", lr);
  for (ParamGroup& g : groups_) g.lr = lr * g.lr_scale;
}

// ---- state ----

StateDict Optimizer::state_dict() const {
  StateDict out;
  for (const auto& [key, t] : state_) out[key] = t.detach();
  for (const auto& [key, n] : counters_) out[key] = full({}, static_cast<double>(n), {.dtype = DType::i64});
  return out;
}

void Optimizer::check_state_dict(const StateDict& state) const {
  std::vector<std::string> missing, unexpected, bad;
  for (const auto& [key, mine] : state_) {
    auto it = state.find(key);
    if (it == state.end()) {
      missing.push_back(key);
    } else if (!it->second.defined()) {
      bad.push_back(fmt::format("{}: undefined tensor", key));
    } else if (it->second.shape() != mine.shape()) {
      bad.push_back(fmt::format("{}: expected {}, got {}", key, shape_str(mine.shape()), shape_str(it->second.shape())));
    } else if (!is_floating(it->second.dtype())) {
      bad.push_back(fmt::format("{}: expected a floating tensor, got {}", key, dtype_name(it->second.dtype())));
    }
  }
  for (const auto& [key, n] : counters_) {
    auto it = state.find(key);
    if (it == state.end()) {
      missing.push_back(key);
    } else if (!it->second.defined() || it->second.dim() != 0) {
      bad.push_back(fmt::format("{}: expected a 0-d count, got {}", key,
                                it->second.defined() ? shape_str(it->second.shape()) : "an undefined tensor"));
    } else {
      double v = it->second.item();
      if (!(v >= 0.0 && v == std::floor(v) && v < 9.007199254740992e15))
        bad.push_back(fmt::format("{}: expected a count (an integer >= 0), got {}", key, v));
    }
  }
  for (const auto& [key, t] : state)
    if (!state_.count(key) && !counters_.count(key)) unexpected.push_back(key);
  if (missing.empty() && unexpected.empty() && bad.empty()) return;
  auto list = [](const std::vector<std::string>& v) {
    return v.empty() ? std::string("none") : fmt::format("{}", fmt::join(v, ", "));
  };
  MMG_FAIL("{}.load_state_dict: missing keys: {}; unexpected keys: {}; mis-shaped or invalid: {}", type_,
           list(missing), list(unexpected), list(bad));
}

void Optimizer::load_state_dict(const StateDict& state) {
  check_state_dict(state);  // throws before anything changes
  NoGradGuard no_grad;
  for (auto& [key, mine] : state_) {
    // A copy of our own (clone), so later writes to the caller's tensor cannot reach our state.
    mine = state.at(key).detach().to(mine.device()).to(mine.dtype()).clone();
  }
  for (auto& [key, n] : counters_) n = static_cast<int64_t>(state.at(key).item());
}

// ---- SGD ----

SGD::SGD(std::vector<ParamGroup> groups, SGDOptions options) : Optimizer(std::move(groups), "SGD"), options_(options) {
  MMG_CHECK(std::isfinite(options_.momentum) && options_.momentum >= 0.0, "SGD: momentum must be finite and >= 0, got {}",
            options_.momentum);
  MMG_CHECK(!options_.nesterov || options_.momentum > 0.0, "SGD: Nesterov momentum needs momentum > 0, got {}",
            options_.momentum);
  if (options_.momentum != 0.0)
    for (const ParamGroup& g : groups_)
      for (const auto& [name, p] : g.params) state_["momentum_buffer." + name] = zero_state_like(p);
}

SGD::SGD(const Module& model, double lr, double weight_decay, SGDOptions options)
    : SGD(param_groups_for(model, lr, weight_decay), options) {}

void SGD::update(const ParamGroup& group, const std::string& name, Tensor& param, const Tensor& grad) {
  const double lr = group.lr, wd = group.weight_decay, mu = options_.momentum;
  Tensor theta = param.to(grad.dtype());
  // g ← ∇θ + λ·θ   (L2 penalty folded into the gradient)
  Tensor g = wd != 0.0 ? grad + theta * wd : grad;
  if (mu != 0.0) {
    // b ← μ·b + g   (dampening 0; b starts at 0, so the first step gives b = g exactly)
    Tensor& b = state_for("momentum_buffer." + name, param);
    b = b * mu + g;
    // Nesterov looks ahead along the momentum: g ← g + μ·b; classical momentum steps along b.
    g = options_.nesterov ? g + b * mu : b;
  }
  // θ ← θ − η·g
  param.copy_(theta - g * lr);
}

// ---- AdamW ----

AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions options)
    : Optimizer(std::move(groups), "AdamW"), options_(options) {
  auto check_beta = [](const char* what, double b) {
    MMG_CHECK(b >= 0.0 && b < 1.0, "AdamW: {} must be in [0, 1), got {}", what, b);
  };
  check_beta("beta1", options_.beta1);
  check_beta("beta2", options_.beta2);
  check_rate("AdamW", "eps", options_.eps);
  for (const ParamGroup& g : groups_) {
    for (const auto& [name, p] : g.params) {
      Tensor& m = state_["exp_avg." + name] = zero_state_like(p);
      Tensor& v = state_["exp_avg_sq." + name] = zero_state_like(p);
      slots_.push_back({&m, &v, &(counters_["step." + name] = 0)});
    }
  }
}

AdamW::AdamW(const Module& model, double lr, double weight_decay, AdamWOptions options)
    : AdamW(param_groups_for(model, lr, weight_decay), options) {}

void AdamW::update(const ParamGroup& group, const std::string& name, Tensor& param, const Tensor& g) {
  const double lr = group.lr, wd = group.weight_decay;
  const double beta1 = options_.beta1, beta2 = options_.beta2, eps = options_.eps;
  Tensor& m = state_for("exp_avg." + name, param);
  Tensor& v = state_for("exp_avg_sq." + name, param);
  int64_t& t = counters_.at("step." + name);
  t += 1;

  Tensor theta = param.to(g.dtype());
  // θ ← θ − η·λ·θ   (decoupled: the decay does not pass through the moments)
  if (wd != 0.0) theta = theta * (1.0 - lr * wd);
  // m ← β₁·m + (1−β₁)·g        first moment: a running mean of the gradient
  m = m * beta1 + g * (1.0 - beta1);
  // v ← β₂·v + (1−β₂)·g²       second moment: a running mean of its square
  v = v * beta2 + (g * g) * (1.0 - beta2);
  // m and v start at 0, so early on they are biased toward 0 by factors 1−β₁ᵗ and 1−β₂ᵗ.
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(t));
  // θ ← θ − η·m̂/(√v̂ + ε) with m̂ = m/bc1, v̂ = v/bc2; computed as PyTorch does, as
  //     θ − (η/bc1)·m/(√v/√bc2 + ε), so the bias corrections are host scalars.
  Tensor denom = sqrt(v) / std::sqrt(bc2) + eps;
  param.copy_(theta - (m / denom) * (lr / bc1));
}

// ---- AdamW: the fused multi-tensor step ----
// Parameters that qualify (f32 or f64, contiguous) are gathered per (device, dtype) and
// updated by cpu::adamw_step or cuda::adamw_step after the loop; the others (bf16, f16,
// strided) take update(), the same math as tensor ops. Both give the same bits
// (kernels/adamw.h). The per-parameter bias corrections are host scalars.
//
// The moments are written in place when nobody else holds their memory; a state_dict()
// snapshot does (it views the same storage), and then the step writes new tensors instead, so
// the snapshot keeps the values it was taken with.
static bool writable_in_place(const Tensor& t) { return t.is_contiguous() && t.storage().use_count() == 1; }

void AdamW::step() {
  NoGradGuard no_grad;
  struct Pending {
    Tensor param, grad, m, v, m_out, v_out;  // m, v: the moments read; m_out, v_out: written
    Slot slot;
    double decay, step_size, sqrt_bc2;
  };
  std::map<std::pair<int, DType>, std::vector<Pending>> fused;  // by (CUDA device index or -1 for the CPU, dtype)
  size_t index = 0;
  for (const ParamGroup& group : groups_) {
    for (const auto& [name, p] : group.params) {
      const Slot slot = slots_[index++];
      Tensor grad = p.grad();
      if (!grad.defined()) continue;  // frozen or unused this step
      const DType dt = p.dtype();
      const bool fusable = (p.device().is_cpu() || (kWithCuda && p.device().is_cuda())) &&
                           (dt == DType::f32 || dt == DType::f64) && p.is_contiguous();
      if (!fusable) {
        Tensor data = p.detach();
        update(group, name, data, grad.to(compute_dtype(dt)));
        continue;
      }
      check_same_device("AdamW", p, grad);
      int64_t& t = *slot.step;
      t += 1;
      const double lr = group.lr, wd = group.weight_decay;
      const double bc1 = 1.0 - std::pow(options_.beta1, static_cast<double>(t));
      const double bc2 = 1.0 - std::pow(options_.beta2, static_cast<double>(t));
      on_param_device(*slot.exp_avg, p);
      on_param_device(*slot.exp_avg_sq, p);
      // In place where nobody else holds a moment's memory (the kernel reads each element
      // before it writes it); a new tensor otherwise.
      const bool m_here = writable_in_place(*slot.exp_avg), v_here = writable_in_place(*slot.exp_avg_sq);
      Tensor m = slot.exp_avg->contiguous(), v = slot.exp_avg_sq->contiguous();
      Tensor m_out = m_here ? m : empty_like(m), v_out = v_here ? v : empty_like(v);
      fused[{p.device().is_cpu() ? -1 : p.device().index, dt}].push_back(
          {p, grad.to(dt).contiguous(), std::move(m), std::move(v), std::move(m_out), std::move(v_out), slot,
           1.0 - lr * wd, lr / bc1, std::sqrt(bc2)});
    }
  }
  for (auto& [key, jobs] : fused) {
    const auto& [cuda_index, dtype] = key;
    visit_float(dtype, "AdamW", [&]<class T>() {
      std::vector<AdamWTensor<T>> args;
      args.reserve(jobs.size());
      for (Pending& j : jobs)
        args.push_back({j.param.data<T>(), j.grad.data<T>(), j.m.data<T>(), j.v.data<T>(), j.m_out.data<T>(),
                        j.v_out.data<T>(), j.param.numel(), static_cast<T>(j.decay), static_cast<T>(j.step_size),
                        static_cast<T>(j.sqrt_bc2)});
      const int64_t count = static_cast<int64_t>(args.size());
      if (cuda_index < 0) {
        cpu::adamw_step<T>(args.data(), count, options_.beta1, options_.beta2, options_.eps);
      } else if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(cuda_index);
        cuda::adamw_step<T>(args.data(), count, options_.beta1, options_.beta2, options_.eps);
      }
    });
    for (Pending& j : jobs) {
      // The kernel wrote through raw pointers: say so, as copy_ would have.
      j.param.storage()->bump_version();
      j.m_out.storage()->bump_version();
      j.v_out.storage()->bump_version();
      *j.slot.exp_avg = j.m_out;  // the same tensor when written in place
      *j.slot.exp_avg_sq = j.v_out;
    }
  }
  counters_["step"] += 1;
}

}  // namespace mmg::nn
