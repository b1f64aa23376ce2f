//! Compiles the C++ shim over libtorch's c10d (`cpp/`) against the headers of the libtorch
//! that `torch-sys` links, and embeds libtorch's library folder as rpath (see metl-build).
//!
//! Headers: `$LIBTORCH_INCLUDE/include` if set, else `<libtorch lib>/../include`. The C++
//! ABI follows `$LIBTORCH_CXX11_ABI` (default 1, as PyTorch's wheels since 2.7). NCCL is
//! compiled in when libtorch has CUDA (`libtorch_cuda.so`) and the headers of NCCL and the
//! CUDA runtime are found (`$NCCL_INCLUDE_DIR`, `$CUDA_HOME/include`, the `nvidia/*`
//! packages beside a wheel's torch, `/usr/include`, `/usr/local/cuda/include`);
//! without the CUDA toolkit's `crt/host_config.h` and libcu++'s `nv/target` (not among a
//! wheel's dependencies; PyPI's `nvidia-cuda-crt` and `nvidia-cuda-cccl` of the same CUDA
//! version provide them under one `CUDA_HOME`) NCCL stays out and creating an NCCL group is
//! an error saying so. `METL_DIST_NCCL=0` turns it off.
use std::env;
use std::path::{Path, PathBuf};

fn main() {
    metl_build::link_libtorch();
    for var in ["NCCL_INCLUDE_DIR", "CUDA_HOME", "METL_DIST_NCCL"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=cpp");
    let Some(mut build) = metl_build::libtorch_cpp_build() else {
        println!(
            "cargo:warning=metl-dist: torch-sys reported no libtorch folder; the c10d shim is not built"
        );
        return;
    };
    let lib = PathBuf::from(env::var(metl_build::LIBTORCH_LIB_VAR).unwrap_or_default());
    build
        .include("cpp/gloo_decl")
        .include("cpp")
        .define("GLOG_USE_GLOG_EXPORT", None)
        .define("USE_C10D_GLOO", None)
        .file("cpp/c10d_shim.cpp")
        .file("cpp/c10d_nccl.cpp");
    if let Some(dirs) = nccl_includes(&lib) {
        build.define("USE_C10D_NCCL", None).define("METL_DIST_NCCL", None).define("USE_CUDA", None);
        for dir in dirs {
            build.include(dir);
        }
    }
    build.compile("metl_c10d");
}

/// The include folders NCCL's `ProcessGroupNCCL.hpp` needs, when NCCL is to be compiled in.
fn nccl_includes(lib: &Path) -> Option<Vec<PathBuf>> {
    if env::var("METL_DIST_NCCL").is_ok_and(|v| v == "0") || !lib.join("libtorch_cuda.so").exists() {
        return None;
    }
    // A wheel's torch/lib/../../nvidia/<package>/include folders.
    let nvidia = lib.join("../../nvidia");
    let mut candidates: Vec<PathBuf> =
        ["NCCL_INCLUDE_DIR"].iter().filter_map(|v| env::var(v).ok().map(PathBuf::from)).collect();
    if let Ok(cuda) = env::var("CUDA_HOME") {
        candidates.push(PathBuf::from(cuda).join("include"));
    }
    if let Ok(entries) = std::fs::read_dir(&nvidia) {
        candidates.extend(entries.flatten().map(|e| e.path().join("include")));
    }
    candidates.extend(["/usr/include", "/usr/local/cuda/include"].map(PathBuf::from));
    let find = |header: &str| candidates.iter().find(|d| d.join(header).exists()).cloned();
    let nccl = find("nccl.h")?;
    let cuda = find("cuda_runtime_api.h")?;
    // The CUDA toolkit's compiler headers: the runtime's headers include them, and a wheel's
    // nvidia packages do not ship them (then NCCL needs CUDA_HOME).
    let crt = find("crt/host_config.h")?;
    // libcu++'s `<nv/target>`, which the runtime's half-precision headers include.
    let cccl = find("nv/target")?;
    let mut dirs = vec![nccl, cuda, crt, cccl];
    // cuda_runtime_api.h includes headers that cu12 wheels ship in sibling packages.
    dirs.extend(candidates.into_iter().filter(|d| d.starts_with(&nvidia) && d.exists()));
    Some(dirs)
}
