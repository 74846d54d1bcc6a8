#include "core/autograd.h"

#include <algorithm>
#include <atomic>
#include <fstream>
#include <unordered_map>
#include <unordered_set>

#include "core/io/atomic_file.h"
#include "core/ops.h"
#include "core/ops/elementwise_impl.h"
#include "core/profile.h"

namespace mmg {

// ---- grad mode (per thread: a data-loader thread never switches off the trainer's) ----
static thread_local bool g_grad_mode = true;
bool grad_mode_enabled() { return g_grad_mode; }
void set_grad_mode(bool enabled) { g_grad_mode = enabled; }

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!grad_mode_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}
bool any_requires_grad(std::initializer_list<Tensor> inputs) {
  return any_requires_grad(std::vector<Tensor>(inputs));
}

// ---- recording ----
static std::atomic<int64_t> g_next_node_id{1};

Tensor record_op(const char* name, Tensor output, const std::vector<Tensor>& inputs, BackwardFn backward) {
  if (!any_requires_grad(inputs)) return output;
  auto node = std::make_shared<Node>();
  node->name = name;
  node->id = g_next_node_id++;
  node->output_shape = output.shape();
  for (const Tensor& in : inputs) {
    Edge e;
    if (in.defined() && in.requires_grad()) {
      if (in.grad_fn()) e.fn = in.grad_fn();
      else e.leaf = in.impl_ptr();
    }
    node->inputs.push_back(e);
    node->input_shapes.push_back(in.defined() ? in.shape() : Shape{});
    node->input_dtypes.push_back(in.defined() ? in.dtype() : DType::f32);
  }
  node->backward = std::move(backward);
  output.impl()->grad_fn = std::move(node);
  output.impl()->requires_grad = true;
  return output;
}

// ---- the engine ----

// Every node reachable from `root`, latest first. Node ids grow with creation time and an
// op's inputs always exist before it runs, so descending id order is a topological order.
static std::vector<Node*> nodes_latest_first(Node* root) {
  std::vector<Node*> order, stack{root};
  std::unordered_set<Node*> seen{root};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    order.push_back(n);
    for (const Edge& e : n->inputs)
      if (e.fn && seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
  }
  std::sort(order.begin(), order.end(), [](Node* a, Node* b) { return a->id > b->id; });
  return order;
}

// ---- summing gradients ----
// Where paths meet, gradients are summed: into a node's pending gradient, or a leaf's .grad. A
// sum is written in place into a tensor that nobody else holds — neither its handle nor its
// memory (a view, a user's p.grad(), a closure's saved tensor, another input's gradient: add
// gives g to both of its inputs) — which saves a tensor per sum; otherwise it is a new tensor,
// add(a, b). Either way the same bits (IEEE addition is commutative).
static bool owned_alone(const Tensor& t) {
  return t.impl_ptr().use_count() == 1 && t.storage().use_count() == 1 && t.is_contiguous();
}

static bool takes_in_place(const Tensor& acc, const Tensor& g) {
  return owned_alone(acc) && acc.shape() == g.shape() && acc.dtype() == g.dtype() && acc.device() == g.device() &&
         (acc.dtype() == DType::f32 || acc.dtype() == DType::f64);
}

static void accumulate(Tensor& sum, Tensor g) {
  if (!sum.defined()) {
    sum = std::move(g);
  } else if (takes_in_place(sum, g)) {
    accumulate_into(sum, g);
  } else if (takes_in_place(g, sum)) {
    accumulate_into(g, sum);
    sum = std::move(g);
  } else {
    sum = add(sum, g);
  }
}

// A leaf's .grad is always a tensor of its own: the first gradient is copied unless nobody else
// holds it, since backward closures may pass the same tensor to several inputs.
static void accumulate_leaf(TensorImpl* leaf, Tensor g) {
  if (!leaf->grad.defined()) leaf->grad = owned_alone(g) ? std::move(g) : g.clone();
  else accumulate(leaf->grad, std::move(g));
}

static void check_grad(const Node& node, size_t i, const Tensor& g) {
  MMG_CHECK(g.shape() == node.input_shapes[i],
            "backward of '{}': gradient for input {} has shape {} but the input has shape {}", node.name, i,
            shape_str(g.shape()), shape_str(node.input_shapes[i]));
}

void run_backward(const Tensor& root, const Tensor& grad_in, bool retain_graph) {
  MMG_CHECK(root.defined(), "backward: called on an undefined tensor");
  MMG_CHECK(root.requires_grad(),
            "backward: tensor of shape {} does not require grad (no input of the computation that made it "
            "requires grad, or it was computed under NoGradGuard)",
            shape_str(root.shape()));
  Tensor grad = grad_in;
  if (!grad.defined()) {
    MMG_CHECK(root.numel() == 1,
              "backward: the gradient can be implied only for a one-element output, but the output has shape {}; "
              "pass a gradient of that shape",
              shape_str(root.shape()));
    grad = ones_like(root);
  }
  MMG_CHECK(grad.shape() == root.shape(), "backward: gradient shape {} does not match output shape {}",
            shape_str(grad.shape()), shape_str(root.shape()));
  MMG_CHECK(grad.device() == root.device(), "backward: gradient on {} but output on {}", grad.device().str(),
            root.device().str());
  if (grad.dtype() != root.dtype()) grad = grad.to(root.dtype());

  NoGradGuard no_grad;
  profile::PhaseScope phase("backward");
  if (!root.grad_fn()) {  // backward on a leaf: its gradient is the seed itself
    accumulate_leaf(root.impl(), grad);
    return;
  }
  std::unordered_map<Node*, Tensor> pending;  // summed gradient waiting at each node
  pending[root.grad_fn().get()] = grad;
  std::vector<Node*> order;
  {
    MMG_PROFILE_OP("order the graph");
    order = nodes_latest_first(root.grad_fn().get());
  }
  for (Node* node : order) {
    auto it = pending.find(node);
    if (it == pending.end()) continue;  // no gradient flows here
    Tensor g = std::move(it->second);
    pending.erase(it);
    MMG_CHECK(!node->released,
              "backward: the graph through '{}' was already freed by an earlier backward; call "
              "backward(grad, /*retain_graph=*/true) the first time to go through it twice",
              node->name);
    Grads input_grads;
    {
      MMG_PROFILE_OP(node->name.c_str());  // the closure and every op it calls
      input_grads = node->backward(g);
    }
    g = Tensor();  // let a gradient the closure passed on as it is be owned by its input alone
    MMG_PROFILE_OP("sum gradients");  // where paths meet, into .grad, and freeing the closure
    MMG_CHECK(input_grads.size() == node->inputs.size(), "backward of '{}': returned {} gradients for {} inputs",
              node->name, input_grads.size(), node->inputs.size());
    for (size_t i = 0; i < node->inputs.size(); ++i) {
      const Edge& e = node->inputs[i];
      if (!e.active() || !input_grads[i].defined()) continue;
      check_grad(*node, i, input_grads[i]);
      Tensor gi = std::move(input_grads[i]);
      // An op that mixed dtypes (f32 + f64) sends each input its gradient in its own dtype.
      if (gi.dtype() != node->input_dtypes[i]) gi = gi.to(node->input_dtypes[i]);
      if (e.fn) accumulate(pending[e.fn.get()], std::move(gi));
      else accumulate_leaf(e.leaf.get(), std::move(gi));
    }
    if (!retain_graph) {
      node->backward = nullptr;  // frees the saved tensors
      node->released = true;
    }
  }
}

// ---- Graphviz ----
std::string to_dot(const Tensor& t) {
  std::string out = "digraph mmgrad {\n  rankdir=BT;\n  node [fontname=\"Helvetica\", fontsize=10];\n";
  auto leaf_id = [](const TensorImpl* p) { return fmt::format("leaf{}", reinterpret_cast<uintptr_t>(p)); };
  if (!t.grad_fn()) {
    out += fmt::format("  {} [shape=ellipse, label=\"{} {}\"];\n", leaf_id(t.impl()), dtype_name(t.dtype()),
                       shape_str(t.shape()));
    return out + "}\n";
  }
  std::unordered_set<const TensorImpl*> leaves;
  for (Node* n : nodes_latest_first(t.grad_fn().get())) {
    out += fmt::format("  n{} [shape=box, style=filled, fillcolor=\"#e8eefc\", label=\"{}\\n-> {}\"];\n", n->id,
                       n->name, shape_str(n->output_shape));
    for (size_t i = 0; i < n->inputs.size(); ++i) {
      const Edge& e = n->inputs[i];
      if (e.fn) out += fmt::format("  n{} -> n{};\n", e.fn->id, n->id);
      if (e.leaf) {
        if (leaves.insert(e.leaf.get()).second)
          out += fmt::format("  {} [shape=ellipse, label=\"{} {}\"];\n", leaf_id(e.leaf.get()),
                             dtype_name(e.leaf->dtype), shape_str(e.leaf->shape));
        out += fmt::format("  {} -> n{};\n", leaf_id(e.leaf.get()), n->id);
      }
    }
  }
  return out + "}\n";
}

void write_dot(const Tensor& t, const std::string& path) { write_file_atomic(path, to_dot(t)); }

}  // namespace mmg
