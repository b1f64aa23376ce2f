//! Conflict-averse gradient descent (CAGrad).

use crate::{
    error::{MtlError, Result},
    linalg::{dot, Matrix},
    solvers::simplex,
    strategy::{non_negative, GradientSpace},
    weighting::{Context, Weighting},
};
use serde::{Deserialize, Serialize};

/// Settings of [`CaGrad`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaGradConfig {
    /// Radius `c` of the ball around the mean gradient (default 0.5, the paper's).
    pub c: f64,
    /// Final scaling: 0 none, 1 divide by `1 + c²` (default, the paper's code), 2 by `1 + c`.
    pub rescale: u8,
    /// Where the gradients are taken (default parameters).
    pub space: GradientSpace,
}

impl Default for CaGradConfig {
    fn default() -> Self {
        Self { c: 0.5, rescale: 1, space: GradientSpace::Parameters }
    }
}

impl CaGradConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        non_negative("cagrad.c", self.c)?;
        if self.rescale > 2 {
            return Err(MtlError::invalid("cagrad.rescale", self.rescale, "must be 0, 1 or 2"));
        }
        Ok(())
    }
}

/// Projected-gradient settings of CAGrad's inner problem.
const INNER_MAX_ITERS: usize = 1000;
const INNER_TOL: f64 = 1e-12;

/// CAGrad (Liu, Liu, Jin, Stone & Liu 2021, "Conflict-averse gradient descent for
/// multi-task learning"): the update maximises the worst local improvement within a ball
/// of radius `c‖g₀‖` around the mean gradient `g₀ = (1/T) Σᵢ gᵢ`. Its dual is
///
/// ```text
/// w = argmin_{w ∈ Δ} g_wᵀ g₀ + √φ ‖g_w‖,   g_w = Σᵢ wᵢ gᵢ,   √φ = c ‖g₀‖
/// update = (g₀ + (√φ / ‖g_w‖) g_w) / (1 + c²)
/// ```
///
/// On the Gramian: `g_wᵀg₀ = wᵀG1/T`, `‖g_w‖² = wᵀGw`, `‖g₀‖² = mean(G)`. The inner problem
/// is convex; it is solved by projected gradient descent on the simplex with backtracking
/// (Armijo), from `w = 1/T`, until a step moves `w` by less than 10⁻¹² (ℓ1) or after 1000
/// iterations (the paper's code calls scipy's SLSQP with its default tolerance 10⁻⁶).
/// `c = 0` gives the mean gradient exactly (LibMTL adds 10⁻⁸ to `√φ`).
#[derive(Debug, Clone)]
pub struct CaGrad {
    config: CaGradConfig,
}

impl CaGrad {
    /// CAGrad with these settings.
    pub fn new(config: &CaGradConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config: config.clone() })
    }
}

/// CAGrad's weights on the task gradients, from the Gramian.
pub fn cagrad_weights(g: &Matrix, c: f64, rescale: u8) -> Vec<f64> {
    let n = g.n();
    let b = vec![1.0 / n as f64; n];
    let gb = g.mul_vec(&b);
    let g0_norm = (g.mean() + 1e-8).sqrt();
    let coef = c * g0_norm;
    let objective = |w: &[f64]| dot(w, &gb) + coef * (g.quad(w) + 1e-8).sqrt();
    let mut w = b.clone();
    let mut f = objective(&w);
    let mut step = 1.0 / (g.frobenius() + 1e-12);
    for _ in 0..INNER_MAX_ITERS {
        let gw = g.mul_vec(&w);
        let norm = (dot(&w, &gw) + 1e-8).sqrt();
        let grad: Vec<f64> = gb.iter().zip(&gw).map(|(a, b)| a + coef * b / norm).collect();
        // Backtracking: halve until sufficient decrease.
        let mut accepted = None;
        for _ in 0..60 {
            let candidate =
                simplex::project(&w.iter().zip(&grad).map(|(w, g)| w - step * g).collect::<Vec<_>>());
            let fc = objective(&candidate);
            let moved: Vec<f64> = candidate.iter().zip(&w).map(|(a, b)| a - b).collect();
            if fc <= f + dot(&grad, &moved) + dot(&moved, &moved) / (2.0 * step) {
                accepted = Some((candidate, fc));
                break;
            }
            step /= 2.0;
        }
        let Some((candidate, fc)) = accepted else { break };
        let change: f64 = candidate.iter().zip(&w).map(|(a, b)| (a - b).abs()).sum();
        w = candidate;
        f = fc;
        step *= 2.0;
        if change < INNER_TOL {
            break;
        }
    }
    let gw_norm = g.quad(&w).max(0.0).sqrt();
    let lambda = coef / (gw_norm + 1e-8);
    let scale = match rescale {
        0 => 1.0,
        1 => 1.0 / (1.0 + c * c),
        _ => 1.0 / (1.0 + c),
    };
    w.iter().zip(&b).map(|(wi, bi)| (bi + lambda * wi) * scale).collect()
}

impl Weighting for CaGrad {
    fn name(&self) -> &'static str {
        "cagrad"
    }

    fn space(&self) -> GradientSpace {
        self.config.space
    }

    fn weigh(&mut self, gramian: &Matrix, _context: &Context) -> Result<Vec<f64>> {
        Ok(cagrad_weights(gramian, self.config.c, self.config.rescale))
    }
}
