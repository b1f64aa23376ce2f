//! Conv4, the standard few-shot learning backbone (Vinyals et al., NeurIPS 2016, "Matching
//! Networks for One Shot Learning"; Snell et al., NeurIPS 2017, "Prototypical Networks for
//! Few-shot Learning"; Finn et al., ICML 2017, "Model-Agnostic Meta-Learning for Fast
//! Adaptation of Deep Networks").
//!
//! Four blocks `[3×3 conv (padding 1), batch norm, ReLU, 2×2 max-pool]` of 64 channels:
//! 28×28 inputs (Omniglot) become 64×1×1, 84×84 inputs (miniImageNet) 64×5×5. MAML's
//! Omniglot network replaces the max-pooling by stride-2 convolutions and averages the
//! last feature map ([`Downsampling::Strided`], [`FeaturePooling::Mean`],
//! [`Conv4Config::maml_strided`]).
//!
//! Parameters, as a PyTorch module with `self.blocks = nn.ModuleList([Block, ...])`, each
//! `Block` holding `conv = nn.Conv2d(...)` and `bn = nn.BatchNorm2d(...)`:
//! `blocks.{i}.conv.weight` `[C, C_in, 3, 3]`, `blocks.{i}.conv.bias` `[C]`,
//! `blocks.{i}.bn.weight` `[C]`, `blocks.{i}.bn.bias` `[C]` (`[S, C]` with per-step affine
//! batch norm), and the buffers `blocks.{i}.bn.running_mean`, `.running_var`,
//! `.num_batches_tracked` unless batch norm uses batch statistics only. Initialised as
//! PyTorch initialises `nn.Conv2d` and `nn.BatchNorm2d`.

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

/// How a Conv4 block halves the resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Downsampling {
    /// 3×3 convolution with stride 1, then 2×2 max-pooling (`H → ⌊H/2⌋`).
    #[default]
    MaxPool,
    /// 3×3 convolution with stride 2 and no pooling (`H → ⌈H/2⌉`; MAML on Omniglot).
    Strided,
}

/// How the last feature map becomes the feature vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeaturePooling {
    /// Flatten `[C, H, W]` to `C·H·W` features.
    #[default]
    Flatten,
    /// Average over the spatial axes: `C` features.
    Mean,
}

/// Configuration of a [`Conv4`]; the default is the Omniglot network (1 input channel, 64
/// channels, max-pooling, flattened features, PyTorch's batch norm).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Conv4Config {
    /// Input channels (1 for Omniglot, 3 for miniImageNet).
    pub in_channels: i64,
    /// Channels of every block (64; MAML used 32 on miniImageNet).
    pub hidden: i64,
    /// The number of blocks (4).
    pub blocks: usize,
    /// How each block halves the resolution.
    pub downsampling: Downsampling,
    /// How the last feature map becomes the feature vector.
    pub features: FeaturePooling,
    /// Batch norm of every block.
    pub batch_norm: BatchNormConfig,
}

impl Default for Conv4Config {
    fn default() -> Self {
        Self {
            in_channels: 1,
            hidden: 64,
            blocks: 4,
            downsampling: Downsampling::MaxPool,
            features: FeaturePooling::Flatten,
            batch_norm: BatchNormConfig::default(),
        }
    }
}

impl Conv4Config {
    /// The max-pooling Conv4 with `in_channels` input channels.
    pub fn new(in_channels: i64) -> Self {
        Self { in_channels, ..Self::default() }
    }

    /// MAML's Omniglot network: stride-2 convolutions, spatial mean of the last map.
    pub fn maml_strided(in_channels: i64) -> Self {
        Self {
            in_channels,
            downsampling: Downsampling::Strided,
            features: FeaturePooling::Mean,
            ..Self::default()
        }
    }

    /// The same with `hidden` channels per block.
    pub fn with_hidden(mut self, hidden: i64) -> Self {
        self.hidden = hidden;
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
            return Err(ModelError::invalid("conv4.in_channels", self.in_channels, "must be >= 1"));
        }
        if self.hidden < 1 {
            return Err(ModelError::invalid("conv4.hidden", self.hidden, "must be >= 1"));
        }
        if self.blocks == 0 {
            return Err(ModelError::invalid("conv4.blocks", 0, "must be >= 1"));
        }
        self.batch_norm.validate()
    }

    /// Validates the configuration and builds the model.
    pub fn build(&self) -> Result<Conv4> {
        self.validate()?;
        let stride = match self.downsampling {
            Downsampling::MaxPool => 1,
            Downsampling::Strided => 2,
        };
        let convs = (0..self.blocks)
            .map(|i| {
                let c_in = if i == 0 { self.in_channels } else { self.hidden };
                Conv2d::same(format!("blocks.{i}.conv"), c_in, self.hidden, 3).with_stride(stride)
            })
            .collect();
        let bns = (0..self.blocks)
            .map(|i| BatchNorm::new(format!("blocks.{i}.bn"), self.hidden, self.batch_norm))
            .collect();
        Ok(Conv4 { config: self.clone(), convs, bns })
    }

    /// Builds the model and creates its parameters under `path`.
    pub fn init(&self, path: &nn::Path<'_>) -> Result<(Conv4, Params)> {
        let model = self.build()?;
        let params = model.init(path)?;
        Ok((model, params))
    }
}

/// The Conv4 backbone (see the [module docs](self)); its output is the feature vector
/// `[B, F]` (`[T, B, F]` task-batched).
#[derive(Debug, Clone)]
pub struct Conv4 {
    config: Conv4Config,
    convs: Vec<Conv2d>,
    bns: Vec<BatchNorm>,
}

impl Conv4 {
    /// The configuration.
    pub fn config(&self) -> &Conv4Config {
        &self.config
    }

    /// The number of output features for `H×W` inputs (64 for 28×28, 1600 for 84×84 with
    /// the default configuration).
    pub fn feature_dim(&self, height: i64, width: i64) -> Result<i64> {
        let shape = self.output_shape(&[self.config.in_channels, height, width])?;
        Ok(shape[0])
    }

    fn block(&self, params: &Params, i: usize, x: &Tensor, mode: Mode, layout: Layout) -> Tensor {
        let h = self.convs[i].forward(params, x, layout);
        let h = self.bns[i].forward_in(params, &h, mode, layout).relu();
        match self.config.downsampling {
            Downsampling::MaxPool => max_pool2(&h),
            Downsampling::Strided => h,
        }
    }

    fn features(&self, h: &Tensor, layout: Layout) -> Tensor {
        match (self.config.features, layout) {
            (FeaturePooling::Flatten, Layout::Single) => h.flatten(1, -1),
            (FeaturePooling::Flatten, Layout::Tasks(t)) => flatten_task_channels(h, t),
            (FeaturePooling::Mean, Layout::Single) => h.mean_dim([2i64, 3].as_slice(), false, None),
            (FeaturePooling::Mean, Layout::Tasks(t)) => {
                flatten_task_channels(&h.mean_dim([2i64, 3].as_slice(), false, None).unsqueeze(-1), t)
            }
        }
    }
}

impl ConvNet for Conv4 {
    fn init_params(&self, builder: &mut ParamsBuilder<'_>) -> Result<()> {
        for (conv, bn) in self.convs.iter().zip(&self.bns) {
            conv.init(builder, WeightInit::TorchDefault)?;
            bn.init(builder)?;
        }
        Ok(())
    }

    fn blocks_and_features(&self, params: &Params, mut h: Tensor, mode: Mode, layout: Layout) -> Tensor {
        for i in 0..self.config.blocks {
            h = self.block(params, i, &h, mode, layout);
        }
        self.features(&h, layout)
    }

    fn largest_activation(&self, height: i64, width: i64) -> (i64, i64, i64) {
        (self.config.hidden, self.convs[0].output_size(height), self.convs[0].output_size(width))
    }

    fn batch_norms(&self) -> Vec<&BatchNorm> {
        self.bns.iter().collect()
    }
}

impl StagedModel for Conv4 {
    fn num_stages(&self) -> usize {
        self.config.blocks
    }

    fn stage_shapes(&self, input_shape: &[i64]) -> Result<Vec<Vec<i64>>> {
        let bad = || {
            ModelError::invalid(
                "conv4 input shape",
                format!("{input_shape:?}"),
                format!(
                    "must be [{}, H, W] with H, W large enough for {} blocks",
                    self.config.in_channels, self.config.blocks
                ),
            )
        };
        let &[c, mut h, mut w] = input_shape else { return Err(bad()) };
        if c != self.config.in_channels {
            return Err(bad());
        }
        let mut shapes = Vec::with_capacity(self.config.blocks);
        for conv in &self.convs {
            (h, w) = (conv.output_size(h), conv.output_size(w));
            if self.config.downsampling == Downsampling::MaxPool {
                (h, w) = (h / 2, w / 2);
            }
            if h < 1 || w < 1 {
                return Err(bad());
            }
            shapes.push(vec![self.config.hidden, h, w]);
        }
        Ok(shapes)
    }

    fn output_shape(&self, input_shape: &[i64]) -> Result<Vec<i64>> {
        let last = self.stage_shapes(input_shape)?.pop().expect("at least one block");
        Ok(match self.config.features {
            FeaturePooling::Flatten => vec![last.iter().product()],
            FeaturePooling::Mean => vec![last[0]],
        })
    }

    fn forward_stage(&self, params: &Params, stage: usize, h: &Tensor, mode: Mode) -> Tensor {
        self.block(params, stage, h, mode, Layout::Single)
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
    fn omniglot_conv4_has_torch_names_shapes_and_count() {
        let vs = nn::VarStore::new(Device::Cpu);
        let (conv4, params) = Conv4Config::new(1).init(&vs.root()).unwrap();
        assert_eq!(
            &params.names()[..4],
            ["blocks.0.conv.weight", "blocks.0.conv.bias", "blocks.0.bn.weight", "blocks.0.bn.bias"]
        );
        assert_eq!(params["blocks.1.conv.weight"].size(), [64, 64, 3, 3]);
        // torch: 640 + 3 · 36,928 (conv) + 4 · 128 (bn) = 111,936 (a 5-way head adds 325).
        assert_eq!(params.numel(), 111_936);
        let conv_numel: i64 = conv4.convs.iter().map(Conv2d::numel).sum();
        assert_eq!(conv_numel, 111_424);
        assert_eq!(conv4.feature_dim(28, 28).unwrap(), 64);
        assert_eq!(conv4.feature_dim(84, 84).unwrap(), 1600);
        let buffers = conv4.buffers();
        assert_eq!(
            buffers.names()[..3],
            ["blocks.0.bn.running_mean", "blocks.0.bn.running_var", "blocks.0.bn.num_batches_tracked"]
        );
        // torch: sum(b.numel() for b in model.buffers()) == 516
        assert_eq!(buffers.numel(), 516);
        let y = conv4.forward(&params, &Tensor::rand([3, 1, 28, 28], (Kind::Float, Device::Cpu)), true);
        assert_eq!(y.size(), [3, 64]);
    }

    #[test]
    fn strided_variant_halves_with_ceiling_and_averages() {
        let conv4 = Conv4Config::maml_strided(1).build().unwrap();
        assert_eq!(conv4.stage_shapes(&[1, 28, 28]).unwrap().last().unwrap(), &[64, 2, 2]);
        assert_eq!(conv4.feature_dim(28, 28).unwrap(), 64);
    }

    #[test]
    fn bad_configs_and_inputs_are_named() {
        let err = Conv4Config::new(0).build().unwrap_err().to_string();
        assert!(err.contains("conv4.in_channels"), "{err}");
        let conv4 = Conv4Config::new(1).build().unwrap();
        let err = conv4.feature_dim(8, 8).unwrap_err().to_string();
        assert!(err.contains("conv4 input shape"), "{err}");
    }
}
