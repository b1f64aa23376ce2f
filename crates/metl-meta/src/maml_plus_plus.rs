//! MAML++ (Antoniou, Edwards & Storkey, ICLR 2019, "How to train your MAML"): MAML with the
//! fixes that make it stable and better.
//!
//! 1. **Multi-step loss (MSL)**: the meta-loss weighs the query loss after every inner step,
//!    `(1/B) Σᵢ Σⱼ wⱼ L^q_i(φᵢ⁽ʲ⁺¹⁾)`, with `w` annealed from uniform towards the last step over
//!    the first epochs ([`MultiStepLoss::weights`] gives the exact schedule of the authors' code);
//!    afterwards only the last step counts.
//! 2. **Learned per-layer per-step learning rates (LSLR)**: `φ⁽ʲ⁺¹⁾_l = φ⁽ʲ⁾_l − α_{l,j} ∇_l L^s`
//!    with one learned scalar per parameter tensor `l` and step `j`, initialised to α₀.
//! 3. **Per-step batch-norm statistics and weights (BNRS, BNWB)**: the model is called through
//!    [`Model::forward_at_step`] with the inner step, so that a model with per-step
//!    batch-norm state uses step `j`'s; the batch-norm weights are not adapted in the inner
//!    loop (names containing one of [`MamlPlusPlusConfig::not_adapted`]).
//! 4. **Derivative-order annealing (DA)**: first-order meta-gradients for the first epochs,
//!    second order afterwards.
//! 5. **Cosine annealing of the outer learning rate (CA)**: from β to β_min over all epochs,
//!    once per epoch ([`LrSchedule::Cosine`]).
//!
//! The defaults are the paper's Omniglot settings: 5 inner steps, α₀ = 0.1, Adam β = 1e-3
//! annealed to 1e-5 over 150 epochs of 500 iterations, first order for 50 epochs. The
//! multi-step loss anneals over 15 epochs (the released configurations use 10 to 20).

use crate::{
    error::{MetaError, Result},
    maml_family::{delegate_meta_learner, AdaptedParams, FamilySettings, LrRule, MamlFamily, MultiStepLoss},
    outer::{check_lr, LrSchedule},
};
use metl_models::{Loss, Model, Params};
use serde::{Deserialize, Serialize};

/// Hyper-parameters of [`MamlPlusPlus`]; the defaults are Antoniou et al.'s Omniglot ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MamlPlusPlusConfig {
    /// Inner steps in training and the length of the per-step rate vectors (default 5).
    pub inner_steps: usize,
    /// Initial inner learning rate α₀ of every layer and step (default 0.1).
    pub init_inner_lr: f64,
    /// Learn the per-layer per-step rates (default true; false keeps α₀).
    pub learn_inner_lrs: bool,
    /// Initial outer Adam learning rate β (default 1e-3).
    pub outer_lr: f64,
    /// Final outer learning rate of the cosine annealing (default 1e-5).
    pub min_outer_lr: f64,
    /// Epochs of the cosine annealing (default 150).
    pub epochs: u64,
    /// Meta-iterations per epoch (default 500).
    pub iterations_per_epoch: u64,
    /// Epochs with the multi-step loss (default 15; 0 disables it).
    pub multi_step_loss_epochs: u64,
    /// Epochs with first-order meta-gradients before second order (default 50; 0 = second
    /// order from the start).
    pub first_order_epochs: u64,
    /// Pass the inner step to [`Model::forward_at_step`] (default true).
    pub per_step_batch_norm: bool,
    /// Name fragments of parameters kept out of the inner loop (default `["bn"]`: the
    /// batch-norm weights and biases of metl-models' networks, `blocks.{i}.bn.weight`, ...).
    pub not_adapted: Vec<String>,
    /// Adapt all tasks of a meta-batch at once (default true).
    pub task_batched: bool,
    /// Second-order meta-gradients by gradient checkpointing of the inner loop (default
    /// false): the same meta-gradient, with memory that does not grow with the inner
    /// steps, for about one extra support forward and backward pass per step (see
    /// [`crate::maml_family`]). Applies once the
    /// first-order epochs are over.
    pub checkpointing: bool,
    /// With `task_batched`, run the meta-batch in passes of at most this many tasks, each
    /// back-propagated before the next (default 0: all tasks in one pass). The same
    /// meta-gradient; peak memory grows with this instead of the meta-batch size.
    pub tasks_per_pass: usize,
}

impl Default for MamlPlusPlusConfig {
    fn default() -> Self {
        Self {
            inner_steps: 5,
            init_inner_lr: 0.1,
            learn_inner_lrs: true,
            outer_lr: 1e-3,
            min_outer_lr: 1e-5,
            epochs: 150,
            iterations_per_epoch: 500,
            multi_step_loss_epochs: 15,
            first_order_epochs: 50,
            per_step_batch_norm: true,
            not_adapted: vec!["bn".into()],
            task_batched: true,
            checkpointing: false,
            tasks_per_pass: 0,
        }
    }
}

impl MamlPlusPlusConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.inner_steps == 0 {
            return Err(MetaError::invalid("maml_plus_plus.inner_steps", 0, "must be >= 1"));
        }
        check_lr("maml_plus_plus.init_inner_lr", self.init_inner_lr)?;
        check_lr("maml_plus_plus.outer_lr", self.outer_lr)?;
        if !(self.min_outer_lr.is_finite() && (0.0..=self.outer_lr).contains(&self.min_outer_lr)) {
            return Err(MetaError::invalid(
                "maml_plus_plus.min_outer_lr",
                self.min_outer_lr,
                "must be in [0, outer_lr]",
            ));
        }
        if self.epochs == 0 {
            return Err(MetaError::invalid("maml_plus_plus.epochs", 0, "must be >= 1"));
        }
        if self.iterations_per_epoch == 0 {
            return Err(MetaError::invalid("maml_plus_plus.iterations_per_epoch", 0, "must be >= 1"));
        }
        Ok(())
    }

    fn settings(&self) -> FamilySettings {
        let lr = LrRule::PerStep { init: self.init_inner_lr, learned: self.learn_inner_lrs };
        FamilySettings {
            adapted: if self.not_adapted.is_empty() {
                AdaptedParams::All
            } else {
                AdaptedParams::AllExcept(self.not_adapted.clone())
            },
            first_order_iterations: self.first_order_epochs.saturating_mul(self.iterations_per_epoch),
            multi_step_loss: (self.multi_step_loss_epochs > 0).then_some(MultiStepLoss {
                epochs: self.multi_step_loss_epochs,
                iterations_per_epoch: self.iterations_per_epoch,
            }),
            per_step_forward: self.per_step_batch_norm,
            task_batched: self.task_batched,
            checkpointing: self.checkpointing,
            tasks_per_pass: self.tasks_per_pass,
            schedule: LrSchedule::Cosine {
                epochs: self.epochs,
                iterations_per_epoch: self.iterations_per_epoch,
                min_lr: self.min_outer_lr,
            },
            ..FamilySettings::basic(self.inner_steps, lr, false, self.outer_lr)
        }
    }
}

/// MAML++ around any [`Model`]. The shared engine ([`MamlFamily`]) is reachable through
/// `Deref`; the per-layer per-step rates through [`MamlFamily::learned_lrs`].
#[derive(Debug)]
pub struct MamlPlusPlus<M: Model> {
    family: MamlFamily<M>,
    config: MamlPlusPlusConfig,
}

impl<M: Model> MamlPlusPlus<M> {
    /// MAML++ over `model` with meta-parameters `params` (leaf tensors).
    pub fn new(
        model: M,
        params: Params,
        loss: impl Loss + 'static,
        config: MamlPlusPlusConfig,
    ) -> Result<Self> {
        config.validate()?;
        Ok(Self { family: MamlFamily::new(model, params, loss, config.settings())?, config })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &MamlPlusPlusConfig {
        &self.config
    }

    /// Moves the learned inner rates into a `VarStore` for your own `tch` optimizer; see
    /// [`MamlFamily::register_learned_lrs`].
    pub fn register_learned_lrs(&mut self, path: &tch::nn::Path<'_>) -> Result<usize> {
        self.family.register_learned_lrs(path)
    }
}

delegate_meta_learner!(MamlPlusPlus);
