//! # metl-meta
//!
//! Meta-learning algorithms behind one interface, [`MetaLearner`]: train on many small
//! tasks so that a model adapts to a new task from a few examples.
//!
//! - [`maml`]: MAML (Finn et al. 2017), second order or first order, task-batched.
//! - [`evaluate`]: mean query loss/accuracy over test tasks with 95% intervals.
//!
//! ```
//! use metl_data::sinusoid::{SinusoidConfig, SinusoidTasks};
//! use metl_meta::{maml::{Maml, MamlConfig}, MetaLearner};
//! use metl_models::{mlp::MlpConfig, TaskLoss};
//! use tch::{nn, Device};
//!
//! let vs = nn::VarStore::new(Device::Cpu);
//! let (mlp, theta) = MlpConfig::new([1, 40, 40, 1]).init(&vs.root()).unwrap();
//! let mut maml = Maml::new(mlp, theta, &vs, TaskLoss::Mse, MamlConfig::default()).unwrap();
//! let mut tasks = SinusoidTasks::new(SinusoidConfig::default(), 0);
//! let report = maml.meta_train_step(&tasks.sample_batch(25, 10, 10, Device::Cpu).unwrap()).unwrap();
//! assert_eq!(report.step, 1);
//! assert!(report.loss.is_finite());
//! ```
#![warn(missing_docs)]

pub mod error;
pub mod evaluate;
pub mod learner;
pub mod maml;

pub use error::MetaError;
pub use evaluate::{evaluate, Estimate, Evaluation};
pub use learner::{MetaLearner, QueryOutcome, StepReport};
