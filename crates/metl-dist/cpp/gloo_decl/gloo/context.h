// Declarations only; see README.md.
#pragma once
#include <chrono>

namespace gloo {
// A communication context; c10d holds it through std::shared_ptr.
class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};
} // namespace gloo
