//! Random loss weighting (RLW).

use crate::{
    checkpoint::StrategyState,
    error::Result,
    linalg::softmax,
    jacobian::weighted_loss,
    strategy::{Combination, Needs, Setup, StepInput, Strategy},
};
use metl_data::rng::{seeded, Rng};
use rand::Rng as _;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// Settings of [`Rlw`] (none; the seed comes from the setup).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlwConfig {}

/// Random loss weighting (Lin, Ye, Xu, Shi & Zhang 2022, "Reasonable effectiveness of
/// random weighting: a litmus test for multi-task learning"): at every step
///
/// ```text
/// w = softmax(ε),  ε ~ N(0, I_T),   L = Σᵢ wᵢ Lᵢ
/// ```
///
/// drawn from a seeded ChaCha8 stream (reproducible under the setup's seed).
#[derive(Debug, Clone)]
pub struct Rlw {
    rng: Rng,
}

impl Rlw {
    /// RLW seeded from `setup.seed`.
    pub fn new(_config: &RlwConfig, setup: &Setup<'_>) -> Result<Self> {
        Ok(Self { rng: seeded(setup.seed) })
    }
}

impl Strategy for Rlw {
    fn name(&self) -> &'static str {
        "rlw"
    }

    fn needs(&self) -> Needs {
        Needs::LOSSES
    }

    fn combine(&mut self, input: &StepInput<'_>) -> Result<Combination> {
        let eps: Vec<f64> = (0..input.k()).map(|_| self.rng.sample(StandardNormal)).collect();
        let weights = softmax(&eps);
        Ok(Combination::loss(weighted_loss(input.losses, &weights)?, weights))
    }

    /// The random generator.
    fn state(&self) -> StrategyState {
        StrategyState::of_rng(&self.rng)
    }

    fn load_state(&mut self, state: &StrategyState) -> Result<()> {
        self.rng = state.only_rng(self.name())?;
        Ok(())
    }
}
