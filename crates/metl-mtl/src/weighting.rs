//! [`Weighting`]: the small interface of the Gramian-based strategies — the Gramian of the
//! task gradients in, one weight per task out, on the host in `f64`.
//!
//! Most gradient methods never need the gradients themselves, only their inner products
//! `G = J Jᵀ` (`Gᵢⱼ = gᵢᵀgⱼ`), and return weights `w` so that the update is
//! `Σᵢ wᵢ gᵢ = Jᵀ w` (TorchJD's view: an aggregator is a weighting of the Gramian). MGDA,
//! PCGrad, GradVac, IMTL-G, IMTL, CAGrad, Nash-MTL, Aligned-MTL, FairGrad, UPGrad,
//! DualProj, ConFIG and GradNorm are written this way. A `Weighting` is usable on its own —
//! from a Gramian you computed, or from a Jacobian ([`Weighting::weights_of_jacobian`]) —
//! without the rest of this crate. In a training loop of your own,
//! [`crate::jacobian::gramian`] gives the Gramian of your task losses with respect to your
//! parameters, and back-propagating [`crate::jacobian::weighted_loss`] applies the weights.
//! Every `Weighting` is also a [`Strategy`] (the blanket implementation below), so
//! [`crate::MtlBackward`], [`crate::backward::backward`] and [`crate::MtlStep`] run it.
//!
//! ```
//! use metl_mtl::{
//!     linalg::Matrix,
//!     strategies::{mgda::{Mgda, MgdaConfig}, upgrad::{DualConeConfig, UpGrad}},
//!     weighting::{Context, Weighting},
//! };
//!
//! // Two task gradients g₁ = (1, 0) and g₂ = (−1, 2): G = [[1, −1], [−1, 5]].
//! let gramian = Matrix::from_rows(&[vec![1.0, -1.0], vec![-1.0, 5.0]]).unwrap();
//! let context = Context::new(vec![0.7, 0.2]); // the two loss values
//!
//! // MGDA: the min-norm point of the segment [g₁, g₂], α₁ = (G₂₂ − G₁₂) / (G₁₁ + G₂₂ − 2 G₁₂).
//! let w = Mgda::new(&MgdaConfig::default()).unwrap().weights(&gramian, &context).unwrap();
//! assert!((w[0] - 0.75).abs() < 1e-6 && (w[1] - 0.25).abs() < 1e-6, "{w:?}");
//!
//! // UPGrad: the result has a non-negative inner product with every gradient.
//! let w = UpGrad::new(&DualConeConfig::default()).unwrap().weights(&gramian, &context).unwrap();
//! let gw = gramian.mul_vec(&w);
//! assert!(gw.iter().all(|&x| x >= -1e-9), "{gw:?}");
//! ```

use crate::{
    error::{MtlError, Result},
    linalg::Matrix,
    strategy::{gramian_of, Combination, GradientSpace, Needs, StepInput, Strategy, StrategyState},
};
use tch::Tensor;

/// What a [`Weighting`] sees besides the Gramian. Rows of the Gramian, losses and the
/// returned weights follow [`Context::tasks`].
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    /// The participating tasks (indices into `0..num_tasks`), in increasing order: every
    /// task, unless some had no labelled sample in the batch.
    pub tasks: Vec<usize>,
    /// The total number of tasks `T` (strategies with per-task state size it by this).
    pub num_tasks: usize,
    /// The participating tasks' loss values.
    pub losses: Vec<f64>,
    /// The step number, from 1.
    pub step: u64,
    /// The dimension of the gradients (parameters, or the representation's entries);
    /// 0 when unknown.
    pub dim: usize,
}

impl Context {
    /// Every task takes part, with these loss values, at step 1, gradient dimension unknown.
    pub fn new(losses: Vec<f64>) -> Self {
        let n = losses.len();
        Self { tasks: (0..n).collect(), num_tasks: n, losses, step: 1, dim: 0 }
    }

    /// The same at step `step`.
    pub fn at_step(mut self, step: u64) -> Self {
        self.step = step;
        self
    }

    /// The same with gradient dimension `dim`.
    pub fn with_dim(mut self, dim: usize) -> Self {
        self.dim = dim;
        self
    }

    /// The context of a strategy step.
    pub fn of_step(input: &StepInput<'_>) -> Result<Self> {
        let dim = input.jacobian()?.size().get(1).copied().unwrap_or(0) as usize;
        Ok(Self {
            tasks: input.tasks.clone(),
            num_tasks: input.num_tasks,
            losses: input.values().to_vec(),
            step: input.step,
            dim,
        })
    }

    fn check(&self, gramian: &Matrix) -> Result<()> {
        let k = self.tasks.len();
        if gramian.n() != k || self.losses.len() != k || k == 0 {
            return Err(MtlError::Shape(format!(
                "a {0}×{0} Gramian with {1} tasks and {2} loss values: need one row, task and loss \
                 per participating task (at least one)",
                gramian.n(),
                k,
                self.losses.len()
            )));
        }
        if let Some(&t) = self.tasks.iter().find(|&&t| t >= self.num_tasks) {
            return Err(MtlError::Shape(format!("task {t} of {} tasks", self.num_tasks)));
        }
        Ok(())
    }
}

/// A weighting of the Gramian of the task gradients; see the [module docs](self).
pub trait Weighting: Send {
    /// The registry name (`upgrad`, `nash_mtl`, ...).
    fn name(&self) -> &'static str;

    /// Where the gradients are taken (default: the shared parameters).
    fn space(&self) -> GradientSpace {
        GradientSpace::Parameters
    }

    /// The weight of each participating task for Gramian `gramian` (`k × k`, rows in
    /// `context.tasks` order): checks that the Gramian, the tasks and the losses agree
    /// (an [`MtlError::Shape`] otherwise), calls [`Weighting::weigh`], and checks that it
    /// returned `k` finite weights ([`MtlError::NonFiniteUpdate`] otherwise). Call this;
    /// implement `weigh`.
    fn weights(&mut self, gramian: &Matrix, context: &Context) -> Result<Vec<f64>> {
        context.check(gramian)?;
        let weights = self.weigh(gramian, context)?;
        if weights.len() != gramian.n() || weights.iter().any(|w| !w.is_finite()) {
            return Err(MtlError::NonFiniteUpdate {
                strategy: self.name(),
                what: "weights",
                step: context.step,
            });
        }
        Ok(weights)
    }

    /// The rule itself: the weights for a Gramian and a context already checked to agree
    /// (one row, task and loss per participating task, at least one). Called by
    /// [`Weighting::weights`].
    fn weigh(&mut self, gramian: &Matrix, context: &Context) -> Result<Vec<f64>>;

    /// Clip the combined gradient to this ℓ2 norm (Nash-MTL's `max_norm`); default none.
    fn max_norm(&self) -> Option<f64> {
        None
    }

    /// The internal state to checkpoint (see [`Strategy::state`]).
    fn state(&self) -> StrategyState {
        StrategyState::default()
    }

    /// Restores a state from [`Weighting::state`] (see [`Strategy::load_state`]).
    fn load_state(&mut self, state: &StrategyState) -> Result<()> {
        state.reader(self.name()).finish()
    }

    /// The learned parameters of the weighting (see [`Strategy::parameters`]); none by
    /// default.
    fn parameters(&self) -> Vec<Tensor> {
        Vec::new()
    }

    /// The weights for the Jacobian `jacobian` (`[k, D]`, one gradient per row): its
    /// Gramian computed with one matrix product on the Jacobian's device, then
    /// [`Weighting::weights`].
    fn weights_of_jacobian(&mut self, jacobian: &Tensor, context: &Context) -> Result<Vec<f64>> {
        let gramian = gramian_of(jacobian)?;
        let context =
            Context { dim: jacobian.size().get(1).copied().unwrap_or(0) as usize, ..context.clone() };
        self.weights(&gramian, &context)
    }
}

/// Every [`Weighting`] is a [`Strategy`]: the update is `Σᵢ wᵢ gᵢ` (clipped where the
/// weighting says so).
impl<W: Weighting> Strategy for W {
    fn name(&self) -> &'static str {
        Weighting::name(self)
    }

    fn needs(&self) -> Needs {
        Needs::gradients(self.space())
    }

    fn combine(&mut self, input: &StepInput<'_>) -> Result<Combination> {
        let context = Context::of_step(input)?;
        let weights = self.weights(input.gramian()?, &context)?;
        let combination = Combination::weighted(weights);
        Ok(match Weighting::max_norm(self) {
            Some(max_norm) => combination.clipped(max_norm),
            None => combination,
        })
    }

    fn state(&self) -> StrategyState {
        Weighting::state(self)
    }

    fn load_state(&mut self, state: &StrategyState) -> Result<()> {
        Weighting::load_state(self, state)
    }

    fn parameters(&self) -> Vec<Tensor> {
        Weighting::parameters(self)
    }
}
