//! The error type of metl-mtl.

/// Everything that can go wrong while combining task losses.
#[derive(Debug, thiserror::Error)]
pub enum MtlError {
    /// No task losses were given.
    #[error("no task losses to combine")]
    NoTasks,
    /// A task loss is NaN or infinite.
    #[error("loss of task {task} is not finite ({value})")]
    NonFiniteLoss {
        /// The task index.
        task: usize,
        /// The value.
        value: f64,
    },
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] tch::TchError),
}

/// Result alias for metl-mtl.
pub type Result<T, E = MtlError> = std::result::Result<T, E>;
