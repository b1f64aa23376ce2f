//! DualProj: the mean gradient projected onto the dual cone.

use super::upgrad::DualConeConfig;
use crate::{
    error::Result,
    linalg::Matrix,
    solvers::dual_cone::project_weights,
    strategy::GradientSpace,
    weighting::{Context, Weighting},
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

impl Weighting for DualProj {
    fn name(&self) -> &'static str {
        "dualproj"
    }

    fn space(&self) -> GradientSpace {
        self.config.space
    }

    fn weigh(&mut self, gramian: &Matrix, _context: &Context) -> Result<Vec<f64>> {
        Ok(dualproj_weights(gramian, &self.config))
    }
}
