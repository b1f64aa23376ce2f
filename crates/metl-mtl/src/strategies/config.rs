//! ConFIG: conflict-free inverse gradients.

use crate::{
    error::Result,
    linalg::{dot, Matrix},
    strategy::GradientSpace,
    weighting::{Context, Weighting},
};
use serde::{Deserialize, Serialize};

/// Settings of [`ConFig`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConFigConfig {
    /// Where the gradients are taken (default parameters).
    pub space: GradientSpace,
}

/// ConFIG (Liu, Chu, Thuerey 2024, "ConFIG: towards conflict-free training of physics
/// informed neural networks", Eq. 2): the direction with equal cosine to every task
/// gradient, scaled by the sum of the gradients' projections on it,
///
/// ```text
/// d = U⁺ 1,   U = rows gᵢ/‖gᵢ‖,   update = (Σᵢ gᵢᵀd̂) d̂,   d̂ = d/‖d‖
/// ```
///
/// On the Gramian: `U⁺1 = Jᵀ c` with `c = N⁻¹ C⁺ 1`, `C = N⁻¹GN⁻¹` the cosine matrix and
/// `N = diag(‖gᵢ‖)`, so the weights are `c (1ᵀGc) / (cᵀGc)` (zero if `d = 0`). Zero
/// gradients get unit rows of 0, as TorchJD's `nan_to_num`; the pseudo-inverse drops
/// singular values of `U` below `max(T, D)·ε_f32` of the largest (`torch.linalg.pinv`).
#[derive(Debug, Clone)]
pub struct ConFig {
    config: ConFigConfig,
}

impl ConFig {
    /// ConFIG with these settings.
    pub fn new(config: &ConFigConfig) -> Result<Self> {
        Ok(Self { config: config.clone() })
    }
}

/// ConFIG's weights for Gramian `g` of gradients with `width` entries.
pub fn config_weights(g: &Matrix, width: usize) -> Vec<f64> {
    let n = g.n();
    let inv_norm: Vec<f64> = g.diag().iter().map(|d| if *d > 0.0 { 1.0 / d.sqrt() } else { 0.0 }).collect();
    let cosine = g.scale_rows_cols(&inv_norm);
    let rtol = (n.max(width) as f64 * f32::EPSILON as f64).powi(2);
    let c: Vec<f64> = cosine
        .pinv_symmetric(rtol)
        .mul_vec(&vec![1.0; n])
        .iter()
        .zip(&inv_norm)
        .map(|(v, s)| v * s)
        .collect();
    let gc = g.mul_vec(&c);
    let dd = dot(&c, &gc);
    if dd.is_nan() || dd <= 0.0 {
        return vec![0.0; n];
    }
    let length: f64 = gc.iter().sum::<f64>() / dd;
    c.iter().map(|v| v * length).collect()
}

impl Weighting for ConFig {
    fn name(&self) -> &'static str {
        "config"
    }

    fn space(&self) -> GradientSpace {
        self.config.space
    }

    fn weigh(&mut self, gramian: &Matrix, context: &Context) -> Result<Vec<f64>> {
        let width = context.dim;
        Ok(config_weights(gramian, width))
    }
}
