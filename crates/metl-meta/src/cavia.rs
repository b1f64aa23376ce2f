//! CAVIA, fast context adaptation via meta-learning (Zintgraf, Shiarlis, Kurin, Hofmann &
//! Whiteson, ICML 2019, "Fast Context Adaptation via Meta-Learning").
//!
//! The network's parameters θ are shared by all tasks and only meta-learned; what adapts
//! to a task is a small vector of *context parameters* φ ∈ ℝᶜ, reset to zero for every task
//! and given to the network with its input, `f(x; θ, φ) = f_θ([x, φ])`:
//!
//! ```text
//! φᵢ⁽⁰⁾ = 0,   φᵢ⁽ʲ⁺¹⁾ = φᵢ⁽ʲ⁾ − α ∇_φ L(f_θ([Xˢᵢ, φᵢ⁽ʲ⁾]), Yˢᵢ),
//! min_θ (1/B) Σᵢ L(f_θ([Xᵠᵢ, φᵢ⁽ᵏ⁾(θ)]), Yᵠᵢ).
//! ```
//!
//! The meta-gradient differentiates through the inner steps (second order: the inner
//! gradients depend on θ), or with `first_order` treats them as constants. Because φ is
//! not a meta-parameter, the inner loop touches `c` numbers per task instead of the whole
//! network, and the outer loop never sees φ: the checkpoint holds θ only.
//!
//! **Where the context enters.** As Zintgraf et al. do for regression, φ is concatenated to
//! the input: a vector input `[F]` becomes `[F + c]`, so the model must take `F + c` inputs
//! (e.g. an MLP `[1 + 5, 40, 40, 1]` for sinusoids with 5 context parameters). An image
//! `[C, H, W]` gets `c` constant channels, `[C + c, H, W]` (the model takes `C + c`
//! channels): a first-layer bias per task that varies only at the zero-padded borders, a
//! weaker conditioning than the FiLM layers Zintgraf et al. use in their CNN, which metl
//! does not implement. The context is zero at the start of every task's adaptation, in
//! training and evaluation alike, so nothing carries over from one task to the next.
//!
//! The defaults are the paper's sinusoid settings: 5 context parameters, one inner step of
//! rate 1, Adam 1e-3, second order (its code also clips each task's meta-gradient to ±10;
//! metl does not).

use crate::{
    adaptive::{Adaptation, AdaptiveLearner},
    error::{MetaError, Result},
    inner::{InnerLoop, InnerLr},
    learner::QueryOutcome,
    outer::check_lr,
};
use metl_data::TaskBatch;
use metl_models::{Loss, Model, Params};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Hyper-parameters of [`Cavia`]; the defaults are Zintgraf et al.'s sinusoid settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaviaConfig {
    /// The number `c` >= 1 of context parameters (default 5).
    pub context_params: usize,
    /// Inner SGD rate α on the context (default 1).
    pub inner_lr: f64,
    /// Inner steps during meta-training (default 1).
    pub inner_steps: usize,
    /// First-order meta-gradients: the inner gradients as constants (default false).
    pub first_order: bool,
    /// Outer Adam learning rate (default 1e-3).
    pub outer_lr: f64,
}

impl Default for CaviaConfig {
    fn default() -> Self {
        Self { context_params: 5, inner_lr: 1.0, inner_steps: 1, first_order: false, outer_lr: 1e-3 }
    }
}

impl CaviaConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.context_params == 0 {
            return Err(MetaError::invalid("cavia.context_params", 0, "must be >= 1"));
        }
        check_lr("cavia.inner_lr", self.inner_lr)?;
        check_lr("cavia.outer_lr", self.outer_lr)?;
        if self.inner_steps == 0 {
            return Err(MetaError::invalid("cavia.inner_steps", 0, "must be >= 1"));
        }
        Ok(())
    }

    /// The per-example input shape the model receives for data of `input_shape`: the
    /// first dimension (a vector's features, an image's channels) grows by the context.
    pub fn model_input_shape(&self, input_shape: &[i64]) -> Vec<i64> {
        let mut shape = input_shape.to_vec();
        if let Some(first) = shape.first_mut() {
            *first += self.context_params as i64;
        }
        shape
    }
}

/// The name of the context in the inner loop's [`Params`].
const CONTEXT: &str = "context";

/// CAVIA's [`Adaptation`]: context parameters adapted per task, θ meta-learned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContextAdaptation {
    /// The hyper-parameters.
    pub config: CaviaConfig,
}

/// Task-stacked inputs `[T, B, F, ...]` with every task's context `[T, c]` appended to the
/// first feature dimension: `[T, B, F + c, ...]` (constant over the batch and, for images,
/// over the pixels). Errors for inputs without a feature dimension.
pub fn with_context(x: &Tensor, context: &Tensor) -> Result<Tensor> {
    let size = x.size();
    if size.len() < 3 {
        return Err(MetaError::InvalidBatch(format!(
            "CAVIA appends its context to the inputs' first feature dimension, but the inputs are {size:?} \
             ([T, B] without one; give scalar inputs as [T, B, 1])"
        )));
    }
    let mut view = vec![size[0], 1, context.size()[1]];
    view.resize(size.len(), 1);
    let mut expanded = size.clone();
    expanded[2] = context.size()[1];
    let context = context.to_kind(x.kind()).view(view.as_slice()).expand(expanded.as_slice(), false);
    Ok(Tensor::cat(&[x.shallow_clone(), context], 2))
}

impl ContextAdaptation {
    /// The task-stacked contexts `[T, c]` after `steps` inner steps from zero on the
    /// support sets, with θ laid out for the tasks as `theta` (a differentiable view of θ,
    /// or a detached copy); `create_graph` keeps the inner gradients differentiable.
    pub fn adapt<M: Model>(
        &self,
        learner: &AdaptiveLearner<M, Self>,
        theta: &Params,
        batch: &TaskBatch,
        steps: usize,
        create_graph: bool,
    ) -> Result<Tensor> {
        let zeros = Tensor::zeros(
            [batch.num_tasks() as i64, self.config.context_params as i64],
            (theta.kind(), theta.device()),
        );
        let start = Params::from_named(vec![(CONTEXT.into(), zeros.set_requires_grad(true))])?;
        let inner = InnerLoop::sgd(InnerLr::Fixed(self.config.inner_lr), create_graph);
        let adapted = inner.run(
            start,
            steps,
            |phi, _| {
                let x = with_context(&batch.support_x, &phi[CONTEXT])?;
                let prediction = learner.model().forward_tasks(theta, &x, true);
                Ok(learner.loss().per_task(&prediction, &batch.support_y).sum(None::<Kind>))
            },
            |_, _| Ok(()),
        )?;
        Ok(adapted[CONTEXT].shallow_clone())
    }
}

impl Adaptation for ContextAdaptation {
    fn predict<M: Model>(
        &self,
        learner: &AdaptiveLearner<M, Self>,
        batch: &TaskBatch,
        steps: usize,
    ) -> Result<Tensor> {
        let theta = learner.params().detach().expand_tasks(batch.num_tasks());
        let context = self.adapt(learner, &theta, batch, steps, false)?.detach();
        let x = with_context(&batch.query_x, &context)?;
        Ok(tch::no_grad(|| learner.model().forward_tasks(&theta, &x, true)))
    }

    fn meta_gradient<M: Model>(
        &self,
        learner: &AdaptiveLearner<M, Self>,
        batch: &TaskBatch,
    ) -> Result<(QueryOutcome, Params)> {
        let theta = learner.params().expand_tasks(batch.num_tasks());
        let second_order = !self.config.first_order;
        let context = self.adapt(learner, &theta, batch, self.config.inner_steps, second_order)?;
        let prediction =
            learner.model().forward_tasks(&theta, &with_context(&batch.query_x, &context)?, true);
        let outcome = learner.outcome(&prediction, batch);
        let gradient = learner.params().grads(&outcome.loss.mean(None::<Kind>), false)?;
        let outcome = QueryOutcome { loss: outcome.loss.detach(), accuracy: outcome.accuracy };
        Ok((outcome, gradient))
    }

    fn forward_unadapted<M: Model>(&self, learner: &AdaptiveLearner<M, Self>, x: &Tensor) -> Result<Tensor> {
        let params = learner.params();
        let zeros = Tensor::zeros([1, self.config.context_params as i64], (params.kind(), params.device()));
        let x = with_context(&x.unsqueeze(0), &zeros)?;
        Ok(learner.model().forward_tasks(&params.expand_tasks(1), &x, true).squeeze_dim(0))
    }
}

/// CAVIA around any [`Model`] that takes its inputs with the context appended (see the
/// [module documentation](self)).
pub type Cavia<M> = AdaptiveLearner<M, ContextAdaptation>;

impl<M: Model> AdaptiveLearner<M, ContextAdaptation> {
    /// CAVIA over `model` with meta-parameters `params` (leaf tensors) and any [`Loss`].
    pub fn new(model: M, params: Params, loss: impl Loss + 'static, config: CaviaConfig) -> Result<Self> {
        config.validate()?;
        Self::with_adaptation(model, params, loss, ContextAdaptation { config }, config.outer_lr)
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &CaviaConfig {
        &self.adaptation().config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn images_get_the_context_as_constant_channels() {
        let x = Tensor::rand([2, 3, 1, 4, 4], (Kind::Float, Device::Cpu));
        let context = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([2, 2]);
        let out = with_context(&x, &context).unwrap();
        assert_eq!(out.size(), [2, 3, 3, 4, 4]);
        assert!(out.narrow(2, 0, 1).equal(&x));
        // Task 1, any example, channel 2 (its second context parameter), every pixel: 4.
        assert!(out.get(1).select(1, 2).eq(4.0).all().int64_value(&[]) != 0);
        let vectors = with_context(&Tensor::zeros([2, 3, 1], (Kind::Float, Device::Cpu)), &context).unwrap();
        assert_eq!(Vec::<f32>::try_from(vectors.get(0).get(2)).unwrap(), vec![0.0, 1.0, 2.0]);
    }
}
