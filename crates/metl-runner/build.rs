//! Embeds libtorch's library folder as rpath in this package's binaries, the git revision
//! for `run.json` (see metl-build), and compiles the operator counter of `metl bench
//! --count-ops` (`cpp/op_count.cpp`) against libtorch's headers.

fn main() {
    metl_build::link_libtorch();
    metl_build::emit_git_revision();
    metl_build::compile_libtorch_shim(
        "cpp/op_count.cpp",
        "metl_op_count",
        "metl_op_count",
        "`metl bench --count-ops` is unavailable",
    );
}
