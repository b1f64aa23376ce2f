//! The fine-tuning baselines of Chen, Liu, Kira, Wang & Huang (ICLR 2019, "A Closer Look at
//! Few-shot Classification"): **Baseline** and **Baseline++**, the honest reference every
//! few-shot method must beat.
//!
//! *Pre-training* is ordinary classification over all `C` training classes: a backbone f_θ
//! and a head over `C` classes, trained with Adam on mini-batches of labelled images,
//!
//! ```text
//! min_{θ, W} E_{(x, y)} CE(h_W(f_θ(x)), y).
//! ```
//!
//! *Adaptation* to a test episode freezes f_θ and fits a fresh head over the episode's `N`
//! classes on the support features `f_θ(Xˢ)`, then classifies the queries with it. Chen et
//! al. fit the head with SGD (rate 0.01, momentum 0.9, dampening 0.9, weight decay 0.001) on
//! mini-batches of 4 support examples in a random order, for 100 epochs.
//!
//! The head is linear, `h_W(z) = W z + b` (Baseline), or cosine,
//! `h_W(z)_c = s · cos(z, w_c)` (Baseline++; `s = 2` for up to 200 classes, else 10;
//! [`metl_models::head::CosineHead`]). Chen et al.'s code also learns a norm per class
//! (weight normalisation) that multiplies the cosine; this head has none.
//!
//! With the [`MetaLearner`] interface: [`MetaLearner::meta_train_step`] takes the support
//! sets of a batch as one labelled mini-batch whose labels are *global* class indices in
//! `0..C` (the query sets are not used), and the `steps` of
//! [`MetaLearner::adapt_and_evaluate`] are epochs of head fitting (100 in the paper). The
//! head is fitted for all test episodes of a batch at once (task-stacked heads, the shared
//! [`InnerLoop`]).

use crate::{
    error::{MetaError, Result},
    inner::{InnerLoop, InnerLr, InnerOptimizer, SupportBatches},
    learner::{MetaLearner, QueryOutcome, StepReport},
    metric::one_hot_labels,
    outer::{check_lr, LrSchedule, OuterLoop},
};
use metl_data::TaskBatch;
use metl_models::{
    head::{CosineHead, CosineHeadConfig, LinearHead},
    Model, Params, TaskLoss,
};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// The classifier head of the baselines.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BaselineHead {
    /// A linear layer (Baseline).
    #[default]
    Linear,
    /// Scaled cosine similarities to class weight vectors (Baseline++).
    Cosine {
        /// The scale; `None` takes Chen et al.'s rule (2 up to 200 classes, else 10).
        scale: Option<f64>,
    },
}

/// Hyper-parameters of [`Baseline`]; the defaults are Chen et al.'s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineConfig {
    /// The head (default linear: Baseline; cosine: Baseline++).
    pub head: BaselineHead,
    /// Pre-training Adam learning rate (default 1e-3).
    pub outer_lr: f64,
    /// Head-fitting SGD learning rate (default 0.01).
    pub finetune_lr: f64,
    /// Head-fitting momentum (default 0.9).
    pub finetune_momentum: f64,
    /// Head-fitting dampening (default 0.9).
    pub finetune_dampening: f64,
    /// Head-fitting weight decay (default 0.001).
    pub finetune_weight_decay: f64,
    /// Support examples per head-fitting step (default 4).
    pub finetune_batch: usize,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        Self {
            head: BaselineHead::Linear,
            outer_lr: 1e-3,
            finetune_lr: 0.01,
            finetune_momentum: 0.9,
            finetune_dampening: 0.9,
            finetune_weight_decay: 1e-3,
            finetune_batch: 4,
        }
    }
}

impl BaselineConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_lr("baseline.outer_lr", self.outer_lr)?;
        check_lr("baseline.finetune_lr", self.finetune_lr)?;
        if let BaselineHead::Cosine { scale: Some(s) } = self.head {
            check_lr("baseline.head.scale", s)?;
        }
        if self.finetune_batch == 0 {
            return Err(MetaError::invalid("baseline.finetune_batch", 0, "must be >= 1"));
        }
        self.optimizer().validate("baseline.finetune")
    }

    fn optimizer(&self) -> InnerOptimizer {
        InnerOptimizer::Momentum {
            momentum: self.finetune_momentum,
            dampening: self.finetune_dampening,
            weight_decay: self.finetune_weight_decay,
        }
    }
}

/// A head over some number of classes.
#[derive(Debug, Clone)]
enum Head {
    Linear(LinearHead),
    Cosine(CosineHead),
}

impl Head {
    fn new(kind: BaselineHead, features: i64, classes: i64) -> Result<Self> {
        Ok(match kind {
            BaselineHead::Linear => Head::Linear(LinearHead::new(features, classes)?),
            BaselineHead::Cosine { scale } => Head::Cosine(CosineHead::new(
                features,
                classes,
                CosineHeadConfig { scale, learn_scale: false },
            )?),
        })
    }

    /// Fresh parameters on `like`'s device and kind, initialised as PyTorch does.
    fn init(&self, like: &Params) -> Result<Params> {
        let mut vs = nn::VarStore::new(like.device());
        vs.set_kind(like.kind());
        let params = match self {
            Head::Linear(h) => h.init(&vs.root())?,
            Head::Cosine(h) => h.init(&vs.root())?,
        };
        Ok(params.detach())
    }

    fn forward(&self, params: &Params, z: &Tensor) -> Tensor {
        match self {
            Head::Linear(h) => h.forward(params, z, true),
            Head::Cosine(h) => h.forward(params, z, true),
        }
    }

    fn forward_tasks(&self, params: &Params, z: &Tensor) -> Tensor {
        match self {
            Head::Linear(h) => h.forward_tasks(params, z, true),
            Head::Cosine(h) => h.forward_tasks(params, z, true),
        }
    }
}

/// Baseline / Baseline++ around any backbone [`Model`] whose output is a feature vector.
pub struct Baseline<B: Model> {
    backbone: B,
    params: Params,
    head: Head,
    head_params: Params,
    classes: i64,
    features: i64,
    config: BaselineConfig,
    outer: OuterLoop,
}

impl<B: Model> std::fmt::Debug for Baseline<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Baseline")
            .field("config", &self.config)
            .field("classes", &self.classes)
            .field("features", &self.features)
            .field("outer", &self.outer)
            .finish()
    }
}

impl<B: Model> Baseline<B> {
    /// A baseline over `backbone` with parameters `params` (leaf tensors) producing
    /// `features`-dimensional vectors, pre-trained on `classes` classes. The pre-training
    /// head's parameters are created on `params`' device and kind, named `head.*`.
    pub fn new(
        backbone: B,
        params: Params,
        features: i64,
        classes: usize,
        config: BaselineConfig,
    ) -> Result<Self> {
        config.validate()?;
        if classes < 2 {
            return Err(MetaError::invalid("baseline.classes", classes, "must be >= 2"));
        }
        let head = Head::new(config.head, features, classes as i64)?;
        let head_params = head.init(&params)?.map(|_, t| t.set_requires_grad(true));
        let trained = params.merge(&head_params.prefixed("head"))?;
        let outer = OuterLoop::adam(&trained, config.outer_lr, LrSchedule::Constant)?;
        Ok(Self { backbone, params, head, head_params, classes: classes as i64, features, config, outer })
    }

    /// The backbone.
    pub fn backbone(&self) -> &B {
        &self.backbone
    }

    /// The backbone's parameters θ.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &BaselineConfig {
        &self.config
    }

    /// Features `[T, R, D]` of task-stacked inputs `[T, R, ...]`, the backbone in
    /// evaluation mode, without gradients.
    fn features_of(&self, x: &Tensor) -> Tensor {
        let size = x.size();
        let z = tch::no_grad(|| self.backbone.forward(&self.params, &x.flatten(0, 1), false));
        z.reshape([size[0], size[1], -1])
    }

    /// The query logits `[T, Q, N]` after fitting a fresh head on each support set for
    /// `epochs` epochs.
    pub fn finetune(&self, batch: &TaskBatch, epochs: usize) -> Result<Tensor> {
        let support = self.features_of(&batch.support_x);
        let query = self.features_of(&batch.query_x);
        let (_, ways) = one_hot_labels(&batch.support_y, Kind::Float)?;
        let head = Head::new(self.config.head, self.features, ways)?;
        let tasks = batch.num_tasks();
        let starts = (0..tasks).map(|_| head.init(&self.params)).collect::<Result<Vec<_>>>()?;
        let start = Params::stack_tasks(&starts)?.map(|_, t| t.set_requires_grad(true));
        let shots = batch.support_x.size()[1] as usize;
        let steps = epochs * shots.div_ceil(self.config.finetune_batch);
        let minibatches =
            SupportBatches::new(tasks, shots, self.config.finetune_batch, steps, batch.device());
        let inner = InnerLoop {
            lr: InnerLr::Fixed(self.config.finetune_lr),
            optimizer: self.config.optimizer(),
            create_graph: false,
        };
        let fitted = inner.run(
            start,
            steps,
            |phi, step| {
                let rows = minibatches.indices(step);
                let z = minibatches.gather(&support, &rows);
                let y = minibatches.gather(&batch.support_y, &rows);
                Ok(TaskLoss::CrossEntropy.per_task(&head.forward_tasks(phi, &z), &y).sum(None::<Kind>))
            },
            |_, _| Ok(()),
        )?;
        Ok(tch::no_grad(|| head.forward_tasks(&fitted.detach(), &query)))
    }
}

impl<B: Model> MetaLearner for Baseline<B> {
    /// One pre-training step on the support sets of `batch` as a mini-batch with global
    /// class labels in `0..C`.
    fn meta_train_step(&mut self, batch: &TaskBatch) -> Result<StepReport> {
        crate::validate::validate_batch(batch, crate::validate::Targets::Classes, Some(&self.params))?;
        let step = self.outer.steps() + 1;
        let x = batch.support_x.flatten(0, 1);
        let y = batch.support_y.flatten(0, 1);
        let (min, max) = (y.min().int64_value(&[]), y.max().int64_value(&[]));
        if min < 0 || max >= self.classes {
            return Err(MetaError::InvalidBatch(format!(
                "baseline pre-training needs global class labels in 0..{}, got {min}..={max}",
                self.classes
            )));
        }
        let logits = self.head.forward(&self.head_params, &self.backbone.forward(&self.params, &x, true));
        let loss = logits.cross_entropy_for_logits(&y);
        let value = loss.double_value(&[]);
        if !value.is_finite() {
            return Err(MetaError::NonFiniteLoss { what: "pre-training loss", value, step });
        }
        let accuracy = logits.argmax(-1, false).eq_tensor(&y).to_kind(Kind::Float).mean(None::<Kind>);
        self.outer.zero_grad();
        loss.f_backward()?;
        let outer_lr = self.outer.step()?;
        Ok(StepReport { step, loss: value, accuracy: Some(accuracy.double_value(&[])), outer_lr })
    }

    /// Fits a fresh head per episode for `steps` epochs (Chen et al.: 100).
    fn adapt_and_evaluate(&self, batch: &TaskBatch, steps: usize) -> Result<QueryOutcome> {
        crate::validate::validate_batch(batch, crate::validate::Targets::Classes, Some(&self.params))?;
        let logits = self.finetune(batch, steps)?;
        let loss = TaskLoss::CrossEntropy;
        Ok(QueryOutcome {
            loss: loss.per_task(&logits, &batch.query_y),
            accuracy: loss.per_task_accuracy(&logits, &batch.query_y),
        })
    }

    fn adapt_and_predict(&self, batch: &TaskBatch, steps: usize) -> Result<Tensor> {
        crate::validate::validate_batch(batch, crate::validate::Targets::Classes, Some(&self.params))?;
        self.finetune(batch, steps)
    }

    crate::outer::outer_loop_methods!(backbone);
}
