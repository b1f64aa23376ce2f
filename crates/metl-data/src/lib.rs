//! # metl-data
//!
//! Datasets and task sampling for multi-task and meta-learning: the bottom layer of metl.
//! Every experiment draws its data from here, as [`TaskBatch`]es — stacked tensors of
//! support and query sets for a meta-batch of tasks, created on the caller's `Device`.
//!
//! - [`sinusoid`]: the sinusoid regression family of Finn et al. (2017).
//! - [`multitask`]: the [`MultiTaskDataset`] trait (batches with per-task targets and a
//!   per-task label mask), a seeded [`multitask::MultiTaskLoader`], and the synthetic
//!   regression of GradNorm (Chen et al. 2018).
//!
//! Sampling is deterministic from a seed: the same seed gives the same tasks on every
//! machine and device.
//!
//! ```
//! use metl_data::sinusoid::{SinusoidConfig, SinusoidTasks};
//! use tch::Device;
//!
//! let mut tasks = SinusoidTasks::new(SinusoidConfig::default(), 0);
//! // 25 tasks, 10 support and 10 query points each.
//! let batch = tasks.sample_batch(25, 10, 10, Device::Cpu).unwrap();
//! assert_eq!(batch.support_x.size(), [25, 10, 1]);
//! assert_eq!(batch.num_tasks(), 25);
//! ```
#![warn(missing_docs)]

pub mod batch;
pub mod error;
pub mod multitask;
pub mod rng;
pub mod sinusoid;
pub mod split;

pub use batch::TaskBatch;
pub use error::DataError;
pub use multitask::{MultiTaskBatch, MultiTaskDataset};
pub use split::Split;
