//! The MAML family with the user's own pieces: the learn2learn-style `learner()` /
//! `adapt` API, a closure loss, the user's `tch::nn::Optimizer` through `meta_backward`, a
//! `MamlFamily` built from settings used as a `MetaLearner`, and typed errors for bad
//! batches — all against the built-in paths, in float64.

use metl_data::{
    sinusoid::{SinusoidConfig, SinusoidTasks},
    TaskBatch,
};
use metl_meta::{
    evaluate,
    maml::{Maml, MamlConfig},
    maml_family::{FamilySettings, LrRule, MamlFamily, OuterOptimizer},
    meta_sgd::{MetaSgd, MetaSgdConfig},
    MetaError, MetaLearner,
};
use metl_models::{mlp::Mlp, mlp::MlpConfig, Params, TaskLoss};
use tch::{
    nn::{self, OptimizerConfig},
    Device, Kind, Reduction, Tensor,
};

fn double(batch: TaskBatch) -> TaskBatch {
    let d = |t: &Tensor| t.to_kind(Kind::Double);
    TaskBatch {
        support_x: d(&batch.support_x),
        support_y: d(&batch.support_y),
        query_x: d(&batch.query_x),
        query_y: d(&batch.query_y),
    }
}

fn sinusoids(tasks: usize, seed: u64) -> TaskBatch {
    double(
        SinusoidTasks::new(SinusoidConfig::default(), seed).sample_batch(tasks, 10, 10, Device::Cpu).unwrap(),
    )
}

/// Tests seed libtorch's global generator: one at a time, or parallel test threads would
/// draw each other's numbers. Every draw in this binary must be made under this lock, not
/// only the seeded ones: a draw outside it can land between another test's seeding and its
/// initialisation, and two learners built "from the same seed" then differ.
static SEED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A float64 MLP 1-40-40-1 under a fixed seed.
fn mlp(seed: i64) -> (nn::VarStore, Mlp, Params) {
    let _lock = SEED.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    let mut vs = nn::VarStore::new(Device::Cpu);
    vs.set_kind(Kind::Double);
    let (mlp, theta) = MlpConfig::new([1, 40, 40, 1]).init(&vs.root()).unwrap();
    (vs, mlp, theta)
}

fn max_diff(a: &Params, b: &Params) -> f64 {
    a.tensors()
        .iter()
        .zip(b.tensors())
        .map(|(x, y)| (x - y).abs().max().double_value(&[]))
        .fold(0.0, f64::max)
}

fn grads_of(params: &Params) -> Params {
    params.map(|_, p| p.grad().detach().copy())
}

#[test]
fn manual_adapt_steps_give_the_meta_gradient() {
    for first_order in [false, true] {
        let (vs, model, theta) = mlp(0);
        let config = MamlConfig { inner_steps: 3, first_order, inner_lr: 0.05, ..MamlConfig::default() };
        let maml = Maml::new(model, theta.shallow_clone(), &vs, TaskLoss::Mse, config).unwrap();
        let batch = sinusoids(4, 1);
        let (_, expected) = maml.meta_gradient(&batch).unwrap();

        metl_models::optim::zero_grads(&theta);
        for i in 0..4 {
            let mut learner = maml.learner();
            for _ in 0..3 {
                let support = learner.forward(&batch.support_x.get(i), true).unwrap();
                learner.adapt(&support.mse_loss(&batch.support_y.get(i), Reduction::Mean)).unwrap();
            }
            assert_eq!(learner.steps(), 3);
            // The family's own loss on the fast weights is the one written out above.
            let (qx, qy) = (batch.query_x.get(i), batch.query_y.get(i));
            let own = learner.loss(&qx, &qy).unwrap();
            let written = learner.forward(&qx, true).unwrap().mse_loss(&qy, Reduction::Mean);
            assert!((own - written).abs().double_value(&[]) < 1e-15);
            let query = learner.forward(&batch.query_x.get(i), true).unwrap();
            (query.mse_loss(&batch.query_y.get(i), Reduction::Mean) / 4.0).backward();
        }
        let manual = grads_of(&theta);
        let diff = max_diff(&manual, &expected);
        assert!(diff < 1e-10, "first_order {first_order}: {diff:e}");
        assert!(expected.flatten().abs().sum(Kind::Double).double_value(&[]) > 0.0);
    }
}

#[test]
fn a_closure_loss_gives_the_built_in_meta_gradient() {
    let batch = sinusoids(5, 2);
    let (vs, model, theta) = mlp(1);
    let built_in = Maml::new(model, theta, &vs, TaskLoss::Mse, MamlConfig::default()).unwrap();
    let (loss_a, grad_a) = built_in.meta_gradient(&batch).unwrap();
    let (vs, model, theta) = mlp(1);
    let mse = |p: &Tensor, y: &Tensor| p.mse_loss(y, Reduction::Mean);
    let closure = Maml::new(model, theta, &vs, mse, MamlConfig::default()).unwrap();
    let (loss_b, grad_b) = closure.meta_gradient(&batch).unwrap();
    assert!((loss_a - loss_b).abs() < 1e-12, "{loss_a} vs {loss_b}");
    assert!(max_diff(&grad_a, &grad_b) < 1e-10);
}

#[test]
fn meta_backward_with_a_tch_optimizer_equals_the_built_in_outer_step() {
    let batch = sinusoids(5, 3);
    let settings = |outer_optimizer| FamilySettings {
        outer_optimizer,
        ..FamilySettings::basic(1, LrRule::Fixed(0.01), false, 0.1)
    };
    // The built-in outer loop with plain SGD at 0.1 ...
    let (_vs, model, theta) = mlp(2);
    let mut built_in =
        MamlFamily::new(model, theta.shallow_clone(), TaskLoss::Mse, settings(OuterOptimizer::Sgd)).unwrap();
    built_in.meta_train_step(&batch).unwrap();
    // ... and the user's tch SGD at 0.1 after meta_backward.
    let (vs, model, theta_user) = mlp(2);
    let family =
        MamlFamily::new(model, theta_user.shallow_clone(), TaskLoss::Mse, settings(OuterOptimizer::Adam))
            .unwrap();
    let mut opt = nn::Sgd::default().build(&vs, 0.1).unwrap();
    opt.zero_grad();
    let report = family.meta_backward(&batch).unwrap();
    assert!(report.loss.is_finite() && report.accuracy.is_none());
    opt.step();
    let diff = max_diff(&theta, &theta_user);
    assert!(diff < 1e-12, "{diff:e}");
    // The family is a MetaLearner of its own: evaluate takes it.
    let e = evaluate(&built_in, [sinusoids(3, 4)], &[0, 1]).unwrap();
    assert_eq!(e[1].loss.n, 3);
    assert_eq!(built_in.steps_taken(), 1);
}

#[test]
fn bad_batches_are_typed_errors_not_panics() {
    let (vs, model, theta) = mlp(3);
    let mut maml = Maml::new(model, theta, &vs, TaskLoss::Mse, MamlConfig::default()).unwrap();
    let good = sinusoids(2, 5);
    let cases = [
        ("query_y has shape", TaskBatch { query_y: good.query_y.narrow(1, 0, 9), ..sinusoids(2, 5) }),
        ("but query_x has 1", TaskBatch { query_x: good.query_x.narrow(0, 0, 1), ..sinusoids(2, 5) }),
        (
            "regression targets",
            TaskBatch { support_y: good.support_y.to_kind(Kind::Int64), ..sinusoids(2, 5) },
        ),
        (
            "support_x is Float but the parameters are Double",
            TaskBatch { support_x: good.support_x.to_kind(Kind::Float), ..sinusoids(2, 5) },
        ),
    ];
    for (expected, batch) in cases {
        let err = maml.meta_train_step(&batch).unwrap_err();
        assert!(matches!(err, MetaError::InvalidBatch(_)), "{err}");
        assert!(err.to_string().contains(expected), "{expected}: {err}");
        assert!(maml.adapt_and_evaluate(&batch, 1).is_err());
    }
    assert_eq!(maml.steps_taken(), 0);
}

#[test]
fn learned_rates_registered_in_the_var_store_train_with_a_tch_optimizer() {
    let batch = sinusoids(5, 6);
    let settings = FamilySettings {
        outer_optimizer: OuterOptimizer::Sgd,
        ..FamilySettings::basic(2, LrRule::PerParameter { low: 0.005, high: 0.1 }, false, 0.1)
    };
    // Both learners draw θ and the rates α from the same seed (under the lock: the rates
    // come from torch's generator too).
    let build = || {
        let _lock = SEED.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(7);
        let mut vs = nn::VarStore::new(Device::Cpu);
        vs.set_kind(Kind::Double);
        let (model, theta) = MlpConfig::new([1, 40, 40, 1]).init(&vs.root()).unwrap();
        let family = MamlFamily::new(model, theta.shallow_clone(), TaskLoss::Mse, settings.clone()).unwrap();
        (vs, theta, family)
    };
    // The built-in outer loop: plain SGD at 0.1 on θ and α ...
    let (_vs, theta, mut built_in) = build();
    built_in.meta_train_step(&batch).unwrap();
    // ... and the user's tch SGD at 0.1 over a VarStore holding θ and (registered) α.
    let (vs, theta_user, mut family) = build();
    assert_eq!(family.register_learned_lrs(&(vs.root() / "inner_lr")).unwrap(), 6);
    assert!(vs.variables().contains_key("inner_lr.layers.0.weight"));
    let mut opt = nn::Sgd::default().build(&vs, 0.1).unwrap();
    opt.zero_grad();
    family.meta_backward(&batch).unwrap();
    opt.step();
    assert!(max_diff(&theta, &theta_user) < 1e-12, "θ: {:e}", max_diff(&theta, &theta_user));
    let (a, b) = (built_in.learned_lrs().unwrap(), family.learned_lrs().unwrap());
    assert!(max_diff(a, b) < 1e-12, "α: {:e}", max_diff(a, b));
    assert!(max_diff(a, &b.map(|_, t| t.detach().zeros_like())) > 0.0);
    // Registering after a step would strand the built-in optimizer's state.
    let err = built_in.register_learned_lrs(&(vs.root() / "late")).unwrap_err().to_string();
    assert!(err.contains("before the first meta-training step"), "{err}");
    // Fixed rates: nothing to register; Meta-SGD's rates: one per adapted tensor.
    let (vs, model, theta) = mlp(8);
    let settings = FamilySettings::basic(1, LrRule::Fixed(0.01), false, 0.1);
    let mut fixed = MamlFamily::new(model, theta, TaskLoss::Mse, settings).unwrap();
    assert_eq!(fixed.register_learned_lrs(&(vs.root() / "inner_lr")).unwrap(), 0);
    let (vs, model, theta) = mlp(9);
    // Meta-SGD draws its rates from torch's generator too: under the lock.
    let mut meta_sgd = {
        let _lock = SEED.lock().unwrap_or_else(|e| e.into_inner());
        MetaSgd::new(model, theta, TaskLoss::Mse, MetaSgdConfig::default()).unwrap()
    };
    assert_eq!(meta_sgd.register_learned_lrs(&(vs.root() / "inner_lr")).unwrap(), 6);
    assert_eq!(meta_sgd.meta_parameters().len(), 12);
}

#[test]
fn meta_backward_at_follows_the_iteration_for_first_order_phases() {
    let batch = sinusoids(4, 10);
    // First order for the first 3 meta-iterations, second order afterwards (as MAML++).
    let phased = FamilySettings {
        first_order_iterations: 3,
        ..FamilySettings::basic(2, LrRule::Fixed(0.05), false, 0.1)
    };
    let gradient_at = |settings: FamilySettings, iteration: Option<u64>| {
        let (_vs, model, theta) = mlp(11);
        let family = MamlFamily::new(model, theta.shallow_clone(), TaskLoss::Mse, settings).unwrap();
        metl_models::optim::zero_grads(&theta);
        match iteration {
            Some(t) => family.meta_backward_at(&batch, t).unwrap(),
            None => family.meta_backward(&batch).unwrap(),
        };
        grads_of(&theta)
    };
    let first = gradient_at(FamilySettings::basic(2, LrRule::Fixed(0.05), true, 0.1), None);
    let second = gradient_at(FamilySettings::basic(2, LrRule::Fixed(0.05), false, 0.1), None);
    assert!(max_diff(&first, &second) > 1e-6, "the orders must differ for the test to mean anything");
    assert!(max_diff(&gradient_at(phased.clone(), None), &first) < 1e-12);
    assert!(max_diff(&gradient_at(phased.clone(), Some(3)), &first) < 1e-12);
    assert!(max_diff(&gradient_at(phased, Some(4)), &second) < 1e-12);
}
