//! `[meta.<algorithm>]`: the meta-learning algorithms a configuration can name, and the
//! construction of the learner around the configured backbone.

use crate::{
    error::bad_input,
    zoo::{feature_dim, Backbone},
};
use metl_meta::{
    anil::{Anil, AnilConfig},
    baseline::{Baseline, BaselineConfig, BaselineHead},
    maml::{Maml, MamlConfig},
    maml_plus_plus::{MamlPlusPlus, MamlPlusPlusConfig},
    matching::{MatchingNet, MatchingNetConfig},
    meta_sgd::{MetaSgd, MetaSgdConfig},
    protonet::{ProtoNet, ProtoNetConfig},
    reptile::{Reptile, ReptileConfig},
    MetaLearner,
};
use metl_models::{head::LinearHead, Classifier, Model, TaskLoss};
use serde::{Deserialize, Serialize};
use tch::{nn, Device};

/// A meta-learning algorithm as configured in `[meta.<name>]`; the names are those of
/// [`metl_meta::registry::ALGORITHMS`] (checked by a test of `metl list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AlgorithmConfig {
    /// MAML, second order unless `first_order = true`.
    Maml(MamlConfig),
    /// First-order MAML (MAML with `first_order` forced on).
    Fomaml(MamlConfig),
    /// Meta-SGD.
    MetaSgd(MetaSgdConfig),
    /// ANIL.
    Anil(AnilConfig),
    /// MAML++.
    MamlPlusPlus(MamlPlusPlusConfig),
    /// Reptile.
    Reptile(ReptileConfig),
    /// Prototypical networks.
    Protonet(ProtoNetConfig),
    /// Matching networks.
    Matching(MatchingNetConfig),
    /// The fine-tuning baseline: pre-train a classifier of all training classes, fit a new
    /// linear head on each support set.
    Baseline(BaselineConfig),
    /// Baseline++: the same with a cosine head (its `head` field is ignored).
    BaselinePlusPlus(BaselineConfig),
}

impl AlgorithmConfig {
    /// The `[meta.<name>]` key.
    pub fn name(&self) -> &'static str {
        match self {
            AlgorithmConfig::Maml(_) => "maml",
            AlgorithmConfig::Fomaml(_) => "fomaml",
            AlgorithmConfig::MetaSgd(_) => "meta_sgd",
            AlgorithmConfig::Anil(_) => "anil",
            AlgorithmConfig::MamlPlusPlus(_) => "maml_plus_plus",
            AlgorithmConfig::Reptile(_) => "reptile",
            AlgorithmConfig::Protonet(_) => "protonet",
            AlgorithmConfig::Matching(_) => "matching",
            AlgorithmConfig::Baseline(_) => "baseline",
            AlgorithmConfig::BaselinePlusPlus(_) => "baseline_plus_plus",
        }
    }

    /// Whether it pre-trains on plain labelled mini-batches of all training classes
    /// (global labels) instead of episodes.
    pub fn pretrains(&self) -> bool {
        matches!(self, AlgorithmConfig::Baseline(_) | AlgorithmConfig::BaselinePlusPlus(_))
    }

    /// Whether the algorithm classifies by comparing embeddings (no inner gradient steps,
    /// works with any number of ways at test time).
    pub fn is_metric(&self) -> bool {
        matches!(self, AlgorithmConfig::Protonet(_) | AlgorithmConfig::Matching(_))
    }

    /// Whether it adapts by inner gradient steps (evaluation takes a step count).
    pub fn takes_steps(&self) -> bool {
        !self.is_metric()
    }

    /// The adaptation steps evaluated by default: the inner steps of meta-training, or
    /// the baselines' 100 epochs of head fitting.
    pub fn train_steps(&self) -> usize {
        match self {
            AlgorithmConfig::Maml(c) | AlgorithmConfig::Fomaml(c) => c.inner_steps,
            AlgorithmConfig::MetaSgd(c) => c.inner_steps,
            AlgorithmConfig::Anil(c) => c.inner_steps,
            AlgorithmConfig::MamlPlusPlus(c) => c.inner_steps,
            AlgorithmConfig::Reptile(c) => c.inner_steps,
            AlgorithmConfig::Protonet(_) | AlgorithmConfig::Matching(_) => 0,
            AlgorithmConfig::Baseline(_) | AlgorithmConfig::BaselinePlusPlus(_) => 100,
        }
    }
}

/// What the learner predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// A regression target of this many dimensions (sinusoids: 1), with MSE.
    Regression(i64),
    /// N-way classification, with cross-entropy.
    Classes(i64),
}

type Learner = Box<dyn MetaLearner>;

fn boxed<L: MetaLearner + 'static>(result: metl_meta::error::Result<L>) -> anyhow::Result<Learner> {
    Ok(Box::new(result.map_err(bad_input)?))
}

/// Builds the learner: a gradient-based learner gets the backbone (regression) or the
/// backbone with an N-way linear head named `head` (classification); a metric learner
/// gets the backbone as its embedding; a baseline gets the backbone and a pre-training
/// head over the `train_classes` training classes. Parameters are created with torch's
/// generator (seed it first) on `device`.
pub fn build_learner(
    algorithm: &AlgorithmConfig,
    backbone: Backbone,
    input_shape: &[i64],
    output: Output,
    train_classes: usize,
    device: Device,
) -> anyhow::Result<Learner> {
    let vs = nn::VarStore::new(device);
    if let AlgorithmConfig::Baseline(c) | AlgorithmConfig::BaselinePlusPlus(c) = algorithm {
        if let Output::Regression(_) = output {
            return Err(bad_input(format!(
                "meta.{}: the baselines need classification data",
                algorithm.name()
            )));
        }
        let config = match algorithm {
            AlgorithmConfig::BaselinePlusPlus(c) => BaselineConfig {
                head: match c.head {
                    BaselineHead::Cosine { scale } => BaselineHead::Cosine { scale },
                    BaselineHead::Linear => BaselineHead::Cosine { scale: None },
                },
                ..*c
            },
            _ => *c,
        };
        let features = feature_dim(&backbone, input_shape, device)?;
        let params = backbone.init(&vs.root())?;
        return boxed(Baseline::new(backbone, params, features, train_classes, config));
    }
    if algorithm.is_metric() {
        if let Output::Regression(_) = output {
            return Err(bad_input(format!(
                "meta.{}: a metric learner needs classification data",
                algorithm.name()
            )));
        }
        let params = backbone.init(&vs.root())?;
        return match algorithm {
            AlgorithmConfig::Protonet(c) => boxed(ProtoNet::new(backbone, params, *c)),
            AlgorithmConfig::Matching(c) => boxed(MatchingNet::new(backbone, params, *c)),
            _ => unreachable!("metric learners are handled above"),
        };
    }
    match output {
        Output::Regression(dim) => {
            let out = feature_dim(&backbone, input_shape, device)?;
            if out != dim {
                return Err(bad_input(format!(
                    "model: the backbone outputs {out} values per input, the task needs {dim} (e.g. model.mlp.widths = [1, 40, 40, 1])"
                )));
            }
            let params = backbone.init(&vs.root())?;
            build_gradient_learner(algorithm, backbone, params, &vs, TaskLoss::Mse)
        }
        Output::Classes(ways) => {
            let features = feature_dim(&backbone, input_shape, device)?;
            let model = Classifier::new(backbone, LinearHead::new(features, ways)?);
            let params = model.init(&vs.root())?;
            build_gradient_learner(algorithm, model, params, &vs, TaskLoss::CrossEntropy)
        }
    }
}

fn build_gradient_learner<M: Model + 'static>(
    algorithm: &AlgorithmConfig,
    model: M,
    params: metl_models::Params,
    vs: &nn::VarStore,
    loss: TaskLoss,
) -> anyhow::Result<Learner> {
    match algorithm {
        AlgorithmConfig::Maml(c) => boxed(Maml::new(model, params, vs, loss, *c)),
        AlgorithmConfig::Fomaml(c) => {
            boxed(Maml::new(model, params, vs, loss, MamlConfig { first_order: true, ..*c }))
        }
        AlgorithmConfig::MetaSgd(c) => boxed(MetaSgd::new(model, params, loss, *c)),
        AlgorithmConfig::Anil(c) => boxed(Anil::new(model, params, loss, c.clone())),
        AlgorithmConfig::MamlPlusPlus(c) => boxed(MamlPlusPlus::new(model, params, loss, c.clone())),
        AlgorithmConfig::Reptile(c) => boxed(Reptile::new(model, params, loss, *c)),
        AlgorithmConfig::Protonet(_)
        | AlgorithmConfig::Matching(_)
        | AlgorithmConfig::Baseline(_)
        | AlgorithmConfig::BaselinePlusPlus(_) => {
            unreachable!("metric learners and baselines are built by build_learner")
        }
    }
}
