//! # metl-mtl
//!
//! Multi-task learning: one network trained on several tasks at once, with the task
//! losses (or their gradients) combined by a weighting strategy behind the one
//! [`Weighting`] interface.
//!
//! - [`weighting`]: the [`Weighting`] trait and equal weighting ([`weighting::Equal`]).
//!
//! ```
//! use metl_mtl::{weighting::Equal, Weighting};
//! use tch::{Device, Kind, Tensor};
//!
//! let w = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
//! let losses = [w.sum(Kind::Float), (&w * 2.0).sum(Kind::Float)];
//! let weights = Equal.backward(&losses).unwrap();
//! assert_eq!(weights, [1.0, 1.0]);
//! // Equal weighting sums the losses: ∂(L₁ + L₂)/∂w = 1 + 2.
//! assert_eq!(Vec::<f32>::try_from(w.grad()).unwrap(), [3.0, 3.0, 3.0]);
//! ```
#![warn(missing_docs)]

pub mod error;
pub mod weighting;

pub use error::MtlError;
pub use weighting::Weighting;
