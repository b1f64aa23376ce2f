//! Model-Agnostic Meta-Learning (Finn, Abbeel & Levine, ICML 2017, "Model-Agnostic
//! Meta-Learning for Fast Adaptation of Deep Networks") and its first-order approximation.
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
//! `∇θ L^q_i(φᵢ⁽ᵏ⁾) = Πⱼ (I − α ∇²L^s_i(φᵢ⁽ʲ⁾)) ∇L^q_i(φᵢ⁽ᵏ⁾)` (the product from `j = k − 1`
//! down to 0) contains Hessian-vector products, obtained by differentiating through the
//! inner gradients (`create_graph`). First-order MAML drops the Hessian terms: the inner
//! gradients are constants, so the meta-gradient is `∇L^q_i(φᵢ⁽ᵏ⁾)`, the query gradient at
//! the adapted weights.
//!
//! All tasks of a meta-batch adapt at once through [`metl_models::Model::forward_tasks`]
//! (see [`crate::maml_family`]); `task_batched = false` selects the per-task loop.
//!
//! Finn et al.'s settings: sinusoids — α = 0.01, 1 step, Adam β = 1e-3, 25 tasks per batch
//! (the defaults); Omniglot 5-way — α = 0.4, 1 step (3 at test), 32 tasks; 20-way — α = 0.1,
//! 5 steps, 16 tasks.

use crate::{
    error::{MetaError, Result},
    maml_family::{check_checkpointing, delegate_meta_learner, FamilySettings, LrRule, MamlFamily},
    outer::check_lr,
};
use metl_models::{Loss, Model, Params};
use serde::{Deserialize, Serialize};
use tch::nn;

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
    /// Adapt all tasks of a meta-batch at once (default true) or one after another.
    pub task_batched: bool,
    /// Second-order meta-gradients by gradient checkpointing of the inner loop (default
    /// false): the same meta-gradient, with memory that does not grow with the inner
    /// steps, for about one extra support forward and backward pass per step (see
    /// [`crate::maml_family`]). Needs `first_order = false`.
    pub checkpointing: bool,
    /// With `task_batched`, run the meta-batch in passes of at most this many tasks, each
    /// back-propagated before the next (default 0: all tasks in one pass). The same
    /// meta-gradient; peak memory grows with this instead of the meta-batch size.
    pub tasks_per_pass: usize,
}

impl Default for MamlConfig {
    fn default() -> Self {
        Self {
            inner_lr: 0.01,
            inner_steps: 1,
            outer_lr: 1e-3,
            first_order: false,
            task_batched: true,
            checkpointing: false,
            tasks_per_pass: 0,
        }
    }
}

impl MamlConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_lr("meta.inner_lr", self.inner_lr)?;
        check_lr("meta.outer_lr", self.outer_lr)?;
        if self.inner_steps == 0 {
            return Err(MetaError::invalid("meta.inner_steps", 0, "must be >= 1"));
        }
        check_checkpointing("meta.checkpointing", self.checkpointing, self.first_order)
    }

    fn settings(&self) -> FamilySettings {
        FamilySettings {
            task_batched: self.task_batched,
            checkpointing: self.checkpointing,
            tasks_per_pass: self.tasks_per_pass,
            ..FamilySettings::basic(
                self.inner_steps,
                LrRule::Fixed(self.inner_lr),
                self.first_order,
                self.outer_lr,
            )
        }
    }
}

/// MAML (second order, or first order with [`MamlConfig::first_order`]) around any
/// [`Model`]. The shared engine ([`MamlFamily`]) is reachable through `Deref`.
#[derive(Debug)]
pub struct Maml<M: Model> {
    family: MamlFamily<M>,
    config: MamlConfig,
}

impl<M: Model> Maml<M> {
    /// MAML over `model` with meta-parameters `params`, the trainable variables of `vs`
    /// (checked: every tensor of `params` must be one of them).
    pub fn new(
        model: M,
        params: Params,
        vs: &nn::VarStore,
        loss: impl Loss + 'static,
        config: MamlConfig,
    ) -> Result<Self> {
        config.validate()?;
        check_params_in_store(&params, vs)?;
        Ok(Self { family: MamlFamily::new(model, params, loss, config.settings())?, config })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &MamlConfig {
        &self.config
    }
}

delegate_meta_learner!(Maml);

/// Errors unless every tensor of `params` is a trainable variable of `vs`.
pub(crate) fn check_params_in_store(params: &Params, vs: &nn::VarStore) -> Result<()> {
    let variables: Vec<usize> = vs.trainable_variables().iter().map(|t| t.data_ptr() as usize).collect();
    for (name, t) in params.iter() {
        if !variables.contains(&(t.data_ptr() as usize)) {
            return Err(MetaError::invalid(
                "params",
                name,
                "is not a trainable variable of the VarStore given; create the parameters under it",
            ));
        }
    }
    Ok(())
}
