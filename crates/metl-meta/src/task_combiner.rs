//! [`TaskGradientCombiner`]: how the per-task meta-gradients of a meta-batch become the
//! one direction of the outer update, instead of their mean.
//!
//! For a meta-batch of `T` tasks with query losses `ℓ_t` after adaptation (MAML++'s
//! multi-step loss: the weighted sum over steps), plain MAML steps along the gradient of the
//! meta-loss `(1/T) Σ_t ℓ_t`, i.e. the mean `(1/T) Σ_t g_t` of the per-task meta-gradients
//!
//! ```text
//! g_t = ∇_(θ, α) ℓ_t(φ_t(θ, α), θ)      (row t of J ∈ ℝ^(T × P))
//! ```
//!
//! taken with respect to every meta-parameter — θ and learned inner rates α — flattened in
//! [`crate::MetaLearner::meta_parameters`] order (second or first order as the learner's
//! settings say). A combiner sees the step, the `T` loss values and `J`, and returns the
//! direction `d ∈ ℝ^P` the outer optimizer steps along instead:
//!
//! ```text
//! d = C(J, ℓ, step),      plain MAML:  C = (1/T) 1ᵀ J      (MeanOfTasks)
//! ```
//!
//! so a multi-task gradient method (PCGrad, UPGrad, MGDA, CAGrad, ...) can treat the tasks
//! of a meta-batch as the tasks of a multi-task step. The tasks of a meta-batch are
//! exchangeable and change every step: row `t` is *some* task of this batch, not task `t`
//! of a fixed set, so a combiner must not keep per-task state across steps. metl-runner's
//! adapter from metl-mtl's strategies (`[task_weighting]`) accepts only those that keep none.
//!
//! Cost: `J` needs one meta-gradient per task; the MAML family computes them with one
//! pass per task (the cost of `tasks_per_pass = 1`) and holds `T × P` numbers on the
//! parameters' device. Data-parallel, every rank computes the rows of its own tasks and an
//! all-gather gives every rank the whole `J`, so all ranks combine the same matrix.
//!
//! ```
//! use metl_meta::task_combiner::{MeanOfTasks, TaskGradientCombiner, TaskGradients};
//! use tch::Tensor;
//!
//! let j = Tensor::from_slice2(&[[1.0, 0.0], [-1.0, 2.0]]);
//! let d = MeanOfTasks.combine(&TaskGradients { step: 1, losses: &[0.5, 0.7], jacobian: &j }).unwrap();
//! assert_eq!(Vec::<f64>::try_from(d).unwrap(), vec![0.0, 1.0]);
//! ```

use crate::error::{MetaError, Result};
use metl_models::Params;
use tch::{Kind, Tensor};

/// What a [`TaskGradientCombiner`] sees at one meta-training step.
#[derive(Debug)]
pub struct TaskGradients<'a> {
    /// The meta-training step (1-based).
    pub step: u64,
    /// The query loss of each task after adaptation, `T` values (their mean is the
    /// meta-loss).
    pub losses: &'a [f64],
    /// The per-task meta-gradients `J`, `[T, P]` on the meta-parameters' device and of
    /// their kind: row `t` is the gradient of `losses[t]` with respect to all
    /// meta-parameters, flattened in [`crate::MetaLearner::meta_parameters`] order.
    pub jacobian: &'a Tensor,
}

impl TaskGradients<'_> {
    /// The number of tasks `T`.
    pub fn num_tasks(&self) -> usize {
        self.losses.len()
    }
}

/// Combines the per-task meta-gradients of a meta-batch into the direction of the outer
/// update; see the [module documentation](self).
pub trait TaskGradientCombiner: Send {
    /// A short name for messages (`mean`, or the MTL strategy's name).
    fn name(&self) -> &str;

    /// The direction `[P]` that replaces the mean `(1/T) Σ_t g_t`, on the device and of the
    /// kind of `input.jacobian`.
    fn combine(&mut self, input: &TaskGradients<'_>) -> Result<Tensor>;

    /// The state to checkpoint (random generators, warm starts), as named tensors; empty
    /// (the default) for stateless combiners. Learners save it under `task_combiner.*`.
    fn state(&self) -> Params {
        Params::empty()
    }

    /// Restores a state written by [`TaskGradientCombiner::state`] of a combiner built the
    /// same way.
    fn load_state(&mut self, state: &Params) -> Result<()> {
        match state.names().first() {
            None => Ok(()),
            Some(name) => Err(MetaError::invalid(
                format!("task_combiner.{name}"),
                "present",
                format!("combiner `{}` keeps no state", self.name()),
            )),
        }
    }
}

/// The plain mean `(1/T) Σ_t g_t`: the ordinary MAML step, through the combiner path.
#[derive(Debug, Clone, Copy, Default)]
pub struct MeanOfTasks;

impl TaskGradientCombiner for MeanOfTasks {
    fn name(&self) -> &str {
        "mean"
    }

    fn combine(&mut self, input: &TaskGradients<'_>) -> Result<Tensor> {
        Ok(input.jacobian.f_mean_dim(0, false, None::<Kind>)?)
    }
}

/// Checks a combiner's direction: `[P]` for a `[T, P]` Jacobian, finite.
pub(crate) fn check_direction(name: &str, direction: &Tensor, jacobian: &Tensor, step: u64) -> Result<()> {
    let p = jacobian.size()[1];
    if direction.size() != [p] {
        return Err(MetaError::Combiner {
            combiner: name.to_owned(),
            message: format!("returned a direction of shape {:?} for {p} meta-parameters", direction.size()),
        });
    }
    let norm = direction.f_norm()?.f_double_value(&[])?;
    if !norm.is_finite() {
        return Err(MetaError::NonFiniteLoss { what: "combined meta-gradient norm", value: norm, step });
    }
    Ok(())
}
