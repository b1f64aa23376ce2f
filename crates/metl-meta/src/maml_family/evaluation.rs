//! Evaluation of the family: adaptation without a graph to θ (first order, detached), then
//! the query loss or the predictions; the tasks as the settings lay them out
//! (task-batched, in passes, or one by one).

use super::{Layout, MamlFamily};
use crate::{error::Result, learner::QueryOutcome};
use metl_data::TaskBatch;
use metl_models::{Model, Params};
use tch::Tensor;

impl<M: Model> MamlFamily<M> {
    /// Adapted weights for evaluation (detached from θ, first order) and the frozen weights,
    /// laid out for `layout`.
    pub(crate) fn adapt_detached(
        &self,
        batch: &TaskBatch,
        steps: usize,
        layout: Layout,
    ) -> Result<(Params, Params)> {
        let lrs = self.learned_lrs.as_ref().map(Params::detach);
        let (start, frozen) = self.detached_start(batch, layout);
        let support = self.support_sets(batch, steps);
        let fast =
            self.adapt(start, &frozen, lrs.as_ref(), &support, 0..steps, false, layout, |_, _| Ok(()))?;
        Ok((fast.detach(), frozen))
    }

    pub(crate) fn per_layout<T>(
        &self,
        batch: &TaskBatch,
        mut f: impl FnMut(&TaskBatch, Layout) -> Result<T>,
    ) -> Result<Vec<T>> {
        let n = batch.num_tasks();
        let pass = self.settings.tasks_per_pass;
        if self.settings.task_batched && (pass == 0 || pass >= n) {
            Ok(vec![f(batch, Layout::Batched)?])
        } else if self.settings.task_batched {
            (0..n).step_by(pass).map(|s| f(&batch.tasks(s, pass.min(n - s)), Layout::Batched)).collect()
        } else {
            (0..batch.num_tasks()).map(|i| f(&batch.task(i), Layout::Single)).collect()
        }
    }

    /// See [`crate::MetaLearner::adapt_and_evaluate`].
    pub fn adapt_and_evaluate(&self, batch: &TaskBatch, steps: usize) -> Result<QueryOutcome> {
        self.check_batch(batch)?;
        let parts = self.per_layout(batch, |b, layout| {
            let (fast, frozen) = self.adapt_detached(b, steps, layout)?;
            tch::no_grad(|| self.outcome(&fast, &frozen, b, steps.saturating_sub(1), layout))
        })?;
        let loss = Tensor::cat(&parts.iter().map(|o| &o.loss).collect::<Vec<_>>(), 0);
        let accuracy =
            parts.iter().map(|o| o.accuracy.as_ref()).collect::<Option<Vec<_>>>().map(|a| Tensor::cat(&a, 0));
        Ok(QueryOutcome { loss, accuracy })
    }

    /// See [`crate::MetaLearner::adapt_and_predict`].
    pub fn adapt_and_predict(&self, batch: &TaskBatch, steps: usize) -> Result<Tensor> {
        self.check_batch(batch)?;
        let parts = self.per_layout(batch, |b, layout| {
            let (fast, frozen) = self.adapt_detached(b, steps, layout)?;
            tch::no_grad(|| self.forward(&fast, &frozen, &b.query_x, steps.saturating_sub(1), layout))
        })?;
        Ok(Tensor::cat(&parts, 0))
    }
}
