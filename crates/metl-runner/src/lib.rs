//! # metl-runner
//!
//! The thin top layer of metl: the `metl` command. It parses the command line, wires the
//! lower crates together, runs the training loop and reports (progress, metrics files,
//! plots). No algorithm lives here.
//!
//! - [`cli`]: the command-line interface.
//! - [`demo`]: `metl demo`, MAML on sinusoids from an embedded default.
//! - [`device`]: `--device cpu|cuda|cuda:N|auto`.
//! - [`progress`]: a progress bar on terminals, plain log lines elsewhere.
//! - [`plot`]: PNG plots (plotters, with an embedded font).
//!
//! ```
//! use metl_runner::device::parse_device;
//! assert_eq!(parse_device("cpu").unwrap(), tch::Device::Cpu);
//! assert!(parse_device("tpu").is_err());
//! ```
#![warn(missing_docs)]

pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod demo;
pub mod device;
pub mod distributed;
pub mod error;
pub mod eval;
pub mod experiment;
pub mod infer;
pub mod interrupt;
pub mod list;
pub mod malloc;
pub mod memory;
pub mod metrics;
pub mod op_count;
pub mod plot;
pub mod plots;
pub mod progress;
pub mod run_dir;
pub mod train;
pub mod zoo;

pub use error::BadInput;
