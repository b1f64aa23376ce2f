//! `[meta.<algorithm>]`: the meta-learning algorithms a configuration can name, and the
//! construction of the learner around the configured backbone.

use crate::{
    error::bad_input,
    zoo::{feature_dim, Backbone},
};
use metl_meta::{
    registry::{Kind, Parts},
    MetaLearner,
};
use metl_models::{head::LinearHead, Classifier, Model, TaskLoss};
use tch::{nn, Device};

/// A meta-learning algorithm as configured in `[meta.<name>]`: metl-meta's table of
/// algorithms ([`metl_meta::registry`]), one variant per algorithm.
pub use metl_meta::AlgorithmConfig;

/// What the learner predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// A regression target of this many dimensions (sinusoids: 1), with MSE.
    Regression(i64),
    /// N-way classification, with cross-entropy.
    Classes(i64),
}

type Learner = Box<dyn MetaLearner>;

/// Builds the learner through metl-meta's table: a gradient-based learner gets the backbone
/// (regression) or the backbone with an N-way linear head named `head` (classification); a
/// metric learner gets the backbone as its embedding; a pre-training baseline gets the
/// backbone, its feature dimension and the `train_classes` training classes. Parameters are
/// created with torch's generator (seed it first) on `device`.
pub fn build_learner(
    algorithm: &AlgorithmConfig,
    backbone: Backbone,
    input_shape: &[i64],
    output: Output,
    train_classes: usize,
    device: Device,
) -> anyhow::Result<Learner> {
    let vs = nn::VarStore::new(device);
    let parts = |model, params| Parts {
        model,
        params,
        vs: &vs,
        loss: TaskLoss::CrossEntropy,
        features: 0,
        train_classes,
    };
    let kind = algorithm.kind();
    if kind != Kind::Gradient {
        if let Output::Regression(_) = output {
            let what = if kind == Kind::Metric { "a metric learner needs" } else { "the baselines need" };
            return Err(bad_input(format!("meta.{}: {what} classification data", algorithm.name())));
        }
        let features = feature_dim(&backbone, input_shape, device)?;
        let params = backbone.init(&vs.root())?;
        return algorithm.build(Parts { features, ..parts(backbone, params) }).map_err(bad_input);
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
            algorithm.build(Parts { loss: TaskLoss::Mse, ..parts(backbone, params) }).map_err(bad_input)
        }
        Output::Classes(ways) => {
            let features = feature_dim(&backbone, input_shape, device)?;
            let model = Classifier::new(backbone, LinearHead::new(features, ways)?);
            let params = model.init(&vs.root())?;
            algorithm
                .build(Parts {
                    model,
                    params,
                    vs: &vs,
                    loss: TaskLoss::CrossEntropy,
                    features,
                    train_classes,
                })
                .map_err(bad_input)
        }
    }
}
