//! Euclidean projection onto the probability simplex.

/// `argmin_{w ∈ Δ} ‖w − v‖²` with `Δ = {w ≥ 0, Σ wᵢ = 1}`.
///
/// The sort-based algorithm of Duchi, Shalev-Shwartz, Singer & Chandra (2008), "Efficient
/// projections onto the ℓ1-ball for learning in high dimensions" (exact, `O(T log T)`):
/// with `u` sorted decreasingly, `ρ = max{j : u_j − (Σ_{i≤j} u_i − 1)/j > 0}` and
/// `θ = (Σ_{i≤ρ} u_i − 1)/ρ`, the projection is `max(v − θ, 0)`.
pub fn project(v: &[f64]) -> Vec<f64> {
    if v.is_empty() {
        return Vec::new();
    }
    let mut u = v.to_vec();
    u.sort_by(|a, b| b.total_cmp(a));
    let mut cumulative = 0.0;
    let mut theta = 0.0;
    for (j, &uj) in u.iter().enumerate() {
        cumulative += uj;
        let candidate = (cumulative - 1.0) / (j + 1) as f64;
        if uj - candidate > 0.0 {
            theta = candidate;
        }
    }
    v.iter().map(|x| (x - theta).max(0.0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_on_the_simplex_stay() {
        let w = [0.2, 0.3, 0.5];
        let p = project(&w);
        assert!(p.iter().zip(&w).all(|(a, b)| (a - b).abs() < 1e-15));
    }

    #[test]
    fn known_projections() {
        // (1, 1) → (0.5, 0.5); (2, 0) → (1, 0); (0.5, 0.4, −3) → (0.55, 0.45, 0).
        assert_eq!(project(&[1.0, 1.0]), [0.5, 0.5]);
        assert_eq!(project(&[2.0, 0.0]), [1.0, 0.0]);
        let p = project(&[0.5, 0.4, -3.0]);
        assert!((p[0] - 0.55).abs() < 1e-12 && (p[1] - 0.45).abs() < 1e-12 && p[2] == 0.0);
    }

    #[test]
    fn projection_is_the_closest_simplex_point() {
        let v = [0.9, -0.4, 0.7, 0.1];
        let p = project(&v);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12 && p.iter().all(|&x| x >= 0.0));
        let dist = |w: &[f64]| w.iter().zip(&v).map(|(a, b)| (a - b).powi(2)).sum::<f64>();
        // Any other simplex point (a grid) is at least as far.
        for a in 0..=10 {
            for b in 0..=(10 - a) {
                for c in 0..=(10 - a - b) {
                    let w =
                        [a as f64 / 10.0, b as f64 / 10.0, c as f64 / 10.0, (10 - a - b - c) as f64 / 10.0];
                    assert!(dist(&w) >= dist(&p) - 1e-12);
                }
            }
        }
    }
}
