//! glibc's allocator told to keep freed memory for reuse — the default of every `metl`
//! command.
//!
//! libtorch takes each activation buffer from `malloc` and frees it within the step. With
//! glibc's defaults, freed memory at the top of the heap goes back to the kernel as soon
//! as more than 128 KiB of it is free, so the next step maps it again and the kernel faults
//! in and zeroes every page anew: `metl bench protonet-omniglot` spent most of its time in
//! the kernel. Serving large blocks from the heap rather than from fresh mappings
//! (`MALLOC_MMAP_THRESHOLD_` = 4 GiB), never trimming it (`MALLOC_TRIM_THRESHOLD_` =
//! 64 GiB) and growing it by 1 GiB at a time (`MALLOC_TOP_PAD_`) turns those faults into
//! reuse, at the cost of a higher resident size (docs/performance.md has both measured).
//! All three are needed: a trim threshold alone also freezes glibc's adaptive mmap
//! threshold at 128 KiB, which made MAML Omniglot slower (0.31 against 0.48
//! meta-iterations/s).
//!
//! glibc reads these settings when the process starts (its `mallopt` takes an `int`, too
//! small for the threshold), so [`keep_freed_memory`] sets them and executes the same
//! command again in place (same process id, arguments and other variables); launched
//! ranks inherit them.
//!
//! `METL_MALLOC=system` keeps glibc's defaults; so does any `MALLOC_TRIM_THRESHOLD_`,
//! `MALLOC_TOP_PAD_` or `MALLOC_MMAP_THRESHOLD_` already in the environment (yours win).
//! Other C libraries (musl) and systems are left alone.

/// The variable that turns the setting off (`system`).
pub const OPT_OUT: &str = "METL_MALLOC";

/// glibc's variables; if any is set, the user (or an earlier [`keep_freed_memory`]) chose.
const GLIBC_VARS: [&str; 3] = ["MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_"];

/// The settings, as glibc's variables.
pub const SETTINGS: [(&str, &str); 3] = [
    ("MALLOC_MMAP_THRESHOLD_", "4294967296"),
    ("MALLOC_TRIM_THRESHOLD_", "68719476736"),
    ("MALLOC_TOP_PAD_", "1073741824"),
];

/// What [`keep_freed_memory`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MallocSetting {
    /// `METL_MALLOC=system` or glibc's own variables (including ours, after the restart).
    Chosen,
    /// Not glibc on Linux, or the restart failed: glibc's defaults.
    Unsupported,
}

/// Applies the setting (see the module documentation): call it first thing in `main`.
/// Returns only when the setting is already in place or cannot be made.
pub fn keep_freed_memory() -> MallocSetting {
    let chosen = std::env::var(OPT_OUT).is_ok_and(|v| v == "system")
        || GLIBC_VARS.iter().any(|v| std::env::var_os(v).is_some());
    if chosen {
        return MallocSetting::Chosen;
    }
    restart_with_settings()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn restart_with_settings() -> MallocSetting {
    use std::os::unix::process::CommandExt;
    let Ok(exe) = std::env::current_exe() else { return MallocSetting::Unsupported };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1)).envs(SETTINGS);
    if let Some(arg0) = std::env::args_os().next() {
        cmd.arg0(arg0);
    }
    // `exec` returns only if it failed; then run on with glibc's defaults.
    let _ = cmd.exec();
    MallocSetting::Unsupported
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn restart_with_settings() -> MallocSetting {
    MallocSetting::Unsupported
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_runs_pytorch_with_the_same_settings() {
        // `cargo xtask compare` (which cannot depend on this crate) repeats the settings.
        let compare =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../xtask/src/compare.rs"))
                .expect("xtask/src/compare.rs");
        for (var, value) in SETTINGS {
            assert!(
                compare.contains(&format!("(\"{var}\", \"{value}\")")),
                "{var}={value} not in compare.rs"
            );
            assert!(compare.contains(&format!("{var}={value}")), "{var}={value} not in compare.rs's header");
        }
    }
}
