//! ResNet-12, the few-shot learning standard (Oreshkin et al., NeurIPS 2018, "TADAM: Task
//! dependent adaptive metric for improved few-shot learning"; Lee et al., CVPR 2019,
//! "Meta-Learning with Differentiable Convex Optimization" (MetaOptNet), whose
//! implementation this follows).
//!
//! Four residual blocks of widths 64-160-320-640 (or 64-128-256-512). Block `i` maps `x` to
//!
//! ```text
//! h = σ(BN₁(conv₁ x)),  h = σ(BN₂(conv₂ h)),  h = BN₃(conv₃ h)
//! y = maxpool₂ₓ₂(σ(h + BN_d(conv_d x)))
//! ```
//!
//! with 3×3 convolutions (padding 1, no bias), a 1×1 shortcut convolution `conv_d` (no bias),
//! σ = LeakyReLU(0.1). 84×84 inputs end as 640×5×5, averaged to 640 features (Tian et al.,
//! ECCV 2020, "Rethinking Few-Shot Image Classification"), or flattened (MetaOptNet).
//! DropBlock regularisation is not included.
//!
//! Parameters are named as MetaOptNet's and `rfs`'s `resnet12` modules name them, so their
//! checkpoints load: `layer{i}.0.conv{1,2,3}.weight` `[C, C_in or C, 3, 3]`,
//! `layer{i}.0.bn{1,2,3}.{weight,bias}` `[C]`, `layer{i}.0.downsample.0.weight`
//! `[C, C_in, 1, 1]`, `layer{i}.0.downsample.1.{weight,bias}` `[C]` for `i = 1..4`, and the
//! batch-norm buffers. Convolutions are initialised as in MetaOptNet (Kaiming normal,
//! fan-out, gain √2), batch norm with γ = 1, β = 0.

use crate::{
    batch_norm::{BatchNorm, BatchNormConfig},
    conv_net::ConvNet,
    error::{ModelError, Result},
    layers::{flatten_task_channels, max_pool2, Conv2d, Layout, WeightInit},
    params::ParamsBuilder,
    staged::StagedModel,
    Mode, Model, Params,
};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Configuration of a [`ResNet12`]; the default is the 64-160-320-640 network for RGB
/// inputs with average pooling and PyTorch's batch norm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResNet12Config {
    /// Input channels (3).
    pub in_channels: i64,
    /// The width of each residual block (64, 160, 320, 640).
    pub channels: Vec<i64>,
    /// The LeakyReLU slope (0.1).
    pub negative_slope: f64,
    /// Average the last feature map (true), or flatten it (false).
    pub avg_pool: bool,
    /// Batch norm of every layer.
    pub batch_norm: BatchNormConfig,
}

impl Default for ResNet12Config {
    fn default() -> Self {
        Self {
            in_channels: 3,
            channels: vec![64, 160, 320, 640],
            negative_slope: 0.1,
            avg_pool: true,
            batch_norm: BatchNormConfig::default(),
        }
    }
}

impl ResNet12Config {
    /// The 64-128-256-512 variant.
    pub fn narrow() -> Self {
        Self { channels: vec![64, 128, 256, 512], ..Self::default() }
    }

    /// The same with these block widths.
    pub fn with_channels(mut self, channels: impl Into<Vec<i64>>) -> Self {
        self.channels = channels.into();
        self
    }

    /// The same with this batch norm.
    pub fn with_batch_norm(mut self, batch_norm: BatchNormConfig) -> Self {
        self.batch_norm = batch_norm;
        self
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.in_channels < 1 {
            return Err(ModelError::invalid("resnet12.in_channels", self.in_channels, "must be >= 1"));
        }
        if self.channels.is_empty() || self.channels.iter().any(|&c| c < 1) {
            return Err(ModelError::invalid(
                "resnet12.channels",
                format!("{:?}", self.channels),
                "must be non-empty, every width >= 1",
            ));
        }
        if !(self.negative_slope.is_finite() && (0.0..1.0).contains(&self.negative_slope)) {
            return Err(ModelError::invalid(
                "resnet12.negative_slope",
                self.negative_slope,
                "must be in [0, 1)",
            ));
        }
        self.batch_norm.validate()
    }

    /// Validates the configuration and builds the model.
    pub fn build(&self) -> Result<ResNet12> {
        self.validate()?;
        let mut c_in = self.in_channels;
        let blocks = self
            .channels
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let block = ResidualBlock::new(&format!("layer{}.0", i + 1), c_in, c, self.batch_norm);
                c_in = c;
                block
            })
            .collect();
        Ok(ResNet12 { config: self.clone(), blocks })
    }

    /// Builds the model and creates its parameters under `path`.
    pub fn init(&self, path: &nn::Path<'_>) -> Result<(ResNet12, Params)> {
        let model = self.build()?;
        let params = model.init(path)?;
        Ok((model, params))
    }
}

/// One residual block: three 3×3 convolutions and a 1×1 shortcut, each with batch norm.
#[derive(Debug, Clone)]
struct ResidualBlock {
    convs: [Conv2d; 3],
    bns: [BatchNorm; 3],
    shortcut: Conv2d,
    shortcut_bn: BatchNorm,
}

impl ResidualBlock {
    fn new(prefix: &str, c_in: i64, c: i64, bn: BatchNormConfig) -> Self {
        let conv = |i: usize, c_in| Conv2d::same(format!("{prefix}.conv{i}"), c_in, c, 3).without_bias();
        let norm = |i: usize| BatchNorm::new(format!("{prefix}.bn{i}"), c, bn);
        Self {
            convs: [conv(1, c_in), conv(2, c), conv(3, c)],
            bns: [norm(1), norm(2), norm(3)],
            shortcut: Conv2d::same(format!("{prefix}.downsample.0"), c_in, c, 1).without_bias(),
            shortcut_bn: BatchNorm::new(format!("{prefix}.downsample.1"), c, bn),
        }
    }

    fn init(&self, builder: &mut ParamsBuilder<'_>) -> Result<()> {
        for (conv, bn) in self.convs.iter().zip(&self.bns) {
            conv.init(builder, WeightInit::KaimingNormalFanOut)?;
            bn.init(builder)?;
        }
        self.shortcut.init(builder, WeightInit::KaimingNormalFanOut)?;
        self.shortcut_bn.init(builder)
    }

    fn forward(&self, params: &Params, x: &Tensor, mode: Mode, layout: Layout, slope: f64) -> Tensor {
        let mut h = x.shallow_clone();
        for (i, (conv, bn)) in self.convs.iter().zip(&self.bns).enumerate() {
            h = bn.forward_in(params, &conv.forward(params, &h, layout), mode, layout);
            if i < 2 {
                h = leaky_relu(&h, slope);
            }
        }
        let shortcut =
            self.shortcut_bn.forward_in(params, &self.shortcut.forward(params, x, layout), mode, layout);
        max_pool2(&leaky_relu(&(h + shortcut), slope))
    }

    fn batch_norms(&self) -> impl Iterator<Item = &BatchNorm> {
        self.bns.iter().chain(std::iter::once(&self.shortcut_bn))
    }
}

/// `x` where positive, `slope · x` elsewhere (`nn.LeakyReLU(slope)`).
fn leaky_relu(x: &Tensor, slope: f64) -> Tensor {
    x.where_self(&x.gt(0.0), &(x * slope))
}

/// The ResNet-12 backbone (see the [module docs](self)); its output is the feature vector
/// `[B, F]` (`[T, B, F]` task-batched).
#[derive(Debug, Clone)]
pub struct ResNet12 {
    config: ResNet12Config,
    blocks: Vec<ResidualBlock>,
}

impl ResNet12 {
    /// The configuration.
    pub fn config(&self) -> &ResNet12Config {
        &self.config
    }

    fn features(&self, h: &Tensor, layout: Layout) -> Tensor {
        let h = if self.config.avg_pool {
            h.mean_dim([2i64, 3].as_slice(), true, None)
        } else {
            h.shallow_clone()
        };
        match layout {
            Layout::Single => h.flatten(1, -1),
            Layout::Tasks(t) => flatten_task_channels(&h, t),
        }
    }
}

impl ConvNet for ResNet12 {
    fn init_params(&self, builder: &mut ParamsBuilder<'_>) -> Result<()> {
        self.blocks.iter().try_for_each(|block| block.init(builder))
    }

    fn blocks_and_features(&self, params: &Params, mut h: Tensor, mode: Mode, layout: Layout) -> Tensor {
        for block in &self.blocks {
            h = block.forward(params, &h, mode, layout, self.config.negative_slope);
        }
        self.features(&h, layout)
    }

    fn largest_activation(&self, height: i64, width: i64) -> (i64, i64, i64) {
        (self.config.channels[0], height, width)
    }

    fn batch_norms(&self) -> Vec<&BatchNorm> {
        self.blocks.iter().flat_map(ResidualBlock::batch_norms).collect()
    }
}

impl StagedModel for ResNet12 {
    fn num_stages(&self) -> usize {
        self.blocks.len()
    }

    fn stage_shapes(&self, input_shape: &[i64]) -> Result<Vec<Vec<i64>>> {
        let bad = || {
            ModelError::invalid(
                "resnet12 input shape",
                format!("{input_shape:?}"),
                format!(
                    "must be [{}, H, W] with H, W >= 2^{} (one 2×2 pooling per block)",
                    self.config.in_channels,
                    self.blocks.len()
                ),
            )
        };
        let &[c, mut h, mut w] = input_shape else { return Err(bad()) };
        if c != self.config.in_channels {
            return Err(bad());
        }
        let mut shapes = Vec::with_capacity(self.blocks.len());
        for &c in &self.config.channels {
            (h, w) = (h / 2, w / 2);
            if h < 1 || w < 1 {
                return Err(bad());
            }
            shapes.push(vec![c, h, w]);
        }
        Ok(shapes)
    }

    fn output_shape(&self, input_shape: &[i64]) -> Result<Vec<i64>> {
        let last = self.stage_shapes(input_shape)?.pop().expect("at least one block");
        Ok(if self.config.avg_pool { vec![last[0]] } else { vec![last.iter().product()] })
    }

    fn forward_stage(&self, params: &Params, stage: usize, h: &Tensor, mode: Mode) -> Tensor {
        self.blocks[stage].forward(params, h, mode, Layout::Single, self.config.negative_slope)
    }

    fn finish(&self, h: &Tensor) -> Tensor {
        self.features(h, Layout::Single)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn names_and_counts_match_metaoptnet() {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = ResNet12Config::default().build().unwrap();
        let params = model.init(&vs.root()).unwrap();
        assert_eq!(params.names()[0], "layer1.0.conv1.weight");
        assert!(params.get("layer4.0.downsample.1.bias").is_some());
        // torch (MetaOptNet's resnet12 without DropBlock): 12,424,320 parameters, 9,488
        // buffer scalars; 76,160 + 564,480 + 2,357,760 + 9,425,920 per block.
        assert_eq!(params.numel(), 12_424_320);
        assert_eq!(model.buffers().numel(), 9_488);
        assert_eq!(params.sub("layer2.0").numel(), 564_480);
        let narrow = ResNet12Config::narrow().build().unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        assert_eq!(narrow.init(&vs.root()).unwrap().numel(), 7_996_800);
        assert_eq!(model.output_shape(&[3, 84, 84]).unwrap(), [640]);
    }

    #[test]
    fn small_resnet_runs_and_rejects_tiny_inputs() {
        let vs = nn::VarStore::new(Device::Cpu);
        let config = ResNet12Config { in_channels: 1, channels: vec![2, 3, 4, 5], ..Default::default() };
        let (model, params) = config.init(&vs.root()).unwrap();
        let y = model.forward(&params, &Tensor::rand([2, 1, 16, 16], (Kind::Float, Device::Cpu)), true);
        assert_eq!(y.size(), [2, 5]);
        let err = model.output_shape(&[1, 8, 8]).unwrap_err().to_string();
        assert!(err.contains("resnet12 input shape"), "{err}");
        assert!(ResNet12Config::default().with_channels([]).build().is_err());
    }
}
