// The handles behind c10d_shim.h's opaque types, shared by the Gloo and NCCL sources.
#pragma once
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <string>

struct metl_c10d_store {
  c10::intrusive_ptr<c10d::Store> store;
};

struct metl_c10d_group {
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
};

// An error message allocated with malloc (freed by metl_c10d_free_error).
char* metl_c10d_error(const std::string& message);
