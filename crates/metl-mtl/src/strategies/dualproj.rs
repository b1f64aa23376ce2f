//! DualProj: the mean gradient projected onto the dual cone.

use super::upgrad::DualConeConfig;
use crate::{
    error::Result,
    linalg::Matrix,
    solvers::dual_cone::project_weights,
    strategy::{Combination, Needs, StepInput, Strategy},
};

/// DualProj (Lopez-Paz & Ranzato 2017, "Gradient episodic memory for continual learning",
/// Eq. 11; as a multi-task aggregator in Quinton & Rey 2024): the mean gradient projected
/// onto the dual cone of the task gradients,
///
/// ```text
/// update = π_J(ḡ) = Jᵀ v,   v = argmin_{v ≥ 1/T} vᵀ G v
/// ```
///
/// with `G` normalised and regularised as in [`super::upgrad::UpGrad`]; the update has a
/// non-negative inner product with every task gradient.
#[derive(Debug, Clone)]
pub struct DualProj {
    config: DualConeConfig,
}

impl DualProj {
    /// DualProj with these settings.
    pub fn new(config: &DualConeConfig) -> Result<Self> {
        config.validate("dualproj")?;
        Ok(Self { config: config.clone() })
    }
}

/// DualProj's weights for Gramian `g`.
pub fn dualproj_weights(g: &Matrix, config: &DualConeConfig) -> Vec<f64> {
    let n = g.n();
    project_weights(&vec![1.0 / n as f64; n], &config.prepare(g))
}

impl Strategy for DualProj {
    fn name(&self) -> &'static str {
        "dualproj"
    }

    fn needs(&self) -> Needs {
        Needs::gradients(self.config.space)
    }

    fn combine(&mut self, input: &StepInput<'_>) -> Result<Combination> {
        Ok(Combination::weighted(dualproj_weights(input.gramian()?, &self.config)))
    }
}
