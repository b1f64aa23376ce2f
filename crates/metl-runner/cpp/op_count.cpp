// Counts the libtorch operators dispatched (RecordFunction scope FUNCTION named aten::*:
// every aten op, nested ones included, as torch.profiler lists them) and the autograd nodes executed
// (scope BACKWARD_FUNCTION), on every thread, between start and stop. For `metl bench
// --count-ops` (src/op_count.rs).
#include <ATen/record_function.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>

namespace {
std::atomic<uint64_t> ops{0};
std::atomic<uint64_t> nodes{0};
at::CallbackHandle handle = 0;

std::unique_ptr<at::ObserverContext> on_enter(const at::RecordFunction& fn) {
  switch (fn.scope()) {
    case at::RecordScope::FUNCTION:
      if (std::strncmp(fn.name(), "aten::", 6) == 0) ops.fetch_add(1, std::memory_order_relaxed);
      break;
    case at::RecordScope::BACKWARD_FUNCTION:
      nodes.fetch_add(1, std::memory_order_relaxed);
      break;
    default:
      break;
  }
  return nullptr;
}
}  // namespace

extern "C" {
// Starts counting from zero; returns 0, or 1 when already counting.
int metl_op_count_start() {
  if (handle != 0) return 1;
  ops = 0;
  nodes = 0;
  handle = at::addGlobalCallback(
      at::RecordFunctionCallback(on_enter).needsInputs(false).needsOutputs(false).needsIds(false));
  return 0;
}

// Stops counting and writes the counts.
void metl_op_count_stop(uint64_t* operators, uint64_t* autograd_nodes) {
  if (handle != 0) {
    at::removeCallback(handle);
    handle = 0;
  }
  *operators = ops.load();
  *autograd_nodes = nodes.load();
}
}
