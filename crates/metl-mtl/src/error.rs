//! The error type of metl-mtl.

/// Everything that can go wrong while combining task losses and gradients.
#[derive(Debug, thiserror::Error)]
pub enum MtlError {
    /// No task losses were given, or every task was masked out.
    #[error("no task losses to combine")]
    NoTasks,
    /// A task loss is NaN or infinite.
    #[error("loss of task {task} is not finite ({value}) at step {step}")]
    NonFiniteLoss {
        /// The task index.
        task: usize,
        /// The training step (1-based).
        step: u64,
        /// The value.
        value: f64,
    },
    /// A strategy produced NaN or infinite weights or a non-finite update.
    #[error("strategy `{strategy}` produced a non-finite {what} at step {step}")]
    NonFiniteUpdate {
        /// The strategy's name.
        strategy: &'static str,
        /// What was not finite (`weights`, `update`).
        what: &'static str,
        /// The training step (1-based).
        step: u64,
    },
    /// A configuration value outside its allowed range.
    #[error(transparent)]
    Config(#[from] metl_data::ConfigError),
    /// A strategy name that is not in the registry.
    #[error("unknown strategy `{name}`; known: {known}")]
    UnknownStrategy {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// A strategy cannot run with what the step provides (e.g. representation gradients
    /// on a model without a shared representation).
    #[error("strategy `{strategy}` cannot run: {reason}")]
    Unsupported {
        /// The strategy's name.
        strategy: &'static str,
        /// Why.
        reason: String,
    },
    /// A checkpointed strategy state that does not fit the strategy it is loaded into: an
    /// entry is missing, unexpected, or of the wrong size or value.
    #[error("state of strategy `{strategy}`: entry `{entry}` {reason}")]
    State {
        /// The strategy's name.
        strategy: &'static str,
        /// The entry, e.g. `values/history`.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Inputs of the wrong shape or number.
    #[error("{0}")]
    Shape(String),
    /// A model operation failed.
    #[error(transparent)]
    Model(#[from] metl_models::ModelError),
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] tch::TchError),
    /// A collective of a data-parallel step failed (a peer died, a timeout), or the ranks
    /// disagree on what must be the same on all of them.
    #[error(transparent)]
    Dist(#[from] metl_dist::DistError),
}

impl MtlError {
    /// Shorthand for a [`MtlError::Config`] error.
    pub fn invalid(field: impl Into<String>, value: impl ToString, allowed: impl Into<String>) -> Self {
        Self::Config(metl_data::ConfigError::new(field, value, allowed))
    }
}

/// Result alias for metl-mtl.
pub type Result<T, E = MtlError> = std::result::Result<T, E>;
