//! SegNet (Badrinarayanan, Kendall & Cipolla, TPAMI 2017), the encoder-decoder that MTAN
//! (Liu, Johns & Davison, CVPR 2019) shares between NYUv2's segmentation, depth and normal
//! tasks — the "split" multi-task network of MTAN's `model_segnet_split.py`, which CAGrad,
//! Nash-MTL and FAMO use — with per-pixel heads ([`crate::dense_head::DenseHead`]).
//!
//! Five encoder stages and five decoder stages of `conv_layer`s (3×3 convolution with
//! padding 1, batch norm, ReLU) with widths `w = [64, 128, 256, 512, 512]`:
//!
//! - encoder stage `i`: `encoder_block.i` (`w[i−1] → w[i]`, the input channels for
//!   `i = 0`), then `conv_block_enc.i` (one `conv_layer` of `w[i]` for `i < 2`, two
//!   after), then 2×2 max pooling, remembering where each maximum was;
//! - decoder stage `i` (from the deepest): max *unpooling* to the size before the matching
//!   pooling with its indices, `decoder_block.j` (`w[j] → w[j−1]`, `w[0] → w[0]` for
//!   `j = 0`), then `conv_block_dec.j` (one `conv_layer` of `w[j−1]` for `j < 2`, two after),
//!   `j = 4 − i`.
//!
//! The output is the `[B, w[0], H, W]` feature map at the input's resolution. Parameters and
//! buffers carry the names of MTAN's PyTorch module (`encoder_block.0.0.weight`,
//! `conv_block_enc.2.1.0.weight`, `encoder_block.0.1.running_mean`, ...); weights are
//! initialised as MTAN does (Xavier-normal convolutions with zero bias, batch norm 1 and
//! 0). The standard network has 24,943,296 parameters (as PyTorch counts it), plus 111,889
//! for NYUv2's three heads.
//!
//! Because the decoder unpools with the encoder's indices, the network cannot be cut
//! between layers: as a [`StagedModel`] it is one stage.

use crate::{
    batch_norm::{collect_buffers, load_all_buffers, BatchNorm, BatchNormConfig},
    error::{ModelError, Result},
    layers::{Conv2d, Layout, WeightInit},
    params::ParamsBuilder,
    staged::StagedModel,
    Mode, Model, Params,
};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Configuration of a [`SegNet`]; the default is MTAN's standard network for RGB inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegNetConfig {
    /// Input channels (3 for RGB).
    pub in_channels: i64,
    /// The widths of the five stages; `[64, 128, 256, 512, 512]` (MTAN's "wide" variant:
    /// `[64, 128, 256, 512, 1024]`).
    pub widths: [i64; 5],
    /// Batch norm of every `conv_layer` (PyTorch's).
    pub batch_norm: BatchNormConfig,
}

impl Default for SegNetConfig {
    fn default() -> Self {
        Self { in_channels: 3, widths: [64, 128, 256, 512, 512], batch_norm: BatchNormConfig::default() }
    }
}

impl SegNetConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.in_channels < 1 {
            return Err(ModelError::invalid("segnet.in_channels", self.in_channels, "must be >= 1"));
        }
        if self.widths.iter().any(|&w| w < 1) {
            return Err(ModelError::invalid(
                "segnet.widths",
                format!("{:?}", self.widths),
                "every width >= 1",
            ));
        }
        self.batch_norm.validate()
    }

    /// Validates the configuration and builds the model.
    pub fn build(&self) -> Result<SegNet> {
        self.validate()?;
        let w = self.widths;
        let bn = self.batch_norm;
        let layers = |name: String, c_in: i64, c_out: i64, count: usize| -> Vec<ConvLayer> {
            match count {
                1 => vec![ConvLayer::new(name, c_in, c_out, bn)],
                _ => (0..count).map(|k| ConvLayer::new(format!("{name}.{k}"), c_in, c_out, bn)).collect(),
            }
        };
        let mut encoder = Vec::with_capacity(5);
        let mut decoder = Vec::with_capacity(5);
        for i in 0..5 {
            let below = if i == 0 { self.in_channels } else { w[i - 1] };
            let mut stage = layers(format!("encoder_block.{i}"), below, w[i], 1);
            stage.extend(layers(format!("conv_block_enc.{i}"), w[i], w[i], if i < 2 { 1 } else { 2 }));
            encoder.push(stage);
            let out = if i == 0 { w[0] } else { w[i - 1] };
            let mut stage = layers(format!("decoder_block.{i}"), w[i], out, 1);
            stage.extend(layers(format!("conv_block_dec.{i}"), out, out, if i < 2 { 1 } else { 2 }));
            decoder.push(stage);
        }
        Ok(SegNet { config: self.clone(), encoder, decoder })
    }
}

/// MTAN's `conv_layer`: 3×3 convolution (`{name}.0`), batch norm (`{name}.1`), ReLU.
#[derive(Debug, Clone)]
struct ConvLayer {
    conv: Conv2d,
    bn: BatchNorm,
}

impl ConvLayer {
    fn new(name: String, c_in: i64, c_out: i64, bn: BatchNormConfig) -> Self {
        Self {
            conv: Conv2d::same(format!("{name}.0"), c_in, c_out, 3),
            bn: BatchNorm::new(format!("{name}.1"), c_out, bn),
        }
    }

    fn forward(&self, params: &Params, x: &Tensor, mode: Mode) -> Tensor {
        self.bn.forward(params, &self.conv.forward(params, x, Layout::Single), mode).relu()
    }
}

/// The SegNet encoder-decoder (see the [module docs](self)): images `[B, C, H, W]` to
/// features `[B, w[0], H, W]`.
#[derive(Debug, Clone)]
pub struct SegNet {
    config: SegNetConfig,
    /// Per encoder stage: `encoder_block.i` then `conv_block_enc.i`.
    encoder: Vec<Vec<ConvLayer>>,
    /// Per decoder module index `j`: `decoder_block.j` then `conv_block_dec.j`.
    decoder: Vec<Vec<ConvLayer>>,
}

impl SegNet {
    /// The configuration.
    pub fn config(&self) -> &SegNetConfig {
        &self.config
    }

    /// Every layer in the order PyTorch registers them: `encoder_block`, `decoder_block`,
    /// `conv_block_enc`, `conv_block_dec`, each by index.
    fn ordered_layers(&self) -> Vec<&ConvLayer> {
        let (encoder, decoder) = (&self.encoder, &self.decoder);
        let first = encoder.iter().chain(decoder).map(|s| &s[0]);
        let rest = encoder.iter().chain(decoder).flat_map(|s| &s[1..]);
        first.chain(rest).collect()
    }

    fn run(&self, params: &Params, x: &Tensor, mode: Mode) -> Tensor {
        let mut h = x.shallow_clone();
        let mut pooled = Vec::with_capacity(5);
        for stage in &self.encoder {
            h = stage.iter().fold(h, |h, layer| layer.forward(params, &h, mode));
            let size = h.size();
            let (p, indices) = h.max_pool2d_with_indices([2, 2], [2, 2], [0, 0], [1, 1], false);
            pooled.push((indices, [size[2], size[3]]));
            h = p;
        }
        for (stage, (indices, size)) in self.decoder.iter().rev().zip(pooled.iter().rev()) {
            h = h.max_unpool2d(indices, size.as_slice());
            h = stage.iter().fold(h, |h, layer| layer.forward(params, &h, mode));
        }
        h
    }
}

impl Model for SegNet {
    fn init(&self, path: &nn::Path<'_>) -> Result<Params> {
        let mut builder = ParamsBuilder::new(path);
        for layer in self.ordered_layers() {
            layer.conv.init(&mut builder, WeightInit::XavierNormal)?;
            layer.bn.init(&mut builder)?;
        }
        builder.build()
    }

    fn forward(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        self.run(params, x, Mode::new(train, 0))
    }

    fn forward_at_step(&self, params: &Params, x: &Tensor, train: bool, step: usize) -> Tensor {
        self.run(params, x, Mode::new(train, step))
    }

    fn buffers(&self) -> Params {
        collect_buffers(self.ordered_layers().into_iter().map(|l| &l.bn))
    }

    fn load_buffers(&self, buffers: &Params) -> Result<()> {
        load_all_buffers(self.ordered_layers().into_iter().map(|l| &l.bn), buffers)
    }
}

impl StagedModel for SegNet {
    fn num_stages(&self) -> usize {
        1
    }

    fn stage_shapes(&self, input_shape: &[i64]) -> Result<Vec<Vec<i64>>> {
        match *input_shape {
            [c, h, w] if c == self.config.in_channels && h >= 32 && w >= 32 => {
                Ok(vec![vec![self.config.widths[0], h, w]])
            }
            _ => Err(ModelError::invalid(
                "segnet input shape",
                format!("{input_shape:?}"),
                format!("must be [{}, H, W] with H, W >= 32 (five 2×2 poolings)", self.config.in_channels),
            )),
        }
    }

    fn output_shape(&self, input_shape: &[i64]) -> Result<Vec<i64>> {
        Ok(self.stage_shapes(input_shape)?.remove(0))
    }

    fn forward_stage(&self, params: &Params, stage: usize, h: &Tensor, mode: Mode) -> Tensor {
        assert_eq!(stage, 0, "SegNet is one stage");
        self.run(params, h, mode)
    }

    fn finish(&self, h: &Tensor) -> Tensor {
        h.shallow_clone()
    }
}
