//! Embeds libtorch's library folder as rpath in this package's binaries, the git revision
//! for `run.json` (see metl-build), and compiles the operator counter of `metl bench
//! --count-ops` (`cpp/op_count.cpp`) against libtorch's headers.

fn main() {
    metl_build::link_libtorch();
    metl_build::emit_git_revision();
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
                .file("cpp/op_count.cpp")
                .compile("metl_op_count");
            println!("cargo:rustc-cfg=metl_op_count");
        }
        None => println!(
            "cargo:warning=metl-runner: no libtorch headers; `metl bench --count-ops` is unavailable"
        ),
    }
    println!("cargo:rustc-check-cfg=cfg(metl_op_count)");
}
