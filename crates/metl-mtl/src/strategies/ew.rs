//! Equal weighting (EW).

use crate::{
    error::Result,
    strategy::{Combination, Needs, StepInput, Strategy},
};
use serde::{Deserialize, Serialize};

/// Settings of [`Ew`] (none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EwConfig {}

/// Equal weighting: the plain sum `L = Σᵢ Lᵢ`, every weight 1.
///
/// The weights are 1, not `1/T`: LibMTL's docstring says `1/T`, but its code (and every
/// paper that calls this "linear scalarization" or "LS") sums the losses.
#[derive(Debug, Clone, Default)]
pub struct Ew;

impl Strategy for Ew {
    fn name(&self) -> &'static str {
        "ew"
    }

    fn needs(&self) -> Needs {
        Needs::LOSSES
    }

    fn combine(&mut self, input: &StepInput<'_>) -> Result<Combination> {
        let total = input.losses.iter().skip(1).fold(input.losses[0].shallow_clone(), |acc, l| acc + l);
        Ok(Combination::loss(total, vec![1.0; input.k()]))
    }
}
