//! Prototypical networks (Snell, Swersky & Zemel, NeurIPS 2017, "Prototypical Networks for
//! Few-shot Learning").
//!
//! Each class `c` of an episode is represented by the mean embedding of its support
//! examples, its *prototype*, and a query is classified by a softmax over negative
//! distances to the prototypes:
//!
//! ```text
//! p_c = (1/|S_c|) Σ_{(x, y) ∈ S, y = c} f_θ(x),        logit_c(x) = −d(f_θ(x), p_c),
//! ```
//!
//! with `d` the squared Euclidean distance (the paper's choice; a Bregman divergence, which
//! makes the classifier equivalent to a linear one on the embedding with
//! `w_c = 2 p_c`, `b_c = −‖p_c‖²`) or, as the variant the paper compares with, the cosine
//! similarity `logit_c = s · ⟨f/‖f‖, p_c/‖p_c‖⟩`. Training minimises the query
//! cross-entropy with Adam.
//!
//! Snell et al.'s Omniglot settings are the defaults: Adam 1e-3 halved every 2000 episodes,
//! Euclidean distance, the embedding network in evaluation mode at test time (batch-norm
//! running statistics); they train 60-way episodes with 5 queries per class and test
//! 5- and 20-way.

use crate::{
    error::Result,
    metric::{normalize_rows, EpisodeClassifier, MetricLearner, MetricTraining},
    outer::{check_lr, LrSchedule},
};
use metl_models::{Model, Params};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// How prototypes are compared with queries.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Distance {
    /// `logit_c = −‖z − p_c‖²` (the paper's).
    #[default]
    SquaredEuclidean,
    /// `logit_c = scale · cos(z, p_c)`.
    Cosine {
        /// The scale of the cosine (a softmax temperature); 1 is the plain cosine.
        scale: f64,
    },
}

/// The prototype classifier of [`ProtoNet`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prototypes {
    /// The comparison of queries with prototypes.
    pub distance: Distance,
}

impl Prototypes {
    /// Class means `[T, N, D]` of support embeddings `[T, S, D]` with one-hot labels
    /// `[T, S, N]`.
    pub fn prototypes(support: &Tensor, labels: &Tensor) -> Tensor {
        let counts = labels.sum_dim_intlist(1, false, None::<Kind>).unsqueeze(-1);
        labels.transpose(1, 2).bmm(support) / counts
    }
}

impl EpisodeClassifier for Prototypes {
    fn logits(&self, support: &Tensor, labels: &Tensor, query: &Tensor) -> Tensor {
        let prototypes = Self::prototypes(support, labels);
        match self.distance {
            Distance::SquaredEuclidean => {
                // −‖q − p‖² = 2 q·p − ‖q‖² − ‖p‖², in batched matrix products.
                let qq = query.square().sum_dim_intlist(-1, true, None::<Kind>);
                let pp = prototypes.square().sum_dim_intlist(-1, false, None::<Kind>).unsqueeze(1);
                query.bmm(&prototypes.transpose(1, 2)) * 2.0 - qq - pp
            }
            Distance::Cosine { scale } => {
                normalize_rows(query).bmm(&normalize_rows(&prototypes).transpose(1, 2)) * scale
            }
        }
    }
}

/// Hyper-parameters of [`ProtoNet`]; the defaults are Snell et al.'s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtoNetConfig {
    /// The distance (default squared Euclidean).
    pub distance: Distance,
    /// The outer loop (default Adam 1e-3 halved every 2000 episodes, evaluation mode at test).
    pub training: MetricTraining,
}

impl Default for ProtoNetConfig {
    fn default() -> Self {
        let schedule = LrSchedule::Step { every: 2000, factor: 0.5 };
        Self {
            distance: Distance::SquaredEuclidean,
            training: MetricTraining { schedule, ..Default::default() },
        }
    }
}

impl ProtoNetConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if let Distance::Cosine { scale } = self.distance {
            check_lr("protonet.distance.scale", scale)?;
        }
        self.training.validate("protonet.training.outer_lr", "protonet.training.schedule")
    }
}

/// A prototypical network around any embedding [`Model`].
pub type ProtoNet<M> = MetricLearner<M, Prototypes>;

impl<M: Model> MetricLearner<M, Prototypes> {
    /// A prototypical network over the embedding `model` with parameters `params` (leaf
    /// tensors).
    pub fn new(model: M, params: Params, config: ProtoNetConfig) -> Result<Self> {
        config.validate()?;
        Self::with_classifier(model, params, Prototypes { distance: config.distance }, config.training)
    }
}
