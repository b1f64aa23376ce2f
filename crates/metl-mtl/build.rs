//! Embeds libtorch's library folder as rpath in this package's binaries (see metl-build)
//! and compiles the task-batched vector-Jacobian products (`cpp/batched_vjp.cpp`) against
//! libtorch's headers; without them, per-task gradients take one pass per task.

fn main() {
    metl_build::link_libtorch();
    println!("cargo:rerun-if-changed=cpp");
    match metl_build::libtorch_cpp() {
        Some((includes, abi)) => {
            cc::Build::new()
                .cpp(true)
                .pic(true)
                .warnings(false)
                .includes(&includes)
                .flag("-std=c++17")
                .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
                .file("cpp/batched_vjp.cpp")
                .compile("metl_batched_vjp");
            println!("cargo:rustc-cfg=metl_batched_vjp");
        }
        None => println!(
            "cargo:warning=metl-mtl: no libtorch headers; per-task gradients take one backward pass per task"
        ),
    }
    println!("cargo:rustc-check-cfg=cfg(metl_batched_vjp)");
}
