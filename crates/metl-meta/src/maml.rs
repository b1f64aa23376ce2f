//! Model-Agnostic Meta-Learning (Finn, Abbeel & Levine, ICML 2017) and its first-order
//! approximation.
//!
//! For tasks 𝒯ᵢ with support loss L^s_i and query loss L^q_i, the inner loop adapts the
//! meta-parameters θ by `k` SGD steps with learning rate α,
//!
//! ```text
//! φᵢ⁽⁰⁾ = θ,   φᵢ⁽ʲ⁺¹⁾ = φᵢ⁽ʲ⁾ − α ∇L^s_i(φᵢ⁽ʲ⁾),
//! ```
//!
//! and the outer loop minimises the mean query loss after adaptation,
//! `min_θ (1/B) Σᵢ L^q_i(φᵢ⁽ᵏ⁾(θ))`, with Adam. The meta-gradient
//! `∇θ L^q_i(φᵢ) = Πⱼ (I − α ∇²L^s_i(φᵢ⁽ʲ⁾)) ∇L^q_i(φᵢ)` contains Hessian-vector products,
//! obtained by differentiating through the inner gradients (`create_graph`).
//! First-order MAML drops the Hessian terms: the inner gradients are constants, so the
//! meta-gradient is `∇L^q_i(φᵢ)`, the query gradient at the adapted weights.
//!
//! All tasks of a meta-batch adapt at once: θ is expanded to `T` task copies
//! ([`Params::expand_tasks`]) and evaluated with [`Model::forward_tasks`]; the gradient of
//! the summed support losses with respect to the copies is each task's own gradient.

use crate::{
    error::{MetaError, Result},
    learner::{MetaLearner, QueryOutcome, StepReport},
};
use metl_data::TaskBatch;
use metl_models::{Model, Params, TaskLoss};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::OptimizerConfig, Kind, Tensor};

/// Hyper-parameters of [`Maml`]; the defaults are Finn et al.'s sinusoid settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MamlConfig {
    /// Inner-loop SGD learning rate α (default 0.01).
    pub inner_lr: f64,
    /// Inner SGD steps during meta-training (default 1).
    pub inner_steps: usize,
    /// Outer-loop Adam learning rate β (default 1e-3).
    pub outer_lr: f64,
    /// First-order MAML: treat inner gradients as constants (default false).
    pub first_order: bool,
}

impl Default for MamlConfig {
    fn default() -> Self {
        Self { inner_lr: 0.01, inner_steps: 1, outer_lr: 1e-3, first_order: false }
    }
}

impl MamlConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if !(self.inner_lr.is_finite() && self.inner_lr > 0.0) {
            return Err(MetaError::invalid("meta.inner_lr", self.inner_lr, "must be > 0"));
        }
        if !(self.outer_lr.is_finite() && self.outer_lr > 0.0) {
            return Err(MetaError::invalid("meta.outer_lr", self.outer_lr, "must be > 0"));
        }
        if self.inner_steps == 0 {
            return Err(MetaError::invalid("meta.inner_steps", 0, "must be >= 1"));
        }
        Ok(())
    }
}

/// MAML (second order, or first order with [`MamlConfig::first_order`]) around any
/// [`Model`].
pub struct Maml<M: Model> {
    model: M,
    params: Params,
    optimizer: nn::Optimizer,
    loss: TaskLoss,
    config: MamlConfig,
    steps_taken: u64,
}

impl<M: Model> std::fmt::Debug for Maml<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maml").field("config", &self.config).field("steps_taken", &self.steps_taken).finish()
    }
}

impl<M: Model> Maml<M> {
    /// MAML over `model` with meta-parameters `params`, which must be the trainable
    /// variables of `vs` (Adam steps all of them).
    pub fn new(
        model: M,
        params: Params,
        vs: &nn::VarStore,
        loss: TaskLoss,
        config: MamlConfig,
    ) -> Result<Self> {
        config.validate()?;
        let optimizer = nn::Adam::default().build(vs, config.outer_lr)?;
        Ok(Self { model, params, optimizer, loss, config, steps_taken: 0 })
    }

    /// The meta-parameters θ.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &MamlConfig {
        &self.config
    }

    /// Task-stacked fast weights after `steps` inner steps on each task's support set.
    ///
    /// `start` are task-stacked initial weights (θ expanded, or detached leaves for
    /// evaluation); `create_graph` keeps the inner gradients differentiable.
    pub fn inner_loop(
        &self,
        start: Params,
        batch: &TaskBatch,
        steps: usize,
        create_graph: bool,
    ) -> Result<Params> {
        let mut fast = start;
        for _ in 0..steps {
            let prediction = self.model.forward_tasks(&fast, &batch.support_x, true);
            let support_loss = self.loss.per_task(&prediction, &batch.support_y).sum(Kind::Float);
            let grads = fast.grads(&support_loss, create_graph)?;
            fast = fast.sgd(&grads, self.config.inner_lr)?;
        }
        Ok(fast)
    }

    /// The meta-loss of a batch (mean query loss after adaptation) and the per-task
    /// outcome, differentiable with respect to θ.
    pub fn meta_loss(&self, batch: &TaskBatch) -> Result<(Tensor, QueryOutcome)> {
        let start = self.params.expand_tasks(batch.num_tasks());
        let fast = self.inner_loop(start, batch, self.config.inner_steps, !self.config.first_order)?;
        let outcome = self.query(&fast, batch);
        Ok((outcome.loss.mean(Kind::Float), outcome))
    }

    fn query(&self, fast: &Params, batch: &TaskBatch) -> QueryOutcome {
        let prediction = self.model.forward_tasks(fast, &batch.query_x, true);
        QueryOutcome {
            loss: self.loss.per_task(&prediction, &batch.query_y),
            accuracy: self.loss.per_task_accuracy(&prediction, &batch.query_y),
        }
    }

    /// Adapted weights for evaluation: detached from θ, no second-order graph.
    fn adapt_detached(&self, batch: &TaskBatch, steps: usize) -> Result<Params> {
        let start = self
            .params
            .detach()
            .expand_tasks(batch.num_tasks())
            .map(|_, t| t.contiguous().set_requires_grad(true));
        let fast = self.inner_loop(start, batch, steps, false)?;
        Ok(fast.detach())
    }
}

impl<M: Model> MetaLearner for Maml<M> {
    fn meta_train_step(&mut self, batch: &TaskBatch) -> Result<StepReport> {
        let (loss, outcome) = self.meta_loss(batch)?;
        let value = loss.double_value(&[]);
        let step = self.steps_taken + 1;
        if !value.is_finite() {
            return Err(MetaError::NonFiniteLoss { what: "meta-loss", value, step });
        }
        self.optimizer.zero_grad();
        loss.f_backward()?;
        self.optimizer.step();
        self.steps_taken = step;
        let accuracy = outcome.accuracy.map(|a| a.mean(Kind::Float).double_value(&[]));
        Ok(StepReport { step, loss: value, accuracy })
    }

    fn adapt_and_evaluate(&self, batch: &TaskBatch, steps: usize) -> Result<QueryOutcome> {
        let fast = self.adapt_detached(batch, steps)?;
        Ok(tch::no_grad(|| self.query(&fast, batch)))
    }

    fn adapt_and_predict(&self, batch: &TaskBatch, steps: usize) -> Result<Tensor> {
        let fast = self.adapt_detached(batch, steps)?;
        Ok(tch::no_grad(|| self.model.forward_tasks(&fast, &batch.query_x, true)))
    }

    fn steps_taken(&self) -> u64 {
        self.steps_taken
    }
}
