//! UPGrad: unconflicting projection of gradients.

use crate::{
    error::Result,
    linalg::Matrix,
    solvers::dual_cone::{normalize, project_weights},
    strategy::{non_negative, GradientSpace},
    weighting::{Context, Weighting},
};
use serde::{Deserialize, Serialize};

/// Settings of [`UpGrad`] and [`super::dualproj::DualProj`] (defaults: TorchJD's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DualConeConfig {
    /// The Gramian is divided by its trace unless that is below this (default 1e-4).
    pub norm_eps: f64,
    /// Added to the normalised Gramian's diagonal to make it positive definite
    /// (default 1e-4).
    pub reg_eps: f64,
    /// Where the gradients are taken (default parameters).
    pub space: GradientSpace,
}

impl Default for DualConeConfig {
    fn default() -> Self {
        Self { norm_eps: 1e-4, reg_eps: 1e-4, space: GradientSpace::Parameters }
    }
}

impl DualConeConfig {
    /// Checks the settings (`prefix` names the strategy in errors).
    pub fn validate(&self, prefix: &str) -> Result<()> {
        non_negative(&format!("{prefix}.norm_eps"), self.norm_eps)?;
        non_negative(&format!("{prefix}.reg_eps"), self.reg_eps)
    }

    /// The regularised, normalised Gramian `G / tr(G) + reg_eps · I`.
    pub fn prepare(&self, g: &Matrix) -> Matrix {
        normalize(g, self.norm_eps).add_diag(self.reg_eps)
    }
}

/// UPGrad (Quinton & Rey 2024, "Jacobian descent for multi-objective optimization"): the
/// mean of every task gradient projected onto the dual cone of all of them,
///
/// ```text
/// update = (1/T) Σᵢ π_J(gᵢ) = Jᵀ Σᵢ vᵢ,   vᵢ = argmin_{v ≥ eᵢ/T} vᵀ G v
/// ```
///
/// (`G` normalised and regularised as TorchJD does), so the update has a non-negative inner
/// product with every task gradient. The `T` quadratic programs are solved by
/// [`project_weights`].
#[derive(Debug, Clone)]
pub struct UpGrad {
    config: DualConeConfig,
}

impl UpGrad {
    /// UPGrad with these settings.
    pub fn new(config: &DualConeConfig) -> Result<Self> {
        config.validate("upgrad")?;
        Ok(Self { config: config.clone() })
    }
}

/// UPGrad's weights for Gramian `g`.
pub fn upgrad_weights(g: &Matrix, config: &DualConeConfig) -> Vec<f64> {
    let q = config.prepare(g);
    let n = g.n();
    let mut weights = vec![0.0; n];
    for i in 0..n {
        let mut u = vec![0.0; n];
        u[i] = 1.0 / n as f64;
        for (w, v) in weights.iter_mut().zip(project_weights(&u, &q)) {
            *w += v;
        }
    }
    weights
}

impl Weighting for UpGrad {
    fn name(&self) -> &'static str {
        "upgrad"
    }

    fn space(&self) -> GradientSpace {
        self.config.space
    }

    fn weigh(&mut self, gramian: &Matrix, _context: &Context) -> Result<Vec<f64>> {
        Ok(upgrad_weights(gramian, &self.config))
    }
}
