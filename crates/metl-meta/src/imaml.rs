//! Implicit MAML (Rajeswaran, Finn, Kakade & Levine, NeurIPS 2019, "Meta-Learning with
//! Implicit Gradients").
//!
//! The inner loop solves a proximally regularised problem on the task's support loss L̂ᵢ,
//! starting from θ,
//!
//! ```text
//! φᵢ(θ) = argmin_φ  L̂ᵢ(φ) + (λ/2) ‖φ − θ‖²        (k steps of gradient descent, rate α),
//! ```
//!
//! and the meta-gradient of the query loss L_i comes from the implicit function theorem
//! instead of back-propagation through the steps: at a stationary point
//! `∇L̂ᵢ(φᵢ) + λ(φᵢ − θ) = 0`, so `dφᵢ/dθ = (I + ∇²L̂ᵢ(φᵢ)/λ)⁻¹` and
//!
//! ```text
//! ∇_θ L_i(φᵢ(θ)) = (I + ∇²L̂ᵢ(φᵢ)/λ)⁻¹ ∇L_i(φᵢ)          g = (1/B) Σᵢ gᵢ,
//! ```
//!
//! where `gᵢ` solves `((1 + δ) I + ∇²L̂ᵢ(φᵢ)/λ) gᵢ = ∇L_i(φᵢ)` by `cg_steps` iterations of
//! conjugate gradients ([`crate::conjugate_gradient`]), each one Hessian-vector product
//! (double backward through the support loss at φᵢ, whose graph is built once). The
//! damping δ ≥ 0 keeps the system positive definite where L̂ is not convex (δ = 0 is the
//! paper's equation). Memory and compute do not grow with the inner steps `k`; the
//! gradient is exact when the inner problem is solved exactly and CG has converged.
//! Adaptation at test time solves the same proximal problem with the given number of steps.
//!
//! The defaults are the reference implementation's Omniglot settings (λ = 1, 16 steps of
//! rate 0.01, 5 CG iterations, damping 1), except the outer loop: Adam 1e-3 as every metl
//! learner (the reference code also adds 10 to λ in the curvature term; metl keeps `∇²L̂/λ`).

use crate::{
    adaptive::{Adaptation, AdaptiveLearner},
    conjugate_gradient::conjugate_gradient,
    error::{MetaError, Result},
    inner::{InnerLoop, InnerLr},
    learner::QueryOutcome,
    outer::check_lr,
};
use metl_data::TaskBatch;
use metl_models::{Loss, Model, Params};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Hyper-parameters of [`IMaml`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IMamlConfig {
    /// The strength λ > 0 of the proximal term `(λ/2)‖φ − θ‖²` (default 1).
    pub lambda: f64,
    /// Inner gradient-descent rate α (default 0.01).
    pub inner_lr: f64,
    /// Inner steps during meta-training (default 16).
    pub inner_steps: usize,
    /// Conjugate-gradient iterations for the meta-gradient, >= 1 (default 5).
    pub cg_steps: usize,
    /// The damping δ >= 0 added to the identity of the system (default 1).
    pub cg_damping: f64,
    /// Outer Adam learning rate (default 1e-3).
    pub outer_lr: f64,
}

impl Default for IMamlConfig {
    fn default() -> Self {
        Self { lambda: 1.0, inner_lr: 0.01, inner_steps: 16, cg_steps: 5, cg_damping: 1.0, outer_lr: 1e-3 }
    }
}

impl IMamlConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_lr("imaml.lambda", self.lambda)?;
        check_lr("imaml.inner_lr", self.inner_lr)?;
        check_lr("imaml.outer_lr", self.outer_lr)?;
        if self.inner_steps == 0 {
            return Err(MetaError::invalid("imaml.inner_steps", 0, "must be >= 1"));
        }
        if self.cg_steps == 0 {
            return Err(MetaError::invalid("imaml.cg_steps", 0, "must be >= 1"));
        }
        if !(self.cg_damping.is_finite() && self.cg_damping >= 0.0) {
            return Err(MetaError::invalid("imaml.cg_damping", self.cg_damping, "must be >= 0"));
        }
        Ok(())
    }
}

/// iMAML's [`Adaptation`]: the proximal inner problem and the implicit meta-gradient.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImplicitGradient {
    /// The hyper-parameters.
    pub config: IMamlConfig,
}

/// `Σ_tensors Σ ⟨a, b⟩` of two [`Params`] with the same names, as a scalar.
fn dot(a: &Params, b: &Params) -> Tensor {
    let terms: Vec<Tensor> =
        a.tensors().iter().zip(b.tensors()).map(|(x, y)| (x * y).sum(None::<Kind>)).collect();
    Tensor::stack(&terms, 0).sum(None::<Kind>)
}

impl ImplicitGradient {
    /// The task-stacked solutions φ of the proximal problems after `steps` steps of
    /// gradient descent from θ, as fresh leaves (no graph to θ).
    pub fn solve_inner<M: Model>(
        &self,
        learner: &AdaptiveLearner<M, Self>,
        batch: &TaskBatch,
        steps: usize,
    ) -> Result<Params> {
        let theta = learner.params().detach();
        let start = theta.expand_tasks(batch.num_tasks()).map(|_, t| t.contiguous().set_requires_grad(true));
        let lambda = self.config.lambda;
        let inner = InnerLoop::sgd(InnerLr::Fixed(self.config.inner_lr), false);
        let phi = inner.run(
            start,
            steps,
            |phi, _| {
                let prediction = learner.model().forward_tasks(phi, &batch.support_x, true);
                let support = learner.loss().per_task(&prediction, &batch.support_y).sum(None::<Kind>);
                let offset = phi.zip_map(&theta, |_, p, t| p - t)?;
                Ok(support + dot(&offset, &offset) * (lambda / 2.0))
            },
            |_, _| Ok(()),
        )?;
        Ok(phi.detached_leaves())
    }
}

impl Adaptation for ImplicitGradient {
    fn predict<M: Model>(
        &self,
        learner: &AdaptiveLearner<M, Self>,
        batch: &TaskBatch,
        steps: usize,
    ) -> Result<Tensor> {
        let phi = self.solve_inner(learner, batch, steps)?;
        Ok(tch::no_grad(|| learner.model().forward_tasks(&phi, &batch.query_x, true)))
    }

    fn meta_gradient<M: Model>(
        &self,
        learner: &AdaptiveLearner<M, Self>,
        batch: &TaskBatch,
    ) -> Result<(QueryOutcome, Params)> {
        let config = self.config;
        let phi = self.solve_inner(learner, batch, config.inner_steps)?;
        let model = learner.model();
        let outcome = learner.outcome(&model.forward_tasks(&phi, &batch.query_x, true), batch);
        // ∇L_i(φᵢ) for every task: the gradient of the summed query losses.
        let query_gradient = phi.grads(&outcome.loss.sum(None::<Kind>), false)?;
        // The support gradient at φ with its graph, kept for one Hessian-vector product per
        // CG iteration.
        let support = learner
            .loss()
            .per_task(&model.forward_tasks(&phi, &batch.support_x, true), &batch.support_y)
            .sum(None::<Kind>);
        let support_gradient = phi.grads(&support, true)?;
        let system = |p: &Params| -> Result<Params> {
            let product = dot(&support_gradient, p);
            let hessian_p = if product.requires_grad() {
                let hvp = Tensor::f_run_backward(&[product], phi.tensors(), true, false)?;
                phi.with_tensors(
                    hvp.into_iter()
                        .zip(p.tensors())
                        .map(|(h, p)| if h.defined() { h } else { p.zeros_like() })
                        .collect(),
                )
            } else {
                p.map(|_, t| t.zeros_like())
            };
            Ok(p.zip_map(&hessian_p, |_, p, h| p * (1.0 + config.cg_damping) + h / config.lambda)?)
        };
        let per_task = conjugate_gradient(system, &query_gradient, config.cg_steps)?;
        let gradient = per_task.map(|_, g| g.mean_dim(0, false, None::<Kind>));
        let outcome = QueryOutcome { loss: outcome.loss.detach(), accuracy: outcome.accuracy };
        Ok((outcome, gradient))
    }

    fn forward_unadapted<M: Model>(&self, learner: &AdaptiveLearner<M, Self>, x: &Tensor) -> Result<Tensor> {
        Ok(learner.model().forward(learner.params(), x, true))
    }
}

/// iMAML around any [`Model`]; see the [module documentation](self).
pub type IMaml<M> = AdaptiveLearner<M, ImplicitGradient>;

impl<M: Model> AdaptiveLearner<M, ImplicitGradient> {
    /// iMAML over `model` with meta-parameters `params` (leaf tensors) and any [`Loss`].
    pub fn new(model: M, params: Params, loss: impl Loss + 'static, config: IMamlConfig) -> Result<Self> {
        config.validate()?;
        Self::with_adaptation(model, params, loss, ImplicitGradient { config }, config.outer_lr)
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &IMamlConfig {
        &self.adaptation().config
    }
}
