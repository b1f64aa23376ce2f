// Task-batched vector-Jacobian products over libtorch's autograd engine, for metl-mtl's
// per-task Jacobians (src/batched_vjp.rs): one backward pass whose cotangents carry a
// leading batch dimension `k`, as `torch.autograd.grad(..., is_grads_batched=True)` runs
// it in Python. The cotangents enter the engine as libtorch's (legacy) vmap batched
// tensors, so every backward formula runs once on `[k, ...]` tensors through its batching
// rule (matrix products become batched ones); the results are unwrapped to
// `[k, ...input shape]`. The pass runs only when every node of the graph is one whose
// backward batches (or, for a few element-wise activations, loops over the `k` slices of
// an element-wise kernel): libtorch runs other operators (convolutions, batch norm,
// pooling) slice by slice, stacking large intermediate gradients, slower than `k` passes.
#include <ATen/LegacyBatchedTensorImpl.h>
#include <ATen/LegacyVmapMode.h>
#include <ATen/ops/_remove_batch_dim.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace {

// Copies `message` into `error` (`capacity` bytes, NUL-terminated, truncated).
void write_error(const char* message, char* error, size_t capacity) {
  if (error == nullptr || capacity == 0) {
    return;
  }
  std::strncpy(error, message, capacity - 1);
  error[capacity - 1] = '\0';
}

// The vmap nesting level of this call, released on every exit.
struct Nesting {
  int64_t level = at::impl::VmapMode::increment_nesting();
  ~Nesting() { at::impl::VmapMode::decrement_nesting(); }
};

// The autograd nodes whose backward formulas run batched (checked with
// `torch._C._debug_only_display_vmap_fallback_warnings(True)`: no fallback), and the
// element-wise activations whose fallback is an element-wise loop.
const std::unordered_set<std::string>& batched_nodes() {
  static const std::unordered_set<std::string> names = {
      "torch::autograd::AccumulateGrad",
      // Matrix products.
      "AddmmBackward0", "MmBackward0", "BmmBackward0", "BaddbmmBackward0", "TBackward0",
      // Views, copies, joins.
      "ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0", "PermuteBackward0",
      "TransposeBackward0", "ExpandBackward0", "UnsqueezeBackward0", "SqueezeBackward0",
      "SqueezeBackward1", "SelectBackward0", "SliceBackward0", "CloneBackward0", "CatBackward0",
      "StackBackward0",
      // Element-wise.
      "AddBackward0", "AddBackward1", "SubBackward0", "SubBackward1", "MulBackward0",
      "MulBackward1", "DivBackward0", "DivBackward1", "NegBackward0", "AbsBackward0",
      "ExpBackward0", "LogBackward0", "Log1PBackward0", "PowBackward0", "SqrtBackward0",
      "ReluBackward0", "SigmoidBackward0",
      // Element-wise activations through the fallback's loop.
      "TanhBackward0", "GeluBackward0", "LeakyReluBackward0", "SiluBackward0", "EluBackward0",
      // Reductions.
      "SumBackward0", "SumBackward1", "MeanBackward0", "MeanBackward1",
  };
  return names;
}

// The first node reachable from `outputs` that is not in `batched_nodes()`, or "".
std::string unbatched_node(const std::vector<at::Tensor>& outputs) {
  std::vector<torch::autograd::Node*> stack;
  std::unordered_set<torch::autograd::Node*> seen;
  for (const auto& y : outputs) {
    stack.push_back(y.grad_fn().get());
  }
  while (!stack.empty()) {
    torch::autograd::Node* node = stack.back();
    stack.pop_back();
    if (node == nullptr || !seen.insert(node).second) {
      continue;
    }
    std::string name = node->name();
    if (batched_nodes().count(name) == 0) {
      return name;
    }
    for (const auto& edge : node->next_edges()) {
      stack.push_back(edge.function.get());
    }
  }
  return "";
}

}  // namespace

extern "C" {

// For outputs `y_i` (`n_outputs` tensors) and cotangents `c_i` (`[k, ...shape of y_i]`, one
// `k` for all), writes to `results[j]` a new tensor `[k, ...shape of x_j]` holding, for
// every `b < k`, `Σ_i c_i[b]ᵀ ∂y_i/∂x_j` for the `n_inputs` inputs `x_j` (tensors that
// require gradients), or null where no output reaches `x_j`. The graph is retained and no
// `.grad` is written. Returns 0; 2, with the name of the node in `error`, when the graph
// has a node outside `batched_nodes()` (nothing is computed); 1 with the error message in
// `error` when libtorch fails.
int metl_batched_vjp(void* const* outputs, void* const* cotangents, int64_t n_outputs,
                     void* const* inputs, int64_t n_inputs, void** results, char* error,
                     size_t capacity) {
  try {
    Nesting nesting;
    int64_t batch = static_cast<const at::Tensor*>(cotangents[0])->size(0);
    std::vector<at::Tensor> ys, grads, xs;
    for (int64_t i = 0; i < n_outputs; ++i) {
      ys.push_back(*static_cast<const at::Tensor*>(outputs[i]));
      grads.push_back(at::addBatchDim(*static_cast<const at::Tensor*>(cotangents[i]), nesting.level, 0));
    }
    for (int64_t j = 0; j < n_inputs; ++j) {
      xs.push_back(*static_cast<const at::Tensor*>(inputs[j]));
    }
    std::string node = unbatched_node(ys);
    if (!node.empty()) {
      write_error(node.c_str(), error, capacity);
      return 2;
    }
    auto vjps = torch::autograd::grad(ys, xs, grads, /*retain_graph=*/true, /*create_graph=*/false,
                                      /*allow_unused=*/true);
    std::vector<at::Tensor> unbatched(n_inputs);
    for (int64_t j = 0; j < n_inputs; ++j) {
      if (vjps[j].defined()) {
        unbatched[j] = at::_remove_batch_dim(vjps[j], nesting.level, batch, 0);
      }
    }
    for (int64_t j = 0; j < n_inputs; ++j) {
      results[j] = unbatched[j].defined() ? new at::Tensor(std::move(unbatched[j])) : nullptr;
    }
    return 0;
  } catch (const c10::Error& e) {
    write_error(e.what_without_backtrace(), error, capacity);
  } catch (const std::exception& e) {
    write_error(e.what(), error, capacity);
  } catch (...) {
    write_error("unknown C++ exception", error, capacity);
  }
  return 1;
}

}  // extern "C"
