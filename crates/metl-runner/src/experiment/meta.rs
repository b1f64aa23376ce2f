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
use metl_models::{head::LinearHead, Classifier, Model, StagedModel, TaskLoss};
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
/// (regression) or the backbone with an N-way linear head named `head` (classification),
/// the backbone taking the inputs the algorithm gives it (CAVIA appends its context); a
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
    // CAVIA's model takes the data's features and its context parameters.
    let model_input = algorithm.model_input_shape(input_shape);
    if model_input != input_shape {
        backbone.output_shape(&model_input).map_err(|e| {
            bad_input(format!(
                "model: meta.{} gives the model inputs of shape {model_input:?} (the data's {input_shape:?} with its context), which it does not take: {e}",
                algorithm.name()
            ))
        })?;
    }
    let input_shape = model_input.as_slice();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo::BackboneConfig;
    use metl_data::TaskBatch;
    use tch::{Kind, Tensor};

    #[test]
    fn cavia_needs_a_model_that_takes_the_context_too() {
        let cavia: AlgorithmConfig = toml::from_str("[cavia]\ncontext_params = 3\n").unwrap();
        let mlp = |widths: &str| {
            toml::from_str::<BackboneConfig>(&format!("[mlp]\nwidths = {widths}\n")).unwrap().build().unwrap()
        };
        let build = |backbone| build_learner(&cavia, backbone, &[1], Output::Regression(1), 0, Device::Cpu);
        let err = build(mlp("[1, 8, 1]")).err().expect("a model taking [1] is refused").to_string();
        assert!(err.contains("meta.cavia gives the model inputs of shape [4] (the data's [1]"), "{err}");
        let learner = build(mlp("[4, 8, 1]")).unwrap();
        let x = Tensor::rand([2, 5, 1], (Kind::Float, Device::Cpu));
        let batch = TaskBatch {
            support_x: x.shallow_clone(),
            support_y: x.sin(),
            query_x: x.shallow_clone(),
            query_y: x.sin(),
        };
        assert_eq!(learner.adapt_and_predict(&batch, 1).unwrap().size(), [2, 5, 1]);
    }
}
