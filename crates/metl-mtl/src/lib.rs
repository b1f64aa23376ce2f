//! # metl-mtl
//!
//! Multi-task learning: one network trained on several tasks at once, the task losses
//! (or their gradients) combined by a strategy behind one interface, [`Strategy`].
//!
//! - [`strategy`]: the [`Strategy`] trait, what a strategy [`Needs`] (losses, per-task
//!   gradients of the shared parameters or of the shared representation) and what it
//!   returns ([`Combination`]).
//! - [`weighting`]: [`Weighting`], the Gramian-based strategies' small interface (the
//!   Gramian of the task gradients in, weights out), usable on its own.
//! - [`backward`]: [`MtlBackward`] computes the per-task gradients a strategy needs,
//!   calls it, and leaves the combined gradient in `.grad` for any optimizer
//!   ([`backward::backward`] for a model without task-specific parameters to treat apart).
//! - [`jacobian`]: the Jacobian and the Gramian of your task losses with respect to your
//!   parameters, for a loop of your own around a [`Weighting`].
//! - [`checkpoint`]: a strategy's state between steps ([`StrategyState`]), saved in
//!   checkpoints so that a resumed run continues exactly (see [`MtlStep::checkpoint`]).
//! - [`strategies`]: every strategy, one file each; [`registry`]: all of them by name,
//!   with descriptions and configurations ([`StrategyConfig`]).
//! - [`workload`]: the standard MTL-step workloads that benchmarks time (the PyTorch
//!   reference's MLP, and a Conv4 one).
//! - [`trainer`]: [`MtlStep`], a whole training step (forward, masked per-task losses,
//!   strategy, optimizer step) for a [`metl_models::MultiTaskModel`]; data-parallel over
//!   the ranks of a [`metl_dist::Collective`] with [`MtlStep::set_collective`], each rank
//!   stepping on its shard of the batch as one process would on the whole batch.
//! - [`delta_m`]: Δm% against single-task baselines, in LibMTL's and in Maninis et al.'s
//!   (CAGrad, Nash-MTL, FAMO) conventions.
//! - [`solvers`] and [`linalg`]: the small `T×T` problems, solved on the host in `f64`.
//!
//! ```
//! use metl_models::Params;
//! use metl_mtl::{backward::backward, strategies::ew::Ew};
//! use tch::{Device, Kind, Tensor};
//!
//! let w = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
//! let shared = Params::from_named(vec![("w".into(), w.shallow_clone())]).unwrap();
//! let losses = [w.sum(Kind::Float), (&w * 2.0).sum(Kind::Float)];
//! let report = backward(&mut Ew, &losses, &shared, 1).unwrap();
//! assert_eq!(report.weights, [1.0, 1.0]);
//! // Equal weighting sums the losses: ∂(L₁ + L₂)/∂w = 1 + 2.
//! assert_eq!(Vec::<f32>::try_from(w.grad()).unwrap(), [3.0, 3.0, 3.0]);
//! ```
#![warn(missing_docs)]

pub mod backward;
mod batched_vjp;
pub mod checkpoint;
pub mod delta_m;
mod distributed;
pub mod error;
pub mod host_optim;
pub mod jacobian;
pub mod linalg;
pub mod registry;
pub mod solvers;
pub mod strategies;
pub mod strategy;
mod task_gradients;
pub mod trainer;
pub mod weighting;
pub mod workload;

pub use backward::{MtlBackward, Representation, StepReport, TaskLosses};
pub use error::MtlError;
pub use registry::{StrategyConfig, STRATEGIES};
pub use strategy::{
    Combination, GradientSpace, Needs, Setup, StepInput, Strategy, StrategyState, StrategyStateHost, Update,
};
pub use trainer::{MtlStep, MtlStepState};
pub use weighting::Weighting;
