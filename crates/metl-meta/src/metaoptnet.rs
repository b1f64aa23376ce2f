//! MetaOptNet (Lee, Maji, Ravichandran & Soatto, CVPR 2019, "Meta-Learning with
//! Differentiable Convex Optimization"): an embedding network f_θ trained through a convex
//! base learner fitted to each episode's support embeddings.
//!
//! Per episode, a linear classifier `W` is the solution of a convex problem on the support
//! embeddings `X = f_θ(Xˢ)` and labels `Y`, and the queries are scored by it with a learned
//! scale `s` (a temperature of the softmax; Lee et al. learn it, starting at 1):
//!
//! ```text
//! W*(X, Y) = argmin_W  𝓛_base(W; X, Y),        logits(xᵠ) = s · W*ᵀ f_θ(xᵠ),
//! min_{θ, s} (1/B) Σᵢ CE(logits of Qᵢ, Yᵠᵢ).
//! ```
//!
//! The meta-gradient flows through the solution `W*`: in closed form for ridge regression
//! ([`ridge`]), by implicit differentiation of the KKT conditions for the multi-class SVM
//! ([`svm`], the head of Lee et al.'s final model and the default). The embedding network in training mode sees support and query together, and
//! everything around the base learner — batching, episode checks, the outer loop,
//! checkpoints, data-parallel training — is the shared [`MetricLearner`] engine: MetaOptNet
//! is a metric learner whose [`EpisodeClassifier`] is the base learner.
//!
//! Lee et al. train with SGD (Nesterov momentum, 0.1 decayed step-wise) and label
//! smoothing; here the outer loop is the metric learners' Adam (1e-3 by default) without
//! label smoothing.

pub mod ridge;
pub mod svm;

use crate::{
    error::Result,
    metric::{EpisodeClassifier, MetricLearner, MetricTraining},
    outer::check_lr,
};
use metl_models::{Model, Params};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Settings of the ridge-regression base learner ([`ridge`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RidgeConfig {
    /// The regulariser λ > 0 (default 50, Lee et al.'s code).
    pub lambda: f64,
}

impl Default for RidgeConfig {
    fn default() -> Self {
        Self { lambda: 50.0 }
    }
}

/// Settings of the multi-class SVM base learner ([`svm`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SvmConfig {
    /// The bound `C` > 0 of the dual variables (default 0.1, Lee et al.'s code).
    pub c: f64,
    /// The ridge `ε` > 0 added to the kernel's diagonal, which makes the dual strictly
    /// convex (default 1, Lee et al.'s code).
    pub dual_ridge: f64,
    /// Projected-gradient iterations at most, where the active-set method needs a warm
    /// start (default 1000).
    pub max_iterations: usize,
}

impl Default for SvmConfig {
    fn default() -> Self {
        Self { c: 0.1, dual_ridge: 1.0, max_iterations: 1000 }
    }
}

/// The convex base learner fitted to each episode's support embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BaseLearner {
    /// Ridge regression onto the one-hot labels, in closed form ([`ridge`]).
    Ridge(RidgeConfig),
    /// The Crammer–Singer multi-class SVM, its dual solved exactly ([`svm`]).
    Svm(SvmConfig),
}

impl Default for BaseLearner {
    fn default() -> Self {
        BaseLearner::Svm(SvmConfig::default())
    }
}

/// Hyper-parameters of [`MetaOptNet`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetaOptNetConfig {
    /// The base learner (default the SVM with C = 0.1, as Lee et al.'s MetaOptNet-SVM).
    pub head: BaseLearner,
    /// The initial logit scale `s` (default 1, as Lee et al.).
    pub scale: f64,
    /// Learn the logit scale with the embedding (default true, as Lee et al.).
    pub learn_scale: bool,
    /// The outer loop (default Adam 1e-3, constant; evaluation mode at test).
    pub training: MetricTraining,
}

impl Default for MetaOptNetConfig {
    fn default() -> Self {
        Self {
            head: BaseLearner::default(),
            scale: 1.0,
            learn_scale: true,
            training: MetricTraining::default(),
        }
    }
}

impl MetaOptNetConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        match self.head {
            BaseLearner::Ridge(r) => check_lr("metaoptnet.head.lambda", r.lambda)?,
            BaseLearner::Svm(s) => {
                check_lr("metaoptnet.head.c", s.c)?;
                check_lr("metaoptnet.head.dual_ridge", s.dual_ridge)?;
            }
        }
        check_lr("metaoptnet.scale", self.scale)?;
        self.training.validate("metaoptnet.training.outer_lr", "metaoptnet.training.schedule")
    }
}

/// The classifier of [`MetaOptNet`]: the base learner's logits times the logit scale.
#[derive(Debug)]
pub struct ConvexHead {
    /// The base learner.
    pub base: BaseLearner,
    /// The logit scale, `[1]` (a leaf that requires gradients when learned).
    scale: Tensor,
    learned: bool,
}

impl ConvexHead {
    /// The head with base learner `base` and logit scale `scale`, a tensor of `kind` on
    /// `device`, learned or fixed.
    pub fn new(base: BaseLearner, scale: f64, learned: bool, kind: tch::Kind, device: tch::Device) -> Self {
        let scale = Tensor::full([1], scale, (kind, device)).set_requires_grad(learned);
        Self { base, scale, learned }
    }

    /// The current logit scale.
    pub fn scale(&self) -> f64 {
        self.scale.double_value(&[0])
    }

    /// The base learner's logits `[T, Q, N]` before scaling.
    pub fn base_logits(&self, support: &Tensor, labels: &Tensor, query: &Tensor) -> Tensor {
        match self.base {
            BaseLearner::Ridge(r) => ridge::ridge_logits(support, labels, query, r.lambda),
            BaseLearner::Svm(s) => {
                svm::svm_logits(support, labels, query, s.c, s.dual_ridge, s.max_iterations)
            }
        }
    }
}

impl EpisodeClassifier for ConvexHead {
    fn logits(&self, support: &Tensor, labels: &Tensor, query: &Tensor) -> Tensor {
        self.base_logits(support, labels, query) * &self.scale
    }

    /// The logit scale as `logit_scale`, when it is learned.
    fn parameters(&self) -> Params {
        if self.learned {
            Params::from_named(vec![("logit_scale".into(), self.scale.shallow_clone())]).expect("one name")
        } else {
            Params::empty()
        }
    }
}

/// MetaOptNet around any embedding [`Model`].
pub type MetaOptNet<M> = MetricLearner<M, ConvexHead>;

impl<M: Model> MetricLearner<M, ConvexHead> {
    /// MetaOptNet over the embedding `model` with parameters `params` (leaf tensors); the
    /// logit scale is created on their device and kind and, when learned, checkpointed as
    /// `classifier.logit_scale`.
    pub fn new(model: M, params: Params, config: MetaOptNetConfig) -> Result<Self> {
        config.validate()?;
        let head =
            ConvexHead::new(config.head, config.scale, config.learn_scale, params.kind(), params.device());
        Self::with_classifier(model, params, head, config.training)
    }
}
