//! # metl-models
//!
//! The model layer of metl, where all libtorch kernels run, on whatever `Device` the
//! parameters and inputs live on.
//!
//! - [`Params`]: the one parameter abstraction — ordered, named tensors that are slow
//!   weights in a `VarStore`, differentiable fast weights, or task-stacked weights.
//! - [`Model`]: a network whose `forward` takes a [`Params`], with a task-batched twin.
//! - [`mlp`]: the multi-layer perceptron.
//! - [`multitask`]: [`MultiTaskModel`] (shared and task-specific parameters, shared
//!   representation) and hard parameter sharing.
//! - [`optim`]: Adam, AdamW and SGD over [`Params`] with savable state (exact resume).
//! - [`TaskLoss`]: per-task losses and accuracies of task-stacked predictions.
//!
//! ```
//! use metl_models::{mlp::MlpConfig, Model};
//! use tch::{nn, Device, Kind, Tensor};
//!
//! let vs = nn::VarStore::new(Device::Cpu);
//! let (mlp, theta) = MlpConfig::new([1, 40, 40, 1]).init(&vs.root()).unwrap();
//! let x = Tensor::linspace(-5.0, 5.0, 10, (Kind::Float, Device::Cpu)).unsqueeze(1);
//! let y = x.sin();
//! // One differentiable SGD step gives fast weights; the same model runs on them.
//! let loss = mlp.forward(&theta, &x, true).mse_loss(&y, tch::Reduction::Mean);
//! let grads = theta.grads(&loss, true).unwrap();
//! let phi = theta.sgd(&grads, 0.01).unwrap();
//! assert_eq!(mlp.forward(&phi, &x, true).size(), [10, 1]);
//! ```
#![warn(missing_docs)]

pub mod error;
pub mod loss;
pub mod mlp;
pub mod model;
pub mod multitask;
pub mod optim;
pub mod params;

pub use error::ModelError;
pub use loss::TaskLoss;
pub use model::Model;
pub use multitask::{HardSharing, MultiTaskModel};
pub use params::{Params, ParamsBuilder};
