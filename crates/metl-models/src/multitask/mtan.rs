//! Multi-Task Attention Network (Liu, Johns & Davison, CVPR 2019, "End-to-End Multi-Task
//! Learning with Attention").

use super::{decoder_task, experts::check_heads, heads, indexed, MultiTaskModel};
use crate::{
    batch_norm::{collect_buffers, load_all_buffers, BatchNorm, BatchNormConfig},
    error::{ModelError, Result},
    layers::{Conv2d, Layout, Linear, WeightInit},
    params::ParamsBuilder,
    staged::StagedModel,
    Mode, Model, Params,
};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Configuration of [`Mtan`].
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MtanConfig {
    /// Batch norm of the attention and block modules (PyTorch's default).
    pub batch_norm: BatchNormConfig,
}

/// A 1×1 convolution (image features) or a linear map (flat features).
#[derive(Debug, Clone)]
enum Map {
    Conv(Conv2d),
    Linear(Linear),
}

impl Map {
    fn new(name: String, spatial: bool, c_in: i64, c_out: i64, kernel: i64) -> Self {
        if spatial {
            Map::Conv(Conv2d::same(name, c_in, c_out, kernel))
        } else {
            Map::Linear(Linear::new(name, c_in, c_out))
        }
    }

    fn init(&self, builder: &mut ParamsBuilder<'_>) -> Result<()> {
        match self {
            Map::Conv(c) => c.init(builder, WeightInit::TorchDefault),
            Map::Linear(l) => l.init(builder),
        }
    }

    fn forward(&self, params: &Params, x: &Tensor) -> Tensor {
        match self {
            Map::Conv(c) => c.forward(params, x, Layout::Single),
            Map::Linear(l) => l.forward(params, x, Layout::Single),
        }
    }
}

/// `map → batch norm`, optionally followed by ReLU.
#[derive(Debug, Clone)]
struct MapNorm {
    map: Map,
    bn: BatchNorm,
}

impl MapNorm {
    fn new(
        prefix: &str,
        index: usize,
        spatial: bool,
        c_in: i64,
        c_out: i64,
        kernel: i64,
        bn: BatchNormConfig,
    ) -> Self {
        Self {
            map: Map::new(format!("{prefix}.{index}"), spatial, c_in, c_out, kernel),
            bn: BatchNorm::new(format!("{prefix}.{}", index + 1), c_out, bn),
        }
    }

    fn init(&self, builder: &mut ParamsBuilder<'_>) -> Result<()> {
        self.map.init(builder)?;
        self.bn.init(builder)
    }

    fn forward(&self, params: &Params, x: &Tensor, mode: Mode) -> Tensor {
        self.bn.forward(params, &self.map.forward(params, x), mode)
    }
}

/// Task `t`'s attention module at stage `s`: `[1×1 conv, BN, ReLU, 1×1 conv, BN, sigmoid]`
/// (linear maps for flat features), named `attention.{t}.{s}.{0,1,3,4}.*` as the
/// `nn.Sequential` of LibMTL's `_att_layer`.
#[derive(Debug, Clone)]
struct Attention {
    first: MapNorm,
    second: MapNorm,
}

/// MTAN on any [`StagedModel`] backbone: the backbone is shared; at every stage `s` each task
/// `t` computes a soft attention mask from the stage's shared features `f_s` and its own
/// attended features of the previous stage, and applies it to `f_s`:
///
/// ```text
/// a_{t,0} = m_{t,0}(f_0) ⊙ f_0,   a_{t,s} = m_{t,s}([f_s, pool(g_{s−1}(a_{t,s−1}))]) ⊙ f_s
/// ŷ_t = h_t(finish(a_{t,S−1}))
/// ```
///
/// `m_{t,s}` is the attention module (sigmoid output), `g_s` a shared `[3×3 conv, BN, ReLU]`
/// block to the next stage's channels (LibMTL's `encoder_block_att`; a linear map for flat
/// features), `pool` a 2×2 max-pool to the next stage's resolution where it differs. Since
/// our stages are single blocks, the features the mask is computed from and those it is
/// applied to are the same stage output (LibMTL's ResNet version takes the former after the
/// stage's first blocks).
///
/// Parameters: `backbone.*`, `block_att.{s}.{0,1}.*` (shared), `attention.{t}.{s}.*` and
/// `decoders.{t}.*` (task `t`). No shared representation: `encode` returns the stacked
/// `finish(a_{t,S−1})` `[T, B, F]`.
#[derive(Debug, Clone)]
pub struct Mtan<B, H> {
    backbone: B,
    heads: Vec<H>,
    attention: Vec<Vec<Attention>>,
    blocks: Vec<MapNorm>,
    stage_shapes: Vec<Vec<i64>>,
}

impl<B: StagedModel, H: Model> Mtan<B, H> {
    /// MTAN on `backbone` with one head per task, for inputs of per-sample shape
    /// `input_shape` (which fixes the channels of the attention modules).
    pub fn new(backbone: B, heads: Vec<H>, input_shape: &[i64], config: MtanConfig) -> Result<Self> {
        config.batch_norm.validate()?;
        check_heads("mtan.heads", heads.len())?;
        let stage_shapes = backbone.stage_shapes(input_shape)?;
        let spatial = stage_shapes[0].len() == 3;
        if stage_shapes.iter().any(|s| s.len() != stage_shapes[0].len() || !(s.len() == 1 || s.len() == 3)) {
            return Err(ModelError::invalid(
                "mtan.backbone",
                format!("stage shapes {stage_shapes:?}"),
                "stages must all output [C, H, W] images or all [F] features",
            ));
        }
        let bn = config.batch_norm;
        let attention = (0..heads.len())
            .map(|t| {
                stage_shapes
                    .iter()
                    .enumerate()
                    .map(|(s, shape)| {
                        let (c, prefix) = (shape[0], format!("attention.{t}.{s}"));
                        let c_in = if s == 0 { c } else { 2 * c };
                        Attention {
                            first: MapNorm::new(&prefix, 0, spatial, c_in, c, 1, bn),
                            second: MapNorm::new(&prefix, 3, spatial, c, c, 1, bn),
                        }
                    })
                    .collect()
            })
            .collect();
        let blocks = stage_shapes
            .windows(2)
            .enumerate()
            .map(|(s, pair)| {
                MapNorm::new(&format!("block_att.{s}"), 0, spatial, pair[0][0], pair[1][0], 3, bn)
            })
            .collect();
        Ok(Self { backbone, heads, attention, blocks, stage_shapes })
    }

    fn batch_norms(&self) -> impl Iterator<Item = &BatchNorm> {
        let attention = self.attention.iter().flatten().flat_map(|a| [&a.first.bn, &a.second.bn]);
        attention.chain(self.blocks.iter().map(|b| &b.bn))
    }

    /// `h` max-pooled to the spatial size of stage `s` where it differs.
    fn resize(&self, h: &Tensor, s: usize) -> Tensor {
        let target = &self.stage_shapes[s];
        if target.len() != 3 {
            return h.shallow_clone();
        }
        let size = h.size();
        let (from, to) = ([size[2], size[3]], [target[1], target[2]]);
        if from == to {
            h.shallow_clone()
        } else if from.iter().zip(&to).all(|(f, t)| f / 2 == *t) {
            h.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
        } else if from.iter().zip(&to).all(|(f, t)| (f + 1) / 2 == *t) {
            h.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], true)
        } else {
            h.adaptive_max_pool2d(to).0
        }
    }
}

impl<B: StagedModel, H: Model> MultiTaskModel for Mtan<B, H> {
    fn num_tasks(&self) -> usize {
        self.heads.len()
    }

    fn init(&self, path: &nn::Path<'_>) -> Result<Params> {
        let backbone = self.backbone.init(&path.sub("backbone"))?.prefixed("backbone");
        let mut builder = ParamsBuilder::new(path);
        for block in &self.blocks {
            block.init(&mut builder)?;
        }
        for a in self.attention.iter().flatten() {
            a.first.init(&mut builder)?;
            a.second.init(&mut builder)?;
        }
        backbone.merge(&builder.build()?)?.merge(&heads::init(&self.heads, path)?)
    }

    fn task_of(&self, name: &str) -> Option<usize> {
        decoder_task(name).or_else(|| indexed(name, "attention"))
    }

    fn has_shared_representation(&self) -> bool {
        false
    }

    fn encode(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        let mode = Mode::new(train, 0);
        let backbone = params.sub("backbone");
        let mut shared = x.shallow_clone();
        let mut carried: Vec<Option<Tensor>> = self.heads.iter().map(|_| None).collect();
        let mut attended = Vec::with_capacity(self.heads.len());
        for s in 0..self.stage_shapes.len() {
            shared = self.backbone.forward_stage(&backbone, s, &shared, mode);
            attended.clear();
            for (t, previous) in carried.iter_mut().enumerate() {
                let input = match previous.take() {
                    None => shared.shallow_clone(),
                    Some(p) => Tensor::cat(&[shared.shallow_clone(), self.resize(&p, s)], 1),
                };
                let att = &self.attention[t][s];
                let mask = att
                    .second
                    .forward(params, &att.first.forward(params, &input, mode).relu(), mode)
                    .sigmoid();
                let a = mask * &shared;
                if s + 1 < self.stage_shapes.len() {
                    *previous = Some(self.blocks[s].forward(params, &a, mode).relu());
                }
                attended.push(a);
            }
        }
        Tensor::stack(&attended.iter().map(|a| self.backbone.finish(a)).collect::<Vec<_>>(), 0)
    }

    fn decode(&self, params: &Params, _x: &Tensor, z: &Tensor, train: bool) -> Vec<Tensor> {
        (0..self.heads.len())
            .map(|t| heads::forward(&self.heads, params, t, &z.get(t as i64), train))
            .collect()
    }

    fn buffers(&self) -> Params {
        let backbone = self.backbone.buffers().prefixed("backbone");
        super::concat([backbone, collect_buffers(self.batch_norms()), heads::buffers(&self.heads)])
            .expect("prefixes keep names apart")
    }

    fn load_buffers(&self, buffers: &Params) -> Result<()> {
        self.backbone.load_buffers(&buffers.sub("backbone"))?;
        load_all_buffers(self.batch_norms(), buffers)?;
        heads::load_buffers(&self.heads, buffers)
    }
}
