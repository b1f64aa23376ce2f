//! Nash-MTL: multi-task learning as a bargaining game.

use crate::{
    checkpoint::StrategyState,
    error::{MtlError, Result},
    linalg::{dot, norm, Matrix},
    strategy::{non_negative, GradientSpace, Setup},
    weighting::{Context, Weighting},
};
use serde::{Deserialize, Serialize};

/// Settings of [`NashMtl`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NashMtlConfig {
    /// Sequential convex approximation iterations per step (default 20, the paper's code).
    pub optim_niter: usize,
    /// Recompute the weights every this many steps, reusing them in between (default 1).
    pub update_weights_every: u64,
    /// Clip the shared gradient to this ℓ2 norm (default 1.0, the paper's code; 0 = off).
    pub max_norm: f64,
    /// Where the gradients are taken (default parameters).
    pub space: GradientSpace,
}

impl Default for NashMtlConfig {
    fn default() -> Self {
        Self { optim_niter: 20, update_weights_every: 1, max_norm: 1.0, space: GradientSpace::Parameters }
    }
}

impl NashMtlConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.optim_niter == 0 {
            return Err(MtlError::invalid("nash_mtl.optim_niter", 0, "must be >= 1"));
        }
        if self.update_weights_every == 0 {
            return Err(MtlError::invalid("nash_mtl.update_weights_every", 0, "must be >= 1"));
        }
        non_negative("nash_mtl.max_norm", self.max_norm)
    }
}

/// Nash-MTL (Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik & Fetaya 2022,
/// "Multi-task learning as a bargaining game"): the Nash bargaining solution
/// `update = Σᵢ αᵢ gᵢ` with
///
/// ```text
/// G α = 1/α   (element-wise),   α > 0
/// ```
///
/// found, as in the paper's code, by sequential convex approximation on `Ĝ = G/‖G‖_F`:
/// from the previous step's `α` (initially 1), each iteration solves
///
/// ```text
/// min_α  1ᵀĜα + φ'(α_t)ᵀ(α − α_t)/‖G‖_F   s.t.  log αᵢ + log ‖G‖_F + log (Ĝα)ᵢ ≥ 0,
/// φ'(α) = 1/α + Ĝ (1/(Ĝα))
/// ```
///
/// and it stops when `‖Ĝα_t − 1/α_t‖ < 10⁻³`, when `α` moves by less than 10⁻⁶, after
/// `optim_niter` iterations, or when a sub-problem is infeasible (keeping the previous
/// `α`). Each convex sub-problem (the paper uses cvxpy/ECOS) is solved here exactly: when
/// all its constraints are active at the optimum (the usual case, where the sub-problem's
/// solution is the Nash point itself), by Newton's method on `αᵢ(Gα)ᵢ = 1` with the KKT
/// multipliers checked non-negative; otherwise by a log-barrier interior-point method with Newton steps (`t ← 20 t` until the duality gap
/// `T/t < 10⁻⁹`; Newton until `λ²/2 < 10⁻¹⁰`, at most 50 steps per `t`). The shared
/// gradient is clipped to `max_norm`.
#[derive(Debug, Clone)]
pub struct NashMtl {
    config: NashMtlConfig,
    alpha: Vec<f64>,
    steps: u64,
}

impl NashMtl {
    /// Nash-MTL for `setup.num_tasks` tasks.
    pub fn new(config: &NashMtlConfig, setup: &Setup<'_>) -> Result<Self> {
        config.validate()?;
        Ok(Self { config: config.clone(), alpha: vec![1.0; setup.num_tasks], steps: 0 })
    }
}

/// Nash-MTL's weights for Gramian `g` by the sequential convex approximation from `start`
/// (returned unchanged when the first sub-problem is infeasible or `G = 0`).
pub fn nash_weights(g: &Matrix, start: &[f64], optim_niter: usize) -> Vec<f64> {
    let scale = g.frobenius();
    if scale.is_nan() || scale <= 0.0 {
        return start.to_vec();
    }
    let gn = g.scaled(1.0 / scale);
    let mut alpha_t = start.to_vec();
    for _ in 0..optim_niter {
        let next = sca_step(&gn, scale, &alpha_t);
        let residual: Vec<f64> =
            gn.mul_vec(&alpha_t).iter().zip(&alpha_t).map(|(ga, a)| ga - 1.0 / (a + 1e-10)).collect();
        let Some(next) = next else { break };
        let moved: Vec<f64> = next.iter().zip(&alpha_t).map(|(a, b)| a - b).collect();
        if norm(&residual) < 1e-3 || norm(&moved) < 1e-6 {
            break;
        }
        alpha_t = next;
    }
    alpha_t
}

/// One convex sub-problem of the approximation around `prev`; `None` when it has no
/// strictly feasible point (the paper's code then keeps the previous `α`).
fn sca_step(gn: &Matrix, scale: f64, prev: &[f64]) -> Option<Vec<f64>> {
    let k = prev.len();
    let g_prev = gn.mul_vec(prev);
    if g_prev.contains(&0.0) || prev.iter().any(|v| *v <= 0.0) {
        return None;
    }
    let inv: Vec<f64> = g_prev.iter().map(|v| 1.0 / v).collect();
    let phi: Vec<f64> = prev.iter().zip(gn.mul_vec_t(&inv)).map(|(a, b)| 1.0 / a + b).collect();
    let c: Vec<f64> = gn.mul_vec_t(&vec![1.0; k]).iter().zip(&phi).map(|(a, p)| a + p / scale).collect();
    let log_n = scale.ln();
    let h = |a: &[f64]| -> Option<Vec<f64>> {
        let ga = gn.mul_vec(a);
        let hv: Vec<f64> = a
            .iter()
            .zip(&ga)
            .map(|(ai, gi)| if *ai > 0.0 && *gi > 0.0 { ai.ln() + log_n + gi.ln() } else { f64::NAN })
            .collect();
        hv.iter().all(|v| *v > 0.0).then_some(hv)
    };
    // A strictly feasible start: a point with α > 0 and Ĝα > 0 (`prev` itself if it is
    // one), scaled up until every constraint holds with margin (h grows by 2 log s).
    let base = if g_prev.iter().all(|v| *v > 0.0) { prev.to_vec() } else { positive_point(gn)? };
    let worst = base
        .iter()
        .zip(gn.mul_vec(&base))
        .map(|(a, g)| a.ln() + log_n + g.ln())
        .fold(f64::INFINITY, f64::min);
    let s = if worst > 0.1 { 1.0 } else { ((0.1 - worst) / 2.0).exp() };
    let mut x: Vec<f64> = base.iter().map(|a| a * s).collect();
    h(&x)?;
    if let Some(solution) = all_constraints_active(gn, log_n, &c, &x) {
        return Some(solution);
    }
    let barrier = |x: &[f64], t: f64| -> Option<f64> {
        Some(t * dot(&c, x) - h(x)?.iter().map(|v| v.ln()).sum::<f64>())
    };
    let mut t = 1.0;
    loop {
        for _ in 0..50 {
            let ga = gn.mul_vec(&x);
            let hv = h(&x)?;
            let mut grad: Vec<f64> = c.iter().map(|ci| t * ci).collect();
            // ∇hᵢ = eᵢ/xᵢ + Ĝᵢ/(Ĝx)ᵢ ;  ∇²hᵢ = −eᵢeᵢᵀ/xᵢ² − ĜᵢĜᵢᵀ/(Ĝx)ᵢ², so the barrier's
            // Hessian Σᵢ ∇hᵢ∇hᵢᵀ/hᵢ² − ∇²hᵢ/hᵢ is the Gram matrix of the rows ∇hᵢ/hᵢ and
            // Ĝᵢ/(√hᵢ (Ĝx)ᵢ), plus diag(1/(hᵢxᵢ²)).
            let mut rows = Vec::with_capacity(2 * k);
            for i in 0..k {
                let mut dh: Vec<f64> = gn.row(i).iter().map(|v| v / ga[i]).collect();
                dh[i] += 1.0 / x[i];
                for (g, d) in grad.iter_mut().zip(&dh) {
                    *g -= d / hv[i];
                }
                rows.push(dh.iter().map(|d| d / hv[i]).collect::<Vec<f64>>());
                let scale = 1.0 / (hv[i].sqrt() * ga[i]);
                rows.push(gn.row(i).iter().map(|v| v * scale).collect());
            }
            let mut hess = Matrix::gram_of_rows(&rows, k);
            for i in 0..k {
                hess.set(i, i, hess.get(i, i) + 1.0 / (hv[i] * x[i] * x[i]));
            }
            let step = hess.solve_spd(&grad.iter().map(|v| -v).collect::<Vec<_>>())?;
            let decrement = -dot(&grad, &step);
            if decrement / 2.0 < 1e-10 {
                break;
            }
            let f0 = barrier(&x, t)?;
            let mut size = 1.0;
            loop {
                let cand: Vec<f64> = x.iter().zip(&step).map(|(a, d)| a + size * d).collect();
                if let Some(f) = barrier(&cand, t) {
                    if f <= f0 - 0.25 * size * decrement {
                        x = cand;
                        break;
                    }
                }
                size /= 2.0;
                if size < 1e-12 {
                    return Some(x);
                }
            }
        }
        if k as f64 / t < 1e-9 {
            return Some(x);
        }
        t *= 20.0;
    }
}

/// The sub-problem's solution when every constraint is active there: Newton's method on
/// `h(α) = 0` (i.e. `αᵢ (Gα)ᵢ = 1`) from `start`, accepted when it converges
/// (`‖h‖∞ < 10⁻¹²`, at most 50 steps) and the KKT multipliers `λ = (∇h)⁻ᵀ c` are all
/// non-negative — then `α` satisfies the KKT conditions of the convex sub-problem and is
/// its optimum. `None` otherwise (the interior-point method takes over).
fn all_constraints_active(gn: &Matrix, log_n: f64, c: &[f64], start: &[f64]) -> Option<Vec<f64>> {
    let k = start.len();
    let residual = |x: &[f64]| -> Option<Vec<f64>> {
        let ga = gn.mul_vec(x);
        x.iter().zip(&ga).map(|(a, g)| (*a > 0.0 && *g > 0.0).then(|| a.ln() + log_n + g.ln())).collect()
    };
    let jacobian = |x: &[f64]| -> Matrix {
        let ga = gn.mul_vec(x);
        let mut j = Matrix::zeros(k);
        for i in 0..k {
            for (col, v) in gn.row(i).iter().enumerate() {
                j.set(i, col, v / ga[i]);
            }
            j.set(i, i, j.get(i, i) + 1.0 / x[i]);
        }
        j
    };
    let mut x = start.to_vec();
    let mut r = residual(&x)?;
    let norm_inf = |v: &[f64]| v.iter().fold(0.0f64, |m, a| m.max(a.abs()));
    for _ in 0..50 {
        if norm_inf(&r) < 1e-12 {
            let lambda = jacobian(&x).transpose().solve(c)?;
            return lambda.iter().all(|l| *l >= 0.0).then_some(x);
        }
        let step = jacobian(&x).solve(&r.iter().map(|v| -v).collect::<Vec<_>>())?;
        let mut size = 1.0;
        loop {
            let cand: Vec<f64> = x.iter().zip(&step).map(|(a, d)| a + size * d).collect();
            if let Some(rc) = residual(&cand) {
                if norm_inf(&rc) < (1.0 - 0.25 * size) * norm_inf(&r) {
                    x = cand;
                    r = rc;
                    break;
                }
            }
            size /= 2.0;
            if size < 1e-10 {
                return None;
            }
        }
    }
    None
}

/// A point `α > 0` with `Gα > 0`, or `None` if there is none: damped Newton on the strictly
/// convex `F(α) = ½αᵀGα − Σ log αᵢ` (whose minimiser, when it exists, has `Gα = 1/α > 0`),
/// stopping at the first iterate that qualifies (at most 100 Newton steps).
fn positive_point(g: &Matrix) -> Option<Vec<f64>> {
    let k = g.n();
    let f = |x: &[f64]| -> f64 {
        if x.iter().any(|v| *v <= 0.0) {
            f64::INFINITY
        } else {
            g.quad(x) / 2.0 - x.iter().map(|v| v.ln()).sum::<f64>()
        }
    };
    let mut x = vec![1.0; k];
    for _ in 0..100 {
        let gx = g.mul_vec(&x);
        if gx.iter().all(|v| *v > 0.0) {
            return Some(x);
        }
        let grad: Vec<f64> = gx.iter().zip(&x).map(|(a, xi)| a - 1.0 / xi).collect();
        let mut hess = g.clone();
        for (i, xi) in x.iter().enumerate() {
            hess.set(i, i, hess.get(i, i) + 1.0 / (xi * xi));
        }
        let step = hess.solve_spd(&grad.iter().map(|v| -v).collect::<Vec<_>>())?;
        let f0 = f(&x);
        let slope = dot(&grad, &step);
        let mut size = 1.0;
        loop {
            let cand: Vec<f64> = x.iter().zip(&step).map(|(a, d)| a + size * d).collect();
            if f(&cand) <= f0 + 0.25 * size * slope {
                x = cand;
                break;
            }
            size /= 2.0;
            if size < 1e-12 {
                return None;
            }
        }
    }
    None
}

impl Weighting for NashMtl {
    fn name(&self) -> &'static str {
        "nash_mtl"
    }

    fn space(&self) -> GradientSpace {
        self.config.space
    }

    fn weigh(&mut self, gramian: &Matrix, context: &Context) -> Result<Vec<f64>> {
        let recompute = self.steps % self.config.update_weights_every == 0;
        self.steps += 1;
        let start: Vec<f64> = context.tasks.iter().map(|&t| self.alpha[t]).collect();
        let alpha = if recompute { nash_weights(gramian, &start, self.config.optim_niter) } else { start };
        for (&t, a) in context.tasks.iter().zip(&alpha) {
            self.alpha[t] = *a;
        }
        Ok(alpha)
    }

    fn max_norm(&self) -> Option<f64> {
        (self.config.max_norm > 0.0).then_some(self.config.max_norm)
    }

    /// The last weights `α` (the next solve's start) and the step count.
    fn state(&self) -> StrategyState {
        StrategyState::default().with_values("alpha", self.alpha.clone()).with_word("steps", self.steps)
    }

    fn load_state(&mut self, state: &StrategyState) -> Result<()> {
        let mut r = state.reader(self.name());
        let alpha = r.values("alpha", self.alpha.len())?;
        let steps = r.word("steps")?;
        r.finish()?;
        self.alpha = alpha;
        self.steps = steps;
        Ok(())
    }
}
