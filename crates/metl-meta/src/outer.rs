//! The outer loop shared by every learner: an optimizer over the meta-parameters, its
//! learning-rate schedule, the step count, and the checkpoint state of all three.

use crate::error::{MetaError, Result};
use metl_dist::Collective;
use metl_models::{
    optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig},
    Model, Params,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tch::{Kind, Tensor};

/// How the outer learning rate changes with the meta-training step `t` (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    /// `η₀` throughout.
    #[default]
    Constant,
    /// `η₀ · γ^⌊(t − 1) / every⌋` — PyTorch's `StepLR` stepped once per iteration
    /// (prototypical networks: halved every 2000 episodes).
    Step {
        /// Iterations between decays.
        every: u64,
        /// The factor γ.
        factor: f64,
    },
    /// Cosine annealing per epoch, `η_min + (η₀ − η_min)(1 + cos(π e / E)) / 2` with
    /// `e = ⌊(t − 1) / iterations_per_epoch⌋` — PyTorch's `CosineAnnealingLR` with
    /// `T_max = E` stepped once per epoch (MAML++).
    Cosine {
        /// The number of epochs E.
        epochs: u64,
        /// Iterations per epoch.
        iterations_per_epoch: u64,
        /// η_min.
        min_lr: f64,
    },
    /// Linear decay to zero, `η₀ (1 − (t − 1) / total)` (Reptile's meta step size).
    Linear {
        /// The iteration at which the rate reaches zero.
        total: u64,
    },
}

impl LrSchedule {
    /// The learning rate at step `t` (1-based) from the base rate `base`.
    pub fn lr(&self, base: f64, t: u64) -> f64 {
        let done = t.saturating_sub(1);
        match *self {
            LrSchedule::Constant => base,
            LrSchedule::Step { every, factor } => base * factor.powi((done / every) as i32),
            LrSchedule::Cosine { epochs, iterations_per_epoch, min_lr } => {
                let epoch = (done / iterations_per_epoch).min(epochs) as f64;
                min_lr + (base - min_lr) * (1.0 + (std::f64::consts::PI * epoch / epochs as f64).cos()) / 2.0
            }
            LrSchedule::Linear { total } => base * (1.0 - done as f64 / total as f64).max(0.0),
        }
    }

    /// Checks the schedule; `field` names it in errors.
    pub fn validate(&self, field: &'static str) -> Result<()> {
        let bad = |allowed: &str| Err(MetaError::invalid(field, format!("{self:?}"), allowed));
        match *self {
            LrSchedule::Constant => Ok(()),
            LrSchedule::Step { every, factor } => {
                if every == 0 || !(factor.is_finite() && factor > 0.0) {
                    return bad("step needs every >= 1 and factor > 0");
                }
                Ok(())
            }
            LrSchedule::Cosine { epochs, iterations_per_epoch, min_lr } => {
                if epochs == 0 || iterations_per_epoch == 0 || !(min_lr.is_finite() && min_lr >= 0.0) {
                    return bad("cosine needs epochs >= 1, iterations_per_epoch >= 1 and min_lr >= 0");
                }
                Ok(())
            }
            LrSchedule::Linear { total } => {
                if total == 0 {
                    return bad("linear needs total >= 1");
                }
                Ok(())
            }
        }
    }
}

/// Adds `direction` (same names and shapes as `params`) to the gradients of `params`, as the
/// gradient of the surrogate `Σ ⟨θ, direction⟩` (which also creates gradients not yet
/// defined).
pub(crate) fn add_to_gradients(params: &Params, direction: &Params) -> Result<()> {
    let surrogate = params
        .tensors()
        .iter()
        .zip(direction.tensors())
        .map(|(p, d)| (p * d.detach()).sum(Kind::Double))
        .fold(Tensor::zeros([], (Kind::Double, params.device())), |a, b| a + b);
    surrogate.f_backward()?;
    Ok(())
}

/// Checks that a learning rate is finite and positive.
pub(crate) fn check_lr(field: &'static str, lr: f64) -> Result<()> {
    if lr.is_finite() && lr > 0.0 {
        Ok(())
    } else {
        Err(MetaError::invalid(field, lr, "must be > 0"))
    }
}

/// The outer optimizer of a learner with its schedule and step count.
///
/// Gradients are accumulated into the meta-parameters' `.grad` by `backward` (or set with
/// [`OuterLoop::set_gradient`]); [`OuterLoop::step`] applies one update at the scheduled
/// rate. [`OuterLoop::state`] and [`OuterLoop::load_state`] save and restore the
/// meta-parameters, the optimizer's moments and the step count together, so that a resumed
/// run continues exactly as an uninterrupted one.
///
/// Data-parallel: with a collective of N ranks ([`OuterLoop::set_collective`]), each rank
/// accumulates the gradient of its own share of the meta-batch (the mean over its tasks);
/// [`OuterLoop::step`] replaces it by the mean over the ranks — with equal shares, the
/// gradient of the mean over the whole meta-batch — before the update, so every rank takes
/// the same step, and averages the model's buffers (batch-norm running statistics) after it.
pub struct OuterLoop {
    params: Params,
    optimizer: Box<dyn Optimizer>,
    base_lr: f64,
    schedule: LrSchedule,
    steps: u64,
    data_parallel: Option<DataParallel>,
}

/// The group an outer loop averages over, and the buffers it keeps equal.
struct DataParallel {
    collective: Arc<dyn Collective>,
    buffers: Params,
}

impl std::fmt::Debug for OuterLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OuterLoop")
            .field("base_lr", &self.base_lr)
            .field("schedule", &self.schedule)
            .field("steps", &self.steps)
            .finish()
    }
}

impl OuterLoop {
    /// Adam (PyTorch's defaults) over `params` at base rate `lr`.
    pub fn adam(params: &Params, lr: f64, schedule: LrSchedule) -> Result<Self> {
        let optimizer = Adam::new(params, AdamConfig::with_lr(lr))?;
        Ok(Self::with(params, Box::new(optimizer), lr, schedule))
    }

    /// Plain SGD over `params` at base rate `lr` (Reptile's interpolation).
    pub fn sgd(params: &Params, lr: f64, schedule: LrSchedule) -> Result<Self> {
        let optimizer = Sgd::new(params, SgdConfig { lr, ..Default::default() })?;
        Ok(Self::with(params, Box::new(optimizer), lr, schedule))
    }

    fn with(params: &Params, optimizer: Box<dyn Optimizer>, base_lr: f64, schedule: LrSchedule) -> Self {
        Self { params: params.shallow_clone(), optimizer, base_lr, schedule, steps: 0, data_parallel: None }
    }

    /// Makes every [`OuterLoop::step`] average the gradients over the ranks of `collective`
    /// first, and average `buffers` (the model's, sharing storage with it; may be empty)
    /// after. With a group of one rank it changes nothing.
    pub fn set_collective(&mut self, collective: Arc<dyn Collective>, buffers: Params) {
        self.data_parallel = (collective.world_size() > 1).then_some(DataParallel { collective, buffers });
    }

    /// The collective set by [`OuterLoop::set_collective`], if it has several ranks.
    pub fn collective(&self) -> Option<&dyn Collective> {
        self.data_parallel.as_ref().map(|d| d.collective.as_ref())
    }

    /// Averages the accumulated gradients over the ranks. Every rank must have gradients
    /// for the same parameters (a parameter without one on some rank only is an error,
    /// as it would make the ranks' updates differ).
    fn average_gradients(&self, dp: &DataParallel) -> Result<()> {
        let grads: Vec<Tensor> = self.params.tensors().iter().map(Tensor::grad).collect();
        // How many ranks have each gradient: all of them or none (one small collective).
        let mut defined: Vec<f64> = grads.iter().map(|g| f64::from(u8::from(g.defined()))).collect();
        let world = dp.collective.world_size() as f64;
        dp.collective.all_reduce_f64(&mut defined, metl_dist::ReduceOp::Sum, tch::Device::Cpu)?;
        if let Some(i) = defined.iter().position(|&n| n != 0.0 && n != world) {
            return Err(metl_dist::DistError::Mismatch {
                what: format!("the gradient of meta-parameter `{}`", self.params.names()[i]),
                detail: format!(
                    "defined on {} of {world} ranks (a rank's tasks did not reach it)",
                    defined[i]
                ),
            }
            .into());
        }
        dp.collective.all_reduce_mean(&grads)?;
        Ok(())
    }

    /// The parameters this loop updates.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The number of updates applied.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The learning rate the next step will use.
    pub fn lr(&self) -> f64 {
        self.schedule.lr(self.base_lr, self.steps + 1)
    }

    /// Zeroes the gradients of the parameters.
    pub fn zero_grad(&mut self) {
        self.optimizer.zero_grad();
    }

    /// Makes `direction` (same names and shapes as the parameters) the gradient, replacing
    /// any accumulated one: the gradient of the surrogate `Σ ⟨θ, direction⟩`.
    pub fn set_gradient(&mut self, direction: &Params) -> Result<()> {
        self.params.check_same_names(direction)?;
        self.optimizer.zero_grad();
        add_to_gradients(&self.params, direction)
    }

    /// Applies one update at the scheduled rate; returns the rate used.
    pub fn step(&mut self) -> Result<f64> {
        self.step_with(true)
    }

    /// [`OuterLoop::step`] for a gradient that is already the same on every rank (computed
    /// from quantities all-gathered over the ranks, as a task combiner's direction): the
    /// gradients are not averaged; the buffers are, after the update.
    pub fn step_with_agreed_gradient(&mut self) -> Result<f64> {
        self.step_with(false)
    }

    fn step_with(&mut self, average: bool) -> Result<f64> {
        let lr = self.lr();
        if let Some(dp) = self.data_parallel.as_ref().filter(|_| average) {
            self.average_gradients(dp)?;
        }
        self.optimizer.set_lr(lr);
        self.optimizer.step()?;
        if let Some(dp) = &self.data_parallel {
            dp.collective.all_reduce_mean_floating(dp.buffers.tensors())?;
        }
        self.steps += 1;
        Ok(lr)
    }

    /// The checkpoint state: the parameters under their names, the optimizer's state under
    /// `optimizer.*`, and the step count as `outer.steps`.
    pub fn state(&self) -> Params {
        let steps = Tensor::from_slice(&[self.steps as i64]).to_device(self.params.device());
        let counters = Params::from_named(vec![("outer.steps".into(), steps)]).expect("one name");
        self.params
            .detach()
            .merge(&self.optimizer.state().prefixed("optimizer"))
            .and_then(|p| p.merge(&counters))
            .expect("parameter names do not start with `optimizer.` or `outer.`")
    }

    /// [`OuterLoop::state`] with `model`'s buffers (batch-norm running statistics) added:
    /// the checkpoint state of a learner.
    pub fn state_with_buffers<M: Model + ?Sized>(&self, model: &M) -> Params {
        self.state()
            .merge(&model.buffers().detach())
            .expect("buffer names differ from parameter and optimizer names")
    }

    /// Restores a state written by [`OuterLoop::state_with_buffers`], buffers included.
    pub fn load_state_with_buffers<M: Model + ?Sized>(&mut self, state: &Params, model: &M) -> Result<()> {
        self.load_state(state)?;
        Ok(model.load_buffers(state)?)
    }

    /// Restores a state written by [`OuterLoop::state`] (in place, checking names and shapes).
    pub fn load_state(&mut self, state: &Params) -> Result<()> {
        let steps = state.f_get("outer.steps")?.int64_value(&[0]);
        if steps < 0 {
            return Err(MetaError::invalid("outer.steps", steps, "must be >= 0"));
        }
        self.params.copy_from(state)?;
        self.optimizer.load_state(&state.sub("optimizer"), steps as u64)?;
        self.steps = steps as u64;
        Ok(())
    }
}

/// The [`MetaLearner`](crate::MetaLearner) methods that a learner's [`OuterLoop`] (its field
/// `outer`, over everything it learns) and its model (the field named) answer: the step
/// count, the meta-parameters, the checkpoint state with the model's buffers, the outer
/// rate and data-parallel training. Expands inside `impl MetaLearner for ...`.
macro_rules! outer_loop_methods {
    ($model:ident) => {
        fn steps_taken(&self) -> u64 {
            self.outer.steps()
        }

        fn meta_parameters(&self) -> metl_models::Params {
            self.outer.params().shallow_clone()
        }

        fn state(&self) -> metl_models::Params {
            self.outer.state_with_buffers(&self.$model)
        }

        fn load_state(&mut self, state: &metl_models::Params) -> $crate::error::Result<()> {
            self.outer.load_state_with_buffers(state, &self.$model)
        }

        fn outer_lr(&self) -> f64 {
            self.outer.lr()
        }

        fn set_collective(
            &mut self,
            collective: std::sync::Arc<dyn metl_dist::Collective>,
        ) -> $crate::error::Result<()> {
            self.outer.set_collective(collective, metl_models::Model::buffers(&self.$model));
            Ok(())
        }
    };
}
pub(crate) use outer_loop_methods;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_their_pytorch_counterparts() {
        let step = LrSchedule::Step { every: 2000, factor: 0.5 };
        assert_eq!(step.lr(1e-3, 1), 1e-3);
        assert_eq!(step.lr(1e-3, 2000), 1e-3);
        assert_eq!(step.lr(1e-3, 2001), 5e-4);
        let cosine = LrSchedule::Cosine { epochs: 100, iterations_per_epoch: 500, min_lr: 1e-5 };
        assert_eq!(cosine.lr(1e-3, 500), 1e-3);
        let mid = cosine.lr(1e-3, 50 * 500 + 1);
        assert!((mid - (1e-5 + (1e-3 - 1e-5) / 2.0)).abs() < 1e-15);
        assert!((cosine.lr(1e-3, 100 * 500 + 1) - 1e-5).abs() < 1e-15);
        let linear = LrSchedule::Linear { total: 4 };
        assert_eq!([1, 2, 3, 4, 5].map(|t| linear.lr(1.0, t)), [1.0, 0.75, 0.5, 0.25, 0.0]);
    }

    #[test]
    fn bad_schedules_are_named() {
        let err = LrSchedule::Step { every: 0, factor: 0.5 }.validate("protonet.schedule").unwrap_err();
        assert!(err.to_string().starts_with("protonet.schedule = Step"), "{err}");
        assert!(check_lr("meta.outer_lr", -1.0).unwrap_err().to_string().contains("must be > 0"));
    }

    #[test]
    fn set_gradient_then_sgd_moves_by_lr_times_direction() {
        let w = Tensor::from_slice(&[1.0f64, 2.0]).set_requires_grad(true);
        let params = Params::from_named(vec![("w".into(), w)]).unwrap();
        let mut outer = OuterLoop::sgd(&params, 0.5, LrSchedule::Constant).unwrap();
        let direction = params.map(|_, _| Tensor::from_slice(&[4.0f64, -2.0]));
        outer.set_gradient(&direction).unwrap();
        outer.step().unwrap();
        assert_eq!(Vec::<f64>::try_from(params["w"].detach()).unwrap(), vec![-1.0, 3.0]);
        let state = outer.state();
        assert_eq!(state["outer.steps"].int64_value(&[0]), 1);
        assert!(state.get("optimizer.momentum_buffer.w").is_some());
    }
}
