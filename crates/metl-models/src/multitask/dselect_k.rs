//! DSelect-k gating (Hazimeh et al., NeurIPS 2021, "DSelect-k: Differentiable Selection in
//! the Mixture of Experts with Applications to Multi-Task Learning").

use super::{
    decoder_task,
    experts::{check_heads, input_size, mix, Experts},
    heads, indexed, MultiTaskModel,
};
use crate::{
    error::{ModelError, Result},
    params::ParamsBuilder,
    Model, Params,
};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// What a DSelect-k gate conditions on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// Gate logits are linear functions of the flattened input (LibMTL's choice).
    #[default]
    PerExample,
    /// Gate logits are free parameters per task ("task-only conditioning").
    Static,
}

/// Configuration of [`DSelectK`]; defaults are the paper's (γ = 1, entropy weight 1e-6,
/// per-example routing as in LibMTL).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DSelectKConfig {
    /// The number of shared experts `E` (>= 2).
    pub num_experts: usize,
    /// The number `k` of single-expert selectors: at most `k` experts get non-zero weight.
    pub num_nonzeros: usize,
    /// The width γ of the smooth step's polynomial region (default 1).
    #[serde(default = "one")]
    pub gamma: f64,
    /// The weight of the selectors' entropy in [`MultiTaskModel::auxiliary_loss`] (default
    /// 1e-6).
    #[serde(default = "entropy_default")]
    pub entropy_reg: f64,
    /// What the gates condition on.
    #[serde(default)]
    pub routing: Routing,
}

fn one() -> f64 {
    1.0
}

fn entropy_default() -> f64 {
    1e-6
}

impl DSelectKConfig {
    /// `k` of `num_experts` experts, with the other fields at their defaults.
    pub fn new(num_experts: usize, num_nonzeros: usize) -> Self {
        Self { num_experts, num_nonzeros, gamma: 1.0, entropy_reg: 1e-6, routing: Routing::PerExample }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.num_experts < 2 {
            return Err(ModelError::invalid("dselect_k.num_experts", self.num_experts, "must be >= 2"));
        }
        if self.num_nonzeros == 0 {
            return Err(ModelError::invalid("dselect_k.num_nonzeros", 0, "must be >= 1"));
        }
        if !(self.gamma.is_finite() && self.gamma > 0.0) {
            return Err(ModelError::invalid("dselect_k.gamma", self.gamma, "must be > 0"));
        }
        if !(self.entropy_reg.is_finite() && self.entropy_reg >= 0.0) {
            return Err(ModelError::invalid("dselect_k.entropy_reg", self.entropy_reg, "must be >= 0"));
        }
        Ok(())
    }

    /// The number of bits `m = ⌈log₂ E⌉` that encode an expert.
    fn bits(&self) -> usize {
        (usize::BITS - (self.num_experts - 1).leading_zeros()) as usize
    }
}

/// DSelect-k: `E` shared experts mixed per task by a differentiable sparse gate. Each of the
/// `k` single-expert selectors of a task turns `m = ⌈log₂ E⌉` logits `z` into a distribution
/// over experts with the smooth step `S_γ`,
///
/// ```text
/// r_i(e) = Π_j  S_γ(z_{i,j})^{b_j(e)} (1 − S_γ(z_{i,j}))^{1 − b_j(e)}
/// S_γ(t) = 0 (t ≤ −γ/2),  1 (t ≥ γ/2),  −2t³/γ³ + 3t/(2γ) + 1/2 otherwise
/// ```
///
/// (`b_j(e)` the j-th bit of `e`, most significant first), and the gate is
/// `q = Σ_i softmax(w)_i r_i`; `ŷ_t = h_t(Σ_e q_t(e) f_e(x))`. With per-example routing `z`
/// and `w` are linear in the flattened input. [`MultiTaskModel::auxiliary_loss`] is the
/// paper's regulariser: `λ Σ −r log(r + 1e-6)` over all selectors, plus `Σ 1/Σ_e r_i(e)`
/// when `E` is not a power of two (so that unreachable codes get no weight).
///
/// Parameters: `experts_shared.{e}.*` (shared); per task `t` (owned by it) either
/// `z_logits.{t}.weight` `[k·m, D]`, `.bias` `[k·m]`, `w_logits.{t}.weight` `[k, D]`,
/// `.bias` `[k]` (per-example), or `z_logits.{t}` `[k, 1, m]`, `w_logits.{t}` `[k, 1]`
/// (static); `decoders.{t}.*`. Initialisation as in the reference implementation:
/// `z ~ U(−γ/100, γ/100)`, `w ~ U(−0.05, 0.05)`. The shared representation is the stacked
/// expert outputs `[E, B, ...]`.
#[derive(Debug, Clone)]
pub struct DSelectK<E, H> {
    experts: Experts<E>,
    heads: Vec<H>,
    config: DSelectKConfig,
    input_size: i64,
}

impl<E: Model + Clone, H: Model> DSelectK<E, H> {
    /// DSelect-k with copies of `expert`, one head per task, for inputs of per-sample shape
    /// `input_shape`.
    pub fn new(expert: &E, heads: Vec<H>, input_shape: &[i64], config: DSelectKConfig) -> Result<Self> {
        config.validate()?;
        check_heads("dselect_k.heads", heads.len())?;
        let input_size = input_size("dselect_k.input_shape", input_shape)?;
        Ok(Self {
            experts: Experts::new("experts_shared", expert, config.num_experts),
            heads,
            config,
            input_size,
        })
    }

    /// The smooth step `S_γ`.
    fn smooth_step(&self, t: &Tensor) -> Tensor {
        let g = self.config.gamma;
        let cubic = t.pow_tensor_scalar(3) * (-2.0 / g.powi(3)) + t * (1.5 / g) + 0.5;
        let upper = cubic.where_self(&t.lt(g / 2.0), &t.ones_like());
        upper.where_self(&t.gt(-g / 2.0), &t.zeros_like())
    }

    /// The selector outputs `r` `[B, k, E]` (or `[1, k, E]` for static routing) and the
    /// selector weights `softmax(w)` `[B, k]` (or `[1, k]`) of task `t`.
    fn selectors(&self, params: &Params, x: &Tensor, t: usize) -> (Tensor, Tensor) {
        let (k, m) = (self.config.num_nonzeros as i64, self.config.bits() as i64);
        let (z, w) = match self.config.routing {
            Routing::PerExample => {
                let flat = x.flatten(1, -1);
                let z = flat.linear(
                    &params[format!("z_logits.{t}.weight").as_str()],
                    Some(&params[format!("z_logits.{t}.bias").as_str()]),
                );
                let w = flat.linear(
                    &params[format!("w_logits.{t}.weight").as_str()],
                    Some(&params[format!("w_logits.{t}.bias").as_str()]),
                );
                (z.view([-1, k, 1, m]), w)
            }
            Routing::Static => {
                let z = params[format!("z_logits.{t}").as_str()].unsqueeze(0);
                let w = params[format!("w_logits.{t}").as_str()].view([1, k]);
                (z, w)
            }
        };
        let s = self.smooth_step(&z);
        // codes[e][j]: bit j of e, most significant first; shape [1, 1, E, m].
        let e = self.config.num_experts as i64;
        // Built on the device: ⌊e / 2^{m−1−j}⌋ mod 2.
        let opts = (Kind::Float, x.device());
        let place = Tensor::pow_scalar(2.0, &(Tensor::arange(m, opts).neg() + (m - 1) as f64));
        let codes =
            (Tensor::arange(e, opts).unsqueeze(1) / place).floor().remainder(2.0).view([1, 1, e, m]).gt(0.5);
        let r = s.where_self(&codes, &(1.0 - &s)).prod_dim_int(3, false, None::<Kind>);
        (r, w.softmax(-1, None::<Kind>))
    }

    /// The expert weights `q` `[B, E]` of task `t`.
    fn expert_weights(&self, params: &Params, x: &Tensor, t: usize) -> Tensor {
        let (r, w) = self.selectors(params, x, t);
        let q = (r * w.unsqueeze(-1)).sum_dim_intlist(1, false, None::<Kind>);
        q.expand([x.size()[0], self.config.num_experts as i64], false)
    }
}

impl<E: Model + Clone, H: Model> MultiTaskModel for DSelectK<E, H> {
    fn num_tasks(&self) -> usize {
        self.heads.len()
    }

    fn init(&self, path: &nn::Path<'_>) -> Result<Params> {
        let experts = self.experts.init(path)?;
        let (k, m, d) = (self.config.num_nonzeros as i64, self.config.bits() as i64, self.input_size);
        let z_init = nn::Init::Uniform { lo: -self.config.gamma / 100.0, up: self.config.gamma / 100.0 };
        let w_init = nn::Init::Uniform { lo: -0.05, up: 0.05 };
        let mut builder = ParamsBuilder::new(path);
        for t in 0..self.heads.len() {
            match self.config.routing {
                Routing::PerExample => {
                    builder.var(&format!("z_logits.{t}.weight"), &[k * m, d], z_init)?;
                    builder.var(&format!("z_logits.{t}.bias"), &[k * m], z_init)?;
                    builder.var(&format!("w_logits.{t}.weight"), &[k, d], w_init)?;
                    builder.var(&format!("w_logits.{t}.bias"), &[k], w_init)?;
                }
                Routing::Static => {
                    builder.var(&format!("z_logits.{t}"), &[k, 1, m], z_init)?;
                    builder.var(&format!("w_logits.{t}"), &[k, 1], w_init)?;
                }
            }
        }
        experts.merge(&builder.build()?)?.merge(&heads::init(&self.heads, path)?)
    }

    fn task_of(&self, name: &str) -> Option<usize> {
        decoder_task(name).or_else(|| indexed(name, "z_logits")).or_else(|| indexed(name, "w_logits"))
    }

    fn encode(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        self.experts.forward(params, x, train)
    }

    fn decode(&self, params: &Params, x: &Tensor, z: &Tensor, train: bool) -> Vec<Tensor> {
        (0..self.heads.len())
            .map(|t| {
                heads::forward(&self.heads, params, t, &mix(z, &self.expert_weights(params, x, t)), train)
            })
            .collect()
    }

    fn auxiliary_loss(&self, params: &Params, x: &Tensor) -> Option<Tensor> {
        let power_of_two = self.config.num_experts.is_power_of_two();
        let terms: Vec<Tensor> = (0..self.heads.len())
            .map(|t| {
                let (r, _) = self.selectors(params, x, t);
                let entropy = -(&r * (&r + 1e-6).log()).sum(r.kind());
                let mut loss = entropy * self.config.entropy_reg;
                if !power_of_two {
                    loss += r.sum_dim_intlist(-1, false, None::<Kind>).reciprocal().sum(r.kind());
                }
                loss
            })
            .collect();
        Some(Tensor::stack(&terms, 0).sum(terms[0].kind()))
    }

    fn buffers(&self) -> Params {
        self.experts.buffers().merge(&heads::buffers(&self.heads)).expect("prefixes keep names apart")
    }

    fn load_buffers(&self, buffers: &Params) -> Result<()> {
        self.experts.load_buffers(buffers)?;
        heads::load_buffers(&self.heads, buffers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_encode_every_expert() {
        assert_eq!(DSelectKConfig::new(2, 1).bits(), 1);
        assert_eq!(DSelectKConfig::new(4, 2).bits(), 2);
        assert_eq!(DSelectKConfig::new(5, 2).bits(), 3);
        assert_eq!(DSelectKConfig::new(8, 2).bits(), 3);
        assert!(DSelectKConfig::new(1, 1).validate().is_err());
    }
}
