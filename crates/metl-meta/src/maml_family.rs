//! [`MamlFamily`]: the one implementation behind MAML, first-order MAML, Meta-SGD, ANIL and
//! MAML++, which differ only in its settings:
//!
//! | algorithm | adapted parameters | inner learning rate | outer loss | derivative order |
//! | --- | --- | --- | --- | --- |
//! | [`Maml`](crate::maml::Maml) | all | fixed α | query loss after k steps | second (or first) |
//! | [`MetaSgd`](crate::meta_sgd::MetaSgd) | all | learned α, one per weight | after k steps | second (or first) |
//! | [`Anil`](crate::anil::Anil) | the head | fixed α | after k steps | second (or first) |
//! | [`MamlPlusPlus`](crate::maml_plus_plus::MamlPlusPlus) | all but batch norm | learned α per layer and step | weighted over steps, annealed | first, then second |
//!
//! For a meta-batch of `T` tasks with support sets `(Xˢᵢ, Yˢᵢ)` and query sets `(Xᵠᵢ, Yᵠᵢ)`, θ
//! split into adapted weights θ_a and frozen weights θ_f, the inner loop ([`InnerLoop`])
//! computes `φᵢ⁽ʲ⁺¹⁾ = φᵢ⁽ʲ⁾ − αʲ ⊙ ∇_φ L(f(Xˢᵢ; φᵢ⁽ʲ⁾, θ_f), Yˢᵢ)` from `φᵢ⁽⁰⁾ = θ_a`, and the
//! meta-loss is `(1/T) Σᵢ Σⱼ wⱼ L(f(Xᵠᵢ; φᵢ⁽ʲ⁺¹⁾, θ_f), Yᵠᵢ)` with `w = (0, …, 0, 1)` except for
//! MAML++'s multi-step loss. One Adam step on θ (and on learned rates α) follows.
//!
//! **Task-batched.** By default all `T` tasks adapt at once: θ is expanded to `T` copies
//! ([`Params::expand_tasks`], a view, no copy) and evaluated with [`Model::forward_tasks`]; the
//! gradient of the summed support losses with respect to the copies is each task's own
//! gradient. With `task_batched = false` each task runs alone through [`Model::forward`] and
//! its meta-loss is back-propagated before the next task's (less memory, slower); the tests
//! check that both paths give the same meta-gradient.
//!
//! **Gradient checkpointing** (`checkpointing = true`). Second-order back-propagation keeps
//! the graph of every inner step (support forward pass and double backward) until the outer
//! backward pass: memory grows linearly with the steps `k`. With checkpointing the inner
//! loop first runs without graphs, keeping only the fast weights φ⁽¹⁾ … φ⁽ᵏ⁻¹⁾; then a
//! hand-written reverse pass recomputes one step `Φⱼ(φ) = φ − αʲ ⊙ ∇L^s(φ)` at a time, from
//! `j = k − 1` down to 0, with `create_graph`, from a fresh leaf φ̂ holding φ⁽ʲ⁾ (θ itself
//! for `j = 0`), and back-propagates
//!
//! ```text
//! S_j = ⟨Φⱼ(φ̂), a⁽ʲ⁺¹⁾⟩ + wⱼ L^q(Φⱼ(φ̂)),    a⁽ʲ⁾ = ∂S_j/∂φ̂ = (∂Φⱼ/∂φ)ᵀ a⁽ʲ⁺¹⁾ + wⱼ ∇L^q(φ⁽ʲ⁺¹⁾),   a⁽ᵏ⁾ = 0,
//! ```
//!
//! a vector-Jacobian product through the support Hessian; the same backward pass
//! accumulates `∂S_j/∂θ_f` and `∂S_j/∂α` (frozen weights, learned rates) into `.grad`, and the
//! last one (`j = 0`) delivers `a⁽⁰⁾` into θ's `.grad`. By the chain rule the sum is exactly
//! the ordinary second-order meta-gradient (the tests compare them to 1e-10 in float64).
//! Memory: one step's graph plus `k − 1` copies of the adapted weights (per task). Compute:
//! every step runs twice, about one extra support forward and backward pass per step.
//! Batch-norm running statistics are saved before and restored after the recomputation, so
//! they end up as without checkpointing. Needs the plain SGD inner loop (momentum and Adam
//! carry state from step to step); first-order iterations do not use it.
//!
//! **Task combiners** ([`MamlFamily::set_task_combiner`]). Instead of the mean over tasks,
//! the outer step can follow any direction computed from the per-task meta-gradients
//! `J ∈ ℝ^(T × P)` (an MTL gradient method over the tasks of the meta-batch; see
//! [`crate::task_combiner`] and the `combined` module for how the rows are computed).

mod backward;
mod checkpointed;
mod combined;
mod delegate;
mod evaluation;
pub mod learner;
mod settings;

pub use backward::MetaLossReport;
pub(crate) use delegate::delegate_meta_learner;
pub use learner::Learner;
pub use settings::{AdaptedParams, FamilySettings, LrRule, MultiStepLoss, OuterOptimizer};

use crate::{
    error::{MetaError, Result},
    inner::{InnerLoop, InnerLr, InnerOptimizer, SupportBatches},
    learner::QueryOutcome,
    outer::OuterLoop,
    task_combiner::TaskGradientCombiner,
};
use metl_data::TaskBatch;
use metl_models::{Loss, Model, Params};
use std::sync::Arc;
use tch::{Kind, Tensor};

/// How tasks are laid out for a forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Parameters and inputs carry a leading task dimension `T`.
    Batched,
    /// One task: parameters without a task dimension, inputs with a leading 1.
    Single,
}

/// The support sets of a task batch as one inner loop sees them.
struct SupportSets<'a> {
    batch: &'a TaskBatch,
    /// The mini-batches of every step, when the inner loop uses mini-batches.
    minibatches: Option<SupportBatches>,
}

/// Errors when `checkpointing` (config field `field`) is asked for first-order
/// meta-gradients, which keep no inner-loop graph to checkpoint.
pub(crate) fn check_checkpointing(field: &'static str, checkpointing: bool, first_order: bool) -> Result<()> {
    if checkpointing && first_order {
        return Err(MetaError::invalid(
            field,
            true,
            "needs second-order meta-gradients (first_order = false): first order keeps no inner-loop \
             graph to checkpoint",
        ));
    }
    Ok(())
}

/// The built-in outer loop over θ and, when they are learned, the inner rates (as
/// `inner_lr.*`).
fn outer_loop(params: &Params, lrs: Option<&Params>, settings: &FamilySettings) -> Result<OuterLoop> {
    let trained = match (lrs, settings.lr) {
        (Some(lrs), LrRule::PerParameter { .. } | LrRule::PerStep { learned: true, .. }) => {
            params.merge(&lrs.prefixed("inner_lr"))?
        }
        _ => params.shallow_clone(),
    };
    match settings.outer_optimizer {
        OuterOptimizer::Adam => OuterLoop::adam(&trained, settings.outer_lr, settings.schedule),
        OuterOptimizer::Sgd => OuterLoop::sgd(&trained, settings.outer_lr, settings.schedule),
    }
}

/// The shared engine of the MAML family; see the module documentation.
pub struct MamlFamily<M: Model> {
    model: M,
    params: Params,
    adapted: Params,
    frozen: Params,
    learned_lrs: Option<Params>,
    loss: Arc<dyn Loss>,
    settings: FamilySettings,
    outer: OuterLoop,
    /// The width of the model's logits, for a classification loss (see
    /// [`MamlFamily::check_batch`]).
    classes: std::sync::OnceLock<i64>,
    /// What replaces the mean of the per-task meta-gradients, if set (see
    /// [`MamlFamily::set_task_combiner`]); behind a lock because the meta-gradient is
    /// computed through `&self`.
    combiner: Option<std::sync::Mutex<Box<dyn TaskGradientCombiner>>>,
}

impl<M: Model> std::fmt::Debug for MamlFamily<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MamlFamily")
            .field("settings", &self.settings)
            .field("adapted", &self.adapted.names())
            .field("steps_taken", &self.outer.steps())
            .finish()
    }
}

impl<M: Model> MamlFamily<M> {
    /// The engine over `model` with meta-parameters `params` (leaf tensors) and any
    /// [`Loss`]: a built-in [`metl_models::TaskLoss`], a closure
    /// `|prediction, target| -> Tensor`, or a type of your own.
    ///
    /// The named members ([`Maml`](crate::maml::Maml), ...) are this engine with fixed
    /// settings; build it yourself for a combination they do not offer. It is a
    /// [`MetaLearner`](crate::MetaLearner) like them:
    ///
    /// ```
    /// use metl_data::sinusoid::{SinusoidConfig, SinusoidTasks};
    /// use metl_meta::maml_family::{FamilySettings, LrRule, MamlFamily};
    /// use metl_meta::MetaLearner;
    /// use metl_models::mlp::MlpConfig;
    /// use tch::{nn, Device, Reduction, Tensor};
    ///
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let (mlp, theta) = MlpConfig::new([1, 40, 40, 1]).init(&vs.root()).unwrap();
    /// // Second-order MAML with 5 inner steps, an L1 loss and learned per-step rates.
    /// let settings = FamilySettings::basic(5, LrRule::PerStep { init: 0.01, learned: true }, false, 1e-3);
    /// let l1 = |p: &Tensor, y: &Tensor| p.l1_loss(y, Reduction::Mean);
    /// let mut family = MamlFamily::new(mlp, theta, l1, settings).unwrap();
    /// let mut tasks = SinusoidTasks::new(SinusoidConfig::default(), 0);
    /// family.meta_train_step(&tasks.sample_batch(4, 10, 10, Device::Cpu).unwrap()).unwrap();
    /// let test = [tasks.sample_batch(4, 10, 20, Device::Cpu).unwrap()];
    /// let results = metl_meta::evaluate(&family, test, &[0, 5]).unwrap();
    /// assert_eq!((results[1].steps, family.steps_taken()), (5, 1));
    /// ```
    pub fn new(
        model: M,
        params: Params,
        loss: impl Loss + 'static,
        settings: FamilySettings,
    ) -> Result<Self> {
        let loss: Arc<dyn Loss> = Arc::new(loss);
        if settings.checkpointing && settings.inner_optimizer != InnerOptimizer::Sgd {
            return Err(MetaError::invalid(
                "checkpointing",
                true,
                format!(
                    "needs the plain SGD inner loop (a step recomputed alone must not depend on \
                     optimizer state), not {:?}",
                    settings.inner_optimizer
                ),
            ));
        }
        let (adapted, frozen) = params.split(|n| settings.adapted.adapts(n));
        if adapted.is_empty() {
            return Err(MetaError::invalid(
                "meta.adapted",
                format!("{:?}", settings.adapted),
                format!("selects no parameter of [{}]", params.names().join(", ")),
            ));
        }
        let learned_lrs = match settings.lr {
            LrRule::Fixed(_) => None,
            LrRule::PerParameter { low, high } => Some(adapted.map(|_, t| {
                let lr = t.detach().zeros_like();
                let _ = tch::no_grad(|| lr.shallow_clone().uniform_(low, high));
                lr.set_requires_grad(true)
            })),
            LrRule::PerStep { init, learned } => {
                let steps = settings.inner_steps as i64;
                Some(adapted.map(|_, t| {
                    Tensor::full([steps], init, (t.kind(), t.device())).set_requires_grad(learned)
                }))
            }
        };
        let outer = outer_loop(&params, learned_lrs.as_ref(), &settings)?;
        let classes = std::sync::OnceLock::new();
        Ok(Self {
            model,
            params,
            adapted,
            frozen,
            learned_lrs,
            loss,
            settings,
            outer,
            classes,
            combiner: None,
        })
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The meta-parameters θ.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The learned inner learning rates (named like the adapted parameters), if any.
    pub fn learned_lrs(&self) -> Option<&Params> {
        self.learned_lrs.as_ref()
    }

    /// The weights the inner loop does not adapt (ANIL's body, MAML++'s batch norm).
    pub fn frozen(&self) -> &Params {
        &self.frozen
    }

    /// The settings.
    pub fn settings(&self) -> &FamilySettings {
        &self.settings
    }

    /// The outer loop (optimizer, schedule, step count).
    pub fn outer(&self) -> &OuterLoop {
        &self.outer
    }

    /// Averages every outer update over the ranks of `collective` (see
    /// [`crate::MetaLearner::set_collective`]); for a loop of your own, average the
    /// gradients [`MamlFamily::meta_backward`] leaves yourself.
    pub fn set_collective(&mut self, collective: std::sync::Arc<dyn metl_dist::Collective>) {
        let buffers = self.model.buffers();
        self.outer.set_collective(collective, buffers);
    }

    /// Tasks per pass of a meta-training step (0: all in one), when tasks are batched;
    /// `None` when they are adapted one after another.
    pub fn tasks_per_pass(&self) -> Option<usize> {
        self.settings.task_batched.then_some(self.settings.tasks_per_pass)
    }

    /// Sets [`FamilySettings::tasks_per_pass`] (see
    /// [`crate::MetaLearner::set_tasks_per_pass`]); an error when tasks are not batched.
    pub fn set_tasks_per_pass(&mut self, tasks: usize) -> Result<()> {
        if !self.settings.task_batched {
            return Err(MetaError::invalid(
                "tasks_per_pass",
                tasks,
                "needs task_batched = true (tasks adapted one by one are already one per pass)",
            ));
        }
        self.settings.tasks_per_pass = tasks;
        Ok(())
    }

    /// The outer loop, mutably (for learners with their own outer update).
    pub(crate) fn outer_mut(&mut self) -> &mut OuterLoop {
        &mut self.outer
    }

    fn inner_lr<'a>(&self, lrs: Option<&'a Params>) -> InnerLr<'a> {
        match (self.settings.lr, lrs) {
            (LrRule::Fixed(lr), _) => InnerLr::Fixed(lr),
            (LrRule::PerParameter { .. }, Some(lrs)) => InnerLr::PerParameter(lrs),
            (LrRule::PerStep { .. }, Some(lrs)) => InnerLr::PerStep(lrs),
            _ => unreachable!("learned rules always have rates"),
        }
    }

    /// The forward pass at inner step `step` of `fast` adapted weights with the frozen ones.
    fn forward(
        &self,
        fast: &Params,
        frozen: &Params,
        x: &Tensor,
        step: usize,
        layout: Layout,
    ) -> Result<Tensor> {
        let merged;
        let params = if frozen.is_empty() {
            fast
        } else {
            merged = fast.merge(frozen)?;
            &merged
        };
        let step = step.min(self.settings.inner_steps.saturating_sub(1));
        Ok(match (layout, self.settings.per_step_forward) {
            (Layout::Batched, false) => self.model.forward_tasks(params, x, true),
            (Layout::Batched, true) => self.model.forward_tasks_at_step(params, x, true, step),
            (Layout::Single, false) => self.model.forward(params, &x.get(0), true).unsqueeze(0),
            (Layout::Single, true) => self.model.forward_at_step(params, &x.get(0), true, step).unsqueeze(0),
        })
    }

    pub(crate) fn outcome(
        &self,
        fast: &Params,
        frozen: &Params,
        batch: &TaskBatch,
        step: usize,
        layout: Layout,
    ) -> Result<QueryOutcome> {
        let prediction = self.forward(fast, frozen, &batch.query_x, step, layout)?;
        Ok(QueryOutcome {
            loss: self.loss.per_task(&prediction, &batch.query_y),
            accuracy: self.loss.per_task_accuracy(&prediction, &batch.query_y),
        })
    }

    /// The support sets of `batch` for an inner loop of `steps` steps: whole, or cut into
    /// mini-batches drawn once here (so that a recomputed step sees the same examples).
    fn support_sets<'a>(&self, batch: &'a TaskBatch, steps: usize) -> SupportSets<'a> {
        let support = batch.support_x.size()[1] as usize;
        let minibatches = self
            .settings
            .inner_batch
            .filter(|&b| b < support)
            .map(|b| SupportBatches::new(batch.num_tasks(), support, b, steps, batch.device()));
        SupportSets { batch, minibatches }
    }

    /// Runs inner steps `steps` (a range of step indices; `start` holds the weights before
    /// the first) on `support`.
    #[allow(clippy::too_many_arguments)]
    fn adapt(
        &self,
        start: Params,
        frozen: &Params,
        lrs: Option<&Params>,
        support: &SupportSets<'_>,
        steps: std::ops::Range<usize>,
        create_graph: bool,
        layout: Layout,
        after_step: impl FnMut(usize, &Params) -> Result<()>,
    ) -> Result<Params> {
        let inner =
            InnerLoop { lr: self.inner_lr(lrs), optimizer: self.settings.inner_optimizer, create_graph };
        let SupportSets { batch, minibatches } = support;
        inner.run_steps(
            start,
            steps,
            |fast, step| {
                let (x, y) = match minibatches {
                    None => (batch.support_x.shallow_clone(), batch.support_y.shallow_clone()),
                    Some(m) => {
                        let rows = m.indices(step);
                        (m.gather(&batch.support_x, &rows), m.gather(&batch.support_y, &rows))
                    }
                };
                let prediction = self.forward(fast, frozen, &x, step, layout)?;
                Ok(self.loss.per_task(&prediction, &y).sum(None::<Kind>))
            },
            after_step,
        )
    }

    /// Whether meta-iteration `t` (1-based) uses second-order meta-gradients.
    fn second_order_at(&self, t: u64) -> bool {
        t > self.settings.first_order_iterations
    }

    /// The start of the inner loop, φ⁽⁰⁾ = θ_a, and the frozen weights θ_f, laid out for
    /// `layout` (expanded to the tasks of `batch`), differentiable with respect to θ.
    fn start(&self, batch: &TaskBatch, layout: Layout) -> (Params, Params) {
        match layout {
            Layout::Batched => {
                let tasks = batch.num_tasks();
                (self.adapted.expand_tasks(tasks), self.frozen.expand_tasks(tasks))
            }
            Layout::Single => (self.adapted.shallow_clone(), self.frozen.shallow_clone()),
        }
    }

    /// Like [`MamlFamily::start`] but detached from θ: φ⁽⁰⁾ as fresh leaves (one copy per
    /// task when batched), so that inner gradients can be taken without a graph to θ.
    fn detached_start(&self, batch: &TaskBatch, layout: Layout) -> (Params, Params) {
        match layout {
            Layout::Batched => {
                let tasks = batch.num_tasks();
                let start = self
                    .adapted
                    .detach()
                    .expand_tasks(tasks)
                    .map(|_, t| t.contiguous().set_requires_grad(true));
                (start, self.frozen.detach().expand_tasks(tasks))
            }
            Layout::Single => (self.adapted.detached_leaves(), self.frozen.detach()),
        }
    }

    /// The meta-loss of `batch` at meta-iteration `t` (1-based), differentiable with respect
    /// to θ and the learned rates, with the query outcome after the last inner step.
    fn meta_loss_at(&self, batch: &TaskBatch, t: u64, layout: Layout) -> Result<(Tensor, QueryOutcome)> {
        let (start, frozen) = self.start(batch, layout);
        let (losses, outcome) = self.task_losses_from(batch, t, layout, start, &frozen)?;
        Ok((losses.mean(None::<Kind>), outcome))
    }

    /// Each task's share `ℓ_t` of the meta-loss of `batch` at meta-iteration `t` (`[T]`: the
    /// query loss after the last inner step, or MAML++'s weighted sum over steps), from the
    /// inner loop's start `start` (θ_a laid out for `layout`) with frozen weights `frozen`;
    /// differentiable with respect to both (and the learned rates), with the query outcome
    /// after the last inner step.
    fn task_losses_from(
        &self,
        batch: &TaskBatch,
        t: u64,
        layout: Layout,
        start: Params,
        frozen: &Params,
    ) -> Result<(Tensor, QueryOutcome)> {
        let k = self.settings.inner_steps;
        let create_graph = self.second_order_at(t);
        let weights = self.settings.multi_step_loss.and_then(|m| m.weights(t, k));
        let mut weighted: Option<Tensor> = None;
        let mut last = None;
        let fast = self.adapt(
            start,
            frozen,
            self.learned_lrs.as_ref(),
            &self.support_sets(batch, k),
            0..k,
            create_graph,
            layout,
            |j, fast| {
                if let Some(w) = &weights {
                    let outcome = self.outcome(fast, frozen, batch, j, layout)?;
                    let term = &outcome.loss * w[j];
                    weighted = Some(match weighted.take() {
                        Some(sum) => sum + term,
                        None => term,
                    });
                    last = Some(outcome);
                }
                Ok(())
            },
        )?;
        match (weighted, last) {
            (Some(losses), Some(outcome)) => Ok((losses, outcome)),
            _ => {
                let outcome = self.outcome(&fast, frozen, batch, k - 1, layout)?;
                Ok((outcome.loss.shallow_clone(), outcome))
            }
        }
    }

    /// The meta-loss of a batch as the next meta-training step would compute it (mean over
    /// tasks), differentiable with respect to θ, and the per-task query outcome.
    pub fn meta_loss(&self, batch: &TaskBatch) -> Result<(Tensor, QueryOutcome)> {
        self.meta_loss_at(batch, self.outer.steps() + 1, Layout::Batched)
    }

    /// θ and the learned rates (as `inner_lr.*`).
    pub fn meta_parameters(&self) -> Params {
        self.outer.params().shallow_clone()
    }

    /// The checkpoint state: the outer loop's, the model's buffers and the task combiner's
    /// (under `task_combiner.*`).
    pub fn state(&self) -> Params {
        let state = self.outer.state_with_buffers(&self.model);
        match self.combiner_state() {
            Some(combiner) if !combiner.is_empty() => state
                .merge(&combiner.prefixed(combined::STATE_PREFIX))
                .expect("no parameter, optimizer or buffer name starts with `task_combiner.`"),
            _ => state,
        }
    }

    /// Restores a checkpoint state.
    pub fn load_state(&mut self, state: &Params) -> Result<()> {
        self.outer.load_state_with_buffers(state, &self.model)?;
        self.load_combiner_state(&state.sub(combined::STATE_PREFIX))
    }
}
