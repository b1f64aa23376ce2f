//! Customized Gate Control (Tang et al., RecSys 2020, "Progressive Layered Extraction (PLE):
//! A Novel Multi-Task Learning (MTL) Model for Personalized Recommendations").

use super::{
    decoder_task,
    experts::{check_heads, input_size, mix, ExpertGroups, Gate},
    heads, indexed, MultiTaskModel,
};
use crate::{
    error::{ModelError, Result},
    params::ParamsBuilder,
    Model, Params,
};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Configuration of [`Cgc`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgcConfig {
    /// The number of experts shared by all tasks `E_s` (>= 1).
    pub shared_experts: usize,
    /// The number of experts of each task `E_t` (>= 1).
    pub task_experts: usize,
}

impl CgcConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_expert_counts("cgc.shared_experts", "cgc.task_experts", self.shared_experts, self.task_experts)
    }
}

pub(super) fn check_expert_counts(
    shared_field: &'static str,
    task_field: &'static str,
    shared: usize,
    task: usize,
) -> Result<()> {
    if shared == 0 {
        return Err(ModelError::invalid(shared_field, 0, "must be >= 1"));
    }
    if task == 0 {
        return Err(ModelError::invalid(task_field, 0, "must be >= 1"));
    }
    Ok(())
}

/// CGC: shared experts `f^s_e`, task experts `f^t_e`, and per task a softmax gate over the
/// shared experts and its own,
///
/// ```text
/// ŷ_t = h_t( Σ_e g_t(x)_e [f^s_1(x), …, f^s_{E_s}(x), f^t_1(x), …, f^t_{E_t}(x)]_e )
/// ```
///
/// Parameters (as LibMTL's `CGC`): `experts_shared.{e}.*` (shared),
/// `experts_specific.{t}.{e}.*`, `gate_specific.{t}.0.weight` `[E_s + E_t, D]` and `.bias`,
/// `decoders.{t}.*` (task `t`). The shared representation is the stacked shared-expert
/// outputs `[E_s, B, ...]`; `decode` runs the task experts on `x`.
#[derive(Debug, Clone)]
pub struct Cgc<E, H> {
    experts: ExpertGroups<E>,
    gates: Vec<Gate>,
    heads: Vec<H>,
}

impl<E: Model + Clone, H: Model> Cgc<E, H> {
    /// CGC with copies of `expert`, one head per task, for inputs of per-sample shape
    /// `input_shape`.
    pub fn new(expert: &E, heads: Vec<H>, input_shape: &[i64], config: CgcConfig) -> Result<Self> {
        config.validate()?;
        check_heads("cgc.heads", heads.len())?;
        let d = input_size("cgc.input_shape", input_shape)?;
        let tasks = heads.len();
        let n = config.shared_experts + config.task_experts;
        Ok(Self {
            experts: ExpertGroups::new(expert, config.shared_experts, config.task_experts, tasks),
            gates: (0..tasks).map(|t| Gate::new(&format!("gate_specific.{t}"), d, n)).collect(),
            heads,
        })
    }
}

impl<E: Model + Clone, H: Model> MultiTaskModel for Cgc<E, H> {
    fn num_tasks(&self) -> usize {
        self.heads.len()
    }

    fn init(&self, path: &nn::Path<'_>) -> Result<Params> {
        let params = self.experts.init(path)?;
        let mut builder = ParamsBuilder::new(path);
        for gate in &self.gates {
            gate.init(&mut builder)?;
        }
        params.merge(&builder.build()?)?.merge(&heads::init(&self.heads, path)?)
    }

    fn task_of(&self, name: &str) -> Option<usize> {
        decoder_task(name)
            .or_else(|| indexed(name, "gate_specific"))
            .or_else(|| indexed(name, "experts_specific"))
    }

    fn encode(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        self.experts.shared.forward(params, x, train)
    }

    fn decode(&self, params: &Params, x: &Tensor, z: &Tensor, train: bool) -> Vec<Tensor> {
        (0..self.heads.len())
            .map(|t| {
                let all =
                    Tensor::cat(&[z.shallow_clone(), self.experts.specific[t].forward(params, x, train)], 0);
                let mixed = mix(&all, &self.gates[t].weights(params, x));
                heads::forward(&self.heads, params, t, &mixed, train)
            })
            .collect()
    }

    fn buffers(&self) -> Params {
        self.experts.buffers().merge(&heads::buffers(&self.heads)).expect("prefixes keep names apart")
    }

    fn load_buffers(&self, buffers: &Params) -> Result<()> {
        self.experts.load_buffers(buffers)?;
        heads::load_buffers(&self.heads, buffers)
    }
}
