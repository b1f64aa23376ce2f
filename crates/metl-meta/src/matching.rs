//! Matching networks (Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra, NeurIPS 2016,
//! "Matching Networks for One Shot Learning"), without full-context embeddings.
//!
//! A query is labelled by attention over the support set: the attention weights are a
//! softmax over the cosine similarities of the query's embedding with every support
//! embedding, and the prediction is the attention-weighted sum of the support labels,
//!
//! ```text
//! a(x̂, xᵢ) = softmax_i(s · cos(f_θ(x̂), f_θ(xᵢ))),     P(y = c | x̂, S) = Σᵢ a(x̂, xᵢ) [yᵢ = c].
//! ```
//!
//! The loss is the negative log-likelihood of the query labels under P; the logits returned
//! are `log P` (clamped at 1e-12 before the logarithm), whose softmax is P itself. Query and
//! support share the embedding `f = g` (no full-context embeddings, as in the simpler
//! variant of the paper). The paper uses the plain cosine (`s = 1`, the default); Chen et
//! al. (2019) found a scale of 100 trains better.

use crate::{
    error::Result,
    metric::{normalize_rows, EpisodeClassifier, MetricLearner, MetricTraining},
    outer::check_lr,
};
use metl_models::{Model, Params};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The attention classifier of [`MatchingNet`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attention {
    /// The scale `s` of the cosine similarities.
    pub scale: f64,
}

impl EpisodeClassifier for Attention {
    fn logits(&self, support: &Tensor, labels: &Tensor, query: &Tensor) -> Tensor {
        let cosine = normalize_rows(query).bmm(&normalize_rows(support).transpose(1, 2));
        let attention = (cosine * self.scale).softmax(-1, None::<tch::Kind>);
        attention.bmm(labels).clamp_min(1e-12).log()
    }
}

/// Hyper-parameters of [`MatchingNet`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchingNetConfig {
    /// The scale of the cosine similarities (default 1, the paper's plain cosine).
    pub scale: f64,
    /// The outer loop (default Adam 1e-3, constant; evaluation mode at test).
    pub training: MetricTraining,
}

impl Default for MatchingNetConfig {
    fn default() -> Self {
        Self { scale: 1.0, training: MetricTraining::default() }
    }
}

impl MatchingNetConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_lr("matching.scale", self.scale)?;
        self.training.validate("matching.training.outer_lr", "matching.training.schedule")
    }
}

/// A matching network around any embedding [`Model`].
pub type MatchingNet<M> = MetricLearner<M, Attention>;

impl<M: Model> MetricLearner<M, Attention> {
    /// A matching network over the embedding `model` with parameters `params` (leaf
    /// tensors).
    pub fn new(model: M, params: Params, config: MatchingNetConfig) -> Result<Self> {
        config.validate()?;
        Self::with_classifier(model, params, Attention { scale: config.scale }, config.training)
    }
}
