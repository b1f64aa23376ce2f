//! The error type of metl-meta.

/// Everything that can go wrong in meta-training or evaluation.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// A configuration value outside its allowed range.
    #[error(transparent)]
    Config(#[from] metl_data::ConfigError),
    /// The loss became NaN or infinite; the step was not applied.
    #[error("non-finite {what} ({value}) at step {step}")]
    NonFiniteLoss {
        /// Which loss (`meta-loss`, `inner loss`, ...).
        what: &'static str,
        /// The value.
        value: f64,
        /// The meta-training step.
        step: u64,
    },
    /// A meta-batch that does not fit the learner (labels out of range, shapes that
    /// disagree, ...).
    #[error("invalid task batch: {0}")]
    InvalidBatch(String),
    /// A checkpoint that could not be restored.
    #[error("{path}: {message}")]
    Checkpoint {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A model-layer failure.
    #[error(transparent)]
    Model(#[from] metl_models::ModelError),
    /// A data-layer failure.
    #[error(transparent)]
    Data(#[from] metl_data::DataError),
    /// A collective of a data-parallel run failed (a peer died, a timeout, diverged state).
    #[error("data-parallel training: {0}")]
    Dist(#[from] metl_dist::DistError),
    /// The learner cannot do what was asked (e.g. data-parallel training for a learner that
    /// does not implement it).
    #[error("{learner}: {reason}")]
    Unsupported {
        /// The learner.
        learner: String,
        /// Why not.
        reason: String,
    },
    /// A task combiner failed or returned an unusable direction.
    #[error("task combiner `{combiner}`: {message}")]
    Combiner {
        /// The combiner's name.
        combiner: String,
        /// What went wrong.
        message: String,
    },
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] tch::TchError),
}

impl MetaError {
    /// Shorthand for a [`MetaError::Config`] error.
    pub fn invalid(field: impl Into<String>, value: impl ToString, allowed: impl Into<String>) -> Self {
        Self::Config(metl_data::ConfigError::new(field, value, allowed))
    }
}

/// Result alias for metl-meta.
pub type Result<T, E = MetaError> = std::result::Result<T, E>;
