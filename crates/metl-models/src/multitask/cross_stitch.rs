//! Cross-stitch networks (Misra et al., CVPR 2016, "Cross-stitch Networks for Multi-task
//! Learning").

use super::{decoder_task, experts::check_heads, heads, MultiTaskModel};
use crate::{
    error::{ModelError, Result},
    params::ParamsBuilder,
    staged::StagedModel,
    Mode, Model, Params,
};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Configuration of [`CrossStitch`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrossStitchConfig {
    /// The initial weight `α_S` of a column's own features; the other columns share
    /// `1 − α_S` equally (Misra et al.: `(α_S, α_D) = (0.9, 0.1)` for two tasks, the default).
    pub alpha_same: f64,
}

impl Default for CrossStitchConfig {
    fn default() -> Self {
        Self { alpha_same: 0.9 }
    }
}

impl CrossStitchConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.alpha_same) {
            return Err(ModelError::invalid("cross_stitch.alpha_same", self.alpha_same, "must be in [0, 1]"));
        }
        Ok(())
    }
}

/// Cross-stitch network: one column (a copy of a [`StagedModel`] backbone) per task, and
/// after every stage but the last a cross-stitch unit that replaces each column's features
/// by a learned linear combination of all columns' features,
///
/// ```text
/// h^{s+1}_t = stage_{s+1}(f_t, Σ_u α^s_{t,u} h^s_u),   ŷ_t = h_t(finish(h^S_t))
/// ```
///
/// Parameters: `columns.{t}.*` (the backbone's names), `cross_unit` `[S − 1, T, T]` (as
/// LibMTL's `cross_unit`, which initialises it to ones; here to the paper's `α_S` on the
/// diagonal and `(1 − α_S)/(T − 1)` elsewhere), `decoders.{t}.*`. The stitching lets every
/// task's loss reach every column, so columns and units are shared and only the heads
/// belong to a task; there is no shared representation (`encode` returns the stacked
/// `finish(h^S_t)` `[T, B, F]`).
#[derive(Debug, Clone)]
pub struct CrossStitch<B, H> {
    columns: Vec<B>,
    heads: Vec<H>,
    config: CrossStitchConfig,
}

impl<B: StagedModel + Clone, H: Model> CrossStitch<B, H> {
    /// A cross-stitch network of copies of `backbone`, one head per task.
    pub fn new(backbone: &B, heads: Vec<H>, config: CrossStitchConfig) -> Result<Self> {
        config.validate()?;
        check_heads("cross_stitch.heads", heads.len())?;
        Ok(Self { columns: vec![backbone.clone(); heads.len()], heads, config })
    }

    fn stages(&self) -> usize {
        self.columns[0].num_stages()
    }

    fn initial_units(&self) -> Vec<f64> {
        let t = self.heads.len();
        let other = if t > 1 { (1.0 - self.config.alpha_same) / (t - 1) as f64 } else { 0.0 };
        let same = if t > 1 { self.config.alpha_same } else { 1.0 };
        let unit: Vec<f64> = (0..t * t).map(|i| if i / t == i % t { same } else { other }).collect();
        unit.repeat(self.stages().saturating_sub(1))
    }
}

impl<B: StagedModel + Clone, H: Model> MultiTaskModel for CrossStitch<B, H> {
    fn num_tasks(&self) -> usize {
        self.heads.len()
    }

    fn init(&self, path: &nn::Path<'_>) -> Result<Params> {
        let mut params = Params::empty();
        for (t, column) in self.columns.iter().enumerate() {
            let p = column.init(&path.sub("columns").sub(t))?.prefixed(&format!("columns.{t}"));
            params = params.merge(&p)?;
        }
        let t = self.heads.len() as i64;
        let units = self.stages().saturating_sub(1) as i64;
        let mut builder = ParamsBuilder::new(path);
        builder.var("cross_unit", &[units, t, t], nn::Init::Const(0.0))?;
        let stitch = builder.build()?;
        let init = Tensor::from_slice(&self.initial_units()).view([units, t, t]);
        tch::no_grad(|| stitch["cross_unit"].shallow_clone().copy_(&init));
        params.merge(&stitch)?.merge(&heads::init(&self.heads, path)?)
    }

    fn task_of(&self, name: &str) -> Option<usize> {
        decoder_task(name)
    }

    fn has_shared_representation(&self) -> bool {
        false
    }

    fn encode(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        let mode = Mode::new(train, 0);
        let column_params: Vec<Params> =
            (0..self.columns.len()).map(|t| params.sub(&format!("columns.{t}"))).collect();
        let units = &params["cross_unit"];
        let mut h: Vec<Tensor> = self.columns.iter().map(|_| x.shallow_clone()).collect();
        for s in 0..self.stages() {
            if s > 0 {
                // [T, B, ...] features, mixed across columns by α^{s−1}: [T, T] · [T, B·…].
                let stacked = Tensor::stack(&h, 0);
                let size = stacked.size();
                let mixed =
                    units.get(s as i64 - 1).matmul(&stacked.reshape([size[0], -1])).reshape(size.as_slice());
                h = (0..self.columns.len() as i64).map(|t| mixed.get(t)).collect();
            }
            h = self
                .columns
                .iter()
                .zip(&column_params)
                .zip(&h)
                .map(|((column, p), h)| column.forward_stage(p, s, h, mode))
                .collect();
        }
        let features: Vec<Tensor> = self.columns.iter().zip(&h).map(|(c, h)| c.finish(h)).collect();
        Tensor::stack(&features, 0)
    }

    fn decode(&self, params: &Params, _x: &Tensor, z: &Tensor, train: bool) -> Vec<Tensor> {
        (0..self.heads.len())
            .map(|t| heads::forward(&self.heads, params, t, &z.get(t as i64), train))
            .collect()
    }

    fn buffers(&self) -> Params {
        let sets =
            self.columns.iter().enumerate().map(|(t, c)| c.buffers().prefixed(&format!("columns.{t}")));
        super::concat(sets.chain(std::iter::once(heads::buffers(&self.heads))))
            .expect("prefixes keep names apart")
    }

    fn load_buffers(&self, buffers: &Params) -> Result<()> {
        for (t, column) in self.columns.iter().enumerate() {
            column.load_buffers(&buffers.sub(&format!("columns.{t}")))?;
        }
        heads::load_buffers(&self.heads, buffers)
    }
}
