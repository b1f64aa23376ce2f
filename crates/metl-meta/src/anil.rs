//! ANIL, "almost no inner loop" (Raghu, Raghu, Bengio & Vinyals, ICLR 2020, "Rapid Learning
//! or Feature Reuse? Towards Understanding the Effectiveness of MAML"): MAML whose inner
//! loop adapts only the head (the final layer) while the body θ_b is shared by all tasks:
//!
//! ```text
//! φᵢ⁽ʲ⁺¹⁾ = φᵢ⁽ʲ⁾ − α ∇_φ L^s_i(θ_b, φᵢ⁽ʲ⁾),  φᵢ⁽⁰⁾ = θ_h,     min_{θ_b, θ_h} (1/B) Σᵢ L^q_i(θ_b, φᵢ⁽ᵏ⁾).
//! ```
//!
//! The outer loop still trains body and head, and the meta-gradient still flows through the
//! inner steps (second order) into both. Raghu et al. use MAML's hyper-parameters; the
//! defaults here are MAML's Omniglot 5-way ones for the inner loop.

use crate::{
    error::{MetaError, Result},
    maml_family::{
        check_checkpointing, delegate_meta_learner, AdaptedParams, FamilySettings, LrRule, MamlFamily,
    },
    outer::check_lr,
};
use metl_models::{Loss, Model, Params};
use serde::{Deserialize, Serialize};

/// Hyper-parameters of [`Anil`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnilConfig {
    /// Name prefixes of the head's parameters (default `["head"]`; for an
    /// [`Mlp`](metl_models::mlp::Mlp) of three layers, `["layers.2"]`).
    pub head: Vec<String>,
    /// Inner SGD learning rate α (default 0.4).
    pub inner_lr: f64,
    /// Inner steps during meta-training (default 1).
    pub inner_steps: usize,
    /// Outer Adam learning rate (default 1e-3).
    pub outer_lr: f64,
    /// First-order meta-gradients (default false).
    pub first_order: bool,
    /// Adapt all tasks of a meta-batch at once (default true).
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

impl Default for AnilConfig {
    fn default() -> Self {
        Self {
            head: vec!["head".into()],
            inner_lr: 0.4,
            inner_steps: 1,
            outer_lr: 1e-3,
            first_order: false,
            task_batched: true,
            checkpointing: false,
            tasks_per_pass: 0,
        }
    }
}

impl AnilConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.head.is_empty() {
            return Err(MetaError::invalid("anil.head", "[]", "name at least one head parameter prefix"));
        }
        check_lr("anil.inner_lr", self.inner_lr)?;
        check_lr("anil.outer_lr", self.outer_lr)?;
        if self.inner_steps == 0 {
            return Err(MetaError::invalid("anil.inner_steps", 0, "must be >= 1"));
        }
        check_checkpointing("anil.checkpointing", self.checkpointing, self.first_order)
    }
}

/// ANIL around any [`Model`] whose head parameters are named by [`AnilConfig::head`].
#[derive(Debug)]
pub struct Anil<M: Model> {
    family: MamlFamily<M>,
    config: AnilConfig,
}

impl<M: Model> Anil<M> {
    /// ANIL over `model` with meta-parameters `params` (leaf tensors). Errors when no
    /// parameter matches the head prefixes.
    pub fn new(model: M, params: Params, loss: impl Loss + 'static, config: AnilConfig) -> Result<Self> {
        config.validate()?;
        let lr = LrRule::Fixed(config.inner_lr);
        let settings = FamilySettings {
            adapted: AdaptedParams::Prefixes(config.head.clone()),
            task_batched: config.task_batched,
            checkpointing: config.checkpointing,
            tasks_per_pass: config.tasks_per_pass,
            ..FamilySettings::basic(config.inner_steps, lr, config.first_order, config.outer_lr)
        };
        Ok(Self { family: MamlFamily::new(model, params, loss, settings)?, config })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AnilConfig {
        &self.config
    }
}

delegate_meta_learner!(Anil);
