//! Aligned-MTL (and Aligned-MTL-UB).

use crate::{
    error::Result,
    linalg::Matrix,
    strategy::GradientSpace,
    weighting::{Context, Weighting},
};
use serde::{Deserialize, Serialize};

/// Settings of [`AlignedMtl`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlignedMtlConfig {
    /// Where the gradients are taken (default parameters; `aligned_mtl_ub` uses the
    /// representation).
    pub space: GradientSpace,
}

/// Aligned-MTL (Senushkin, Patakin, Kuznetsov & Konushin 2023, "Independent component
/// alignment for multi-task learning"): make the task gradients orthogonal with equal
/// norms (condition number 1) by the balance transformation of the Gramian's
/// eigen-decomposition `G = V Λ Vᵀ` restricted to its rank `r`:
///
/// ```text
/// B = √λ_r · V_r Λ_r^{−1/2} V_rᵀ,     w = B 1,     update = Σᵢ wᵢ gᵢ
/// ```
///
/// (`λ_r` the smallest kept eigenvalue; eigenvalues below `λ_max · T · ε_f32` are dropped,
/// as in the authors' and LibMTL's code; `B = I` when `G = 0`). The eigen-decomposition is
/// Jacobi's on the host in `f64` (LibMTL's `torch.symeig` no longer exists). With
/// representation gradients this is Aligned-MTL-UB.
#[derive(Debug, Clone)]
pub struct AlignedMtl {
    config: AlignedMtlConfig,
    name: &'static str,
}

impl AlignedMtl {
    /// Aligned-MTL; named `aligned_mtl_ub` in the representation space.
    pub fn new(config: &AlignedMtlConfig) -> Result<Self> {
        let name = match config.space {
            GradientSpace::Parameters => "aligned_mtl",
            GradientSpace::Representation => "aligned_mtl_ub",
        };
        Ok(Self { config: config.clone(), name })
    }
}

/// Aligned-MTL's weights `B 1` for Gramian `g`.
pub fn aligned_weights(g: &Matrix) -> Vec<f64> {
    let n = g.n();
    let (values, vectors) = g.symmetric_eigen();
    let max = values.iter().cloned().fold(0.0f64, f64::max);
    let tol = max * n as f64 * f32::EPSILON as f64;
    let kept: Vec<usize> = (0..n).filter(|&k| values[k] > tol).collect();
    let Some(&smallest) = kept.iter().min_by(|&&a, &&b| values[a].total_cmp(&values[b])) else {
        return vec![1.0; n];
    };
    let root = values[smallest].sqrt();
    (0..n)
        .map(|i| {
            kept.iter()
                .map(|&k| {
                    let colsum: f64 = (0..n).map(|j| vectors.get(j, k)).sum();
                    root * vectors.get(i, k) * colsum / values[k].sqrt()
                })
                .sum()
        })
        .collect()
}

impl Weighting for AlignedMtl {
    fn name(&self) -> &'static str {
        self.name
    }

    fn space(&self) -> GradientSpace {
        self.config.space
    }

    fn weigh(&mut self, gramian: &Matrix, _context: &Context) -> Result<Vec<f64>> {
        Ok(aligned_weights(gramian))
    }
}
