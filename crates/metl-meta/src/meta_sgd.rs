//! Meta-SGD (Li, Zhou, Chen & Li, 2017, "Meta-SGD: Learning to Learn Quickly for Few-Shot
//! Learning"): MAML whose inner learning rate is a learned vector α of the same shape as θ,
//! so that the meta-learner learns the direction and size of the inner update as well as
//! the initialisation:
//!
//! ```text
//! φᵢ = θ − α ⊙ ∇L^s_i(θ),        min_{θ, α} (1/B) Σᵢ L^q_i(φᵢ).
//! ```
//!
//! The meta-gradient with respect to α is `∂L^q_i/∂α = −∇L^s_i(θ) ⊙ ∇L^q_i(φᵢ)` (exact, also in
//! first-order mode, where only the Hessian terms of ∂/∂θ are dropped). Li et al. take one
//! inner step and initialise every entry of α uniformly in [0.005, 0.1]; further steps reuse
//! the same α. The rates are checkpointed as `inner_lr.<parameter name>`.

use crate::{
    error::{MetaError, Result},
    maml_family::{check_checkpointing, delegate_meta_learner, FamilySettings, LrRule, MamlFamily},
    outer::check_lr,
};
use metl_models::{Loss, Model, Params};
use serde::{Deserialize, Serialize};

/// Hyper-parameters of [`MetaSgd`]; the defaults are Li et al.'s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetaSgdConfig {
    /// Range `[low, high]` of the uniform initialisation of α (default [0.005, 0.1]).
    pub init_lr: [f64; 2],
    /// Inner steps during meta-training (default 1).
    pub inner_steps: usize,
    /// Outer Adam learning rate (default 1e-3).
    pub outer_lr: f64,
    /// Drop the second-order terms of the meta-gradient with respect to θ (default false).
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

impl Default for MetaSgdConfig {
    fn default() -> Self {
        Self {
            init_lr: [0.005, 0.1],
            inner_steps: 1,
            outer_lr: 1e-3,
            first_order: false,
            task_batched: true,
            checkpointing: false,
            tasks_per_pass: 0,
        }
    }
}

impl MetaSgdConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        let [low, high] = self.init_lr;
        if !(low.is_finite() && high.is_finite() && 0.0 <= low && low <= high) {
            return Err(MetaError::invalid(
                "meta_sgd.init_lr",
                format!("[{low}, {high}]"),
                "must be a range 0 <= low <= high",
            ));
        }
        check_lr("meta_sgd.outer_lr", self.outer_lr)?;
        if self.inner_steps == 0 {
            return Err(MetaError::invalid("meta_sgd.inner_steps", 0, "must be >= 1"));
        }
        check_checkpointing("meta_sgd.checkpointing", self.checkpointing, self.first_order)
    }
}

/// Meta-SGD around any [`Model`]. The shared engine ([`MamlFamily`]) is reachable through
/// `Deref`; the learned rates through [`MamlFamily::learned_lrs`].
#[derive(Debug)]
pub struct MetaSgd<M: Model> {
    family: MamlFamily<M>,
    config: MetaSgdConfig,
}

impl<M: Model> MetaSgd<M> {
    /// Meta-SGD over `model` with meta-parameters `params` (leaf tensors); the rates α are
    /// created on their device and kind, initialised from torch's global generator.
    pub fn new(model: M, params: Params, loss: impl Loss + 'static, config: MetaSgdConfig) -> Result<Self> {
        config.validate()?;
        let [low, high] = config.init_lr;
        let lr = LrRule::PerParameter { low, high };
        let settings = FamilySettings {
            task_batched: config.task_batched,
            checkpointing: config.checkpointing,
            tasks_per_pass: config.tasks_per_pass,
            ..FamilySettings::basic(config.inner_steps, lr, config.first_order, config.outer_lr)
        };
        Ok(Self { family: MamlFamily::new(model, params, loss, settings)?, config })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &MetaSgdConfig {
        &self.config
    }

    /// Moves the learned inner rates into a `VarStore` for your own `tch` optimizer; see
    /// [`MamlFamily::register_learned_lrs`].
    pub fn register_learned_lrs(&mut self, path: &tch::nn::Path<'_>) -> Result<usize> {
        self.family.register_learned_lrs(path)
    }
}

delegate_meta_learner!(MetaSgd);
