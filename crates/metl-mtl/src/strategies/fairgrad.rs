//! FairGrad: fair resource allocation in multi-task learning.

use crate::{
    error::Result,
    linalg::Matrix,
    strategy::{positive, GradientSpace},
    weighting::{Context, Weighting},
};
use serde::{Deserialize, Serialize};

/// Settings of [`FairGrad`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FairGradConfig {
    /// The fairness exponent `α` (default 1, which gives the Nash / proportional-fair
    /// solution of Nash-MTL).
    pub alpha: f64,
    /// Where the gradients are taken (default parameters).
    pub space: GradientSpace,
}

impl Default for FairGradConfig {
    fn default() -> Self {
        Self { alpha: 1.0, space: GradientSpace::Parameters }
    }
}

impl FairGradConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        positive("fairgrad.alpha", self.alpha)
    }
}

/// Levenberg–Marquardt settings of FairGrad's system (scipy's `least_squares` defaults).
const MAX_EVALUATIONS_PER_TASK: usize = 100;
const TOL: f64 = 1e-8;

/// FairGrad (Ban & Ji 2024, "Fair resource allocation in multi-task learning"): the
/// update `Σᵢ wᵢ gᵢ` of α-fair utility maximisation, whose weights solve
///
/// ```text
/// G w = w^{−1/α}   (element-wise),   w > 0
/// ```
///
/// As in the paper's code (scipy `least_squares` with bounds `w ≥ 0` from `w = 1/T`), the
/// residual `r(w) = Gw − w^{−1/α}` is minimised in the least-squares sense, here by
/// Levenberg–Marquardt with the iterate kept positive (`w ≥ 10⁻¹²`), Jacobian
/// `G + diag(w^{−1/α−1}/α)`; it stops when the cost, the step or the gradient falls below
/// relative 10⁻⁸, or after `100·T` evaluations.
#[derive(Debug, Clone)]
pub struct FairGrad {
    config: FairGradConfig,
}

impl FairGrad {
    /// FairGrad with these settings.
    pub fn new(config: &FairGradConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config: config.clone() })
    }
}

/// FairGrad's weights for Gramian `g` and exponent `alpha`.
pub fn fairgrad_weights(g: &Matrix, alpha: f64) -> Vec<f64> {
    let n = g.n();
    let p = 1.0 / alpha;
    let residual =
        |w: &[f64]| -> Vec<f64> { g.mul_vec(w).iter().zip(w).map(|(gw, wi)| gw - wi.powf(-p)).collect() };
    let cost = |r: &[f64]| r.iter().map(|v| v * v).sum::<f64>() / 2.0;
    let mut w = vec![1.0 / n as f64; n];
    let mut r = residual(&w);
    let mut f = cost(&r);
    let mut mu = 1e-3 * (0..n).map(|i| g.get(i, i)).fold(1.0f64, f64::max);
    for _ in 0..MAX_EVALUATIONS_PER_TASK * n {
        // Jacobian J = G + diag(p w^{−p−1}); normal equations (JᵀJ + μI) δ = −Jᵀr.
        let mut jac = g.clone();
        for (i, wi) in w.iter().enumerate() {
            jac.set(i, i, jac.get(i, i) + p * wi.powf(-p - 1.0));
        }
        let jt = jac.transpose();
        let grad = jt.mul_vec(&r);
        if grad.iter().fold(0.0f64, |m, v| m.max(v.abs())) < TOL * (1.0 + f) {
            break;
        }
        let normal = jt.matmul(&jac).add_diag(mu);
        let Some(delta) = normal.solve_spd(&grad.iter().map(|v| -v).collect::<Vec<_>>()) else { break };
        let candidate: Vec<f64> = w.iter().zip(&delta).map(|(a, d)| (a + d).max(1e-12)).collect();
        let rc = residual(&candidate);
        let fc = cost(&rc);
        if fc < f {
            let step: f64 = candidate.iter().zip(&w).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
            let size: f64 = w.iter().map(|v| v * v).sum::<f64>().sqrt();
            let converged = (f - fc) < TOL * f || step < TOL * (TOL + size);
            w = candidate;
            r = rc;
            f = fc;
            mu = (mu / 3.0).max(1e-15);
            if converged {
                break;
            }
        } else {
            mu *= 4.0;
        }
    }
    w
}

impl Weighting for FairGrad {
    fn name(&self) -> &'static str {
        "fairgrad"
    }

    fn space(&self) -> GradientSpace {
        self.config.space
    }

    fn weigh(&mut self, gramian: &Matrix, _context: &Context) -> Result<Vec<f64>> {
        Ok(fairgrad_weights(gramian, self.config.alpha))
    }
}
