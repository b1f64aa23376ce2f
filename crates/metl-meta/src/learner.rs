//! [`MetaLearner`]: the interface every meta-learning algorithm implements.

use crate::error::Result;
use metl_data::TaskBatch;
use metl_models::Params;
use std::path::Path;
use tch::{Kind, Tensor};

/// What one meta-training step reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// The meta-training step just taken (1-based).
    pub step: u64,
    /// The meta-loss: mean query loss over the tasks after adaptation (for MAML++ with the
    /// multi-step loss, the weighted sum over steps).
    pub loss: f64,
    /// Mean query accuracy after adaptation (classification only).
    pub accuracy: Option<f64>,
    /// The outer learning rate (or Reptile's step size) this step used.
    pub outer_lr: f64,
}

/// Per-task query losses and accuracies after adaptation.
#[derive(Debug)]
pub struct QueryOutcome {
    /// Mean query loss of each task, `[T]`.
    pub loss: Tensor,
    /// Query accuracy of each task, `[T]` (classification only).
    pub accuracy: Option<Tensor>,
}

impl QueryOutcome {
    /// The mean accuracy over tasks as a number, if any (one device sync).
    pub fn mean_accuracy(&self) -> Option<f64> {
        self.accuracy.as_ref().map(|a| a.mean(Kind::Float).double_value(&[]))
    }
}

/// A meta-learning algorithm.
///
/// Training alternates [`MetaLearner::meta_train_step`] on meta-batches of training tasks;
/// evaluation adapts to each test task's support set and measures the query set, for a
/// given number of adaptation steps (ignored by algorithms that do not take steps).
///
/// Checkpoints: [`MetaLearner::state`] holds everything a resumed run needs — the
/// meta-parameters under their own names (so the file doubles as a model checkpoint that
/// PyTorch's `safetensors` reads), learned inner learning rates under `inner_lr.*`, the
/// outer optimizer's moments under `optimizer.*`, the step count as `outer.steps`, and the
/// model's buffers (batch-norm running statistics) under their PyTorch names.
pub trait MetaLearner {
    /// One outer update from a meta-batch of tasks.
    fn meta_train_step(&mut self, batch: &TaskBatch) -> Result<StepReport>;

    /// Adapts to every task's support set with `steps` inner steps and returns the query
    /// loss (and accuracy) of each task, without changing the meta-parameters.
    fn adapt_and_evaluate(&self, batch: &TaskBatch, steps: usize) -> Result<QueryOutcome>;

    /// Adapts to every task's support set with `steps` inner steps and returns the
    /// predictions for the query inputs `[T, Q, ...]`, without changing the
    /// meta-parameters (the query targets are not used).
    fn adapt_and_predict(&self, batch: &TaskBatch, steps: usize) -> Result<Tensor>;

    /// The number of meta-training steps taken.
    fn steps_taken(&self) -> u64;

    /// Everything the outer loop learns: the model's meta-parameters θ under their names,
    /// and learned inner learning rates under `inner_lr.*` (Meta-SGD, MAML++).
    fn meta_parameters(&self) -> Params;

    /// The complete training state for a checkpoint (see the trait documentation).
    fn state(&self) -> Params;

    /// Restores a state written by [`MetaLearner::state`], in place; names and shapes must
    /// match.
    fn load_state(&mut self, state: &Params) -> Result<()>;

    /// The outer learning rate the next step will use.
    fn outer_lr(&self) -> f64;

    /// Makes the learner data-parallel over the ranks of `collective`: each rank calls
    /// [`MetaLearner::meta_train_step`] with its own equal share of every meta-batch, and
    /// the outer update averages the meta-gradients over the ranks (and the model's
    /// buffers after it), so all ranks keep identical states — those of one process
    /// stepping on the whole meta-batch. The ranks must start from the same state (the
    /// runner broadcasts rank 0's [`MetaLearner::state`]).
    ///
    /// The default, for learners outside metl that do not implement it, is an error.
    fn set_collective(&mut self, collective: std::sync::Arc<dyn metl_dist::Collective>) -> Result<()> {
        let _ = collective;
        Err(crate::MetaError::Unsupported {
            learner: std::any::type_name::<Self>().to_owned(),
            reason: "does not implement data-parallel training (MetaLearner::set_collective)".into(),
        })
    }

    /// Tasks per forward/backward pass of a meta-training step (0: the whole meta-batch in
    /// one pass), for learners that can split a meta-batch into passes to bound memory
    /// (the task-batched MAML family); `None` for the others.
    fn tasks_per_pass(&self) -> Option<usize> {
        None
    }

    /// Sets the tasks per pass of a learner whose [`MetaLearner::tasks_per_pass`] is
    /// `Some`: each pass is back-propagated before the next, so peak memory follows the
    /// pass; the meta-gradient is the same (up to the order of floating-point sums).
    fn set_tasks_per_pass(&mut self, tasks: usize) -> Result<()> {
        let _ = tasks;
        Err(crate::MetaError::Unsupported {
            learner: std::any::type_name::<Self>().to_owned(),
            reason: "does not split meta-batches into passes".into(),
        })
    }

    /// Makes the outer update combine the per-task meta-gradients of each meta-batch with
    /// `combiner` instead of averaging them (see [`crate::task_combiner`]); its state joins
    /// [`MetaLearner::state`] under `task_combiner.*`. The MAML family (MAML, first-order
    /// MAML, Meta-SGD, ANIL, MAML++) implements it; the default is an error.
    fn set_task_combiner(
        &mut self,
        combiner: Box<dyn crate::task_combiner::TaskGradientCombiner>,
    ) -> Result<()> {
        Err(crate::MetaError::Unsupported {
            learner: std::any::type_name::<Self>().to_owned(),
            reason: format!(
                "cannot weight the tasks of a meta-batch with `{}`: it does not compute per-task \
                 meta-gradients (only the MAML family does: maml, fomaml, meta_sgd, anil, maml_plus_plus)",
                combiner.name()
            ),
        })
    }

    /// Writes [`MetaLearner::state`] to a safetensors file, atomically.
    fn save(&self, path: &Path) -> Result<()> {
        Ok(self.state().save_safetensors(path)?)
    }

    /// Restores the state from a safetensors file written by [`MetaLearner::save`].
    fn load(&mut self, path: &Path) -> Result<()> {
        let state = Params::load_safetensors(path, self.meta_parameters().device())?;
        self.load_state(&state)
            .map_err(|e| crate::MetaError::Checkpoint { path: path.to_owned(), message: e.to_string() })
    }
}
