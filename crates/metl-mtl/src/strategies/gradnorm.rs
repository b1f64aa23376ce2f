//! GradNorm: gradient normalisation for adaptive loss balancing.

use crate::{
    checkpoint::StrategyState,
    error::Result,
    linalg::Matrix,
    strategy::{non_negative, GradientSpace, Setup},
    weighting::{Context, Weighting},
};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// Settings of [`GradNorm`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GradNormConfig {
    /// Strength `α` of the restoring force (default 1.5, the paper's NYUv2 setting and
    /// LibMTL's; the paper's synthetic example uses 0.12).
    pub alpha: f64,
    /// Where the gradient norms are taken (default parameters: all shared parameters;
    /// the paper uses the last shared layer).
    pub space: GradientSpace,
}

impl Default for GradNormConfig {
    fn default() -> Self {
        Self { alpha: 1.5, space: GradientSpace::Parameters }
    }
}

impl GradNormConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        non_negative("gradnorm.alpha", self.alpha)
    }
}

/// GradNorm (Chen, Badrinarayanan, Lee & Rabinovich 2018, "GradNorm: gradient
/// normalization for adaptive loss balancing in deep multitask networks"): learned task
/// weights `wᵢ` (registered as `gradnorm_weights`, init 1, trained by the model's
/// optimizer) pull every weighted gradient norm towards the mean, scaled by the task's
/// relative inverse training rate:
///
/// ```text
/// Gᵢ = wᵢ ‖gᵢ‖,   L̃ᵢ = Lᵢ / Lᵢ(0),   rᵢ = L̃ᵢ / mean(L̃)
/// L_grad = Σᵢ | Gᵢ − mean(G) · rᵢ^α |   (the target held constant)
/// ∂L_grad/∂wᵢ = sign(Gᵢ − targetᵢ) ‖gᵢ‖,    update = Σᵢ wᵢ gᵢ
/// ```
///
/// `Lᵢ(0)` is task `i`'s first loss. Before every step the weights are renormalised to
/// sum to `T` (and kept ≥ 10⁻⁶), as in the paper.
#[derive(Debug)]
pub struct GradNorm {
    config: GradNormConfig,
    weights: Tensor,
    initial: Vec<Option<f64>>,
}

impl GradNorm {
    /// GradNorm for `setup.num_tasks` tasks.
    pub fn new(config: &GradNormConfig, setup: &Setup<'_>) -> Result<Self> {
        config.validate()?;
        let t = setup.num_tasks;
        let weights = setup.path.f_var("gradnorm_weights", &[t as i64], nn::Init::Const(1.0))?;
        Ok(Self { config: config.clone(), weights, initial: vec![None; t] })
    }

    /// The learned weights of all tasks.
    pub fn task_weights(&self) -> Result<Vec<f64>> {
        Ok(Vec::<f64>::try_from(self.weights.detach().to_kind(Kind::Double))?)
    }
}

impl Weighting for GradNorm {
    fn name(&self) -> &'static str {
        "gradnorm"
    }

    fn space(&self) -> GradientSpace {
        self.config.space
    }

    fn weigh(&mut self, gramian: &Matrix, context: &Context) -> Result<Vec<f64>> {
        let t = self.initial.len() as f64;
        tch::no_grad(|| -> Result<()> {
            let clamped = self.weights.f_clamp_min(1e-6)?;
            let sum = clamped.f_sum(Kind::Float)?;
            self.weights.shallow_clone().f_copy_(&(clamped * t / sum))?;
            Ok(())
        })?;
        let idx = super::state::index(&context.tasks, &self.weights);
        let w_sub = self.weights.f_index_select(0, &idx)?;
        let w = Vec::<f64>::try_from(w_sub.detach().to_kind(Kind::Double))?;
        let norms: Vec<f64> = gramian.diag().iter().map(|d| d.max(0.0).sqrt()).collect();
        let relative: Vec<f64> = context
            .tasks
            .iter()
            .zip(&context.losses)
            .map(|(&task, &l)| l / *self.initial[task].get_or_insert(l))
            .collect();
        let mean_rel = relative.iter().sum::<f64>() / relative.len() as f64;
        let g: Vec<f64> = w.iter().zip(&norms).map(|(w, n)| w * n).collect();
        let mean_g = g.iter().sum::<f64>() / g.len() as f64;
        let grad: Vec<f64> = g
            .iter()
            .zip(&relative)
            .zip(&norms)
            .map(|((gi, ri), n)| {
                let target = mean_g * (ri / mean_rel).powf(self.config.alpha);
                if *gi > target {
                    *n
                } else if *gi < target {
                    -n
                } else {
                    0.0
                }
            })
            .collect();
        let grad = Tensor::from_slice(&grad).to_kind(w_sub.kind()).to_device(w_sub.device());
        (w_sub * grad).f_sum(Kind::Float)?.f_backward()?;
        Ok(w)
    }

    /// The initial loss of every task seen so far (the weights are learned parameters in
    /// the setup's `VarStore`, saved with it).
    fn state(&self) -> StrategyState {
        StrategyState::default().with_masked_values("initial", &self.initial)
    }

    fn load_state(&mut self, state: &StrategyState) -> Result<()> {
        let mut r = state.reader(self.name());
        let initial = r.masked_values("initial", self.initial.len())?;
        r.finish()?;
        self.initial = initial;
        Ok(())
    }

    /// The learned weights `w`.
    fn parameters(&self) -> Vec<Tensor> {
        vec![self.weights.shallow_clone()]
    }
}
