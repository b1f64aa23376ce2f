//! Projection onto the dual cone of the task gradients, in weight space.
//!
//! For `J` with rows `gᵢ` and `G = J Jᵀ`, the projection of `Jᵀu` onto the dual cone
//! `{x : Jx ≥ 0}` is `Jᵀv` with
//!
//! ```text
//! v = argmin_{v ≥ u} vᵀ G v
//! ```
//!
//! (Quinton & Rey 2024, "Jacobian descent for multi-objective optimization",
//! Proposition 1). UPGrad solves it once per task (`u = eᵢ/T`), DualProj once (`u = 1/T`).

use crate::linalg::{cholesky_solve, Matrix};

/// KKT tolerance on the gradient of the bound-constrained problem.
pub const TOLERANCE: f64 = 1e-10;

/// Solves `min_{v ≥ u} ½ vᵀ Q v` for symmetric positive-definite `Q`.
///
/// With `s = v − u ≥ 0` this is `min_{s ≥ 0} ½ sᵀQs + (Qu)ᵀs`, solved exactly (up to
/// rounding) by the active-set method of Lawson & Hanson (1974, "Solving least squares
/// problems", ch. 23) applied to a quadratic: free the bound with the most negative
/// gradient; solve the equality problem on the free set (Cholesky); if that leaves the
/// feasible set, step back to the boundary and fix the variables that reach it. It stops
/// when every fixed variable has gradient ≥ −[`TOLERANCE`], or after `10·T + 50` outer
/// iterations (returning the feasible point reached, which has never happened in tests).
pub fn project_weights(u: &[f64], q: &Matrix) -> Vec<f64> {
    let n = u.len();
    let lin = q.mul_vec(u);
    let mut s = vec![0.0; n];
    let mut free = vec![false; n];
    let mut skipped = vec![false; n];
    for _outer in 0..10 * n + 50 {
        let grad: Vec<f64> = q.mul_vec(&s).iter().zip(&lin).map(|(a, b)| a + b).collect();
        let candidate =
            (0..n).filter(|&i| !free[i] && !skipped[i]).min_by(|&a, &b| grad[a].total_cmp(&grad[b]));
        let Some(j) = candidate.filter(|&j| grad[j] < -TOLERANCE) else { break };
        free[j] = true;
        for inner in 0..=n {
            let idx: Vec<usize> = (0..n).filter(|&i| free[i]).collect();
            let z_free = solve_free(q, &lin, &idx);
            if z_free.iter().all(|&z| z > 0.0) {
                for (&i, &z) in idx.iter().zip(&z_free) {
                    s[i] = z;
                }
                break;
            }
            if inner == 0 && z_free[idx.iter().position(|&i| i == j).expect("j is free")] <= 0.0 {
                // Rounding made the freed variable non-positive at once: leave it at its
                // bound for the rest of this solve (Lawson & Hanson's safeguard).
                free[j] = false;
                skipped[j] = true;
                break;
            }
            let mut step = 1.0f64;
            for (&i, &z) in idx.iter().zip(&z_free) {
                if z <= 0.0 {
                    step = step.min(s[i] / (s[i] - z));
                }
            }
            for (&i, &z) in idx.iter().zip(&z_free) {
                s[i] += step * (z - s[i]);
                if s[i] <= 1e-15 {
                    s[i] = 0.0;
                    free[i] = false;
                }
            }
        }
    }
    u.iter().zip(&s).map(|(a, b)| a + b).collect()
}

/// `z = −Q_FF⁻¹ lin_F` on the free index set `idx`.
fn solve_free(q: &Matrix, lin: &[f64], idx: &[usize]) -> Vec<f64> {
    let sub = q.select(idx);
    let rhs: Vec<f64> = idx.iter().map(|&i| -lin[i]).collect();
    let l = sub.cholesky().or_else(|| sub.add_diag(1e-12 * sub.trace().max(1e-300)).cholesky());
    match l {
        Some(l) => cholesky_solve(&l, &rhs),
        None => vec![0.0; idx.len()],
    }
}

/// TorchJD's normalisation of a Gramian: `G / tr(G)` (the Gramian of `J / ‖J‖_F`), or the
/// zero matrix when `tr(G) < eps`.
pub fn normalize(g: &Matrix, eps: f64) -> Matrix {
    let trace = g.trace();
    if trace < eps {
        Matrix::zeros(g.n())
    } else {
        g.scaled(1.0 / trace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force over a grid of `s ≥ 0` for 2-D problems.
    fn brute(u: &[f64], q: &Matrix) -> Vec<f64> {
        let mut best = (f64::INFINITY, vec![0.0, 0.0]);
        for a in 0..=400 {
            for b in 0..=400 {
                let v = vec![u[0] + a as f64 * 0.005, u[1] + b as f64 * 0.005];
                let f = q.quad(&v);
                if f < best.0 {
                    best = (f, v);
                }
            }
        }
        best.1
    }

    #[test]
    fn matches_brute_force_in_two_dimensions() {
        // Conflicting gradients: G = [[1, −0.8], [−0.8, 1]].
        let q = Matrix::from_rows(&[vec![1.0, -0.8], vec![-0.8, 1.0]]).unwrap();
        for u in [[0.5, 0.0], [0.0, 0.5], [0.5, 0.5], [0.3, 0.1]] {
            let v = project_weights(&u, &q);
            let b = brute(&u, &q);
            assert!((v[0] - b[0]).abs() < 0.006 && (v[1] - b[1]).abs() < 0.006, "{v:?} vs {b:?}");
            // The projected direction is in the dual cone: G v ≥ 0.
            assert!(q.mul_vec(&v).iter().all(|&x| x >= -1e-12));
        }
    }

    #[test]
    fn no_conflict_means_no_change() {
        let q = Matrix::from_rows(&[vec![1.0, 0.3], vec![0.3, 2.0]]).unwrap();
        assert_eq!(project_weights(&[0.5, 0.5], &q), [0.5, 0.5]);
    }

    #[test]
    fn kkt_conditions_hold_for_a_larger_problem() {
        // Gradients of 6 tasks in 4 dimensions, several in conflict.
        let rows = [
            [1.0, 0.2, -0.3, 0.0],
            [-0.9, 0.1, 0.4, 0.2],
            [0.1, -1.0, 0.0, 0.5],
            [0.3, 0.9, 0.2, -0.7],
            [-0.2, -0.3, -1.0, 0.1],
            [0.5, 0.5, 0.5, 0.5],
        ];
        let mut g = Matrix::zeros(6);
        for i in 0..6 {
            for j in 0..6 {
                g.set(i, j, (0..4).map(|k| rows[i][k] * rows[j][k]).sum());
            }
        }
        let q = normalize(&g, 1e-4).add_diag(1e-4);
        let u = vec![1.0 / 6.0; 6];
        let v = project_weights(&u, &q);
        let grad = q.mul_vec(&v);
        for i in 0..6 {
            assert!(v[i] >= u[i] - 1e-15);
            // Complementarity: a strictly inactive bound has zero gradient.
            assert!(grad[i] >= -1e-9);
            if v[i] > u[i] + 1e-9 {
                assert!(grad[i].abs() < 1e-9, "{i}: {grad:?}");
            }
        }
    }
}
