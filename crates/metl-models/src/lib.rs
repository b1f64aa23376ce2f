//! # metl-models
//!
//! The model layer of metl, where all libtorch kernels run, on whatever `Device` the
//! parameters and inputs live on.
//!
//! - [`Params`]: the one parameter abstraction — ordered, named tensors that are slow
//!   weights in a `VarStore`, differentiable fast weights, or task-stacked weights.
//! - [`functional`]: your own `tch::nn` module as a [`Model`] ([`functional::Functional`]):
//!   it runs on fast weights unchanged, so MAML and the rest meta-learn it.
//! - [`Model`]: a network whose `forward` takes a [`Params`], with a task-batched twin
//!   (batched matrix products, grouped convolutions, per-task batch norm) and per-step
//!   variants; non-trainable state (batch-norm running statistics) are the model's
//!   *buffers*.
//! - Backbones: [`mlp`], [`conv4`], [`resnet12`], and [`segnet`] for dense prediction;
//!   heads: [`head`], and [`dense_head`] per pixel; a backbone with a head: [`Classifier`].
//!   [`batch_norm`] in its three modes (batch statistics, running statistics, MAML++'s
//!   per-step statistics).
//! - [`sequential`]: any `nn.Sequential`-like stack of linear, convolution, batch-norm,
//!   activation and pooling layers from a builder, as a ready [`Model`] ([`Sequential`]).
//! - [`batching`]: the memory format and task chunking of convolutional passes (speed only).
//! - [`staged`]: a backbone as a sequence of stages, for architectures acting between layers.
//! - [`multitask`]: [`MultiTaskModel`] (shared and task-specific parameters, shared
//!   representation) and LibMTL's architectures on any backbone: hard sharing, MMoE, CGC,
//!   PLE, cross-stitch, MTAN, DSelect-k.
//! - [`optim`]: Adam, AdamW and SGD over [`Params`] with savable state (exact resume).
//! - [`TaskLoss`]: per-task losses and accuracies of task-stacked predictions, dense ones
//!   included ([`dense_loss`]: segmentation with ignored pixels, depth, surface normals);
//!   [`metrics`]: the metrics of each kind of task over a whole split (mIoU, depth and
//!   normal errors, ...) and whether each improves upwards or downwards.
//! - [`torchscript`]: TorchScript models exported with their parameters as inputs
//!   ([`torchscript::ScriptModel`]), fast weights and second order included.
//! - [`gradcheck`]: finite-difference gradient checks.
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
//!
//! The few-shot network MAML adapts, evaluated for a meta-batch of 4 tasks at once:
//!
//! ```
//! use metl_models::{conv4::Conv4Config, head::LinearHead, BatchNormConfig, Classifier, Model};
//! use tch::{nn, Device, Kind, Tensor};
//!
//! let vs = nn::VarStore::new(Device::Cpu);
//! let backbone = Conv4Config::new(1).with_batch_norm(BatchNormConfig::batch()).build().unwrap();
//! let net = Classifier::new(backbone, LinearHead::new(64, 5).unwrap());
//! let theta = net.init(&vs.root()).unwrap();
//! assert_eq!(theta.numel(), 112_261); // as the PyTorch Conv4 + nn.Linear(64, 5)
//! let x = Tensor::rand([4, 5, 1, 28, 28], (Kind::Float, Device::Cpu)); // [T, B, C, H, W]
//! let logits = net.forward_tasks(&theta.expand_tasks(4), &x, true);
//! assert_eq!(logits.size(), [4, 5, 5]);
//! ```
#![warn(missing_docs)]

pub mod batch_norm;
pub mod batching;
pub mod classifier;
pub mod conv4;
mod conv_net;
pub mod dense_head;
pub mod dense_loss;
pub mod error;
pub mod functional;
pub mod gradcheck;
pub mod head;
mod layers;
pub mod loss;
pub mod metrics;
pub mod mlp;
pub mod model;
pub mod multitask;
pub mod optim;
pub mod params;
pub mod resnet12;
pub mod segnet;
pub mod sequential;
pub mod staged;
pub mod torchscript;

pub use batch_norm::{BatchNorm, BatchNormConfig, BatchNormMode};
pub use classifier::Classifier;
pub use error::ModelError;
pub use loss::{Loss, TaskLoss};
pub use model::{Mode, Model};
pub use multitask::{HardSharing, MultiTaskModel};
pub use params::{Params, ParamsBuilder};
pub use sequential::Sequential;
pub use staged::StagedModel;
