//! [`DistError`]: what can go wrong joining a process group or running a collective.
use std::time::Duration;

/// An error of metl-dist.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// A launch variable or setting is missing or malformed.
    #[error("{field} = {value:?}: {reason}")]
    Config {
        /// The variable or field (`RANK`, `MASTER_PORT`, ...).
        field: &'static str,
        /// The value found.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// c10d failed: the rendezvous timed out, a peer died, a collective failed.
    #[error("{operation} failed: {message}")]
    C10d {
        /// What was being done (names the rank, the tensor, the address).
        operation: String,
        /// c10d's own message.
        message: String,
    },
    /// The ranks disagree about something that must be equal on all of them.
    #[error("the ranks disagree on {what}: {detail}")]
    Mismatch {
        /// What should have been equal.
        what: String,
        /// The values seen.
        detail: String,
    },
    /// A launched process could not start or failed.
    #[error("rank {rank}: {message}")]
    Launch {
        /// The rank of the process.
        rank: usize,
        /// What happened (exit status, spawn error).
        message: String,
        /// Its exit code, when it exited with one.
        code: Option<i32>,
    },
    /// A launched process did not exit within the time allowed after another failed.
    #[error("rank {rank} was still running {after:?} after rank {failed} failed, and was killed")]
    Killed {
        /// The rank killed.
        rank: usize,
        /// The rank that failed first.
        failed: usize,
        /// The grace period.
        after: Duration,
    },
    /// A libtorch error outside c10d (flattening or copying tensors).
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// An I/O error of the launcher.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// metl-dist's result type.
pub type Result<T, E = DistError> = std::result::Result<T, E>;
