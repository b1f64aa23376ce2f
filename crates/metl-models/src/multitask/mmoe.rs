//! Multi-gate Mixture-of-Experts (Ma et al., KDD 2018, "Modeling Task Relationships in
//! Multi-task Learning with Multi-gate Mixture-of-Experts").

use super::{
    decoder_task,
    experts::{check_heads, input_size, mix, Experts, Gate},
    heads, indexed, MultiTaskModel,
};
use crate::{
    error::{ModelError, Result},
    params::ParamsBuilder,
    Model, Params,
};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Configuration of [`Mmoe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmoeConfig {
    /// The number of shared experts `E` (no default: the paper tunes it per problem).
    pub num_experts: usize,
}

impl MmoeConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.num_experts == 0 {
            return Err(ModelError::invalid("mmoe.num_experts", 0, "must be >= 1"));
        }
        Ok(())
    }
}

/// MMoE: `E` shared experts `f_e` (copies of any backbone) and one softmax gate per task on
/// the flattened input,
///
/// ```text
/// ŷ_t = h_t( Σ_e g_t(x)_e f_e(x) ),   g_t(x) = softmax(W_t x + b_t)
/// ```
///
/// Parameters (as LibMTL's `MMoE`): `experts_shared.{e}.*` (shared), `gate_specific.{t}.0.weight`
/// `[E, D]` and `.bias` `[E]` (task `t`), `decoders.{t}.*` (task `t`). The shared
/// representation is the stacked expert outputs `[E, B, ...]`.
#[derive(Debug, Clone)]
pub struct Mmoe<E, H> {
    experts: Experts<E>,
    gates: Vec<Gate>,
    heads: Vec<H>,
}

impl<E: Model + Clone, H: Model> Mmoe<E, H> {
    /// MMoE with copies of `expert`, one head per task, for inputs of per-sample shape
    /// `input_shape` (the gates' input size is its product).
    pub fn new(expert: &E, heads: Vec<H>, input_shape: &[i64], config: MmoeConfig) -> Result<Self> {
        config.validate()?;
        check_heads("mmoe.heads", heads.len())?;
        let d = input_size("mmoe.input_shape", input_shape)?;
        let gates = (0..heads.len())
            .map(|t| Gate::new(&format!("gate_specific.{t}"), d, config.num_experts))
            .collect();
        Ok(Self { experts: Experts::new("experts_shared", expert, config.num_experts), gates, heads })
    }
}

impl<E: Model + Clone, H: Model> MultiTaskModel for Mmoe<E, H> {
    fn num_tasks(&self) -> usize {
        self.heads.len()
    }

    fn init(&self, path: &nn::Path<'_>) -> Result<Params> {
        let experts = self.experts.init(path)?;
        let mut builder = ParamsBuilder::new(path);
        for gate in &self.gates {
            gate.init(&mut builder)?;
        }
        experts.merge(&builder.build()?)?.merge(&heads::init(&self.heads, path)?)
    }

    fn task_of(&self, name: &str) -> Option<usize> {
        decoder_task(name).or_else(|| indexed(name, "gate_specific"))
    }

    fn encode(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        self.experts.forward(params, x, train)
    }

    fn decode(&self, params: &Params, x: &Tensor, z: &Tensor, train: bool) -> Vec<Tensor> {
        (0..self.heads.len())
            .map(|t| {
                let mixed = mix(z, &self.gates[t].weights(params, x));
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
