//! # metl-data
//!
//! Datasets and task sampling for multi-task and meta-learning: the bottom layer of metl.
//! Every experiment draws its data from here — few-shot meta-batches as [`TaskBatch`]es
//! (support and query sets of `B` tasks, stacked), multi-task mini-batches as
//! [`MultiTaskBatch`]es — created on the caller's `Device`.
//!
//! - [`omniglot`]: Omniglot from the official zips or folders, decoded in parallel, resized
//!   exactly as Pillow does, cached on disk; the class splits of Lake et al., MAML and
//!   Vinyals et al. ([`OmniglotProtocol`]).
//! - [`few_shot`]: the few-shot benchmarks with their standard splits — miniImageNet,
//!   tieredImageNet, CIFAR-FS, FC100, CUB-200 — read from their usual distributions
//!   (pickles through the safe reader of [`pickle`], image folders).
//! - [`image_folder`]: any folder of class folders of PNG/JPEG images.
//! - [`episode`]: N-way K-shot episodes from any [`ClassImages`] source
//!   ([`EpisodeSampler`]), with rotations, within-group sampling and prefetching.
//! - [`sinusoid`]: the sinusoid regression family of Finn et al. (2017).
//! - [`multitask`]: the [`MultiTaskDataset`] trait (per-task targets, per-task label mask,
//!   task ids), a seeded [`multitask::MultiTaskLoader`], the synthetic regression of
//!   GradNorm (Chen et al. 2018), Omniglot-50 (one task per alphabet), MultiMNIST and its
//!   Fashion variants, CelebA's 40 attributes, NYUv2's segmentation, depth and normals, and
//!   your own CSV files; [`multitask::fixtures`] writes tiny datasets in their layouts.
//! - [`image`]: decoding, Pillow-exact resizing, the [`ClassImages`] abstraction.
//! - [`rng`], [`split`], [`error`]: seeded ChaCha8 streams, train/val/test, [`DataError`].
//! - [`pickle`]: a reader of Python pickles of plain data and numpy arrays that runs no
//!   code.
//!
//! Sampling is deterministic from a seed: the same seed gives the same tasks on every
//! machine, device and thread count.
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
//!
//! Few-shot episodes from your own classes of images (here made in memory; Omniglot and
//! [`image_folder::ImageFolder`] plug in the same way):
//!
//! ```
//! use metl_data::{
//!     image::{ImageStore, StoredClass},
//!     ClassPool, EpisodeConfig, EpisodeSampler,
//! };
//! use std::sync::Arc;
//! use tch::Device;
//!
//! // 10 classes of 6 images of 1×4×4 pixels.
//! let classes = (0..10).map(|c| StoredClass { name: format!("c{c}"), group: 0, first: 6 * c, len: 6 }).collect();
//! let store = ImageStore::new([1, 4, 4], vec![128; 60 * 16], classes, vec!["all".into()]).unwrap();
//! let pool = ClassPool::unrotated("mine", 0..10);
//! let config = EpisodeConfig { ways: 5, shots: 1, queries: 2, meta_batch: 8, within_group: false };
//! let mut sampler = EpisodeSampler::new(Arc::new(store), pool, config, 0).unwrap();
//! let batch = sampler.sample_batch(Device::Cpu).unwrap();
//! assert_eq!(batch.support_x.size(), [8, 5, 1, 4, 4]); // [B, N·K, C, H, W]
//! assert_eq!(batch.query_y.size(), [8, 10]); // labels 0..N, grouped by class
//! ```
//!
//! ## Features
//!
//! `images` (default): image decoding (PNG, JPEG, zip archives), Omniglot, image folders,
//! the few-shot benchmarks, episodes and Omniglot-50 — everything that reads pictures.
//! Without it the crate keeps the
//! core the upper crates build on ([`TaskBatch`], [`MultiTaskBatch`], [`rng`],
//! [`ConfigError`], sinusoids, the synthetic multi-task regression) and none of the
//! image/zip dependencies: `metl-models`, `metl-mtl` and `metl-meta` depend on it that way.
#![warn(missing_docs)]

pub mod batch;
#[cfg(feature = "images")]
pub mod episode;
pub mod error;
#[cfg(feature = "images")]
pub mod few_shot;
#[cfg(feature = "images")]
pub mod image;
#[cfg(feature = "images")]
pub mod image_folder;
pub mod multitask;
#[cfg(feature = "images")]
pub mod omniglot;
pub mod pickle;
pub mod rng;
pub mod sinusoid;
pub mod split;

pub use batch::TaskBatch;
#[cfg(feature = "images")]
pub use episode::{ClassPool, ClassSplits, EpisodeConfig, EpisodeSampler};
pub use error::{ConfigError, DataError};
#[cfg(feature = "images")]
pub use image::ClassImages;
pub use multitask::{MultiTaskBatch, MultiTaskDataset};
#[cfg(feature = "images")]
pub use omniglot::{Omniglot, OmniglotConfig, OmniglotProtocol};
pub use split::Split;
