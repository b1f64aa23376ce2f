//! A learn2learn-style handle on fast weights: `clone` θ, `adapt` on a loss you computed,
//! run the model on the adapted weights, back-propagate your own query loss into θ.
//!
//! ```
//! use metl_data::sinusoid::{SinusoidConfig, SinusoidTasks};
//! use metl_meta::maml::{Maml, MamlConfig};
//! use metl_models::{mlp::MlpConfig, TaskLoss};
//! use tch::{nn, nn::OptimizerConfig, Device, Kind, Reduction};
//!
//! let vs = nn::VarStore::new(Device::Cpu);
//! let (mlp, theta) = MlpConfig::new([1, 40, 40, 1]).init(&vs.root()).unwrap();
//! let maml = Maml::new(mlp, theta, &vs, TaskLoss::Mse, MamlConfig::default()).unwrap();
//! let mut opt = nn::Adam::default().build(&vs, 1e-3).unwrap(); // your outer optimizer
//! let mut tasks = SinusoidTasks::new(SinusoidConfig::default(), 0);
//! let batch = tasks.sample_batch(4, 10, 10, Device::Cpu).unwrap();
//!
//! opt.zero_grad();
//! for i in 0..4 {
//!     let (sx, sy) = (batch.support_x.get(i), batch.support_y.get(i));
//!     let (qx, qy) = (batch.query_x.get(i), batch.query_y.get(i));
//!     let mut learner = maml.learner(); // fast weights φ = θ, differentiable
//!     let support = learner.forward(&sx, true).unwrap().mse_loss(&sy, Reduction::Mean);
//!     learner.adapt(&support).unwrap(); // φ ← φ − α ∇L(φ), second order
//!     let query = learner.forward(&qx, true).unwrap().mse_loss(&qy, Reduction::Mean);
//!     (query / 4.0).backward(); // the meta-gradient flows into θ
//! }
//! opt.step();
//! ```

use super::MamlFamily;
use crate::{
    error::Result,
    inner::{InnerLoop, InnerOptimizer},
    MetaError,
};
use metl_models::{Model, Params};
use tch::Tensor;

/// Fast weights of one task, starting at θ; see the [module documentation](self).
pub struct Learner<'a, M: Model> {
    family: &'a MamlFamily<M>,
    fast: Params,
    steps: usize,
    create_graph: bool,
}

impl<M: Model> std::fmt::Debug for Learner<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Learner")
            .field("steps", &self.steps)
            .field("second_order", &self.create_graph)
            .finish()
    }
}

impl<M: Model> MamlFamily<M> {
    /// A learn2learn-style clone of the meta-parameters: fast weights φ = θ (the adapted
    /// ones; frozen ones stay θ), differentiable with respect to θ and the learned inner
    /// rates. Adaptation steps are second order unless the family is first order at its next
    /// meta-iteration (`first_order`, or MAML++'s first iterations).
    pub fn learner(&self) -> Learner<'_, M> {
        Learner {
            family: self,
            fast: self.adapted.shallow_clone(),
            steps: 0,
            create_graph: self.second_order_at(self.outer().steps() + 1),
        }
    }
}

impl<M: Model> Learner<'_, M> {
    /// The model on the current fast weights (and the frozen weights) for a batch `x` of one
    /// task, `[B, ...]`, at the current inner step.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let params = self.params()?;
        let model = self.family.model();
        Ok(if self.family.settings().per_step_forward {
            let step = self.steps.min(self.family.settings().inner_steps.saturating_sub(1));
            model.forward_at_step(&params, x, train, step)
        } else {
            model.forward(&params, x, train)
        })
    }

    /// The family's own loss of the model on the current fast weights, for one task's
    /// inputs `x` `[B, ...]` and targets `y`: `L(f(x; φ), y)` as the built-in inner loop
    /// computes it (your closure, or the built-in [`metl_models::TaskLoss`]).
    pub fn loss(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        Ok(self.family.loss.loss(&self.forward(x, true)?, y))
    }

    /// One inner step on `loss` (a scalar computed from [`Learner::forward`]): `φ ← φ − αʲ ⊙
    /// ∇_φ loss` with the family's inner learning rate(s) for step `j`, keeping the graph
    /// of the gradient for second-order meta-gradients.
    pub fn adapt(&mut self, loss: &Tensor) -> Result<()> {
        if self.family.settings().inner_optimizer != InnerOptimizer::Sgd {
            return Err(MetaError::invalid(
                "inner_optimizer",
                format!("{:?}", self.family.settings().inner_optimizer),
                "Learner::adapt takes plain SGD steps",
            ));
        }
        let grads = self.fast.grads(loss, self.create_graph)?;
        let inner = InnerLoop::sgd(self.family.inner_lr(self.family.learned_lrs()), self.create_graph);
        self.fast = inner.sgd_step(&self.fast, &grads, self.steps)?;
        self.steps += 1;
        Ok(())
    }

    /// The adapted weights φ merged with the frozen ones: every parameter of the model.
    pub fn params(&self) -> Result<Params> {
        Ok(self.fast.merge(self.family.frozen())?)
    }

    /// The inner steps taken so far.
    pub fn steps(&self) -> usize {
        self.steps
    }
}
