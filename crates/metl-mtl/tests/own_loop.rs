//! metl-mtl as a user with their own model, loop and optimizer meets it, through the public
//! API only: the `Weighting` interface on closed forms, `MtlStep` stepped by a
//! `tch::nn::Optimizer`, `MtlBackward`, `backward` and the Gramian helper in hand-written
//! loops over a `tch::nn` model, and strategies called directly on a `StepInput`.

use metl_data::MultiTaskBatch;
use metl_models::{mlp::MlpConfig, optim::TchOptimizer, HardSharing, MultiTaskModel, Params, TaskLoss};
use metl_mtl::{
    backward::{backward, MtlBackward, TaskLosses},
    jacobian::{gramian, jacobian, weighted_loss},
    linalg::Matrix,
    registry,
    strategies::{
        gradvac::{GradVac, GradVacConfig},
        imtl_g::{ImtlG, ImtlGConfig},
        mgda::{Mgda, MgdaConfig},
        pcgrad::{PcGrad, PcGradConfig},
        upgrad::{DualConeConfig, UpGrad},
    },
    weighting::{Context, Weighting},
    MtlError, MtlStep, Setup, StepInput, StrategyConfig, Update,
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

    /// Each task's mean squared error on `x` against its targets `y`.
    fn losses(&self, x: &Tensor, y: &[Tensor]) -> Vec<Tensor> {
        let z = self.trunk.forward(x);
        self.heads.iter().zip(y).map(|(h, t)| z.apply(h).mse_loss(t, Reduction::Mean)).collect()
    }

    /// [`Net::losses`] as numbers, without recording gradients.
    fn test_mse(&self, x: &Tensor, y: &[Tensor]) -> Vec<f64> {
        tch::no_grad(|| self.losses(x, y).iter().map(|l| l.double_value(&[])).collect())
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
        let mse = |net: &Net| net.test_mse(&test_x, &test_y);
        let before = mse(&net);
        for step in 1..=300 {
            let (x, y) = two_tasks(64);
            let losses = net.losses(&x, &y);
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

/// The test MSE of both tasks before and after 300 steps of `update` (which leaves the
/// combined gradient in `.grad`) stepped by `tch::nn::Adam`.
fn fit(mut update: impl FnMut(&nn::VarStore, &[Tensor], u64)) -> (Vec<f64>, Vec<f64>) {
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root());
    let mut opt = nn::Adam::default().build(&vs, 1e-2).unwrap();
    let (test_x, test_y) = two_tasks(1000);
    let mse = |net: &Net| net.test_mse(&test_x, &test_y);
    let before = mse(&net);
    for step in 1..=300 {
        let (x, y) = two_tasks(64);
        let losses = net.losses(&x, &y);
        opt.zero_grad();
        update(&vs, &losses, step);
        opt.step();
    }
    (before, mse(&net))
}

#[test]
fn the_short_paths_of_a_users_own_loop_with_tch_adam() {
    // A Weighting on the Gramian from the helper, then Σᵢ wᵢ Lᵢ back-propagated.
    let mut upgrad = UpGrad::new(&DualConeConfig::default()).unwrap();
    let (before, after) = fit(|vs, losses, step| {
        let shared = Params::from_var_store(vs, "trunk").unwrap();
        let g = gramian(losses, &shared).unwrap();
        let values = losses.iter().map(|l| l.double_value(&[])).collect();
        let w = upgrad.weights(&g, &Context::new(values).at_step(step)).unwrap();
        weighted_loss(losses, &w).unwrap().backward();
    });
    for (b, a) in before.iter().zip(&after) {
        assert!(*a < 0.2 * b, "upgrad through the Gramian: test MSE {b} -> {a}");
    }
    // Any strategy through `backward` on every variable of the VarStore.
    let vs = nn::VarStore::new(Device::Cpu);
    let mut pcgrad = StrategyConfig::default_for("pcgrad")
        .unwrap()
        .build(&Setup { num_tasks: 2, path: vs.root(), seed: 0 })
        .unwrap();
    let (before, after) = fit(|vs, losses, step| {
        let report =
            backward(pcgrad.as_mut(), losses, &Params::from_var_store(vs, "").unwrap(), step).unwrap();
        assert_eq!(report.tasks, [0, 1]);
    });
    for (b, a) in before.iter().zip(&after) {
        assert!(*a < 0.2 * b, "pcgrad through backward: test MSE {b} -> {a}");
    }
}

#[test]
fn strategies_take_a_step_input_built_outside_the_crate() {
    let w = Tensor::zeros([3], (Kind::Double, Device::Cpu)).set_requires_grad(true);
    let shared = Params::from_named(vec![("w".into(), w.shallow_clone())]).unwrap();
    let g1 = Tensor::from_slice(&[3.0, 0.0, 0.0]);
    let g2 = Tensor::from_slice(&[0.0, 1.0, 0.0]);
    let losses = [(&w * &g1).sum(Kind::Double) + 2.0, (&w * &g2).sum(Kind::Double) + 1.0];
    // The Jacobian helper: one gradient per row; the Gramian of orthogonal gradients.
    let j = jacobian(&losses, &shared).unwrap();
    assert_eq!(Vec::<f64>::try_from(j.view([-1])).unwrap(), [3.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    let g = gramian(&losses, &shared).unwrap();
    assert!(close(&g.mul_vec(&[1.0, 1.0]), &[9.0, 1.0], 1e-12));

    let vs = nn::VarStore::new(Device::Cpu);
    let setup = Setup { num_tasks: 2, path: vs.root(), seed: 0 };
    let input = StepInput::new(1, &losses, &shared).unwrap().with_jacobian(j.shallow_clone());
    assert_eq!((input.tasks.clone(), input.values().to_vec()), (vec![0, 1], vec![2.0, 1.0]));
    // UPGrad on orthogonal gradients: nothing to project, the mean.
    let mut upgrad = StrategyConfig::default_for("upgrad").unwrap().build(&setup).unwrap();
    let combination = upgrad.combine(&input).unwrap();
    assert!(matches!(combination.update, Update::Weighted) && close(&combination.weights, &[0.5, 0.5], 1e-6));
    // Equal weighting, a loss-based strategy: the sum of the losses.
    let mut ew = StrategyConfig::default_for("ew").unwrap().build(&setup).unwrap();
    let combination = ew.combine(&StepInput::new(1, &losses, &shared).unwrap()).unwrap();
    match combination.update {
        Update::Loss(l) => assert_eq!(l.double_value(&[]), 3.0),
        other => panic!("{other:?}"),
    }
    // Bad input is an error, never a panic.
    let no_gradients = StepInput::new(1, &losses, &shared).unwrap();
    assert!(matches!(upgrad.combine(&no_gradients), Err(MtlError::Shape(_))));
    assert!(StepInput::new(1, &losses, &shared).unwrap().with_tasks(vec![0, 2], 3).is_ok());
    for (tasks, of) in [(vec![2, 0], 3), (vec![0, 3], 3), (vec![0], 3)] {
        let input = StepInput::new(1, &losses, &shared).unwrap();
        assert!(matches!(input.with_tasks(tasks, of), Err(MtlError::Shape(_))));
    }
    assert!(matches!(StepInput::new(1, &[], &shared), Err(MtlError::NoTasks)));
    let nan = [losses[0].shallow_clone(), &losses[1] * f64::NAN];
    assert!(matches!(
        StepInput::new(4, &nan, &shared),
        Err(MtlError::NonFiniteLoss { task: 1, step: 4, .. })
    ));
    let vector = [&w * 2.0];
    assert!(matches!(StepInput::new(1, &vector, &shared), Err(MtlError::Shape(_))));
    assert!(matches!(jacobian(&vector, &shared), Err(MtlError::Shape(_))));
    assert!(matches!(jacobian(&[], &shared), Err(MtlError::NoTasks)));
    let constant = [Tensor::from(1.0f64)];
    assert!(matches!(jacobian(&constant, &shared), Err(MtlError::Shape(_))), "a constant loss");
    assert!(matches!(backward(upgrad.as_mut(), &constant, &shared, 1), Err(MtlError::Shape(_))));
    let frozen =
        Params::from_named(vec![("f".into(), Tensor::zeros([3], (Kind::Double, Device::Cpu)))]).unwrap();
    assert!(jacobian(&losses, &frozen).is_err(), "a parameter that does not require a gradient");
    assert!(matches!(weighted_loss(&losses, &[1.0]), Err(MtlError::Shape(_))));
}

#[test]
fn weightings_reject_bad_gramians_and_contexts_without_panicking() {
    let vs = nn::VarStore::new(Device::Cpu);
    let setup = Setup { num_tasks: 3, path: vs.root(), seed: 0 };
    let three = Matrix::from_rows(&[vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0], vec![0.0, 0.0, 1.0]]).unwrap();
    let two_losses = Context::new(vec![1.0, 1.0]);
    let mut gradvac = GradVac::new(&GradVacConfig::default(), &setup).unwrap();
    assert!(matches!(gradvac.weights(&three, &two_losses), Err(MtlError::Shape(_))));
    let mut mgda = Mgda::new(&MgdaConfig::default()).unwrap();
    assert!(matches!(mgda.weights(&three, &Context::new(vec![])), Err(MtlError::Shape(_))));
    let outside = Context { tasks: vec![0, 1, 5], ..Context::new(vec![1.0; 3]) };
    assert!(matches!(mgda.weights(&three, &outside), Err(MtlError::Shape(_))));
    // Every gradient strategy of the registry on non-finite gradients, called directly:
    // an error or weights, never a panic.
    let w = Tensor::zeros([2], (Kind::Double, Device::Cpu)).set_requires_grad(true);
    let shared = Params::from_named(vec![("w".into(), w.shallow_clone())]).unwrap();
    let losses = [w.sum(Kind::Double) + 1.0, w.sum(Kind::Double) + 2.0];
    for info in metl_mtl::STRATEGIES {
        let mut strategy =
            registry::build(info.name, &Setup { num_tasks: 2, path: vs.root() / info.name, seed: 0 })
                .unwrap();
        let needs = strategy.needs();
        if needs.gradients != Some(metl_mtl::GradientSpace::Parameters)
            || needs.samples != 1
            || needs.validation
        {
            continue;
        }
        for bad in [f64::NAN, f64::INFINITY] {
            let j = Tensor::from_slice(&[1.0, bad, 0.5, 1.0]).view([2, 2]);
            let input = StepInput::new(1, &losses, &shared).unwrap().with_jacobian(j);
            if let Ok(c) = strategy.combine(&input) {
                assert_eq!(c.weights.len(), 2, "{}", info.name);
            }
        }
    }
}
