//! [`AdaptiveLearner`]: the engine of the gradient-based learners outside the MAML family —
//! iMAML ([`crate::imaml`], implicit meta-gradients of a proximal inner problem) and CAVIA
//! ([`crate::cavia`], adapted context parameters) — which adapt to each task's support set
//! and meta-learn the network's parameters θ from the query loss after adaptation:
//!
//! ```text
//! min_θ (1/B) Σᵢ L(f(Xᵠᵢ; adaptᵢ(θ)), Yᵠᵢ),      θ ← Adam(θ, g),  g = the meta-gradient.
//! ```
//!
//! The [`Adaptation`] says what adapts and how the meta-gradient `g` reaches θ; the engine
//! holds the model, θ, the loss and the outer loop, checks every batch, and is the
//! [`MetaLearner`] (evaluation, checkpoints, data-parallel training: with a collective,
//! each rank's `g` is the mean over its share of the meta-batch and the outer loop averages
//! over the ranks). All tasks of a batch adapt at once ([`Model::forward_tasks`]).

use crate::{
    error::{MetaError, Result},
    learner::{MetaLearner, QueryOutcome, StepReport},
    outer::OuterLoop,
    validate::{validate_batch, validate_classes, Targets},
};
use metl_data::TaskBatch;
use metl_models::{Loss, Model, Params};
use std::sync::{Arc, OnceLock};
use tch::{Kind, Tensor};

/// How an [`AdaptiveLearner`] adapts to tasks and finds its meta-gradient.
pub trait Adaptation: Sized {
    /// The query predictions `[T, Q, ...]` of every task after `steps` adaptation steps on
    /// its support set, as constants (no graph to θ).
    fn predict<M: Model>(
        &self,
        learner: &AdaptiveLearner<M, Self>,
        batch: &TaskBatch,
        steps: usize,
    ) -> Result<Tensor>;

    /// The query outcome after the meta-training adaptation, and the meta-gradient `g` of
    /// the mean query loss with respect to θ (named like [`AdaptiveLearner::params`]).
    fn meta_gradient<M: Model>(
        &self,
        learner: &AdaptiveLearner<M, Self>,
        batch: &TaskBatch,
    ) -> Result<(QueryOutcome, Params)>;

    /// The model's output for one task's inputs `[B, ...]` before any adaptation (the
    /// batch check reads the width of the logits from it).
    fn forward_unadapted<M: Model>(&self, learner: &AdaptiveLearner<M, Self>, x: &Tensor) -> Result<Tensor>;
}

/// The engine; see the module documentation.
pub struct AdaptiveLearner<M: Model, A: Adaptation> {
    model: M,
    params: Params,
    loss: Arc<dyn Loss>,
    adaptation: A,
    outer: OuterLoop,
    /// The width of the model's logits, for a classification loss.
    classes: OnceLock<i64>,
}

impl<M: Model, A: Adaptation + std::fmt::Debug> std::fmt::Debug for AdaptiveLearner<M, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdaptiveLearner")
            .field("adaptation", &self.adaptation)
            .field("outer", &self.outer)
            .finish()
    }
}

impl<M: Model, A: Adaptation> AdaptiveLearner<M, A> {
    /// The learner over `model` with meta-parameters `params` (leaf tensors), trained by
    /// Adam at rate `outer_lr`.
    pub fn with_adaptation(
        model: M,
        params: Params,
        loss: impl Loss + 'static,
        adaptation: A,
        outer_lr: f64,
    ) -> Result<Self> {
        let outer = OuterLoop::adam(&params, outer_lr, crate::outer::LrSchedule::Constant)?;
        Ok(Self { model, params, loss: Arc::new(loss), adaptation, outer, classes: OnceLock::new() })
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The meta-parameters θ.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The loss.
    pub fn loss(&self) -> &dyn Loss {
        self.loss.as_ref()
    }

    /// The adaptation and its settings.
    pub fn adaptation(&self) -> &A {
        &self.adaptation
    }

    /// Per-task query losses and accuracies of task-stacked `prediction` `[T, Q, ...]`.
    pub fn outcome(&self, prediction: &Tensor, batch: &TaskBatch) -> QueryOutcome {
        QueryOutcome {
            loss: self.loss.per_task(prediction, &batch.query_y),
            accuracy: self.loss.per_task_accuracy(prediction, &batch.query_y),
        }
    }

    /// Checks `batch` against the loss's targets and θ's device and kind
    /// ([`crate::validate`]); for a classification loss also that every class index is
    /// below the width of the model's logits (found once, from the first support set).
    pub fn check_batch(&self, batch: &TaskBatch) -> Result<()> {
        let targets = self.loss.targets();
        validate_batch(batch, targets, Some(&self.params))?;
        if targets == Targets::Classes {
            let classes = match self.classes.get() {
                Some(&classes) => classes,
                None => {
                    let logits =
                        tch::no_grad(|| self.adaptation.forward_unadapted(self, &batch.support_x.get(0)))?;
                    *self.classes.get_or_init(|| logits.size().last().copied().unwrap_or(0))
                }
            };
            validate_classes(batch, classes)?;
        }
        Ok(())
    }

    /// The meta-loss of `batch` (the mean query loss after adaptation), the meta-gradient
    /// the next step would apply (named like θ) and the mean query accuracy; changes
    /// nothing.
    pub fn meta_gradient(&self, batch: &TaskBatch) -> Result<(f64, Params, Option<f64>)> {
        self.check_batch(batch)?;
        let (outcome, gradient) = self.adaptation.meta_gradient(self, batch)?;
        let value = outcome.loss.mean(Kind::Double).double_value(&[]);
        if !value.is_finite() {
            let step = self.outer.steps() + 1;
            return Err(MetaError::NonFiniteLoss { what: "meta-loss", value, step });
        }
        Ok((value, gradient, outcome.mean_accuracy()))
    }
}

impl<M: Model, A: Adaptation> MetaLearner for AdaptiveLearner<M, A> {
    fn meta_train_step(&mut self, batch: &TaskBatch) -> Result<StepReport> {
        let (loss, gradient, accuracy) = self.meta_gradient(batch)?;
        let step = self.outer.steps() + 1;
        self.outer.set_gradient(&gradient)?;
        let outer_lr = self.outer.step()?;
        Ok(StepReport { step, loss, accuracy, outer_lr })
    }

    fn adapt_and_evaluate(&self, batch: &TaskBatch, steps: usize) -> Result<QueryOutcome> {
        self.check_batch(batch)?;
        let prediction = self.adaptation.predict(self, batch, steps)?;
        Ok(tch::no_grad(|| self.outcome(&prediction, batch)))
    }

    fn adapt_and_predict(&self, batch: &TaskBatch, steps: usize) -> Result<Tensor> {
        self.check_batch(batch)?;
        self.adaptation.predict(self, batch, steps)
    }

    crate::outer::outer_loop_methods!(model);
}
