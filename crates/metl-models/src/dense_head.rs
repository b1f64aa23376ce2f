//! [`DenseHead`]: a per-pixel prediction head, as MTAN's `pred_task` layers (Liu, Johns &
//! Davison 2019): a 3×3 convolution keeping the channels, then a 1×1 convolution to the
//! task's outputs, without a non-linearity in between — `[B, C, H, W]` features to
//! `[B, K, H, W]` (13 class logits, 1 depth, 3 normal components on NYUv2).

use crate::{
    error::{ModelError, Result},
    layers::{Conv2d, Layout, WeightInit},
    params::ParamsBuilder,
    Model, Params,
};
use tch::{nn, Tensor};

/// A per-pixel head: parameters `0.weight` `[C, C, 3, 3]`, `0.bias`, `1.weight`
/// `[K, C, 1, 1]`, `1.bias`, initialised Xavier-normal with zero biases (MTAN's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenseHead {
    hidden: Conv2d,
    output: Conv2d,
}

impl DenseHead {
    /// A head from `channels` feature channels to `outputs` per pixel.
    pub fn new(channels: i64, outputs: i64) -> Result<Self> {
        if channels < 1 || outputs < 1 {
            return Err(ModelError::invalid(
                "dense_head",
                format!("{channels} channels → {outputs} outputs"),
                "both must be >= 1",
            ));
        }
        Ok(Self {
            hidden: Conv2d::same("0", channels, channels, 3),
            output: Conv2d::same("1", channels, outputs, 1),
        })
    }
}

impl Model for DenseHead {
    fn init(&self, path: &nn::Path<'_>) -> Result<Params> {
        let mut builder = ParamsBuilder::new(path);
        self.hidden.init(&mut builder, WeightInit::XavierNormal)?;
        self.output.init(&mut builder, WeightInit::XavierNormal)?;
        builder.build()
    }

    fn forward(&self, params: &Params, x: &Tensor, _train: bool) -> Tensor {
        self.output.forward(params, &self.hidden.forward(params, x, Layout::Single), Layout::Single)
    }
}
