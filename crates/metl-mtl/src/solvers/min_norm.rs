//! The min-norm point of the convex hull of the task gradients, from their Gramian.
//!
//! `min_{α ∈ Δ} ‖Σᵢ αᵢ gᵢ‖² = min_{α ∈ Δ} αᵀ G α` (Désidéri 2012; Sener & Koltun 2018,
//! "Multi-task learning as multi-objective optimization", Algorithm 2).

use crate::linalg::Matrix;

/// The weight `γ ∈ [0, 1]` minimising `‖γ u + (1 − γ) v‖²` given `uu = ‖u‖²`, `uv = uᵀv`,
/// `vv = ‖v‖²`, and that minimum (closed form; `γ = 1/2` when `u = v`).
pub fn min_norm_pair(uu: f64, uv: f64, vv: f64) -> (f64, f64) {
    let denom = uu + vv - 2.0 * uv;
    let gamma = if denom <= 0.0 { 0.5 } else { ((vv - uv) / denom).clamp(0.0, 1.0) };
    let cost = gamma * gamma * uu + 2.0 * gamma * (1.0 - gamma) * uv + (1.0 - gamma) * (1.0 - gamma) * vv;
    (gamma, cost.max(0.0))
}

/// Frank–Wolfe settings for [`min_norm_weights`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrankWolfe {
    /// Iteration limit (default 250, as the reference MinNormSolver).
    pub max_iters: usize,
    /// Stop when an iteration moves `α` by less than this in ℓ1 (default 1e-5, likewise).
    pub tol: f64,
}

impl Default for FrankWolfe {
    fn default() -> Self {
        Self { max_iters: 250, tol: 1e-5 }
    }
}

/// The weights `α ∈ Δ` of the min-norm element `Σ αᵢ gᵢ`, given `G = (gᵢᵀgⱼ)`.
///
/// One task: `α = (1)`. Two tasks: the closed form of [`min_norm_pair`]. More: Frank–Wolfe
/// started from the best pair (as the reference MinNormSolver does), each iteration moving
/// towards the vertex `e_t` with the smallest `(Gα)_t` with the exact line search of
/// [`min_norm_pair`].
pub fn min_norm_weights(g: &Matrix, fw: FrankWolfe) -> Vec<f64> {
    let n = g.n();
    match n {
        0 => return Vec::new(),
        1 => return vec![1.0],
        _ => {}
    }
    let mut best = (0, 1, 0.5, f64::INFINITY);
    for i in 0..n {
        for j in i + 1..n {
            let (gamma, cost) = min_norm_pair(g.get(i, i), g.get(i, j), g.get(j, j));
            if cost < best.3 {
                best = (i, j, gamma, cost);
            }
        }
    }
    let mut alpha = vec![0.0; n];
    alpha[best.0] = best.2;
    alpha[best.1] += 1.0 - best.2;
    if n == 2 {
        return alpha;
    }
    for _ in 0..fw.max_iters {
        let g_alpha = g.mul_vec(&alpha);
        let t = (0..n).min_by(|&a, &b| g_alpha[a].total_cmp(&g_alpha[b])).expect("n > 0");
        // γ weighs the vertex e_t against the current point α.
        let aa: f64 = alpha.iter().zip(&g_alpha).map(|(a, b)| a * b).sum();
        let (gamma, _) = min_norm_pair(g.get(t, t), g_alpha[t], aa);
        let mut change = 0.0;
        for (i, a) in alpha.iter_mut().enumerate() {
            let target = if i == t { 1.0 } else { 0.0 };
            let next = (1.0 - gamma) * *a + gamma * target;
            change += (next - *a).abs();
            *a = next;
        }
        if change < fw.tol {
            break;
        }
    }
    alpha
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gram(rows: &[[f64; 3]]) -> Matrix {
        let n = rows.len();
        let mut g = Matrix::zeros(n);
        for i in 0..n {
            for j in 0..n {
                g.set(i, j, (0..3).map(|k| rows[i][k] * rows[j][k]).sum());
            }
        }
        g
    }

    #[test]
    fn two_gradients_match_the_closed_form() {
        // g1 = (1, 0), g2 = (0, 2): γ* = ‖g2‖²/(‖g1‖² + ‖g2‖²) = 4/5 on g1.
        let g = gram(&[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]);
        let w = min_norm_weights(&g, FrankWolfe::default());
        assert!((w[0] - 0.8).abs() < 1e-12 && (w[1] - 0.2).abs() < 1e-12);
        // A gradient inside the hull's "shadow": the shorter one alone.
        let (gamma, cost) = min_norm_pair(1.0, 1.5, 4.0);
        assert_eq!((gamma, cost), (1.0, 1.0));
    }

    #[test]
    fn three_gradients_reach_the_min_norm_point() {
        // The hull of e1, e2, e3 has its min-norm point at (1/3, 1/3, 1/3).
        let g = gram(&[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        let w = min_norm_weights(&g, FrankWolfe { max_iters: 10_000, tol: 1e-12 });
        for wi in &w {
            assert!((wi - 1.0 / 3.0).abs() < 1e-3, "{w:?}");
        }
        // With a zero-norm combination available, the solution has zero norm.
        let g = gram(&[[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]);
        let w = min_norm_weights(&g, FrankWolfe::default());
        assert!(g.quad(&w) < 1e-12 && (w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
