//! Errors caused by the user's input, which exit with status 2.

/// An error in what the user asked for (a bad option value, an absent device, an
/// unwritable folder). `metl` exits with status 2 for these and 1 for other failures.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Wraps any displayable error as [`BadInput`].
pub fn bad_input(message: impl std::fmt::Display) -> anyhow::Error {
    BadInput(message.to_string()).into()
}

/// Training stopped by `Ctrl-C` after writing a checkpoint; `metl` exits with 130.
#[derive(Debug, thiserror::Error)]
#[error("interrupted at step {step}; checkpoint written, continue with: metl train --resume {}", run.display())]
pub struct Interrupted {
    /// The last completed step.
    pub step: u64,
    /// The run folder.
    pub run: std::path::PathBuf,
}

/// The process exit status for an error: 2 for bad input, 130 for an interrupt, a failed
/// rank's own status for a data-parallel launch, 1 otherwise.
pub fn exit_status(error: &anyhow::Error) -> u8 {
    if let Some(failed) = error.chain().find_map(|e| e.downcast_ref::<crate::distributed::RankFailed>()) {
        failed.code
    } else if error.chain().any(|e| e.is::<BadInput>()) {
        2
    } else if error.chain().any(|e| e.is::<Interrupted>()) {
        130
    } else {
        1
    }
}
