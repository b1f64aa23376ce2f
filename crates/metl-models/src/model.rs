//! [`Model`]: a network whose `forward` takes its parameters explicitly.

use crate::{error::Result, Params};
use tch::{nn, Tensor};

/// A network architecture whose weights live outside it, in a [`Params`].
///
/// Because the parameters are an argument, the same model evaluates slow weights, fast
/// weights after an inner update (gradients flow through them), or `T` task-specific
/// parameter sets at once ([`Model::forward_tasks`]).
///
/// Non-trainable state — batch norm's running statistics — is not a parameter: no gradient
/// flows to it and no optimizer steps it. Models keep it inside themselves, update it
/// (without recording gradients) during training-mode forward passes, and expose it as
/// named *buffers* ([`Model::buffers`], [`Model::load_buffers`]) with PyTorch's names, so
/// that [`Model::state_dict`] is what `torch.nn.Module.state_dict()` would hold.
pub trait Model {
    /// Creates fresh parameters for this model, registered under `path` (so that a tch
    /// optimizer over the path's `VarStore` trains them), on its device and kind.
    ///
    /// Models with buffers also reset them here, on the same device and kind.
    fn init(&self, path: &nn::Path<'_>) -> Result<Params>;

    /// The forward pass for a batch `x` of shape `[B, ...]`.
    ///
    /// `train` selects training behaviour where a layer has one (batch norm: see
    /// [`crate::batch_norm`]).
    fn forward(&self, params: &Params, x: &Tensor, train: bool) -> Tensor;

    /// The forward pass at inner-loop step `step`, for layers that keep per-step state
    /// (MAML++'s per-step batch-norm statistics); the default ignores `step`.
    fn forward_at_step(&self, params: &Params, x: &Tensor, train: bool, step: usize) -> Tensor {
        let _ = step;
        self.forward(params, x, train)
    }

    /// The forward pass of `T` tasks at once: `params` are task-stacked (every tensor has
    /// a leading dimension `T`, see [`Params::expand_tasks`]) and `x` is `[T, B, ...]`;
    /// returns `[T, B, ...]`.
    ///
    /// The default evaluates the tasks one after another; models override it with
    /// batched kernels that must agree with it (checked in tests).
    fn forward_tasks(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        forward_tasks_looped(self, params, x, train)
    }

    /// [`Model::forward_tasks`] at inner-loop step `step` (see [`Model::forward_at_step`]).
    ///
    /// The default runs [`Model::forward_at_step`] task by task; models with per-step
    /// state override it with their batched kernels.
    fn forward_tasks_at_step(&self, params: &Params, x: &Tensor, train: bool, step: usize) -> Tensor {
        forward_tasks_looped_at_step(self, params, x, train, step)
    }

    /// The model's buffers (batch-norm running statistics), named as PyTorch names them
    /// (`blocks.0.bn.running_mean`, ...), sharing storage with the model's own; empty for
    /// models without any (the default).
    fn buffers(&self) -> Params {
        Params::empty()
    }

    /// Replaces the model's buffers by (copies of) the tensors of the same names in
    /// `buffers`, checking shapes; names the model does not have are ignored. The default,
    /// for models without buffers, does nothing.
    fn load_buffers(&self, buffers: &Params) -> Result<()> {
        let _ = buffers;
        Ok(())
    }

    /// Parameters and buffers together, as `torch.nn.Module.state_dict()` holds them:
    /// what a checkpoint must contain ([`Params::save_safetensors`]).
    fn state_dict(&self, params: &Params) -> Result<Params> {
        params.merge(&self.buffers())
    }
}

/// The per-task reference for [`Model::forward_tasks`]: one [`Model::forward`] per task.
pub fn forward_tasks_looped<M: Model + ?Sized>(
    model: &M,
    params: &Params,
    x: &Tensor,
    train: bool,
) -> Tensor {
    let tasks = x.size()[0] as usize;
    let outputs: Vec<Tensor> =
        (0..tasks).map(|i| model.forward(&params.task(i), &x.select(0, i as i64), train)).collect();
    Tensor::stack(&outputs, 0)
}

/// The per-task reference for [`Model::forward_tasks_at_step`]: one
/// [`Model::forward_at_step`] per task.
pub fn forward_tasks_looped_at_step<M: Model + ?Sized>(
    model: &M,
    params: &Params,
    x: &Tensor,
    train: bool,
    step: usize,
) -> Tensor {
    let tasks = x.size()[0] as usize;
    let outputs: Vec<Tensor> = (0..tasks)
        .map(|i| model.forward_at_step(&params.task(i), &x.select(0, i as i64), train, step))
        .collect();
    Tensor::stack(&outputs, 0)
}

/// How a forward pass runs: training or evaluation behaviour, and the inner-loop step
/// (for per-step batch-norm statistics). Used by the stage-wise interface
/// [`crate::staged::StagedModel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mode {
    /// Training behaviour (batch statistics, running-statistics updates).
    pub train: bool,
    /// The inner-loop step (0 outside inner loops).
    pub step: usize,
}

impl Mode {
    /// Training mode at step 0.
    pub fn train() -> Self {
        Self { train: true, step: 0 }
    }

    /// Evaluation mode at step 0.
    pub fn eval() -> Self {
        Self { train: false, step: 0 }
    }

    /// The mode for `train` at step `step`.
    pub fn new(train: bool, step: usize) -> Self {
        Self { train, step }
    }
}
