// libtorch's c10d (TCPStore, ProcessGroupGloo) behind the C interface of c10d_shim.h.
#include "c10d_shim.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <c10/util/Exception.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "c10d_group.h"

char* metl_c10d_error(const std::string& message) {
  char* out = static_cast<char*>(std::malloc(message.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, message.c_str(), message.size() + 1);
  }
  return out;
}

namespace {

// Runs `body`, turning any C++ exception into an error message.
template <typename F>
char* guarded(F body) {
  try {
    body();
    return nullptr;
  } catch (const c10::Error& e) {
    return metl_c10d_error(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return metl_c10d_error(e.what());
  } catch (...) {
    return metl_c10d_error("unknown C++ exception");
  }
}

c10d::ReduceOp reduce_op(int op) {
  switch (op) {
    case METL_C10D_MAX:
      return c10d::ReduceOp(c10d::ReduceOp::MAX);
    case METL_C10D_MIN:
      return c10d::ReduceOp(c10d::ReduceOp::MIN);
    case METL_C10D_PRODUCT:
      return c10d::ReduceOp(c10d::ReduceOp::PRODUCT);
    default:
      return c10d::ReduceOp(c10d::ReduceOp::SUM);
  }
}

// Waits for `work`; rethrows the collective's own error (a peer that died, a timeout).
void finish(const c10::intrusive_ptr<c10d::Work>& work) {
  work->wait();
  if (work->exception()) {
    std::rethrow_exception(work->exception());
  }
}

}  // namespace

extern "C" {

char* metl_c10d_tcp_store(const char* host, uint16_t port, int64_t world_size, int is_server,
                          int64_t timeout_ms, metl_c10d_store** out) {
  return guarded([&] {
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server != 0;
    opts.numWorkers = static_cast<std::size_t>(world_size);
    opts.waitWorkers = true;
    opts.timeout = std::chrono::milliseconds(timeout_ms);
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    *out = new metl_c10d_store{store};
  });
}

char* metl_c10d_gloo_group(metl_c10d_store* store, int64_t rank, int64_t size, int64_t timeout_ms,
                           const char* hostname, metl_c10d_group** out) {
  return guarded([&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10::intrusive_ptr<c10d::ProcessGroupGloo::Options> opts;
    if (hostname != nullptr) {
      opts = c10d::ProcessGroupGloo::Options::create(timeout);
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(hostname));
    } else {
      // GLOO_SOCKET_IFNAME if set, else this machine's hostname or loopback.
      opts = c10d::ProcessGroupGloo::Options::create_default(timeout);
    }
    opts->threads = 2;
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store->store, static_cast<int>(rank),
                                                              static_cast<int>(size), opts);
    *out = new metl_c10d_group{c10::static_intrusive_pointer_cast<c10d::Backend>(group), timeout};
  });
}

char* metl_c10d_all_reduce(metl_c10d_group* group, void* tensor, int op) {
  return guarded([&] {
    std::vector<at::Tensor> tensors{*static_cast<at::Tensor*>(tensor)};
    c10d::AllreduceOptions opts;
    opts.reduceOp = reduce_op(op);
    opts.timeout = group->timeout;
    finish(group->backend->allreduce(tensors, opts));
  });
}

char* metl_c10d_broadcast(metl_c10d_group* group, void* tensor, int64_t root) {
  return guarded([&] {
    std::vector<at::Tensor> tensors{*static_cast<at::Tensor*>(tensor)};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.rootTensor = 0;
    opts.timeout = group->timeout;
    finish(group->backend->broadcast(tensors, opts));
  });
}

char* metl_c10d_barrier(metl_c10d_group* group) {
  return guarded([&] {
    c10d::BarrierOptions opts;
    opts.timeout = group->timeout;
    finish(group->backend->barrier(opts));
  });
}

void metl_c10d_free_group(metl_c10d_group* group) {
  try {
    delete group;
  } catch (...) {
  }
}

void metl_c10d_free_store(metl_c10d_store* store) {
  try {
    delete store;
  } catch (...) {
  }
}

void metl_c10d_free_error(char* error) { std::free(error); }

}  // extern "C"
