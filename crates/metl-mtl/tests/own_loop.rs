//! metl-mtl as a user with their own model, loop and optimizer meets it, through the public
//! API only: the `Weighting` interface on closed forms, `MtlStep` stepped by a
//! `tch::nn::Optimizer`, and `MtlBackward` in a hand-written loop over a `tch::nn` model.

use metl_data::MultiTaskBatch;
use metl_models::{mlp::MlpConfig, optim::TchOptimizer, HardSharing, MultiTaskModel, Params, TaskLoss};
use metl_mtl::{
    backward::{MtlBackward, TaskLosses},
    linalg::Matrix,
    strategies::{
        imtl_g::{ImtlG, ImtlGConfig},
        mgda::{Mgda, MgdaConfig},
        pcgrad::{PcGrad, PcGradConfig},
        upgrad::{DualConeConfig, UpGrad},
    },
    weighting::{Context, Weighting},
    MtlStep, Setup, StrategyConfig,
};
use tch::{
    nn::{self, Module, OptimizerConfig},
    Device, Kind, Reduction, Tensor,
};

/// Tests that seed libtorch's global generator hold this lock for their whole body (parallel
/// test threads would otherwise draw each other's numbers).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < tol)
}

#[test]
fn weightings_match_closed_forms() {
    // g₁ = (1, 0), g₂ = (−1, 2): G = [[1, −1], [−1, 5]].
    let g = Matrix::from_rows(&[vec![1.0, -1.0], vec![-1.0, 5.0]]).unwrap();
    let context = Context::new(vec![1.0, 1.0]);
    // MGDA: α₁ = (G₂₂ − G₁₂)/(G₁₁ + G₂₂ − 2G₁₂) = 6/8.
    let w = Mgda::new(&MgdaConfig::default()).unwrap().weights(&g, &context).unwrap();
    assert!(close(&w, &[0.75, 0.25], 1e-6), "{w:?}");
    // PCGrad: g₁·g₂ = −1 < 0, so g₁ − (g₁·g₂/|g₂|²) g₂ = g₁ + g₂/5 and g₂ + g₁; the sum is
    // 2 g₁ + 1.2 g₂.
    let vs = nn::VarStore::new(Device::Cpu);
    let setup = Setup { num_tasks: 2, path: vs.root(), seed: 0 };
    let w = PcGrad::new(&PcGradConfig::default(), &setup).unwrap().weights(&g, &context).unwrap();
    assert!(close(&w, &[2.0, 1.2], 1e-12), "{w:?}");
    // IMTL-G: equal projections of the update on the unit gradients, weights summing to 1:
    // u = Jᵀw with u·g₁/|g₁| = u·g₂/|g₂|.
    let w = ImtlG::new(&ImtlGConfig::default()).unwrap().weights(&g, &context).unwrap();
    let u = g.mul_vec(&w);
    assert!((u[0] / 1.0 - u[1] / 5f64.sqrt()).abs() < 1e-9 && (w[0] + w[1] - 1.0).abs() < 1e-9, "{w:?}");
    // UPGrad on orthogonal gradients projects nothing: the mean, ½ each.
    let orthogonal = Matrix::from_rows(&[vec![4.0, 0.0], vec![0.0, 9.0]]).unwrap();
    let w = UpGrad::new(&DualConeConfig::default()).unwrap().weights(&orthogonal, &context).unwrap();
    assert!(close(&w, &[0.5, 0.5], 1e-6), "{w:?}");
    // From a Jacobian directly: the same MGDA weights.
    let j = Tensor::from_slice(&[1.0, 0.0, -1.0, 2.0]).view([2, 2]);
    let w = Mgda::new(&MgdaConfig::default()).unwrap().weights_of_jacobian(&j, &context).unwrap();
    assert!(close(&w, &[0.75, 0.25], 1e-6), "{w:?}");
    // A Gramian that does not match the tasks is an error, not a panic.
    let three = Context::new(vec![1.0, 1.0, 1.0]);
    assert!(Mgda::new(&MgdaConfig::default()).unwrap().weights_of_jacobian(&j, &three).is_err());
}

/// Two regression tasks on the same inputs that pull a narrow shared code apart.
fn two_tasks(n: i64) -> (Tensor, [Tensor; 2]) {
    let x = Tensor::randn([n, 8], (Kind::Float, Device::Cpu));
    let z = x.narrow(1, 0, 4).tanh();
    let c1 = Tensor::from_slice(&[1.0f32, 1.0, 0.5, 0.0]).view([4, 1]);
    let c2 = Tensor::from_slice(&[-1.0f32, -1.0, 0.5, 1.0]).view([4, 1]);
    (x.shallow_clone(), [z.matmul(&c1), z.matmul(&c2)])
}

#[test]
fn mtl_step_takes_a_tch_optimizer() {
    let _serial = serial();
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let encoder = MlpConfig::new([8, 32, 4]).build().unwrap();
    let heads = (0..2).map(|_| MlpConfig::new([4, 1]).build().unwrap()).collect();
    let model = HardSharing::new(encoder, heads);
    let params = model.init(&vs.root().sub("model")).unwrap();
    let strategy = StrategyConfig::default_for("upgrad")
        .unwrap()
        .build(&Setup { num_tasks: 2, path: vs.root().sub("mtl"), seed: 0 })
        .unwrap();
    let mut opt = TchOptimizer::new(nn::Adam::default().build(&vs, 1e-2).unwrap(), 1e-2);
    let mut step = MtlStep::new(model, params, vec![TaskLoss::Mse; 2], strategy).unwrap();
    let (x, [y1, y2]) = two_tasks(256);
    let batch = MultiTaskBatch::fully_labelled(x, vec![y1, y2]);
    let before = step.evaluate(&batch).unwrap().0;
    for _ in 0..150 {
        step.step(&batch, &mut opt, None).unwrap();
    }
    let after = step.evaluate(&batch).unwrap().0;
    assert_eq!(metl_models::optim::Optimizer::steps(&opt), 150);
    for (b, a) in before.iter().zip(&after) {
        assert!(*a < 0.2 * b, "loss {b} -> {a}");
    }
}

/// A user's own model, written with `tch::nn`.
#[derive(Debug)]
struct Net {
    trunk: nn::Sequential,
    heads: Vec<nn::Linear>,
}

impl Net {
    fn new(root: &nn::Path<'_>) -> Self {
        let trunk = nn::seq()
            .add(nn::linear(root / "trunk" / "0", 8, 32, Default::default()))
            .add_fn(|x| x.relu())
            .add(nn::linear(root / "trunk" / "1", 32, 4, Default::default()));
        let heads = (0..2).map(|t| nn::linear(root / "heads" / t, 4, 1, Default::default())).collect();
        Self { trunk, heads }
    }
}

#[test]
fn pcgrad_and_upgrad_in_a_users_own_loop_with_a_tch_optimizer() {
    let _serial = serial();
    for name in ["pcgrad", "upgrad"] {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root());
        let mut strategy = StrategyConfig::default_for(name)
            .unwrap()
            .build(&Setup { num_tasks: 2, path: vs.root() / "strategy", seed: 0 })
            .unwrap();
        let shared = Params::from_var_store(&vs, "trunk").unwrap();
        let (heads, rest) = Params::from_var_store(&vs, "").unwrap().split_prefixes(&["heads"]);
        assert_eq!(rest.names(), shared.prefixed("trunk").names());
        let specific = [heads.sub("heads.0"), heads.sub("heads.1")];
        let mut opt = nn::Sgd { momentum: 0.9, ..Default::default() }.build(&vs, 0.02).unwrap();
        let (test_x, test_y) = two_tasks(1000);
        let mse = |net: &Net| -> Vec<f64> {
            tch::no_grad(|| {
                let z = net.trunk.forward(&test_x);
                net.heads
                    .iter()
                    .zip(&test_y)
                    .map(|(h, y)| z.apply(h).mse_loss(y, Reduction::Mean).double_value(&[]))
                    .collect()
            })
        };
        let before = mse(&net);
        for step in 1..=300 {
            let (x, y) = two_tasks(64);
            let z = net.trunk.forward(&x);
            let losses: Vec<Tensor> =
                net.heads.iter().zip(&y).map(|(h, t)| z.apply(h).mse_loss(t, Reduction::Mean)).collect();
            opt.zero_grad();
            let report = MtlBackward::new(&shared, &specific)
                .run(strategy.as_mut(), &[TaskLosses::all(losses)], step, None)
                .unwrap();
            assert!(
                report.weights.iter().all(|w| w.is_finite() && *w >= 0.0),
                "{name}: {:?}",
                report.weights
            );
            opt.step();
        }
        let after = mse(&net);
        for (b, a) in before.iter().zip(&after) {
            assert!(*a < 0.2 * b, "{name}: test MSE {b} -> {a}");
        }
    }
}
