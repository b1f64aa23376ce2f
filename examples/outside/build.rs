//! Embeds libtorch's library folder as rpath, so that the programs run without
//! `LD_LIBRARY_PATH`. torch-sys's build script publishes the folder as
//! `DEP_TCH_LIBTORCH_LIB` to packages that depend on torch-sys directly (hence torch-sys in
//! Cargo.toml); `--no-as-needed -ltorch` keeps libtorch_cuda loaded, which is how CUDA is
//! found on a GPU machine.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=DEP_TCH_LIBTORCH_LIB is not set: is torch-sys a direct dependency?");
        return;
    };
    match std::env::var("CARGO_CFG_TARGET_OS").as_deref() {
        Ok("linux") => {
            for arg in [
                format!("-Wl,-rpath,{dir}"),
                "-Wl,--no-as-needed".into(),
                format!("-L{dir}"),
                "-ltorch".into(),
                "-Wl,--as-needed".into(),
            ] {
                println!("cargo:rustc-link-arg={arg}");
            }
        }
        Ok("macos") => println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}"),
        _ => {}
    }
}
