//! [`MetaLearner`]: the interface every meta-learning algorithm implements.

use crate::error::Result;
use metl_data::TaskBatch;
use tch::Tensor;

/// What one meta-training step reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// The meta-training step just taken (1-based).
    pub step: u64,
    /// The meta-loss: mean query loss over the tasks after adaptation.
    pub loss: f64,
    /// Mean query accuracy after adaptation (classification only).
    pub accuracy: Option<f64>,
}

/// Per-task query losses and accuracies after adaptation.
#[derive(Debug)]
pub struct QueryOutcome {
    /// Mean query loss of each task, `[T]`.
    pub loss: Tensor,
    /// Query accuracy of each task, `[T]` (classification only).
    pub accuracy: Option<Tensor>,
}

/// A meta-learning algorithm.
///
/// Training alternates [`MetaLearner::meta_train_step`] on meta-batches of training tasks;
/// evaluation adapts to each test task's support set and measures the query set, for a
/// given number of adaptation steps (ignored by algorithms that do not take steps).
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
}
