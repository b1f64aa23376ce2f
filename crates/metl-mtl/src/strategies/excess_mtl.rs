//! ExcessMTL: robust multi-task learning with excess risks.

use super::state::TaskRows;
use crate::{
    checkpoint::StrategyState,
    error::Result,
    strategy::{positive, Combination, GradientSpace, Needs, StepInput, Strategy},
};
use serde::{Deserialize, Serialize};
use tch::Kind;

/// Settings of [`ExcessMtl`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExcessMtlConfig {
    /// Step size `η` of the exponentiated-gradient weight update (default 0.01, LibMTL's).
    pub robust_step_size: f64,
    /// Where the gradients are taken (default parameters).
    pub space: GradientSpace,
}

impl Default for ExcessMtlConfig {
    fn default() -> Self {
        Self { robust_step_size: 1e-2, space: GradientSpace::Parameters }
    }
}

impl ExcessMtlConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        positive("excess_mtl.robust_step_size", self.robust_step_size)
    }
}

/// ExcessMTL (He, Zhou, Zhao & Zhang 2024, "Robust multi-task learning with excess
/// risks"): task weights follow an exponentiated-gradient ascent on each task's excess
/// risk, estimated from a diagonal (AdaGrad) approximation of the loss curvature:
///
/// ```text
/// Hᵢ ← Hᵢ + gᵢ²,   eᵢ = gᵢᵀ diag(Hᵢ + 10⁻⁷)^{−1/2} gᵢ
/// wᵢ ← wᵢ exp(η eᵢ / eᵢ⁽¹⁾),  w ← T w / Σ w        (w = 1 and e⁽¹⁾ = e at the first step)
/// update = Σᵢ wᵢ gᵢ
/// ```
///
/// The accumulators `H` (`[T, D]`) live on the gradients' device.
#[derive(Debug)]
pub struct ExcessMtl {
    config: ExcessMtlConfig,
    accumulator: TaskRows,
    weights: Vec<f64>,
    initial: Vec<Option<f64>>,
}

impl ExcessMtl {
    /// ExcessMTL for `num_tasks` tasks.
    pub fn new(config: &ExcessMtlConfig, num_tasks: usize) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config: config.clone(),
            accumulator: TaskRows::default(),
            weights: vec![1.0; num_tasks],
            initial: vec![None; num_tasks],
        })
    }
}

impl Strategy for ExcessMtl {
    fn name(&self) -> &'static str {
        "excess_mtl"
    }

    fn needs(&self) -> Needs {
        Needs::gradients(self.config.space)
    }

    fn combine(&mut self, input: &StepInput<'_>) -> Result<Combination> {
        let j = input.jacobian()?;
        let square = j.f_square()?;
        let h = self.accumulator.update(&input.tasks, input.num_tasks, j, |h| {
            let _ = h.f_add_(&square)?;
            Ok(())
        })?;
        // Row-wise ⟨gᵢ², (Hᵢ + 10⁻⁷)^{−1/2}⟩ as a batched dot product (no temporary product).
        let inv_sqrt = (h + 1e-7).f_rsqrt_()?;
        let excess = square.f_unsqueeze(1)?.f_bmm(&inv_sqrt.f_unsqueeze(2)?)?.f_reshape([-1])?;
        let excess = Vec::<f64>::try_from(excess.f_to_kind(Kind::Double)?)?;
        let mut updated = false;
        for (&t, e) in input.tasks.iter().zip(&excess) {
            match self.initial[t] {
                None => self.initial[t] = Some(*e),
                Some(e0) => {
                    self.weights[t] *= (self.config.robust_step_size * e / e0).exp();
                    updated = true;
                }
            }
        }
        if updated {
            let sum: f64 = self.weights.iter().sum();
            let n = self.weights.len() as f64;
            self.weights.iter_mut().for_each(|w| *w *= n / sum);
        }
        Ok(Combination::weighted(input.tasks.iter().map(|&t| self.weights[t]).collect()))
    }

    /// The squared-gradient accumulator (once made), the weights and the initial excess
    /// risks.
    fn state(&self) -> StrategyState {
        let state = StrategyState::default()
            .with_values("weights", self.weights.clone())
            .with_masked_values("initial", &self.initial);
        self.accumulator.save("accumulator", state)
    }

    fn load_state(&mut self, state: &StrategyState) -> Result<()> {
        let t = self.weights.len();
        let mut r = state.reader(self.name());
        let weights = r.values("weights", t)?;
        let initial = r.masked_values("initial", t)?;
        let accumulator = TaskRows::load("accumulator", &mut r)?;
        r.finish()?;
        self.weights = weights;
        self.initial = initial;
        self.accumulator = accumulator;
        Ok(())
    }
}
