//! IMTL-G: the gradient-balancing half of impartial multi-task learning.

use crate::{
    error::Result,
    linalg::Matrix,
    strategy::GradientSpace,
    weighting::{Context, Weighting},
};
use serde::{Deserialize, Serialize};

/// Settings of [`ImtlG`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImtlGConfig {
    /// Where the gradients are taken (default parameters).
    pub space: GradientSpace,
}

/// IMTL-G (Liu et al. 2021, "Towards impartial multi-task learning"): the update
/// `g = Σᵢ αᵢ gᵢ` with `Σᵢ αᵢ = 1` whose projections on every unit task gradient are equal,
/// `gᵀuᵢ = gᵀuⱼ` (`uᵢ = gᵢ/‖gᵢ‖`). As a weighting of the Gramian (Quinton & Rey 2024,
/// which also covers linearly dependent gradients):
///
/// ```text
/// v = G⁺ d,  dᵢ = ‖gᵢ‖ = √Gᵢᵢ,   α = v / Σᵢ vᵢ   (α = 0 when |Σ vᵢ| < 10⁻¹²)
/// ```
///
/// since then `G α ∝ d`, i.e. `gᵀgᵢ ∝ ‖gᵢ‖`. The pseudo-inverse treats eigenvalues below
/// `10⁻¹²·λ_max` as zero.
#[derive(Debug, Clone)]
pub struct ImtlG {
    config: ImtlGConfig,
}

impl ImtlG {
    /// IMTL-G with these settings.
    pub fn new(config: &ImtlGConfig) -> Result<Self> {
        Ok(Self { config: config.clone() })
    }
}

/// IMTL-G's weights for Gramian `g`.
pub fn imtl_g_weights(g: &Matrix) -> Vec<f64> {
    let d: Vec<f64> = g.diag().iter().map(|v| v.max(0.0).sqrt()).collect();
    let v = g.pinv_symmetric(1e-12).mul_vec(&d);
    let sum: f64 = v.iter().sum();
    if sum.abs() < 1e-12 {
        vec![0.0; v.len()]
    } else {
        v.iter().map(|x| x / sum).collect()
    }
}

impl Weighting for ImtlG {
    fn name(&self) -> &'static str {
        "imtl_g"
    }

    fn space(&self) -> GradientSpace {
        self.config.space
    }

    fn weigh(&mut self, gramian: &Matrix, _context: &Context) -> Result<Vec<f64>> {
        Ok(imtl_g_weights(gramian))
    }
}
