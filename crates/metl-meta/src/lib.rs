//! # metl-meta
//!
//! Meta-learning algorithms behind one interface, [`MetaLearner`]: train on many small
//! tasks so that a model adapts to a new task from a few examples.
//!
//! The interface and its shared machinery:
//! - [`learner`]: the [`MetaLearner`] trait (meta-training step, adaptation, prediction,
//!   checkpoint state);
//! - [`evaluate()`](mod@evaluate): mean query loss/accuracy over test tasks with 95% intervals;
//! - [`inner`]: the one inner loop (fixed, per-parameter or per-step rates; SGD, momentum or
//!   Adam; mini-batches of the support set);
//! - [`outer`]: the outer optimizer with its learning-rate schedule and checkpoint state;
//! - [`maml_family`]: the task-batched engine shared by the gradient-based learners;
//! - [`metric`]: the engine shared by the metric-based learners;
//! - [`validate`]: the checks every learner makes of a [`metl_data::TaskBatch`] before
//!   using it (typed errors, not panics).
//!
//! The algorithms, one per module:
//! - [`maml`]: MAML (Finn et al. 2017), second order or first order;
//! - [`meta_sgd`]: Meta-SGD (Li et al. 2017), learned per-parameter inner rates;
//! - [`anil`]: ANIL (Raghu et al. 2020), inner loop on the head only;
//! - [`maml_plus_plus`]: MAML++ (Antoniou et al. 2019);
//! - [`reptile`]: Reptile (Nichol et al. 2018);
//! - [`protonet`]: prototypical networks (Snell et al. 2017), Euclidean or cosine;
//! - [`matching`]: matching networks (Vinyals et al. 2016) without full-context embeddings;
//! - [`baseline`]: the fine-tuning baselines Baseline and Baseline++ (Chen et al. 2019).
//!
//! [`registry`] lists them by name (for command lines and `metl list`).
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
//!
//! // Adapt to fresh tasks and measure: the mean query MSE over 50 tasks, with its 95%
//! // interval, before adaptation and after one inner step.
//! let test = (0..2).map(|_| tasks.sample_batch(25, 10, 50, Device::Cpu).unwrap());
//! let results = metl_meta::evaluate(&maml, test, &[0, 1]).unwrap();
//! assert_eq!((results[1].steps, results[1].loss.n), (1, 50));
//! println!("after one step: {:.3}", results[1].loss);
//! ```
#![warn(missing_docs)]

pub mod anil;
pub mod baseline;
pub mod error;
pub mod evaluate;
pub mod inner;
pub mod learner;
pub mod maml;
pub mod maml_family;
pub mod maml_plus_plus;
pub mod matching;
pub mod meta_sgd;
pub mod metric;
pub mod outer;
pub mod protonet;
pub mod registry;
pub mod reptile;
pub mod validate;

pub use error::MetaError;
pub use evaluate::{evaluate, Estimate, Evaluation};
pub use learner::{MetaLearner, QueryOutcome, StepReport};
