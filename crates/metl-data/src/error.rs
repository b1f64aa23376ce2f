//! The error type of metl-data.

use std::path::PathBuf;

/// A configuration value outside its allowed range: the one configuration error of every
/// metl crate (each crate's error type wraps it).
///
/// ```
/// use metl_data::ConfigError;
///
/// let e = ConfigError::new("meta.inner_lr", -1.0, "must be > 0");
/// assert_eq!(e.to_string(), "meta.inner_lr = -1: must be > 0");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} = {value}: {allowed}")]
pub struct ConfigError {
    /// The field, dotted as in config files, e.g. `sinusoid.amplitude` or `cagrad.c`.
    pub field: String,
    /// The offending value, formatted.
    pub value: String,
    /// What is allowed instead.
    pub allowed: String,
}

impl ConfigError {
    /// The error for `field = value`, with what is allowed instead.
    pub fn new(field: impl Into<String>, value: impl ToString, allowed: impl Into<String>) -> Self {
        Self { field: field.into(), value: value.to_string(), allowed: allowed.into() }
    }
}

/// Everything that can go wrong while loading or sampling data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A configuration value outside its allowed range.
    #[error(transparent)]
    Config(#[from] ConfigError),
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
    /// A file or folder that should exist does not.
    #[error("{path}: not found ({what})")]
    NotFound {
        /// The missing path.
        path: PathBuf,
        /// What was expected there, e.g. `the Omniglot folder or zips`.
        what: String,
    },
    /// A folder or archive that is not in the expected layout.
    #[error("{path}: unexpected layout: {reason}")]
    Layout {
        /// The folder, archive or entry at fault (entries of a zip read `archive.zip/entry`).
        path: PathBuf,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// An image that could not be decoded (corrupt, truncated, unsupported).
    #[error("{path}: cannot decode image: {reason}")]
    Image {
        /// The image file (entries of a zip read `archive.zip/entry`).
        path: PathBuf,
        /// The decoder's complaint.
        reason: String,
    },
    /// A zip archive that could not be read.
    #[error("{path}: cannot read zip archive: {reason}")]
    Archive {
        /// The archive (or `archive.zip/entry` for one bad entry).
        path: PathBuf,
        /// The zip reader's complaint.
        reason: String,
    },
    /// A dataset that is not where it was looked for: what to download and where to put it.
    #[error(
        "{dataset} not found: {path} is missing. Expected {layout}. Download: {download}. Then point {setting} at the folder"
    )]
    MissingDataset {
        /// The dataset, e.g. `miniImageNet`.
        dataset: String,
        /// The missing file or folder.
        path: PathBuf,
        /// The expected layout of the dataset folder.
        layout: String,
        /// Where the files come from.
        download: String,
        /// How to tell metl where they are (configuration field and environment variable).
        setting: String,
    },
    /// A pickle file that could not be read or does not hold what the dataset needs.
    #[error("{path}: cannot read pickle: {reason}")]
    Pickle {
        /// The pickle file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A class folder without a single image.
    #[error("{path}: empty class (no PNG or JPEG image)")]
    EmptyClass {
        /// The class folder.
        path: PathBuf,
    },
    /// An episode asks for more classes than the pool has.
    #[error("{pool}: {ways}-way episodes need {ways} classes, but only {available} are available")]
    NotEnoughClasses {
        /// The class pool, e.g. `omniglot/vinyals/test` or `omniglot/vinyals/test, alphabet Keble`.
        pool: String,
        /// Classes per episode asked for.
        ways: usize,
        /// Classes available.
        available: usize,
    },
    /// An episode asks for more examples of a class than it has.
    #[error("class {class}: needs {needed} examples (shots + queries) but has {available}")]
    NotEnoughExamples {
        /// The class name.
        class: String,
        /// `shots + queries`.
        needed: usize,
        /// Examples the class has.
        available: usize,
    },
}

impl DataError {
    /// Shorthand for a [`DataError::Config`] error.
    pub fn invalid(field: impl Into<String>, value: impl ToString, allowed: impl Into<String>) -> Self {
        Self::Config(ConfigError::new(field, value, allowed))
    }
}

impl DataError {
    /// Shorthand for [`DataError::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    /// Shorthand for [`DataError::Layout`].
    pub fn layout(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Layout { path: path.into(), reason: reason.into() }
    }
}

/// Result alias for metl-data.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
