// The C interface between metl-dist (Rust) and libtorch's c10d (C++).
//
// Every function that can fail returns nullptr on success and otherwise an error message
// allocated with malloc, which the caller frees with metl_c10d_free_error. Handles are
// opaque; tensors are tch's `at::Tensor*` handles.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct metl_c10d_store metl_c10d_store;
typedef struct metl_c10d_group metl_c10d_group;

// Reduction operators (c10d::ReduceOp::RedOpType values are not assumed: mapped in C++).
enum { METL_C10D_SUM = 0, METL_C10D_MAX = 1, METL_C10D_MIN = 2, METL_C10D_PRODUCT = 3 };

char* metl_c10d_tcp_store(const char* host, uint16_t port, int64_t world_size, int is_server,
                          int64_t timeout_ms, metl_c10d_store** out);
char* metl_c10d_gloo_group(metl_c10d_store* store, int64_t rank, int64_t size, int64_t timeout_ms,
                           const char* hostname, metl_c10d_group** out);
char* metl_c10d_nccl_group(metl_c10d_store* store, int64_t rank, int64_t size, int64_t timeout_ms,
                           metl_c10d_group** out);
int metl_c10d_has_nccl(void);
char* metl_c10d_all_reduce(metl_c10d_group* group, void* tensor, int op);
char* metl_c10d_broadcast(metl_c10d_group* group, void* tensor, int64_t root);
char* metl_c10d_barrier(metl_c10d_group* group);
void metl_c10d_free_group(metl_c10d_group* group);
void metl_c10d_free_store(metl_c10d_store* store);
void metl_c10d_free_error(char* error);

#ifdef __cplusplus
}
#endif
