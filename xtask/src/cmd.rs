//! Running commands, with the libtorch environment applied.

use std::{
    ffi::OsString,
    path::Path,
    process::{Command, ExitStatus},
};

/// An error that ends `cargo xtask` with a message and exit status 1.
#[derive(Debug)]
pub struct Failure(pub String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

/// Result alias for xtask.
pub type Result<T = ()> = std::result::Result<T, Failure>;

/// Returns early with a formatted [`Failure`].
macro_rules! fail {
    ($($arg:tt)*) => { return Err($crate::cmd::Failure(format!($($arg)*))) };
}
pub(crate) use fail;

/// The environment variables to set for cargo and the binaries it builds.
pub type Env = Vec<(String, OsString)>;

/// The workspace root (the parent of xtask's manifest folder).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives inside the workspace")
}

/// Cargo's target folder: `$CARGO_TARGET_DIR` (relative to the workspace when relative),
/// else `target/` in the workspace.
pub fn target_dir() -> std::path::PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// The `cargo` that runs us.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// Runs `cmd` with `env`, echoing it, and fails unless it succeeds.
pub fn run(mut cmd: Command, env: &Env) -> Result {
    for (k, v) in env {
        cmd.env(k, v);
    }
    eprintln!("$ {}", describe(&cmd));
    let status: ExitStatus =
        cmd.status().map_err(|e| Failure(format!("cannot start {}: {e}", describe(&cmd))))?;
    if status.success() {
        Ok(())
    } else {
        fail!("`{}` failed ({status})", describe(&cmd))
    }
}

/// The command line of `cmd`, for messages.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
