//! The error type of metl-models.

use std::path::PathBuf;

/// Everything that can go wrong while building, running, saving or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A configuration value outside its allowed range.
    #[error(transparent)]
    Config(#[from] metl_data::ConfigError),
    /// A parameter the model needs is absent.
    #[error("parameter `{name}` is missing{}", context_suffix(.context))]
    MissingParam {
        /// The parameter's name.
        name: String,
        /// Where it was looked for (a file, say); may be empty.
        context: String,
    },
    /// A parameter with an unexpected shape.
    #[error("parameter `{name}` has shape {found:?}, expected {expected:?}{}", context_suffix(.context))]
    ShapeMismatch {
        /// The parameter's name.
        name: String,
        /// The shape expected by the model.
        expected: Vec<i64>,
        /// The shape found.
        found: Vec<i64>,
        /// Where it was found (a file, say); may be empty.
        context: String,
    },
    /// Two parameter sets that must have the same names do not.
    #[error("parameter sets differ: {0}")]
    ParamsMismatch(String),
    /// A checkpoint that could not be written or read.
    #[error("{path}: {message}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A tensor operation failed (shape mismatch, wrong device, out of memory, ...).
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] tch::TchError),
}

fn context_suffix(context: &str) -> String {
    if context.is_empty() {
        String::new()
    } else {
        format!(" in {context}")
    }
}

impl ModelError {
    /// Shorthand for a [`ModelError::Config`] error.
    pub fn invalid(field: impl Into<String>, value: impl ToString, allowed: impl Into<String>) -> Self {
        Self::Config(metl_data::ConfigError::new(field, value, allowed))
    }
}

/// Result alias for metl-models.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
