//! Strategies against answers known in closed form, through the whole backward path:
//! shared parameters `w` with linear losses `Lᵢ = gᵢᵀw`, so `∇Lᵢ = gᵢ` exactly and the
//! combined gradient left in `w.grad` can be checked against the formula.

use metl_models::Params;
use metl_mtl::{
    backward::backward,
    linalg::Matrix,
    registry::StrategyConfig,
    strategies::{
        cagrad::CaGradConfig, imtl_g::ImtlGConfig, mgda::MgdaConfig, nash_mtl::nash_weights,
        upgrad::DualConeConfig,
    },
    Setup, Strategy,
};
use tch::{nn, Device, Kind, Tensor};

/// Runs `strategy` on linear losses with gradients `rows`; returns the combined gradient
/// and the reported weights.
fn combine(strategy: &mut dyn Strategy, rows: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let p = rows[0].len() as i64;
    let w = Tensor::zeros([p], (Kind::Double, Device::Cpu)).set_requires_grad(true);
    let shared = Params::from_named(vec![("w".into(), w.shallow_clone())]).unwrap();
    let losses: Vec<Tensor> =
        rows.iter().map(|g| (&w * Tensor::from_slice(g)).sum(Kind::Double) + 1.0).collect();
    let report = backward(strategy, &losses, &shared, 1).unwrap();
    (Vec::<f64>::try_from(w.grad()).unwrap(), report.weights)
}

fn build(config: StrategyConfig, tasks: usize) -> Box<dyn Strategy> {
    let vs = nn::VarStore::new(Device::Cpu);
    config.build(&Setup { num_tasks: tasks, path: vs.root(), seed: 0 }).unwrap()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
}

/// Gradients of `t` tasks in `p` dimensions from a fixed pseudo-random sequence.
fn gradients(t: usize, p: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    (0..t).map(|_| (0..p).map(|_| next()).collect()).collect()
}

fn gram(rows: &[Vec<f64>]) -> Matrix {
    Matrix::from_rows(&rows.iter().map(|a| rows.iter().map(|b| dot(a, b)).collect()).collect::<Vec<_>>())
        .unwrap()
}

#[test]
fn mgda_on_two_gradients_is_the_closed_form_min_norm_point() {
    let rows = vec![vec![1.0, 0.0, 0.5], vec![-0.5, 2.0, 0.0]];
    let (g11, g12, g22) = (dot(&rows[0], &rows[0]), dot(&rows[0], &rows[1]), dot(&rows[1], &rows[1]));
    let gamma = (g22 - g12) / (g11 + g22 - 2.0 * g12);
    let expected: Vec<f64> = (0..3).map(|k| gamma * rows[0][k] + (1.0 - gamma) * rows[1][k]).collect();
    let (update, weights) = combine(build(StrategyConfig::Mgda(MgdaConfig::default()), 2).as_mut(), &rows);
    assert!(close(&update, &expected, 1e-12), "{update:?} vs {expected:?}");
    assert!(close(&weights, &[gamma, 1.0 - gamma], 1e-12));
    // The min-norm point is orthogonal to g1 − g2.
    assert!(
        dot(
            &update,
            &rows.iter().fold(vec![0.0; 3], |_, _| (0..3).map(|k| rows[0][k] - rows[1][k]).collect())
        )
        .abs()
            < 1e-12
    );
}

#[test]
fn pcgrad_removes_exactly_the_conflicting_component() {
    let rows = vec![vec![1.0, 0.0], vec![-1.0, 1.0]];
    let (update, weights) = combine(build(StrategyConfig::default_for("pcgrad").unwrap(), 2).as_mut(), &rows);
    // g1ᴾᶜ = g1 − (g1·g2/‖g2‖²) g2 = (0.5, 0.5) ⟂ g2;  g2ᴾᶜ = g2 − (g1·g2/‖g1‖²) g1 = (0, 1) ⟂ g1.
    assert!(close(&update, &[0.5, 1.5], 1e-12), "{update:?}");
    assert!(close(&weights, &[2.0, 1.5], 1e-12), "{weights:?}");
    // Non-conflicting gradients are left alone: the plain sum.
    let rows = vec![vec![1.0, 0.0], vec![1.0, 1.0]];
    let (update, weights) = combine(build(StrategyConfig::default_for("pcgrad").unwrap(), 2).as_mut(), &rows);
    assert_eq!(update, [2.0, 1.0]);
    assert_eq!(weights, [1.0, 1.0]);
}

#[test]
fn pcgrad_projections_are_orthogonal_to_the_conflicting_gradient_for_many_tasks() {
    // With three tasks where only tasks 0 and 1 conflict, the order does not matter.
    let rows = vec![vec![1.0, 0.0, 0.0], vec![-1.0, 1.0, 0.0], vec![0.0, 0.0, 1.0]];
    let (update, _) = combine(build(StrategyConfig::default_for("pcgrad").unwrap(), 3).as_mut(), &rows);
    assert!(close(&update, &[0.5, 1.5, 1.0], 1e-12), "{update:?}");
}

#[test]
fn cagrad_with_zero_radius_is_the_mean_gradient() {
    let rows = gradients(4, 6, 1);
    let config = StrategyConfig::Cagrad(CaGradConfig { c: 0.0, ..Default::default() });
    let (update, weights) = combine(build(config, 4).as_mut(), &rows);
    let mean: Vec<f64> = (0..6).map(|k| rows.iter().map(|r| r[k]).sum::<f64>() / 4.0).collect();
    assert!(close(&update, &mean, 1e-12));
    assert!(close(&weights, &[0.25; 4], 1e-12));
}

#[test]
fn cagrad_improves_the_worst_task_over_the_mean_gradient() {
    // Strong conflict: the mean gradient barely helps task 1; CAGrad's update does better.
    let rows = vec![vec![1.0, 0.0], vec![-0.9, 0.2]];
    let (update, _) = combine(build(StrategyConfig::default_for("cagrad").unwrap(), 2).as_mut(), &rows);
    let mean = [0.05, 0.1];
    let worst = |d: &[f64]| rows.iter().map(|g| dot(g, d)).fold(f64::INFINITY, f64::min);
    let norm = |d: &[f64]| dot(d, d).sqrt();
    assert!(worst(&update) / norm(&update) > worst(&mean) / norm(&mean));
}

#[test]
fn imtl_g_projects_equally_on_every_unit_gradient() {
    let rows = gradients(4, 7, 2);
    let config = StrategyConfig::ImtlG(ImtlGConfig::default());
    let (update, weights) = combine(build(config, 4).as_mut(), &rows);
    let projections: Vec<f64> = rows.iter().map(|g| dot(g, &update) / dot(g, g).sqrt()).collect();
    for p in &projections {
        assert!((p - projections[0]).abs() < 1e-10, "{projections:?}");
    }
    assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
}

#[test]
fn nash_mtl_weights_solve_g_alpha_equals_one_over_alpha() {
    for seed in 0..5 {
        let rows = gradients(3, 8, 10 + seed);
        let g = gram(&rows);
        let alpha = nash_weights(&g, &[1.0; 3], 20);
        let g_alpha = g.mul_vec(&alpha);
        for (ga, a) in g_alpha.iter().zip(&alpha) {
            assert!(*a > 0.0);
            // αᵢ (Gα)ᵢ = 1 to 0.1 % after the default 20 iterations.
            assert!((ga * a - 1.0).abs() < 1e-3, "seed {seed}: {alpha:?} {g_alpha:?} {}", ga * a);
        }
    }
    // Through the strategy (raw gradients, no clipping): the update is Σ αᵢ gᵢ.
    let rows = gradients(3, 8, 3);
    let mut config = StrategyConfig::default_for("nash_mtl").unwrap();
    if let StrategyConfig::NashMtl(c) = &mut config {
        c.max_norm = 0.0;
    }
    let (update, weights) = combine(build(config, 3).as_mut(), &rows);
    let expected: Vec<f64> = (0..8).map(|k| rows.iter().zip(&weights).map(|(r, w)| w * r[k]).sum()).collect();
    assert!(close(&update, &expected, 1e-9));
    let g = gram(&rows);
    for (ga, a) in g.mul_vec(&weights).iter().zip(&weights) {
        assert!((ga * a - 1.0).abs() < 1e-3, "{weights:?} {ga} {a}");
    }
}

#[test]
fn upgrad_and_dualproj_never_conflict_with_a_task() {
    let exact = DualConeConfig { reg_eps: 0.0, ..Default::default() };
    // Four tasks in six dimensions (a positive-definite Gramian), without regularisation:
    // a non-negative inner product with every task gradient, to rounding.
    for seed in 0..10 {
        let rows = gradients(4, 6, 100 + seed);
        for config in [StrategyConfig::Upgrad(exact.clone()), StrategyConfig::Dualproj(exact.clone())] {
            let (update, weights) = combine(build(config, 4).as_mut(), &rows);
            assert!(weights.iter().all(|w| w.is_finite() && *w >= 0.0));
            for g in &rows {
                assert!(dot(g, &update) >= -1e-12, "seed {seed}: {}", dot(g, &update));
            }
        }
    }
    // Six tasks in four dimensions (singular Gramian), TorchJD's default regularisation
    // `G/tr(G) + εI`: the inner products are ≥ −ε·tr(G)·vⱼ, the slack the regularisation
    // allows.
    for seed in 0..10 {
        let rows = gradients(6, 4, 200 + seed);
        let trace: f64 = rows.iter().map(|g| dot(g, g)).sum();
        for name in ["upgrad", "dualproj"] {
            let (update, weights) =
                combine(build(StrategyConfig::default_for(name).unwrap(), 6).as_mut(), &rows);
            for (g, v) in rows.iter().zip(&weights) {
                assert!(
                    dot(g, &update) >= -1e-4 * trace * v - 1e-12,
                    "{name}, seed {seed}: {}",
                    dot(g, &update)
                );
            }
        }
    }
    // Without conflict both are the mean gradient.
    let rows = vec![vec![1.0, 0.1], vec![0.2, 1.0]];
    for name in ["upgrad", "dualproj"] {
        let (update, _) = combine(build(StrategyConfig::default_for(name).unwrap(), 2).as_mut(), &rows);
        assert!(close(&update, &[0.6, 0.55], 1e-12), "{name}: {update:?}");
    }
}

#[test]
fn uw_log_variance_gradients_match_the_formula() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut uw = StrategyConfig::default_for("uw")
        .unwrap()
        .build(&Setup { num_tasks: 3, path: vs.root(), seed: 0 })
        .unwrap();
    let w = Tensor::from_slice(&[0.5f32, -1.0]).set_requires_grad(true);
    let shared = Params::from_named(vec![("w".into(), w.shallow_clone())]).unwrap();
    let values = [0.3, 2.0, 5.0];
    let losses: Vec<Tensor> = values.iter().map(|v| w.sum(Kind::Float) * 0.0 + *v).collect();
    let report = backward(uw.as_mut(), &losses, &shared, 1).unwrap();
    let s = vs.variables()["uw_log_var"].shallow_clone();
    let grad = Vec::<f64>::try_from(s.grad().to_kind(Kind::Double)).unwrap();
    for (i, l) in values.iter().enumerate() {
        // ∂/∂s (e^{−s} L / 2 + s / 2) = (1 − e^{−s} L) / 2 at s = −0.5.
        let expected = (1.0 - (0.5f64).exp() * l) / 2.0;
        assert!((grad[i] - expected).abs() < 1e-5, "{grad:?}");
        assert!((report.weights[i] - (0.5f64).exp() / 2.0).abs() < 1e-6);
    }
}
