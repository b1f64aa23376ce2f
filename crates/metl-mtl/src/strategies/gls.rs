//! Geometric loss strategy (GLS).

use crate::{
    error::Result,
    strategy::{check_positive_losses, Combination, Needs, StepInput, Strategy},
};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Settings of [`Gls`] (none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlsConfig {}

/// Geometric loss strategy (Chennupati, Sistu, Yogamani & Rawashdeh 2019, "MultiNet++:
/// multi-stream feature aggregation and geometric loss strategy for multi-task learning"):
///
/// ```text
/// L = (Πᵢ Lᵢ)^{1/T} = exp( (1/T) Σᵢ log Lᵢ ),   ∂L/∂Lᵢ = L / (T Lᵢ)
/// ```
///
/// computed in log space; the reported weights are the exact `∂L/∂Lᵢ` (LibMTL reports
/// `Lᵢ / (T Πⱼ Lⱼ)`). Needs positive losses.
#[derive(Debug, Clone, Default)]
pub struct Gls;

impl Strategy for Gls {
    fn name(&self) -> &'static str {
        "gls"
    }

    fn needs(&self) -> Needs {
        Needs::LOSSES
    }

    fn combine(&mut self, input: &StepInput<'_>) -> Result<Combination> {
        check_positive_losses("gls", input)?;
        let k = input.k() as f64;
        // Reduced in the losses' own precision (an f32 reduction loses digits of f64 losses).
        let stacked = Tensor::f_stack(input.losses, 0)?;
        let total = stacked.f_log()?.f_mean(stacked.kind())?.f_exp()?;
        let value = (input.values().iter().map(|l| l.ln()).sum::<f64>() / k).exp();
        let weights = input.values().iter().map(|l| value / (k * l)).collect();
        Ok(Combination::loss(total, weights))
    }
}
