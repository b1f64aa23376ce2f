//! Reptile (Nichol, Achiam & Schulman, 2018, "On First-Order Meta-Learning Algorithms").
//!
//! For each task of a meta-batch, `k` steps of an ordinary optimizer on the task's support
//! set turn θ into adapted weights φᵢ (no differentiation through them); θ then moves
//! towards their mean:
//!
//! ```text
//! φᵢ = U^k_{𝒯ᵢ}(θ),        θ ← θ + ε · (1/B) Σᵢ (φᵢ − θ).
//! ```
//!
//! The update is plain SGD with step ε on the "Reptile gradient" `θ − φ̄`, with ε decayed
//! linearly to zero over training as the paper does. For one task and one step of SGD,
//! `φ − θ = −α ∇L(θ)`, so Reptile is then joint training; with `k ≥ 2` steps its expected
//! update contains MAML's first-order term and a term that maximises the inner product of
//! gradients of different mini-batches of a task (section 5 of the paper).
//!
//! The defaults are the paper's Omniglot settings: Adam inside with β₁ = 0 and rate 0.001,
//! 5 steps on mini-batches of 10 support examples, ε = 1 decayed to 0 over 100,000
//! meta-iterations. (The paper's code keeps Adam's second moment across tasks; here each
//! task starts afresh.) The per-task loop and evaluation are those of [`MamlFamily`].

use crate::{
    error::{MetaError, Result},
    inner::InnerOptimizer,
    learner::StepReport,
    maml_family::{delegate_meta_learner, FamilySettings, Layout, LrRule, MamlFamily, OuterOptimizer},
    outer::{check_lr, LrSchedule},
};
use metl_data::TaskBatch;
use metl_models::{Loss, Model, Params};
use serde::{Deserialize, Serialize};
use tch::Kind;

/// Hyper-parameters of [`Reptile`]; the defaults are Nichol et al.'s Omniglot settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReptileConfig {
    /// Inner learning rate α (default 0.001).
    pub inner_lr: f64,
    /// Inner steps k (default 5).
    pub inner_steps: usize,
    /// Support examples per inner step; 0 uses the whole support set (default 10).
    pub inner_batch: usize,
    /// The inner optimizer (default Adam with β₁ = 0, β₂ = 0.999, ε = 1e-8).
    pub inner_optimizer: InnerOptimizer,
    /// Outer step size ε (default 1).
    pub outer_step_size: f64,
    /// Meta-iterations over which ε decays linearly to 0; 0 keeps it constant (default
    /// 100,000).
    pub anneal_iterations: u64,
    /// Adapt all tasks of a meta-batch at once (default true).
    pub task_batched: bool,
}

impl Default for ReptileConfig {
    fn default() -> Self {
        Self {
            inner_lr: 0.001,
            inner_steps: 5,
            inner_batch: 10,
            inner_optimizer: InnerOptimizer::Adam { beta1: 0.0, beta2: 0.999, eps: 1e-8 },
            outer_step_size: 1.0,
            anneal_iterations: 100_000,
            task_batched: true,
        }
    }
}

impl ReptileConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_lr("reptile.inner_lr", self.inner_lr)?;
        check_lr("reptile.outer_step_size", self.outer_step_size)?;
        if self.inner_steps == 0 {
            return Err(MetaError::invalid("reptile.inner_steps", 0, "must be >= 1"));
        }
        self.inner_optimizer.validate("reptile.inner_optimizer")
    }

    fn settings(&self) -> FamilySettings {
        FamilySettings {
            inner_optimizer: self.inner_optimizer,
            inner_batch: (self.inner_batch > 0).then_some(self.inner_batch),
            task_batched: self.task_batched,
            outer_optimizer: OuterOptimizer::Sgd,
            schedule: match self.anneal_iterations {
                0 => LrSchedule::Constant,
                total => LrSchedule::Linear { total },
            },
            ..FamilySettings::basic(
                self.inner_steps,
                LrRule::Fixed(self.inner_lr),
                true,
                self.outer_step_size,
            )
        }
    }
}

/// Reptile around any [`Model`].
#[derive(Debug)]
pub struct Reptile<M: Model> {
    family: MamlFamily<M>,
    config: ReptileConfig,
}

impl<M: Model> Reptile<M> {
    /// Reptile over `model` with meta-parameters `params` (leaf tensors).
    pub fn new(model: M, params: Params, loss: impl Loss + 'static, config: ReptileConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { family: MamlFamily::new(model, params, loss, config.settings())?, config })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &ReptileConfig {
        &self.config
    }

    /// Adapts every task, then moves θ towards the mean adapted weights.
    fn reptile_step(&mut self, batch: &TaskBatch) -> Result<StepReport> {
        self.family.check_batch(batch)?;
        let family = &self.family;
        let t = family.outer().steps() + 1;
        let k = self.config.inner_steps;
        let tasks = batch.num_tasks() as f64;
        // Per part (all tasks, or one): the sum of its adapted weights and its query outcome.
        let parts = family.per_layout(batch, |b, layout| {
            let (fast, frozen) = family.adapt_detached(b, k, layout)?;
            let outcome = tch::no_grad(|| family.outcome(&fast, &frozen, b, k - 1, layout))?;
            let sum = match layout {
                Layout::Batched => fast.map(|_, w| w.sum_dim_intlist(0, false, None::<Kind>)),
                Layout::Single => fast,
            };
            Ok((sum, outcome))
        })?;
        let theta = family.params();
        let mut direction = theta.map(|_, w| w.detach().zeros_like());
        let (mut loss, mut accuracy) = (0.0, None::<f64>);
        for (sum, outcome) in &parts {
            // θ − φ̄ = (1/B) Σᵢ (θ − φᵢ), accumulated part by part.
            direction = direction.zip_map(sum, |_, d, s| d - s / tasks)?;
            loss += outcome.loss.sum(Kind::Double).double_value(&[]) / tasks;
            if let Some(a) = &outcome.accuracy {
                *accuracy.get_or_insert(0.0) += a.sum(Kind::Double).double_value(&[]) / tasks;
            }
        }
        if !loss.is_finite() {
            return Err(MetaError::NonFiniteLoss {
                what: "query loss after adaptation",
                value: loss,
                step: t,
            });
        }
        let direction = direction.zip_map(theta, |_, d, w| d + w.detach())?;
        let outer = self.family.outer_mut();
        outer.set_gradient(&direction)?;
        let outer_lr = outer.step()?;
        Ok(StepReport { step: t, loss, accuracy, outer_lr })
    }
}

delegate_meta_learner!(Reptile, |learner, batch| learner.reptile_step(batch));
