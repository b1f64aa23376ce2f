//! MetaOptNet's SVM base learner: its dual solution against the KKT conditions (checked
//! here from the returned variables alone) on well- and ill-conditioned episodes, against a
//! brute-force search on a tiny problem, and the gradient of its logits against finite
//! differences (float64).

use metl_meta::metaoptnet::svm::{svm_dual, svm_logits};
use metl_models::{
    gradcheck::{check_gradients, GradCheckConfig},
    Params, TaskLoss,
};
use tch::{Device, Kind, Tensor};

mod common;
use common::serial;

const F64: (Kind, Device) = (Kind::Double, Device::Cpu);

/// `tasks` episodes of `ways` classes × `shots` embeddings in `dim` dimensions (class
/// centres of spread `spread`, noise 1): the support embeddings `[T, S, D]` and one-hot
/// labels `[T, S, N]`.
fn episode(tasks: i64, ways: i64, shots: i64, dim: i64, spread: f64) -> (Tensor, Tensor) {
    let centres = Tensor::randn([tasks, ways, dim], F64) * spread;
    let x = centres.repeat_interleave_self_int(shots, 1, None::<i64>)
        + Tensor::randn([tasks, ways * shots, dim], F64);
    let labels =
        Tensor::arange(ways, (Kind::Int64, Device::Cpu)).repeat_interleave_self_int(shots, 0, None::<i64>);
    (x, labels.one_hot(ways).to_kind(Kind::Double).unsqueeze(0).repeat([tasks, 1, 1]))
}

/// The largest violation of the KKT conditions of the SVM dual by `alpha`: the bounds
/// `α ≤ C·Y`, the equalities `Σ_m αᵢᵐ = 0`, stationarity (`Yᵢᵐ − (K̃α_m)ᵢ` is the same
/// `νᵢ` on every free variable of row `i`) and the signs of the multipliers (`Yᵢᵐ − (K̃α_m)ᵢ
/// − νᵢ ≥ 0` where `αᵢᵐ` is at its bound).
fn kkt_violation(kernel: &Tensor, labels: &Tensor, c: f64, alpha: &Tensor) -> f64 {
    let bounds = labels * c;
    let residual = labels - kernel.matmul(alpha);
    let free = alpha.lt_tensor(&(&bounds - 1e-9 * c)).to_kind(Kind::Double);
    let nu = (&residual * &free).sum_dim_intlist(-1, true, Kind::Double)
        / free.sum_dim_intlist(-1, true, Kind::Double);
    let stationarity = ((&residual - &nu) * &free).abs().max().double_value(&[]);
    let multipliers = (-(&residual - &nu) * (free.ones_like() - &free)).max().double_value(&[]).max(0.0);
    let above = (alpha - &bounds).max().double_value(&[]).max(0.0);
    let sums = alpha.sum_dim_intlist(-1, false, Kind::Double).abs().max().double_value(&[]);
    assert!(
        free.sum_dim_intlist(-1, false, Kind::Double).min().double_value(&[]) >= 1.0,
        "a row without free variable"
    );
    stationarity.max(multipliers).max(above).max(sums)
}

#[test]
fn svm_dual_satisfies_the_kkt_conditions() {
    let _serial = serial();
    // Small matrices: one thread avoids libtorch's threading overhead (4× here).
    tch::set_num_threads(1);
    tch::manual_seed(0);
    // (ways, shots, dim, spread, C, ε): Lee et al.'s settings on separable and overlapping
    // classes, 20 ways, a large C, and ill-conditioned kernels (2 or 4 dimensions for 25
    // examples, ε = 1e-3), where the active-set method needs the projected-gradient start.
    for (ways, shots, dim, spread, c, ridge) in [
        (5, 1, 64, 3.0, 0.1, 1.0),
        (5, 5, 64, 1.0, 0.1, 1.0),
        (5, 5, 16, 0.3, 0.1, 1.0),
        (20, 5, 64, 2.0, 0.1, 1.0),
        (5, 5, 8, 1.0, 100.0, 1.0),
        (5, 5, 2, 1.0, 0.1, 1e-3),
        (5, 5, 4, 1.0, 0.1, 1e-3),
    ] {
        let (x, labels) = episode(if ways > 5 { 2 } else { 8 }, ways, shots, dim, spread);
        let gram = x.matmul(&x.transpose(1, 2));
        let alpha = svm_dual(&gram, &labels, c, ridge, 2000);
        let regularised = &gram + Tensor::eye(ways * shots, F64) * ridge;
        let violation = kkt_violation(&regularised, &labels, c, &alpha);
        assert!(violation < 1e-9, "{ways}-way {shots}-shot, D = {dim}, C = {c}, ε = {ridge}: {violation:e}");
    }
}

#[test]
fn svm_dual_matches_a_brute_force_search_on_a_tiny_problem() {
    let _serial = serial();
    tch::manual_seed(1);
    // Three examples of classes 0, 1, 0: with two classes αᵢ = (aᵢ, −aᵢ) up to order and
    // the constraints leave aᵢ = αᵢ^{yᵢ} ∈ [0, C]; the objective is vᵀK̃v − Σᵢ aᵢ with
    // vᵢ = ±aᵢ (+ for class 0). A 101³ grid over [0, C]³ brackets the optimum.
    let (c, ridge) = (0.4, 0.5);
    let x = Tensor::randn([1, 3, 2], F64);
    let labels = Tensor::from_slice(&[1.0f64, 0.0, 0.0, 1.0, 1.0, 0.0]).view([1, 3, 2]);
    let gram = x.matmul(&x.transpose(1, 2));
    let alpha = svm_dual(&gram, &labels, c, ridge, 1000);
    let kernel = gram.get(0) + Tensor::eye(3, F64) * ridge;
    let sign = Tensor::from_slice(&[1.0f64, -1.0, 1.0]);
    let objective = |a: &Tensor| {
        // a: [P, 3] candidate points.
        let v = a * &sign;
        (v.matmul(&kernel) * &v).sum_dim_intlist(1, false, Kind::Double)
            - a.sum_dim_intlist(1, false, Kind::Double)
    };
    let steps = 101;
    let axis = Tensor::linspace(0.0, c, steps, F64);
    let grid = Tensor::stack(
        &[
            axis.repeat_interleave_self_int(steps * steps, 0, None::<i64>),
            axis.repeat_interleave_self_int(steps, 0, None::<i64>).repeat([steps]),
            axis.repeat([steps * steps]),
        ],
        1,
    );
    let values = objective(&grid);
    let best = values.argmin(0, false).int64_value(&[]);
    let (grid_min, grid_argmin) = (values.double_value(&[best]), grid.get(best));
    let solution = Tensor::stack(
        &[alpha.get(0).get(0).get(0), alpha.get(0).get(1).get(1), alpha.get(0).get(2).get(0)],
        0,
    );
    let solver_value = objective(&solution.unsqueeze(0)).double_value(&[0]);
    assert!(solver_value <= grid_min + 1e-12, "the grid found a better point: {grid_min} < {solver_value}");
    assert!(grid_min - solver_value < 1e-4, "{grid_min} vs {solver_value}");
    let spacing = c / (steps - 1) as f64;
    let distance = (&solution - &grid_argmin).abs().max().double_value(&[]);
    assert!(distance <= 2.0 * spacing, "{solution:?} vs grid {grid_argmin:?}");
    // The other class's variables are the negatives.
    assert!((alpha.sum_dim_intlist(-1, false, Kind::Double)).abs().max().double_value(&[]) < 1e-12);
}

#[test]
fn svm_logits_gradient_matches_finite_differences() {
    let _serial = serial();
    tch::manual_seed(2);
    let (support, labels) = episode(2, 3, 2, 5, 1.0);
    let embeddings = Params::from_named(vec![
        ("support".into(), support),
        ("query".into(), Tensor::randn([2, 4, 5], F64)),
    ])
    .unwrap();
    let query_labels = Tensor::from_slice(&[0i64, 1, 2, 1]).unsqueeze(0).repeat([2, 1]);
    // C = 0.5 leaves some variables free and some at their bounds.
    let loss = |p: &Params| {
        let logits = svm_logits(&p["support"], &labels, &p["query"], 0.5, 1.0, 1000);
        TaskLoss::CrossEntropy.per_task(&(logits * 4.0), &query_labels).sum(Kind::Double)
    };
    let config = GradCheckConfig { directions: 6, ..Default::default() };
    let report = check_gradients(&embeddings, loss, &config).unwrap();
    assert!(report.is_close(1e-6, 1e-9), "{report}");
}
