#include "nn/module.h"

#include <algorithm>
#include <set>

#include "core/autograd.h"
#include "core/ops.h"

namespace mmg::nn {

void Module::check_new_name(const std::string& name) const {
  MMG_CHECK(!name.empty() && name.find('.') == std::string::npos,
            "{}: invalid name '{}' (must be non-empty, without '.')", type_name(), name);
  auto taken = [&](const auto& list) {
    return std::any_of(list.begin(), list.end(), [&](const auto& p) { return p.first == name; });
  };
  MMG_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_), "{}: name '{}' is already registered",
            type_name(), name);
}

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  check_new_name(name);
  MMG_CHECK(value.defined() && is_floating(value.dtype()), "{}: parameter '{}' must be a floating tensor",
            type_name(), name);
  Tensor p = value.is_leaf() ? value : value.detach();
  p.requires_grad_(true);
  params_.emplace_back(name, p);
  return p;
}

Tensor Module::register_buffer(const std::string& name, Tensor value) {
  check_new_name(name);
  MMG_CHECK(value.defined(), "{}: buffer '{}' is undefined", type_name(), name);
  buffers_.emplace_back(name, value.detach());
  return buffers_.back().second;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> child) {
  check_new_name(name);
  MMG_CHECK(child != nullptr, "{}: child module '{}' is null", type_name(), name);
  children_.emplace_back(name, std::move(child));
}

void Module::collect(const std::string& prefix, bool params, bool recurse, NamedTensors& out) const {
  for (const auto& [n, t] : params ? params_ : buffers_) out.emplace_back(prefix + n, t);
  if (!recurse) return;
  for (const auto& [n, m] : children_) m->collect(prefix + n + ".", params, true, out);
}

NamedTensors Module::named_parameters(bool recurse) const {
  NamedTensors out;
  collect("", true, recurse, out);
  return out;
}

NamedTensors Module::named_buffers(bool recurse) const {
  NamedTensors out;
  collect("", false, recurse, out);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters(recurse)) out.push_back(t);
  return out;
}

std::vector<Tensor> Module::trainable_parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters())
    if (t.requires_grad()) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (auto& [n, m] : children_)
    for (auto& [sub, p] : m->named_modules()) out.emplace_back(sub.empty() ? n : n + "." + sub, p);
  return out;
}

int64_t Module::num_parameters(bool trainable_only) const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters())
    if (!trainable_only || t.requires_grad()) n += t.numel();
  return n;
}

StateDict Module::state_dict() const {
  StateDict out;
  for (auto& [n, t] : named_parameters()) out[n] = t.detach();
  for (auto& [n, t] : named_buffers()) out[n] = t.detach();
  return out;
}

LoadReport Module::load_state_dict(const StateDict& state, bool strict) {
  LoadReport report;
  NamedTensors mine = named_parameters();
  NamedTensors bufs = named_buffers();
  mine.insert(mine.end(), bufs.begin(), bufs.end());
  std::set<std::string> known;
  for (auto& [n, t] : mine) {
    known.insert(n);
    auto it = state.find(n);
    if (it == state.end()) {
      report.missing.push_back(n);
    } else if (it->second.shape() != t.shape()) {
      report.mismatched.push_back(
          fmt::format("{}: expected {}, got {}", n, shape_str(t.shape()), shape_str(it->second.shape())));
    }
  }
  for (auto& [n, t] : state)
    if (!known.count(n)) report.unexpected.push_back(n);
  if (strict && !report.ok()) {
    auto list = [](const std::vector<std::string>& v) { return v.empty() ? std::string("none") : fmt::format("{}", fmt::join(v, ", ")); };
    MMG_FAIL("load_state_dict ({}): missing keys: {}; unexpected keys: {}; mis-shaped: {}", type_name(),
             list(report.missing), list(report.unexpected), list(report.mismatched));
  }
  NoGradGuard no_grad;
  for (auto& [n, t] : mine) {
    auto it = state.find(n);
    // The values come to the module's device: a checkpoint read on the host loads into a
    // model on CUDA (copy_ converts the dtype, never the device).
    if (it != state.end() && it->second.shape() == t.shape()) Tensor(t).detach().copy_(it->second.to(t.device()));
  }
  return report;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, m] : children_) m->train(on);
}

void Module::freeze() {
  for (auto& [n, t] : named_parameters()) t.impl()->requires_grad = false;
}

void Module::unfreeze() {
  for (auto& [n, t] : named_parameters()) t.impl()->requires_grad = true;
}

void Module::zero_grad() {
  for (auto& [n, t] : named_parameters()) Tensor(t).zero_grad();
}

void Module::to(DType dtype) {
  MMG_CHECK(is_floating(dtype), "{}.to: parameters need a floating dtype, got {}", type_name(), dtype_name(dtype));
  NoGradGuard no_grad;
  NamedTensors all = named_parameters();
  NamedTensors bufs = named_buffers();
  all.insert(all.end(), bufs.begin(), bufs.end());
  for (auto& [n, t] : all) {
    if (!is_floating(t.dtype()) || t.dtype() == dtype) continue;
    Tensor converted = t.detach().to(dtype).contiguous();
    TensorImpl* impl = t.impl();  // swap the storage under the shared handle
    impl->storage = converted.storage();
    impl->strides = converted.strides();
    impl->offset = converted.offset();
    impl->dtype = dtype;
    impl->grad = Tensor();
  }
}

void Module::to(Device device) {
  NoGradGuard no_grad;
  NamedTensors all = named_parameters();
  NamedTensors bufs = named_buffers();
  all.insert(all.end(), bufs.begin(), bufs.end());
  for (auto& [n, t] : all) {
    if (t.device() == device) continue;
    Tensor moved = t.detach().to(device);  // contiguous: to(Device) copies a contiguous image
    TensorImpl* impl = t.impl();           // swap the storage under the shared handle
    impl->storage = moved.storage();
    impl->strides = moved.strides();
    impl->offset = moved.offset();
    impl->grad = Tensor();
  }
}

Device Module::device() const {
  for (const auto& [n, t] : named_parameters()) return t.device();
  for (const auto& [n, t] : named_buffers()) return t.device();
  return Device::cpu();
}

std::string Module::summary() const {
  std::string out;
  for (auto& [n, t] : named_parameters())
    out += fmt::format("{:<60} {:<20} {}\n", n, shape_str(t.shape()), t.requires_grad() ? "" : "(frozen)");
  out += fmt::format("{} parameters ({} trainable)\n", num_parameters(), num_parameters(true));
  return out;
}

}  // namespace mmg::nn
