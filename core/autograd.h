// Reverse-mode automatic differentiation, define-by-run.
//
// Every op that sees an input requiring grad records a Node on its output:
//
//     Tensor y = mul(a, b);                  // forward
//     record_op("mul", y, {a, b}, [a, b](const Tensor& gy) -> Grads {
//       return {mul(gy, b), mul(gy, a)};     // backward: ∂L/∂a = ∂L/∂y · b, ∂L/∂b = ∂L/∂y · a
//     });
//
// A Node keeps the backward closure and one Edge per input: to the input's own grad_fn
// (a non-leaf), or to the input itself (a leaf that requires grad, where gradients are
// accumulated into .grad). backward() walks the Nodes in reverse topological order,
// summing the gradients that reach each one before calling its closure, so a tensor used
// twice receives the sum of both contributions.
//
// Backward closures run with grad mode off and are written with other ops, so they run
// on any device. After a backward (without retain_graph) every closure is released; a
// second backward through the same graph is an error that says so.
#pragma once
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mmg {

using Grads = std::vector<Tensor>;  // one gradient per input; undefined = no gradient
using BackwardFn = std::function<Grads(const Tensor& grad_output)>;

struct Edge {
  std::shared_ptr<Node> fn;           // the input's grad_fn, if it is not a leaf
  std::shared_ptr<TensorImpl> leaf;   // the input, if it is a leaf that requires grad
  bool active() const { return fn || leaf; }
};

struct Node {
  std::string name;
  std::vector<Edge> inputs;
  std::vector<Shape> input_shapes;
  std::vector<DType> input_dtypes;
  Shape output_shape;
  BackwardFn backward;  // reset to empty once the graph is freed
  bool released = false;
  int64_t id = 0;       // creation order: a later node never feeds an earlier one
};

// Grad mode: when off, no op records a Node (inference, optimiser updates, backward).
bool grad_mode_enabled();
void set_grad_mode(bool enabled);

class NoGradGuard {
 public:
  NoGradGuard() : previous_(grad_mode_enabled()) { set_grad_mode(false); }
  ~NoGradGuard() { set_grad_mode(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// True when grad mode is on and some input requires grad: then the op should record.
bool any_requires_grad(std::initializer_list<Tensor> inputs);
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Attach a Node to `output` if grad mode is on and any input requires grad; returns
// `output` for chaining. `backward` must return one gradient per input, of the input's
// shape (or undefined where the input needs none). Never capture `output` itself in
// `backward` (that would make a cycle); capture output.detach() if the backward needs it.
Tensor record_op(const char* name, Tensor output, const std::vector<Tensor>& inputs, BackwardFn backward);

// The engine behind Tensor::backward.
void run_backward(const Tensor& root, const Tensor& grad, bool retain_graph);

// The graph that produced `t`, as Graphviz DOT: ops are boxes, leaves are ellipses with
// their shapes (named if `names` gives a name for a leaf's TensorImpl).
std::string to_dot(const Tensor& t);
void write_dot(const Tensor& t, const std::string& path);

}  // namespace mmg
