//! DB-MTL: dual-balancing multi-task learning.

use super::state::{column, row_norms, TaskRows};
use crate::{
    checkpoint::StrategyState,
    error::Result,
    strategy::{check_positive_losses, non_negative, Combination, GradientSpace, Needs, StepInput, Strategy},
};
use serde::{Deserialize, Serialize};

/// Settings of [`DbMtl`] (defaults: LibMTL's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DbMtlConfig {
    /// EMA coefficient `β` (default 0.9).
    pub beta: f64,
    /// Decay exponent of `β` (default 0): `β_t = β / t^σ`.
    pub beta_sigma: f64,
    /// Where the gradients are taken (default parameters).
    pub space: GradientSpace,
}

impl Default for DbMtlConfig {
    fn default() -> Self {
        Self { beta: 0.9, beta_sigma: 0.0, space: GradientSpace::Parameters }
    }
}

impl DbMtlConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.beta) {
            return Err(crate::MtlError::invalid("db_mtl.beta", self.beta, "must be in [0, 1)"));
        }
        non_negative("db_mtl.beta_sigma", self.beta_sigma)
    }
}

/// DB-MTL (Lin, Ye, Xu, Shi & Zhang 2023, "Dual-balancing for multi-task learning"):
/// loss-scale balancing by taking gradients of `log Lᵢ`, and gradient-magnitude balancing
/// by rescaling each task's EMA gradient to the largest norm:
///
/// ```text
/// ĝᵢ = ∇ log(Lᵢ + 10⁻⁸) = gᵢ / (Lᵢ + 10⁻⁸),   bᵢ ← ĝᵢ + β_t (bᵢ − ĝᵢ)   (b = 0 initially)
/// αᵢ = maxⱼ ‖bⱼ‖ / (‖bᵢ‖ + 10⁻⁸),   update = Σᵢ αᵢ bᵢ
/// ```
///
/// The buffer `b` (`[T, D]`) lives on the gradients' device; reported weights `αᵢ`.
#[derive(Debug)]
pub struct DbMtl {
    config: DbMtlConfig,
    buffer: TaskRows,
    steps: u64,
}

impl DbMtl {
    /// DB-MTL with these settings.
    pub fn new(config: &DbMtlConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config: config.clone(), buffer: TaskRows::default(), steps: 0 })
    }
}

impl Strategy for DbMtl {
    fn name(&self) -> &'static str {
        "db_mtl"
    }

    fn needs(&self) -> Needs {
        Needs::gradients(self.config.space)
    }

    fn combine(&mut self, input: &StepInput<'_>) -> Result<Combination> {
        check_positive_losses("db_mtl", input)?;
        self.steps += 1;
        let j = input.jacobian()?;
        let beta = self.config.beta / (self.steps as f64).powf(self.config.beta_sigma);
        // b ← β b + (1 − β) ∇log Lᵢ, in place.
        let scale: Vec<f64> = input.values().iter().map(|l| (1.0 - beta) / (l + 1e-8)).collect();
        let b = self.buffer.update(&input.tasks, input.num_tasks, j, |b| {
            let _ = b.f_mul_scalar_(beta)?.f_addcmul_(j, &column(&scale, j))?;
            Ok(())
        })?;
        let norms = row_norms(&b)?;
        let max = norms.iter().cloned().fold(0.0f64, f64::max);
        let alpha: Vec<f64> = norms.iter().map(|n| max / (n + 1e-8)).collect();
        Ok(Combination::direction(StepInput::combine_rows(&b, &alpha)?, alpha))
    }

    /// The gradient buffer (once made) and the step count.
    fn state(&self) -> StrategyState {
        self.buffer.save("buffer", StrategyState::default().with_word("steps", self.steps))
    }

    fn load_state(&mut self, state: &StrategyState) -> Result<()> {
        let mut r = state.reader(self.name());
        let steps = r.word("steps")?;
        let buffer = TaskRows::load("buffer", &mut r)?;
        r.finish()?;
        self.steps = steps;
        self.buffer = buffer;
        Ok(())
    }
}
