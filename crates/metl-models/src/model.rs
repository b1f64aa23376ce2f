//! [`Model`]: a network whose `forward` takes its parameters explicitly.

use crate::{error::Result, Params};
use tch::{nn, Tensor};

/// A network architecture whose weights live outside it, in a [`Params`].
///
/// Because the parameters are an argument, the same model evaluates slow weights, fast
/// weights after an inner update (gradients flow through them), or `T` task-specific
/// parameter sets at once ([`Model::forward_tasks`]).
pub trait Model {
    /// Creates fresh parameters for this model, registered under `path` (so that a tch
    /// optimizer over the path's `VarStore` trains them), on its device and kind.
    fn init(&self, path: &nn::Path<'_>) -> Result<Params>;

    /// The forward pass for a batch `x` of shape `[B, ...]`.
    ///
    /// `train` selects training behaviour where a layer has one (batch norm, dropout).
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
