//! The error type of metl-data.

use std::path::PathBuf;

/// Everything that can go wrong while loading or sampling data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A configuration value outside its allowed range.
    #[error("{field} = {value}: {allowed}")]
    InvalidConfig {
        /// The field, e.g. `sinusoid.amplitude`.
        field: &'static str,
        /// The offending value, formatted.
        value: String,
        /// What is allowed instead.
        allowed: String,
    },
    /// A file or folder that could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A tensor operation failed (wrong device, out of memory, ...).
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] tch::TchError),
}

impl DataError {
    /// Shorthand for [`DataError::InvalidConfig`].
    pub fn invalid(field: &'static str, value: impl ToString, allowed: impl Into<String>) -> Self {
        Self::InvalidConfig { field, value: value.to_string(), allowed: allowed.into() }
    }
}

/// Result alias for metl-data.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
