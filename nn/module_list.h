// ModuleList: an ordered list of child modules named "0", "1", ... (as torch.nn.ModuleList),
// so a stack of layers registered as "layers" gets state-dict keys like
// "layers.3.attn.q_proj.weight" — the names PyTorch and Hugging Face checkpoints use.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/module.h"

namespace mmg::nn {

template <class M>
class ModuleList : public Module {
 public:
  // Appends `m` under the next index and returns it.
  std::shared_ptr<M> push_back(std::shared_ptr<M> m) {
    items_.push_back(register_module(std::to_string(items_.size()), std::move(m)));
    return items_.back();
  }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  M& operator[](size_t i) const {
    MMG_CHECK(i < items_.size(), "ModuleList: index {} out of range for {} modules", i, items_.size());
    return *items_[i];
  }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }
  std::string type_name() const override { return "ModuleList"; }

 private:
  std::vector<std::shared_ptr<M>> items_;
};

}  // namespace mmg::nn
