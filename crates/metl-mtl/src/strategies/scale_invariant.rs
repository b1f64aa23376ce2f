//! Scale-invariant linear scalarization (`Σ log L`).

use crate::{
    error::Result,
    strategy::{check_positive_losses, Combination, Needs, StepInput, Strategy},
};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Settings of [`ScaleInvariant`] (none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleInvariantConfig {}

/// Scale-invariant linear scalarization, the "SI" baseline of Navon et al. (2022,
/// "Multi-task learning as a bargaining game"):
///
/// ```text
/// L = Σᵢ log Lᵢ,   ∂L/∂Lᵢ = 1 / Lᵢ
/// ```
///
/// invariant to rescaling any task's loss. Reported weights `1/Lᵢ`. Needs positive losses.
#[derive(Debug, Clone, Default)]
pub struct ScaleInvariant;

impl Strategy for ScaleInvariant {
    fn name(&self) -> &'static str {
        "scale_invariant"
    }

    fn needs(&self) -> Needs {
        Needs::LOSSES
    }

    fn combine(&mut self, input: &StepInput<'_>) -> Result<Combination> {
        check_positive_losses("scale_invariant", input)?;
        let total = Tensor::f_stack(input.losses, 0)?.f_log()?.f_sum(Kind::Float)?;
        Ok(Combination::loss(total, input.values().iter().map(|l| 1.0 / l).collect()))
    }
}
