// ProcessGroupNCCL behind c10d_shim.h, compiled when libtorch has CUDA and NCCL's headers
// are found (METL_DIST_NCCL); otherwise metl_c10d_nccl_group reports that it is absent.
#include "c10d_shim.h"

#include "c10d_group.h"

#ifdef METL_DIST_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <c10/util/Exception.h>

extern "C" {

int metl_c10d_has_nccl(void) {
#ifdef METL_DIST_NCCL
  return 1;
#else
  return 0;
#endif
}

char* metl_c10d_nccl_group(metl_c10d_store* store, int64_t rank, int64_t size, int64_t timeout_ms,
                           metl_c10d_group** out) {
#ifdef METL_DIST_NCCL
  try {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = timeout;
    auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store->store, static_cast<int>(rank),
                                                              static_cast<int>(size), opts);
    *out = new metl_c10d_group{c10::static_intrusive_pointer_cast<c10d::Backend>(group), timeout};
    return nullptr;
  } catch (const c10::Error& e) {
    return metl_c10d_error(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return metl_c10d_error(e.what());
  }
#else
  (void)store;
  (void)rank;
  (void)size;
  (void)timeout_ms;
  (void)out;
  return metl_c10d_error(
      "metl-dist was built without NCCL (libtorch without CUDA, or NCCL's nccl.h not found at build time)");
#endif
}

}  // extern "C"
