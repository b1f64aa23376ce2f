//! Data-parallel training on libtorch's own distributed engine, c10d — the one
//! `torch.distributed` uses — for `tch` tensors.
//!
//! - [`Collective`]: all-reduce, broadcast, barrier (and gathers built on them) on tensors,
//!   in place, fused into one buffer per kind and device; [`Local`] is the one-process
//!   group where they do nothing.
//! - [`ProcessGroup`]: c10d's `ProcessGroupGloo` (CPU tensors) or `ProcessGroupNCCL` (CUDA
//!   tensors) joined through a `TCPStore` rendezvous at `MASTER_ADDR:MASTER_PORT`
//!   ([`DistConfig::from_env`] reads `torchrun`'s variables). Every call is bounded by the
//!   group's timeout: a peer that dies or never arrives is an error, not a hang.
//! - [`Timed`]: counts the calls, bytes and time of another collective.
//! - [`launch_local`]: starts N processes of a command on this machine with those variables
//!   set (what `metl train --nproc N` does), and stops them all if one fails.
//!
//! The C++ side is a small shim (`cpp/`) compiled by the build script against the headers
//! of the libtorch `torch-sys` links; the Gloo transport is the one inside `libtorch_cpu`.
//!
//! ```no_run
//! use metl_dist::{Collective, ProcessGroup};
//! use tch::{Device, Tensor};
//! // `None` without WORLD_SIZE: a single-process run.
//! if let Some(group) = ProcessGroup::from_env(Device::Cpu)? {
//!     let grads = [Tensor::ones([3], (tch::Kind::Float, Device::Cpu))];
//!     group.all_reduce_mean(&grads)?;
//! }
//! # Ok::<(), metl_dist::DistError>(())
//! ```
#![warn(missing_docs)]

mod collective;
mod error;
mod ffi;
mod group;
mod launch;
mod timed;

pub use collective::{Collective, Local, ReduceOp};
pub use error::{DistError, Result};
pub use group::{Backend, DistConfig, ProcessGroup, ENV_VARS};
pub use launch::{free_port, launch_local, LaunchOutcome, LocalLaunch};
pub use timed::{CommStats, Timed};
