//! Embeds libtorch's library folder as rpath in this package's binaries (see metl-build)
//! and compiles the task-batched vector-Jacobian products (`cpp/batched_vjp.cpp`) against
//! libtorch's headers; without them, per-task gradients take one pass per task.

fn main() {
    metl_build::link_libtorch();
    metl_build::compile_libtorch_shim(
        "cpp/batched_vjp.cpp",
        "metl_batched_vjp",
        "metl_batched_vjp",
        "per-task gradients take one backward pass per task",
    );
}
