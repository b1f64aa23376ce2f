//! [`MultiTaskModel`]: networks with parameters shared by all tasks and parameters owned
//! by one task, and the architectures of LibMTL built on any backbone.
//!
//! | architecture | paper | shared representation |
//! | --- | --- | --- |
//! | [`HardSharing`] | Caruana 1997 | the encoder's output |
//! | [`Mmoe`] | Ma et al. 2018 | the stacked expert outputs `[E, B, ...]` |
//! | [`Cgc`] | Tang et al. 2020 | the stacked shared-expert outputs |
//! | [`Ple`] | Tang et al. 2020 | none (task and shared paths interleave) |
//! | [`CrossStitch`] | Misra et al. 2016 | none |
//! | [`Mtan`] | Liu et al. 2019 | none |
//! | [`DSelectK`] | Hazimeh et al. 2021 | the stacked expert outputs |
//!
//! A parameter is *shared* ([`MultiTaskModel::task_of`] is `None`) when more than one task
//! loss depends on it — so gradient-manipulation methods must treat it as shared — and
//! belongs to task `t` when only task `t`'s loss does.

mod cgc;
mod cross_stitch;
mod dselect_k;
mod experts;
mod hard_sharing;
mod mmoe;
mod mtan;
mod ple;

pub use cgc::{Cgc, CgcConfig};
pub use cross_stitch::{CrossStitch, CrossStitchConfig};
pub use dselect_k::{DSelectK, DSelectKConfig, Routing};
pub use hard_sharing::HardSharing;
pub use mmoe::{Mmoe, MmoeConfig};
pub use mtan::{Mtan, MtanConfig};
pub use ple::{Ple, PleConfig};

use crate::{error::Result, Params};
use tch::{nn, Tensor};

/// A network that maps one input to `T` task outputs.
///
/// Its parameters split into *shared* ones ([`MultiTaskModel::task_of`] is `None`) and
/// *task-specific* ones. The forward pass splits into [`MultiTaskModel::encode`] (the shared
/// representation `z`) and [`MultiTaskModel::decode`] (task outputs from `z`), so that
/// representation-level gradient methods (MGDA-UB, Aligned-MTL-UB) can differentiate the
/// task losses with respect to `z` instead of the shared parameters.
pub trait MultiTaskModel {
    /// The number of tasks `T`.
    fn num_tasks(&self) -> usize;

    /// Creates fresh parameters under `path` (see [`crate::Model::init`]).
    fn init(&self, path: &nn::Path<'_>) -> Result<Params>;

    /// The task owning parameter `name`, or `None` for a shared parameter.
    fn task_of(&self, name: &str) -> Option<usize>;

    /// Whether [`MultiTaskModel::encode`] is a representation shared by all tasks: a tensor
    /// that depends on the shared parameters only, through which alone they reach the task
    /// losses. Architectures whose task paths interleave throughout (cross-stitch, MTAN,
    /// PLE) have none: their `encode` returns the stacked inputs of the task heads
    /// `[T, B, ...]` instead, which depend on task parameters too.
    fn has_shared_representation(&self) -> bool {
        true
    }

    /// The shared representation `z` of a batch `x`.
    fn encode(&self, params: &Params, x: &Tensor, train: bool) -> Tensor;

    /// The `T` task outputs from the representation `z` (and the input `x`, which gates of
    /// mixture-of-experts models look at).
    fn decode(&self, params: &Params, x: &Tensor, z: &Tensor, train: bool) -> Vec<Tensor>;

    /// The `T` task outputs of a batch `x`.
    fn forward(&self, params: &Params, x: &Tensor, train: bool) -> Vec<Tensor> {
        let z = self.encode(params, x, train);
        self.decode(params, x, &z, train)
    }

    /// A term the architecture adds to the training loss, if any (DSelect-k's gate
    /// regularisation); `None` by default.
    fn auxiliary_loss(&self, params: &Params, x: &Tensor) -> Option<Tensor> {
        let _ = (params, x);
        None
    }

    /// The buffers (batch-norm running statistics) of all sub-networks, named as in
    /// PyTorch's `state_dict` (see [`crate::Model::buffers`]); empty by default.
    fn buffers(&self) -> Params {
        Params::empty()
    }

    /// Loads buffers by name (see [`crate::Model::load_buffers`]); does nothing by default.
    fn load_buffers(&self, buffers: &Params) -> Result<()> {
        let _ = buffers;
        Ok(())
    }

    /// Parameters and buffers together, as `torch.nn.Module.state_dict()` holds them.
    fn state_dict(&self, params: &Params) -> Result<Params> {
        params.merge(&self.buffers())
    }
}

/// Splits parameters into the shared ones and those of each task.
pub fn split_by_task<M: MultiTaskModel + ?Sized>(model: &M, params: &Params) -> (Params, Vec<Params>) {
    let shared = params.filter(|n| model.task_of(n).is_none());
    let tasks = (0..model.num_tasks()).map(|t| params.filter(|n| model.task_of(n) == Some(t))).collect();
    (shared, tasks)
}

/// The task index of a name `decoders.{t}.…`.
pub fn decoder_task(name: &str) -> Option<usize> {
    indexed(name, "decoders")
}

/// The index `i` of a name `{prefix}.{i}.…`.
pub(crate) fn indexed(name: &str, prefix: &str) -> Option<usize> {
    name.strip_prefix(prefix)?.strip_prefix('.')?.split('.').next()?.parse().ok()
}

/// Task heads `decoders.{t}` of any [`crate::Model`] type: init, forward, buffers.
pub(crate) mod heads {
    use crate::{error::Result, Model, Params};
    use tch::{nn, Tensor};

    pub(crate) fn init<H: Model>(heads: &[H], path: &nn::Path<'_>) -> Result<Params> {
        let mut params = Params::empty();
        for (t, head) in heads.iter().enumerate() {
            let p = head.init(&path.sub("decoders").sub(t))?.prefixed(&format!("decoders.{t}"));
            params = params.merge(&p)?;
        }
        Ok(params)
    }

    /// Head `t` on `z`.
    pub(crate) fn forward<H: Model>(
        heads: &[H],
        params: &Params,
        t: usize,
        z: &Tensor,
        train: bool,
    ) -> Tensor {
        heads[t].forward(&params.sub(&format!("decoders.{t}")), z, train)
    }

    pub(crate) fn buffers<H: Model>(heads: &[H]) -> Params {
        let entries = heads.iter().enumerate().flat_map(|(t, h)| {
            let b = h.buffers().prefixed(&format!("decoders.{t}"));
            b.iter().map(|(n, x)| (n.to_owned(), x.shallow_clone())).collect::<Vec<_>>()
        });
        Params::from_named(entries.collect()).expect("prefixes keep names apart")
    }

    pub(crate) fn load_buffers<H: Model>(heads: &[H], buffers: &Params) -> Result<()> {
        heads.iter().enumerate().try_for_each(|(t, h)| h.load_buffers(&buffers.sub(&format!("decoders.{t}"))))
    }
}

/// Concatenates parameter sets (all disjoint).
pub(crate) fn concat(sets: impl IntoIterator<Item = Params>) -> Result<Params> {
    sets.into_iter().try_fold(Params::empty(), |acc, p| acc.merge(&p))
}
