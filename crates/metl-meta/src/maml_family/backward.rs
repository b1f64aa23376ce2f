//! The meta-gradient of the family and its outer step: the built-in one
//! ([`MamlFamily::meta_train_step`]) or **your own optimizer's** after
//! [`MamlFamily::meta_backward`], which leaves the meta-gradient in `.grad`.
//!
//! The meta-gradient is `g = ∇_θ (1/T) Σᵢ L(f(Xᵠᵢ; φᵢ⁽ᵏ⁾), Yᵠᵢ)` (and `∇_α` of the same
//! for learned inner rates α), back-propagated through the inner loop (second order) or
//! with the inner gradients treated as constants (first order).

use super::{outer_loop, LrRule, MamlFamily};
use crate::{
    error::{MetaError, Result},
    learner::{QueryOutcome, StepReport},
    validate::{validate_batch, validate_classes, Targets},
};
use metl_data::TaskBatch;
use metl_models::{optim::zero_grads, Model, Params, ParamsBuilder};
use tch::nn;

/// `value`, or [`MetaError::NonFiniteLoss`] at meta-iteration `t` when it is not finite.
pub(super) fn finite_meta_loss(value: f64, t: u64) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(MetaError::NonFiniteLoss { what: "meta-loss", value, step: t })
    }
}

/// A copy of the `.grad` of `params` (zeros where none is defined).
pub(super) fn gradients_of(params: &Params) -> Params {
    params.map(|_, p| {
        let g = p.grad();
        if g.defined() {
            g.detach().copy()
        } else {
            p.detach().zeros_like()
        }
    })
}

/// What [`MamlFamily::meta_backward`] reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetaLossReport {
    /// The meta-loss (mean over tasks).
    pub loss: f64,
    /// The mean query accuracy, for classification losses.
    pub accuracy: Option<f64>,
}

impl<M: Model> MamlFamily<M> {
    /// Back-propagates the meta-loss of `batch` at meta-iteration `t` into the `.grad` of θ
    /// and the learned rates (zeroed first); returns the meta-loss and the mean query
    /// accuracy. Nothing is back-propagated when a loss is not finite. With a task
    /// combiner, `.grad` holds the combined direction instead of the mean.
    fn accumulate_meta_gradient(&self, batch: &TaskBatch, t: u64) -> Result<(f64, Option<f64>)> {
        if let Some(combiner) = &self.combiner {
            let result = self.combined_meta_gradient(batch, t, combiner);
            return result.inspect_err(|_| zero_grads(self.outer.params()));
        }
        zero_grads(self.outer.params());
        // Each part (the meta-batch, a pass of tasks, or one task) is its share of the
        // meta-loss, a mean over tasks: `parts` = T / tasks in the part.
        let result = self.per_layout(batch, |part, layout| {
            let parts = batch.num_tasks() as f64 / part.num_tasks() as f64;
            let (value, outcome) = self.backward_part(part, t, layout, parts)?;
            Ok((value / parts, outcome.mean_accuracy().map(|a| a / parts)))
        });
        let parts = result.inspect_err(|_| zero_grads(self.outer.params()))?;
        let total = parts.iter().map(|(value, _)| value).sum();
        let accuracy = parts.iter().filter_map(|(_, a)| *a).reduce(|a, b| a + b);
        Ok((total, accuracy))
    }

    /// Adds `1/parts` of the meta-gradient of `part` (laid out for `layout`) at
    /// meta-iteration `t` to `.grad`; returns the part's meta-loss (its mean over tasks)
    /// and query outcome.
    pub(super) fn backward_part(
        &self,
        part: &TaskBatch,
        t: u64,
        layout: super::Layout,
        parts: f64,
    ) -> Result<(f64, QueryOutcome)> {
        if self.settings.checkpointing && self.second_order_at(t) {
            return self.checkpointed_meta_backward(part, t, layout, parts);
        }
        let (loss, outcome) = self.meta_loss_at(part, t, layout)?;
        let value = finite_meta_loss(loss.double_value(&[]), t)?;
        (loss / parts).f_backward()?;
        Ok((value, outcome))
    }

    /// The meta-gradient the next meta-training step would apply (before the optimizer),
    /// with respect to θ and the learned rates (named as in
    /// [`MamlFamily::meta_parameters`]), and the meta-loss; changes nothing but `.grad`.
    /// With a task combiner, the combined direction; the combiner's state (a random
    /// generator, a warm start) is restored afterwards.
    pub fn meta_gradient(&self, batch: &TaskBatch) -> Result<(f64, Params)> {
        self.check_batch(batch)?;
        let saved = self.combiner_state();
        let result = self.accumulate_meta_gradient(batch, self.outer.steps() + 1);
        if let Some(saved) = saved {
            self.restore_combiner_state(&saved)?;
        }
        let (loss, _) = result?;
        let grads = gradients_of(self.outer.params());
        zero_grads(self.outer.params());
        Ok((loss, grads))
    }

    /// Checks `batch` against the loss's targets and the parameters' device and kind
    /// ([`crate::validate`]); for a classification loss also that every class index is
    /// below the width `N` of the model's logits (found once, from one forward pass in
    /// evaluation mode on the first support set seen).
    pub fn check_batch(&self, batch: &TaskBatch) -> Result<()> {
        let targets = self.loss.targets();
        validate_batch(batch, targets, Some(&self.params))?;
        if targets == Targets::Classes {
            let classes = *self.classes.get_or_init(|| {
                let logits =
                    tch::no_grad(|| self.model.forward(&self.params, &batch.support_x.get(0), false));
                logits.size().last().copied().unwrap_or(0)
            });
            validate_classes(batch, classes)?;
        }
        Ok(())
    }

    /// Back-propagates the meta-loss of `batch` into the `.grad` of θ and of the learned
    /// inner rates (zeroed first), for **your own outer optimizer**: call its `step()`
    /// next (a `tch::nn::Optimizer` over the `VarStore` that holds θ; for learned rates see
    /// [`MamlFamily::register_learned_lrs`]). Nothing else changes; in particular the
    /// built-in outer loop does not count the step, so this is the meta-gradient of its
    /// next meta-iteration — use [`MamlFamily::meta_backward_at`] where the iteration
    /// matters (MAML++'s first-order iterations and multi-step loss annealing). Returns the
    /// meta-loss and the mean query accuracy. With the same optimizer and
    /// hyper-parameters the update equals [`MamlFamily::meta_train_step`]'s.
    ///
    /// ```
    /// use metl_data::sinusoid::{SinusoidConfig, SinusoidTasks};
    /// use metl_meta::maml::{Maml, MamlConfig};
    /// use metl_models::{mlp::MlpConfig, TaskLoss};
    /// use tch::{nn, nn::OptimizerConfig, Device};
    ///
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let (mlp, theta) = MlpConfig::new([1, 40, 40, 1]).init(&vs.root()).unwrap();
    /// let maml = Maml::new(mlp, theta, &vs, TaskLoss::Mse, MamlConfig::default()).unwrap();
    /// let mut opt = nn::Sgd::default().build(&vs, 1e-3).unwrap(); // yours
    /// let mut tasks = SinusoidTasks::new(SinusoidConfig::default(), 0);
    /// let report = maml.meta_backward(&tasks.sample_batch(25, 10, 10, Device::Cpu).unwrap()).unwrap();
    /// opt.step();
    /// assert!(report.loss.is_finite());
    /// ```
    pub fn meta_backward(&self, batch: &TaskBatch) -> Result<MetaLossReport> {
        self.meta_backward_at(batch, self.outer.steps() + 1)
    }

    /// [`MamlFamily::meta_backward`] at meta-iteration `iteration` (1-based; 0 counts as 1),
    /// for a loop that counts its own steps: the derivative order and MAML++'s multi-step
    /// loss weights follow it as they follow the built-in step count.
    pub fn meta_backward_at(&self, batch: &TaskBatch, iteration: u64) -> Result<MetaLossReport> {
        self.check_batch(batch)?;
        let (loss, accuracy) = self.accumulate_meta_gradient(batch, iteration.max(1))?;
        Ok(MetaLossReport { loss, accuracy })
    }

    /// One outer update; see [`crate::MetaLearner::meta_train_step`].
    pub fn meta_train_step(&mut self, batch: &TaskBatch) -> Result<StepReport> {
        self.check_batch(batch)?;
        let t = self.outer.steps() + 1;
        let (loss, accuracy) = self.accumulate_meta_gradient(batch, t)?;
        // A combined direction comes from the whole meta-batch's J, the same on every rank.
        let outer_lr = if self.combiner.is_some() {
            self.outer.step_with_agreed_gradient()?
        } else {
            self.outer.step()?
        };
        Ok(StepReport { step: t, loss, accuracy, outer_lr })
    }

    /// Moves the learned inner learning rates (Meta-SGD, MAML++ with learned rates) into a
    /// `VarStore` under `path` (e.g. `vs.root() / "inner_lr"`, giving
    /// `inner_lr.layers.0.weight`, ...), so that a `tch::nn::Optimizer` over that store
    /// trains them together with θ after [`MamlFamily::meta_backward`]. Their values are
    /// kept (converted to the store's device and kind); the built-in outer loop is rebuilt
    /// over the new variables. Returns how many tensors were registered: 0 when the rates
    /// are fixed or not learned. Only before the first meta-training step (the built-in
    /// optimizer's state would refer to the old tensors).
    pub fn register_learned_lrs(&mut self, path: &nn::Path<'_>) -> Result<usize> {
        if self.outer.steps() > 0 {
            return Err(MetaError::invalid(
                "register_learned_lrs",
                format!("after {} meta-training steps", self.outer.steps()),
                "must be called before the first meta-training step",
            ));
        }
        let learned =
            matches!(self.settings.lr, LrRule::PerParameter { .. } | LrRule::PerStep { learned: true, .. });
        let Some(lrs) = self.learned_lrs.as_ref().filter(|_| learned) else {
            return Ok(0);
        };
        let mut builder = ParamsBuilder::new(path);
        for (name, lr) in lrs.iter() {
            builder.var_copy(name, &lr.detach())?;
        }
        let registered = builder.build()?;
        let count = registered.len();
        self.outer = outer_loop(&self.params, Some(&registered), &self.settings)?;
        self.learned_lrs = Some(registered);
        Ok(count)
    }
}
