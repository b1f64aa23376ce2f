//! The one interface of every multi-task strategy: [`Strategy`].
//!
//! A strategy declares what it needs ([`Needs`]): only the task losses, or also the
//! per-task gradients — with respect to the shared parameters or to the shared
//! representation ([`GradientSpace`]). [`crate::MtlBackward`] computes exactly that, hands
//! it over as a [`StepInput`], and applies the [`Combination`] the strategy returns, leaving
//! the combined gradient in the `.grad` of the parameters for any optimizer to step.
//!
//! Most gradient methods are a *weighting of the Gramian* `G = J Jᵀ` of the task gradients
//! (as TorchJD puts it: an aggregator is a weighting of the Gramian): they look only at
//! [`StepInput::gramian`] and return [`Update::Weighted`], so the `T × P` Jacobian is used
//! once, for one matrix product, and the update is `Σᵢ wᵢ gᵢ`.

pub use crate::checkpoint::{StrategyState, StrategyStateHost};
use crate::{
    error::{MtlError, Result},
    linalg::Matrix,
};
use metl_dist::{Collective, Local};
use metl_models::Params;
use serde::{Deserialize, Serialize};
use std::cell::OnceCell;
use tch::{Kind, Tensor};

/// Where per-task gradients are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GradientSpace {
    /// With respect to the shared parameters θ: `gᵢ = ∇_θ Lᵢ` (flattened, `P` entries).
    #[default]
    Parameters,
    /// With respect to the shared representation `z = f_θ(x)` of the batch: `gᵢ = ∇_z Lᵢ`
    /// (flattened, `B·d` entries). One backward pass through the encoder instead of `T`
    /// (the "upper bound" of MGDA-UB, Sener & Koltun 2018).
    Representation,
}

/// What a strategy needs computed before [`Strategy::combine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// Per-task gradients and where; `None` for strategies that only look at the losses.
    pub gradients: Option<GradientSpace>,
    /// Independent gradient samples per step (MoDo and SDMGrad need 3: the batch is split
    /// into that many disjoint parts).
    pub samples: usize,
    /// The losses after the optimizer step, on the same batch (FAMO's extra forward),
    /// passed to [`Strategy::after_step`].
    pub losses_after_step: bool,
    /// A validation batch and the model ([`Bilevel`]), for bilevel methods (Auto-Lambda).
    pub validation: bool,
}

impl Needs {
    /// Only the losses.
    pub const LOSSES: Needs =
        Needs { gradients: None, samples: 1, losses_after_step: false, validation: false };

    /// Per-task gradients in `space`.
    pub fn gradients(space: GradientSpace) -> Needs {
        Needs { gradients: Some(space), ..Needs::LOSSES }
    }
}

/// How the combined update is to be applied.
#[derive(Debug)]
pub enum Update {
    /// Back-propagate this scalar through the whole model (loss-based strategies: every
    /// parameter, task-specific ones included, gets the gradient of this loss).
    Loss(Tensor),
    /// The shared gradient is `Σᵢ wᵢ gᵢ` with the weights of [`Combination::weights`] and
    /// the gradients of sample 0; task-specific parameters get their own task's plain
    /// gradient.
    Weighted,
    /// The shared gradient is this vector, in the gradient space (`[P]` for parameters,
    /// `[B·d]` or the representation's shape for the representation); task-specific
    /// parameters get their own task's plain gradient.
    Direction(Tensor),
}

/// What a strategy returns for one step.
#[derive(Debug)]
pub struct Combination {
    /// How to apply it.
    pub update: Update,
    /// The weight of each participating task (in [`StepInput::tasks`] order), for logging;
    /// for [`Update::Weighted`] the weights applied.
    pub weights: Vec<f64>,
    /// Clip the shared gradient to this ℓ2 norm afterwards (Nash-MTL's and FAMO's
    /// `max_norm`).
    pub max_norm: Option<f64>,
}

impl Combination {
    /// `Σᵢ wᵢ gᵢ`.
    pub fn weighted(weights: Vec<f64>) -> Self {
        Self { update: Update::Weighted, weights, max_norm: None }
    }

    /// Back-propagate `loss`; `weights` are reported.
    pub fn loss(loss: Tensor, weights: Vec<f64>) -> Self {
        Self { update: Update::Loss(loss), weights, max_norm: None }
    }

    /// The shared gradient is `direction`; `weights` are reported.
    pub fn direction(direction: Tensor, weights: Vec<f64>) -> Self {
        Self { update: Update::Direction(direction), weights, max_norm: None }
    }

    /// The same, with the shared gradient clipped to ℓ2 norm `max_norm` (none if ≤ 0).
    pub fn clipped(mut self, max_norm: f64) -> Self {
        self.max_norm = (max_norm > 0.0).then_some(max_norm);
        self
    }
}

/// Access to the model on a validation batch, for bilevel strategies (Auto-Lambda).
pub trait Bilevel {
    /// The validation loss of every task (`T` entries, `None` for tasks without labelled
    /// samples) at parameters `params` (all of the model's, by name).
    fn validation_losses(&self, params: &Params) -> Result<Vec<Option<Tensor>>>;

    /// The learning rate of the model's optimizer (the inner step size).
    fn inner_lr(&self) -> f64;
}

/// Everything a strategy sees in one step. Rows, weights and losses follow
/// [`StepInput::tasks`]: the tasks with labelled samples in this batch.
///
/// In a data-parallel step (see [`crate::MtlStep::set_collective`]) everything here is that
/// of the whole batch, the same on every rank: the tasks, the loss values, the Jacobians,
/// the task-specific gradients, the representation. Two things are this rank's own: the
/// gradient of [`StepInput::losses`] with respect to the model's parameters is this rank's
/// share of the whole batch's (the step sums the shares after the update is applied), and
/// so is that of the losses [`Bilevel::validation_losses`] returns — a strategy that
/// computes numbers from them sums them over the ranks with [`StepInput::collective`].
pub struct StepInput<'a> {
    /// The step number, starting at 1.
    pub step: u64,
    /// The participating tasks (indices into `0..T`), in increasing order.
    pub tasks: Vec<usize>,
    /// The total number of tasks `T`.
    pub num_tasks: usize,
    /// Their differentiable losses (sample 0); the graph is kept until the update is applied.
    pub losses: &'a [Tensor],
    /// Their values, per sample: `loss_values[s][i]`.
    pub loss_values: Vec<Vec<f64>>,
    /// Per-sample Jacobians `[k, D]` (row `i` = task `tasks[i]`'s gradient in the requested
    /// space); empty when no gradients were requested.
    pub jacobians: Vec<Tensor>,
    /// The task-specific parameters' plain gradients, one [`Params`] per participating task
    /// (averaged over samples); empty when no gradients were requested.
    pub specific_grads: &'a [Params],
    /// The shared parameters θ (as the update applies to them).
    pub shared: &'a Params,
    /// The task-specific parameters of every task (`T` entries, possibly empty sets).
    pub specific: &'a [Params],
    /// The detached shared representation of sample 0 (representation space only).
    pub representation: Option<&'a Tensor>,
    /// The model on a validation batch, when the strategy asked for it.
    pub bilevel: Option<&'a dyn Bilevel>,
    /// The cache of [`StepInput::gramian`], filled on first use.
    pub(crate) gramian: OnceCell<Matrix>,
    /// The ranks the step runs on ([`Local`] outside a data-parallel step).
    pub(crate) collective: &'a dyn Collective,
}

impl<'a> StepInput<'a> {
    /// The input of step `step` (from 1) for every task `0..k` of the `k` differentiable
    /// `losses`, with parameters `shared` and nothing else: no gradients, no task-specific
    /// parameters, no representation, no validation batch (add them with the `with_*`
    /// methods). Loss-based strategies need nothing more; gradient-based ones need
    /// [`StepInput::with_jacobian`]. The loss values are read from `losses` (one copy to
    /// the host); a non-scalar or non-finite loss is an error.
    ///
    /// ```
    /// use metl_models::Params;
    /// use metl_mtl::{strategies::pcgrad::{PcGrad, PcGradConfig}, Setup, StepInput, Strategy};
    /// use tch::{nn, Device, Kind, Tensor};
    ///
    /// let w = Tensor::zeros([2], (Kind::Double, Device::Cpu)).set_requires_grad(true);
    /// let shared = Params::from_named(vec![("w".into(), w.shallow_clone())]).unwrap();
    /// let (g1, g2) = (Tensor::from_slice(&[1.0, 0.0]), Tensor::from_slice(&[-1.0, 2.0]));
    /// let losses = [(&w * &g1).sum(Kind::Double), (&w * &g2).sum(Kind::Double)];
    /// // Their gradients g₁ = (1, 0) and g₂ = (−1, 2) as the Jacobian's rows (or
    /// // `metl_mtl::jacobian::jacobian(&losses, &shared)`).
    /// let jacobian = Tensor::stack(&[g1, g2], 0);
    /// let input = StepInput::new(1, &losses, &shared).unwrap().with_jacobian(jacobian);
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let mut pcgrad = PcGrad::new(&PcGradConfig::default(), &Setup { num_tasks: 2, path: vs.root(), seed: 0 }).unwrap();
    /// // g₁·g₂ < 0: each loses its component along the other, g₁ + g₂/5 and g₂ + g₁.
    /// let combination = Strategy::combine(&mut pcgrad, &input).unwrap();
    /// let w = &combination.weights;
    /// assert!((w[0] - 2.0).abs() < 1e-12 && (w[1] - 1.2).abs() < 1e-12, "{w:?}");
    /// ```
    pub fn new(step: u64, losses: &'a [Tensor], shared: &'a Params) -> Result<Self> {
        if losses.is_empty() {
            return Err(MtlError::NoTasks);
        }
        let mut values = Vec::with_capacity(losses.len());
        for (task, loss) in losses.iter().enumerate() {
            if loss.numel() != 1 {
                return Err(MtlError::Shape(format!("loss {task} is not a scalar: shape {:?}", loss.size())));
            }
            let value = loss.f_double_value(&[])?;
            if !value.is_finite() {
                return Err(MtlError::NonFiniteLoss { task, step, value });
            }
            values.push(value);
        }
        Ok(Self {
            step,
            tasks: (0..losses.len()).collect(),
            num_tasks: losses.len(),
            losses,
            loss_values: vec![values],
            jacobians: Vec::new(),
            specific_grads: &[],
            shared,
            specific: &[],
            representation: None,
            bilevel: None,
            gramian: OnceCell::new(),
            collective: &Local,
        })
    }

    /// The same with the Jacobian `[k, D]` of the losses (row `i`: task `tasks[i]`'s
    /// gradient, flattened, in the strategy's [`GradientSpace`]), e.g. from
    /// [`crate::jacobian::jacobian`]. For strategies that need several independent samples
    /// ([`Needs::samples`]), [`StepInput::with_samples`].
    pub fn with_jacobian(self, jacobian: Tensor) -> Self {
        self.with_samples(vec![jacobian])
    }

    /// The same with one Jacobian per independent gradient sample (MoDo and SDMGrad need 3,
    /// the losses and their values being those of sample 0).
    pub fn with_samples(mut self, jacobians: Vec<Tensor>) -> Self {
        self.loss_values.resize(jacobians.len().max(1), self.loss_values[0].clone());
        self.jacobians = jacobians;
        self.gramian = OnceCell::new();
        self
    }

    /// The same when the losses are those of tasks `tasks` (increasing indices into
    /// `0..num_tasks`, one per loss) out of `num_tasks`: the others sit this step out.
    pub fn with_tasks(mut self, tasks: Vec<usize>, num_tasks: usize) -> Result<Self> {
        let increasing = tasks.windows(2).all(|w| w[0] < w[1]);
        if tasks.len() != self.losses.len() || !increasing || tasks.last().is_some_and(|&t| t >= num_tasks) {
            return Err(MtlError::Shape(format!(
                "tasks {tasks:?} of {num_tasks} for {} losses: need one increasing task index below \
                 {num_tasks} per loss",
                self.losses.len()
            )));
        }
        self.tasks = tasks;
        self.num_tasks = num_tasks;
        Ok(self)
    }

    /// The same with each task's own parameters `specific` (`T` entries) and the
    /// participating tasks' plain gradients of them `specific_grads` (`k` entries).
    pub fn with_specific(mut self, specific: &'a [Params], specific_grads: &'a [Params]) -> Self {
        self.specific = specific;
        self.specific_grads = specific_grads;
        self
    }

    /// The same with the detached shared representation (representation space).
    pub fn with_representation(mut self, representation: &'a Tensor) -> Self {
        self.representation = Some(representation);
        self
    }

    /// The same with access to the model on a validation batch (bilevel strategies).
    pub fn with_bilevel(mut self, bilevel: &'a dyn Bilevel) -> Self {
        self.bilevel = Some(bilevel);
        self
    }
}

impl StepInput<'_> {
    /// The process group of the step: [`Local`] (one process) unless the step is
    /// data-parallel. Everything in the input is already that of the whole batch; only
    /// quantities a strategy derives from the [`Bilevel`] losses (rank-local shards of the
    /// validation batch) need a reduction over the ranks.
    pub fn collective(&self) -> &dyn Collective {
        self.collective
    }

    /// The number of participating tasks `k`.
    pub fn k(&self) -> usize {
        self.tasks.len()
    }

    /// The loss values of sample 0.
    pub fn values(&self) -> &[f64] {
        &self.loss_values[0]
    }

    /// The Jacobian of sample 0.
    pub fn jacobian(&self) -> Result<&Tensor> {
        self.jacobians.first().ok_or_else(|| MtlError::Shape("no gradients were computed".into()))
    }

    /// The Gramian `G = J Jᵀ` of sample 0 (`Gᵢⱼ = gᵢᵀgⱼ`), computed on the gradients' device
    /// with one matrix product, then copied to the host in `f64`; cached.
    pub fn gramian(&self) -> Result<&Matrix> {
        if let Some(g) = self.gramian.get() {
            return Ok(g);
        }
        let g = gramian_of(self.jacobian()?)?;
        Ok(self.gramian.get_or_init(|| g))
    }

    /// The cross-Gramian `J_a J_bᵀ` of samples `a` and `b` (MoDo, SDMGrad).
    pub fn cross_gramian(&self, a: usize, b: usize) -> Result<Matrix> {
        let (ja, jb) = (self.sample(a)?, self.sample(b)?);
        Matrix::from_tensor(&ja.f_matmul(&jb.f_transpose(0, 1)?)?)
    }

    /// The Jacobian of sample `s`.
    pub fn sample(&self, s: usize) -> Result<&Tensor> {
        self.jacobians.get(s).ok_or_else(|| MtlError::Shape(format!("no gradient sample {s}")))
    }

    /// `Σᵢ wᵢ gᵢ` over the rows of `jacobian`, on its device.
    pub fn combine_rows(jacobian: &Tensor, weights: &[f64]) -> Result<Tensor> {
        let w = Tensor::from_slice(weights).f_to_kind(jacobian.kind())?.f_to_device(jacobian.device())?;
        Ok(w.f_matmul(jacobian)?)
    }
}

/// `J Jᵀ` on the host in `f64`.
pub fn gramian_of(jacobian: &Tensor) -> Result<Matrix> {
    let g = jacobian.f_matmul(&jacobian.f_transpose(0, 1)?)?;
    Matrix::from_tensor(&g.f_to_kind(Kind::Double)?)
}

/// A multi-task strategy: combines the task losses (or their gradients) of a step into
/// one update. See the [module docs](self).
pub trait Strategy: Send {
    /// The registry name (`pcgrad`, `nash_mtl`, ...).
    fn name(&self) -> &'static str;

    /// What the strategy needs computed for it.
    fn needs(&self) -> Needs;

    /// Combines the step's losses or gradients.
    fn combine(&mut self, input: &StepInput<'_>) -> Result<Combination>;

    /// Called at the end of every epoch (DWA and STCH keep per-epoch averages).
    fn end_epoch(&mut self) {}

    /// Called after the optimizer step with the new losses of the same batch, for the
    /// strategies whose [`Needs::losses_after_step`] is set (FAMO).
    fn after_step(&mut self, tasks: &[usize], losses_after: &[f64]) -> Result<()> {
        let _ = (tasks, losses_after);
        Ok(())
    }

    /// The internal state to checkpoint (empty for stateless strategies). Learned
    /// parameters registered in [`Setup::path`] are not part of it (they are saved with
    /// that `VarStore`).
    fn state(&self) -> StrategyState {
        StrategyState::default()
    }

    /// The learned parameters the strategy registered in [`Setup::path`] (UW's
    /// log-variances, IMTL's scales, GradNorm's weights; none by default), as handles
    /// sharing their storage: what [`crate::MtlStep::broadcast_parameters`] sends from
    /// rank 0 with the model's.
    fn parameters(&self) -> Vec<Tensor> {
        Vec::new()
    }

    /// Restores a state from `state()` of a strategy built with the same configuration.
    /// A missing, mismatched or unexpected entry is an [`MtlError::State`] naming the
    /// strategy and the entry, and leaves the strategy unchanged.
    fn load_state(&mut self, state: &StrategyState) -> Result<()> {
        state.reader(self.name()).finish()
    }
}

/// What a strategy is built with.
pub struct Setup<'a> {
    /// The number of tasks `T`.
    pub num_tasks: usize,
    /// Where strategies with learned parameters of their own (UW's log-variances, GradNorm's
    /// weights) register them, so that the optimizer of this `VarStore` trains them with
    /// the model (as LibMTL and the papers do); also gives the device.
    pub path: tch::nn::Path<'a>,
    /// Seed of the strategy's own randomness (RLW, PCGrad's orders, GradDrop).
    pub seed: u64,
}

/// Checks that `value` is finite and `> 0`, naming `field`.
pub fn positive(field: &str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(MtlError::invalid(field, value, "must be finite and > 0"))
    }
}

/// Checks that `value` is finite and `≥ 0`, naming `field`.
pub fn non_negative(field: &str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(MtlError::invalid(field, value, "must be finite and >= 0"))
    }
}

/// Errors unless all losses are `> 0` (strategies taking logarithms of losses).
pub fn check_positive_losses(strategy: &'static str, input: &StepInput<'_>) -> Result<()> {
    match input.values().iter().zip(&input.tasks).find(|(v, _)| **v <= 0.0) {
        Some((v, t)) => Err(MtlError::Unsupported {
            strategy,
            reason: format!("needs positive losses; task {t} has loss {v} at step {}", input.step),
        }),
        None => Ok(()),
    }
}
