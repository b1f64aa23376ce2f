//! The models a configuration file can name: one enum over metl-models' backbones, with
//! `Model` implemented by delegation so that every learner and architecture accepts it.

use metl_models::{
    conv4::{Conv4, Conv4Config},
    mlp::{Mlp, MlpConfig},
    resnet12::{ResNet12, ResNet12Config},
    segnet::{SegNet, SegNetConfig},
    Mode, Model, Params, StagedModel,
};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

/// A backbone as configured in `[model.<name>]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum BackboneConfig {
    /// A multi-layer perceptron (`[model.mlp]`, `widths = [1, 40, 40, 1]`).
    Mlp(MlpConfig),
    /// The four-block convolutional network of the few-shot literature (`[model.conv4]`).
    Conv4(Conv4Config),
    /// ResNet-12 (`[model.resnet12]`).
    Resnet12(ResNet12Config),
    /// The SegNet encoder-decoder of MTAN for dense prediction (`[model.segnet]`).
    Segnet(SegNetConfig),
}

/// Names and one-line descriptions of the backbones, for `metl list`.
pub const BACKBONES: &[(&str, &str)] = &[
    ("mlp", "multi-layer perceptron, configurable widths and activation"),
    ("conv4", "4 × [3×3 conv, batch norm, ReLU, 2×2 max-pool] (Vinyals et al. 2016; MAML's strided variant)"),
    ("resnet12", "ResNet-12, the few-shot standard (Oreshkin et al. 2018; Lee et al. 2019)"),
    (
        "segnet",
        "SegNet encoder-decoder, per-pixel features for dense heads (Badrinarayanan et al. 2017; MTAN, Liu et al. 2019)",
    ),
];

impl BackboneConfig {
    /// The configuration's name (`mlp`, `conv4`, `resnet12`).
    pub fn name(&self) -> &'static str {
        match self {
            BackboneConfig::Mlp(_) => "mlp",
            BackboneConfig::Conv4(_) => "conv4",
            BackboneConfig::Resnet12(_) => "resnet12",
            BackboneConfig::Segnet(_) => "segnet",
        }
    }

    /// Validates and builds the backbone.
    pub fn build(&self) -> metl_models::error::Result<Backbone> {
        Ok(match self {
            BackboneConfig::Mlp(c) => Backbone::Mlp(c.build()?),
            BackboneConfig::Conv4(c) => Backbone::Conv4(c.build()?),
            BackboneConfig::Resnet12(c) => Backbone::ResNet12(c.build()?),
            BackboneConfig::Segnet(c) => Backbone::SegNet(c.build()?),
        })
    }
}

/// A built backbone.
#[derive(Debug, Clone)]
pub enum Backbone {
    /// See [`Mlp`].
    Mlp(Mlp),
    /// See [`Conv4`].
    Conv4(Conv4),
    /// See [`ResNet12`].
    ResNet12(ResNet12),
    /// See [`SegNet`].
    SegNet(SegNet),
}

macro_rules! delegate {
    ($self:ident, $m:ident => $e:expr) => {
        match $self {
            Backbone::Mlp($m) => $e,
            Backbone::Conv4($m) => $e,
            Backbone::ResNet12($m) => $e,
            Backbone::SegNet($m) => $e,
        }
    };
}

impl Model for Backbone {
    fn init(&self, path: &nn::Path<'_>) -> metl_models::error::Result<Params> {
        delegate!(self, m => m.init(path))
    }

    fn forward(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        delegate!(self, m => m.forward(params, x, train))
    }

    fn forward_at_step(&self, params: &Params, x: &Tensor, train: bool, step: usize) -> Tensor {
        delegate!(self, m => m.forward_at_step(params, x, train, step))
    }

    fn forward_tasks(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        delegate!(self, m => m.forward_tasks(params, x, train))
    }

    fn forward_tasks_at_step(&self, params: &Params, x: &Tensor, train: bool, step: usize) -> Tensor {
        delegate!(self, m => m.forward_tasks_at_step(params, x, train, step))
    }

    fn buffers(&self) -> Params {
        delegate!(self, m => m.buffers())
    }

    fn load_buffers(&self, buffers: &Params) -> metl_models::error::Result<()> {
        delegate!(self, m => m.load_buffers(buffers))
    }

    fn state_dict(&self, params: &Params) -> metl_models::error::Result<Params> {
        delegate!(self, m => m.state_dict(params))
    }
}

impl StagedModel for Backbone {
    fn num_stages(&self) -> usize {
        delegate!(self, m => m.num_stages())
    }

    fn stage_shapes(&self, input_shape: &[i64]) -> metl_models::error::Result<Vec<Vec<i64>>> {
        delegate!(self, m => m.stage_shapes(input_shape))
    }

    fn output_shape(&self, input_shape: &[i64]) -> metl_models::error::Result<Vec<i64>> {
        delegate!(self, m => m.output_shape(input_shape))
    }

    fn forward_stage(&self, params: &Params, stage: usize, h: &Tensor, mode: Mode) -> Tensor {
        delegate!(self, m => m.forward_stage(params, stage, h, mode))
    }

    fn finish(&self, h: &Tensor) -> Tensor {
        delegate!(self, m => m.finish(h))
    }

    fn forward_staged(&self, params: &Params, x: &Tensor, mode: Mode) -> Tensor {
        delegate!(self, m => m.forward_staged(params, x, mode))
    }
}

/// The length of the feature vector `model` produces for one input of `input_shape`
/// (without the batch dimension), found by running it once on zeros with throw-away
/// parameters.
pub fn feature_dim<M: Model>(
    model: &M,
    input_shape: &[i64],
    device: Device,
) -> metl_models::error::Result<i64> {
    let vs = nn::VarStore::new(device);
    let params = model.init(&vs.root())?;
    let mut shape = vec![2];
    shape.extend_from_slice(input_shape);
    let out = tch::no_grad(|| {
        model.forward(&params, &Tensor::zeros(shape.as_slice(), (Kind::Float, device)), false)
    });
    // `init` reset any buffers: the caller initialises its own parameters afterwards.
    Ok(out.size()[1..].iter().product())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_name_their_backbone_and_feature_sizes_follow() {
        let config: BackboneConfig = toml::from_str("[conv4]\nin_channels = 1\n").unwrap();
        assert_eq!(config.name(), "conv4");
        let conv4 = config.build().unwrap();
        assert_eq!(feature_dim(&conv4, &[1, 28, 28], Device::Cpu).unwrap(), 64);
        let mlp: BackboneConfig = toml::from_str("[mlp]\nwidths = [4, 8, 3]\n").unwrap();
        assert_eq!(feature_dim(&mlp.build().unwrap(), &[4], Device::Cpu).unwrap(), 3);
        for (name, _) in BACKBONES {
            let text = format!("[{name}]\n");
            if *name != "mlp" {
                assert_eq!(toml::from_str::<BackboneConfig>(&text).unwrap().name(), *name);
            }
        }
        assert!(toml::from_str::<BackboneConfig>("[conv5]\n").is_err());
    }
}
