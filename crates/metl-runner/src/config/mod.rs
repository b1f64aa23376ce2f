//! Experiment configuration files (TOML through serde) and their overrides.

pub mod load;

pub use load::{apply_overrides, from_table, load, load_str};
