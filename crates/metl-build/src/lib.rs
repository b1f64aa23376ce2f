//! Build-script helper shared by every metl package that links a binary, test, bench or
//! example against libtorch.
//!
//! Link arguments emitted by `torch-sys`'s own build script do not reach downstream
//! binaries, so a binary built against a libtorch outside the system library path would
//! need `LD_LIBRARY_PATH` to start. Each linking package therefore depends on `torch-sys`
//! directly (which makes Cargo hand its build script `DEP_TCH_LIBTORCH_LIB`) and calls
//! [`link_libtorch`] from a one-line `build.rs`:
//!
//! ```text
//! // build.rs
//! fn main() {
//!     metl_build::link_libtorch();
//! }
//! ```
//!
//! ```
//! // What it emits for a libtorch in /opt/libtorch:
//! let args = metl_build::link_args(std::path::Path::new("/opt/libtorch/lib"));
//! assert_eq!(args[0], "-Wl,-rpath,/opt/libtorch/lib");
//! ```
//!
//! It emits, for every binary, test, bench and example of the package:
//! - `-Wl,-rpath,<libtorch lib dir>` so the loader finds libtorch without help;
//! - `-Wl,--no-as-needed -ltorch` so `libtorch.so` (and through it `libtorch_cuda.so`)
//!   stays a `NEEDED` entry; without it the linker drops the CUDA library, whose
//!   symbols nothing references directly, and CUDA is never detected on GPU machines.

use std::path::Path;

/// The variable Cargo sets for packages depending on `torch-sys` (whose `links` key is `tch`).
pub const LIBTORCH_LIB_VAR: &str = "DEP_TCH_LIBTORCH_LIB";

/// The linker arguments that make binaries find and keep libtorch in `lib_dir`.
pub fn link_args(lib_dir: &Path) -> Vec<String> {
    vec![
        format!("-Wl,-rpath,{}", lib_dir.display()),
        "-Wl,--no-as-needed".to_owned(),
        format!("-L{}", lib_dir.display()),
        "-ltorch".to_owned(),
        "-Wl,--as-needed".to_owned(),
    ]
}

/// Emits the rpath and `--no-as-needed` link arguments; call it from `build.rs`.
///
/// Does nothing (beyond a build warning) on targets other than Linux, or when
/// `torch-sys` did not report a library folder.
pub fn link_libtorch() {
    println!("cargo:rerun-if-env-changed={LIBTORCH_LIB_VAR}");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    match std::env::var(LIBTORCH_LIB_VAR) {
        Ok(dir) if target_os == "linux" => {
            for arg in link_args(Path::new(&dir)) {
                println!("cargo:rustc-link-arg={arg}");
            }
        }
        Ok(dir) if target_os == "macos" => {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
        Ok(_) => {}
        Err(_) => {
            println!("cargo:warning={LIBTORCH_LIB_VAR} is not set: add `torch-sys` as a direct dependency")
        }
    }
}

/// What a C++ file compiled against libtorch's headers needs: the include folders and the
/// `_GLIBCXX_USE_CXX11_ABI` value, for the libtorch `torch-sys` links (its `lib` folder's
/// sibling `include`, or `$LIBTORCH_INCLUDE/include`; the ABI from `$LIBTORCH_CXX11_ABI`,
/// default 1 as PyTorch's wheels since 2.7). `None` when `torch-sys` reported no folder.
pub fn libtorch_cpp() -> Option<(Vec<std::path::PathBuf>, String)> {
    for var in ["LIBTORCH_INCLUDE", "LIBTORCH_CXX11_ABI"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let lib = std::path::PathBuf::from(std::env::var(LIBTORCH_LIB_VAR).ok()?);
    let include = match std::env::var("LIBTORCH_INCLUDE") {
        Ok(dir) => std::path::PathBuf::from(dir).join("include"),
        Err(_) => lib.join("..").join("include"),
    };
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    Some((vec![include.join("torch/csrc/api/include"), include], abi))
}

/// A C++17 [`cc::Build`] set up for libtorch's headers ([`libtorch_cpp`]: include folders,
/// ABI), position independent; `None` when `torch-sys` reported no folder.
pub fn libtorch_cpp_build() -> Option<cc::Build> {
    let (includes, abi) = libtorch_cpp()?;
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .includes(&includes)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"));
    Some(build)
}

/// Compiles the package's one-file libtorch shim `file` into static library `lib` and sets
/// `--cfg <cfg>` for the Rust code that calls it; without libtorch headers, prints a cargo
/// warning that says `without` (what the package does then) and leaves the cfg unset.
pub fn compile_libtorch_shim(file: &str, lib: &str, cfg: &str, without: &str) {
    println!("cargo:rerun-if-changed={file}");
    println!("cargo:rustc-check-cfg=cfg({cfg})");
    match libtorch_cpp_build() {
        Some(mut build) => {
            build.file(file).compile(lib);
            println!("cargo:rustc-cfg={cfg}");
        }
        None => {
            let package = std::env::var("CARGO_PKG_NAME").unwrap_or_default();
            println!("cargo:warning={package}: no libtorch headers; {without}");
        }
    }
}

/// Emits `METL_GIT_REVISION` (the checkout's `git rev-parse --short=12 HEAD`, with
/// `-dirty` when the tree has changes) for `option_env!` in the package; nothing outside a
/// git checkout or without git.
pub fn emit_git_revision() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(&manifest)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    if let Some(revision) = git(&["rev-parse", "--short=12", "HEAD"]) {
        let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        let suffix = if dirty { "-dirty" } else { "" };
        println!("cargo:rustc-env=METL_GIT_REVISION={revision}{suffix}");
        if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
            println!("cargo:rerun-if-changed={}", std::path::Path::new(&manifest).join(head).display());
        }
        if let Some(index) = git(&["rev-parse", "--git-path", "index"]) {
            println!("cargo:rerun-if-changed={}", std::path::Path::new(&manifest).join(index).display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpath_comes_first_and_torch_is_kept() {
        let args = link_args(Path::new("/opt/libtorch/lib"));
        assert_eq!(args[0], "-Wl,-rpath,/opt/libtorch/lib");
        let no_as_needed = args.iter().position(|a| a == "-Wl,--no-as-needed").unwrap();
        let torch = args.iter().position(|a| a == "-ltorch").unwrap();
        assert!(no_as_needed < torch);
    }
}
