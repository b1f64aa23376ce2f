//! Correctness of the MAML family's meta-gradients, in float64 on a tiny network:
//! against central finite differences of the meta-loss (second order, one and several
//! inner steps; Meta-SGD's and MAML++'s learned rates), against the closed form of
//! first-order MAML, between the task-batched and per-task paths, and Reptile's update.

use metl_data::{
    sinusoid::{SinusoidConfig, SinusoidTasks},
    TaskBatch,
};
use metl_meta::{
    inner::{InnerLoop, InnerLr},
    maml::{Maml, MamlConfig},
    maml_family::MamlFamily,
    maml_plus_plus::{MamlPlusPlus, MamlPlusPlusConfig},
    meta_sgd::{MetaSgd, MetaSgdConfig},
    reptile::{Reptile, ReptileConfig},
    MetaLearner,
};
use metl_models::{
    mlp::{Activation, Mlp, MlpConfig},
    Model, Params, TaskLoss,
};
use tch::{nn, Device, Kind, Tensor};

/// A smooth 1-4-1 tanh network in float64 (11 parameters) and its VarStore.
///
/// Drawn from libtorch's global generator, which the tests of this binary share on
/// parallel threads: one may draw between another's seeding and its initialisation, so two
/// calls with the same seed need not give the same weights. A test that compares two
/// learners runs both on the parameters of one call.
fn tiny_net(seed: i64) -> (nn::VarStore, Mlp, Params) {
    tch::manual_seed(seed);
    let mut vs = nn::VarStore::new(Device::Cpu);
    vs.set_kind(Kind::Double);
    let (mlp, params) = MlpConfig::new([1, 4, 1]).with_activation(Activation::Tanh).init(&vs.root()).unwrap();
    (vs, mlp, params)
}

/// Three sinusoid tasks with 5 support and 6 query points, in float64.
fn batch(seed: u64) -> TaskBatch {
    let b = SinusoidTasks::new(SinusoidConfig::default(), seed).sample_batch(3, 5, 6, Device::Cpu).unwrap();
    TaskBatch {
        support_x: b.support_x.to_kind(Kind::Double),
        support_y: b.support_y.to_kind(Kind::Double),
        query_x: b.query_x.to_kind(Kind::Double),
        query_y: b.query_y.to_kind(Kind::Double),
    }
}

/// Central finite differences of `f` with respect to every entry of `params` (perturbed in
/// place and restored).
fn finite_differences(params: &Params, mut f: impl FnMut() -> f64) -> Params {
    const H: f64 = 1e-6;
    params.map(|_, t| {
        let flat = t.detach().view([-1]);
        let mut grad = vec![0.0; flat.numel()];
        for (i, g) in grad.iter_mut().enumerate() {
            let i = i as i64;
            let x0 = flat.double_value(&[i]);
            let _ = flat.get(i).fill_(x0 + H);
            let plus = f();
            let _ = flat.get(i).fill_(x0 - H);
            let minus = f();
            let _ = flat.get(i).fill_(x0);
            *g = (plus - minus) / (2.0 * H);
        }
        Tensor::from_slice(&grad).view(t.size().as_slice())
    })
}

fn meta_loss_value<M: Model>(family: &MamlFamily<M>, batch: &TaskBatch) -> f64 {
    family.meta_loss(batch).unwrap().0.double_value(&[])
}

/// Max |a − b| / (1e-3 + max |b|) over all tensors.
fn relative_error(a: &Params, b: &Params) -> f64 {
    let diff = (a.flatten() - b.flatten()).abs().max().double_value(&[]);
    diff / (1e-3 + b.flatten().abs().max().double_value(&[]))
}

#[test]
fn maml_meta_gradient_matches_finite_differences_for_one_and_several_steps() {
    for (steps, inner_lr) in [(1, 0.3), (3, 0.2)] {
        let (vs, mlp, params) = tiny_net(0);
        let config = MamlConfig { inner_lr, inner_steps: steps, ..Default::default() };
        let maml = Maml::new(mlp.clone(), params.shallow_clone(), &vs, TaskLoss::Mse, config).unwrap();
        let b = batch(1);
        let (_, analytic) = maml.meta_gradient(&b).unwrap();
        let numeric = finite_differences(&params, || meta_loss_value(&maml, &b));
        let err = relative_error(&analytic, &numeric);
        assert!(err < 1e-6, "{steps} step(s): relative error {err:e}");
        // The second-order terms matter here: first order differs clearly, on the same
        // weights (a second `tiny_net(0)` need not have them: see `tiny_net`).
        let config = MamlConfig { first_order: true, ..config };
        let fomaml = Maml::new(mlp, params, &vs, TaskLoss::Mse, config).unwrap();
        let (_, first_order) = fomaml.meta_gradient(&b).unwrap();
        assert!(relative_error(&first_order, &numeric) > 1e-3, "{steps} step(s)");
    }
}

#[test]
fn first_order_maml_is_the_query_gradient_at_the_adapted_weights() {
    let (vs, mlp, params) = tiny_net(2);
    let config = MamlConfig { inner_lr: 0.3, inner_steps: 2, first_order: true, ..Default::default() };
    let b = batch(3);
    let fomaml = Maml::new(mlp.clone(), params.shallow_clone(), &vs, TaskLoss::Mse, config).unwrap();
    let (_, got) = fomaml.meta_gradient(&b).unwrap();

    // By hand, task by task: two SGD steps on the support set, then ∇L^q at φ.
    let tasks = b.num_tasks();
    let mut expected = params.map(|_, t| t.detach().zeros_like());
    for i in 0..tasks {
        let (sx, sy) = (b.support_x.get(i as i64), b.support_y.get(i as i64));
        let mut phi = params.detached_leaves();
        for _ in 0..2 {
            let loss = mlp.forward(&phi, &sx, true).mse_loss(&sy, tch::Reduction::Mean);
            let g = phi.grads(&loss, false).unwrap();
            phi = phi.sgd(&g, 0.3).unwrap().detached_leaves();
        }
        let query = mlp
            .forward(&phi, &b.query_x.get(i as i64), true)
            .mse_loss(&b.query_y.get(i as i64), tch::Reduction::Mean);
        let g = phi.grads(&query, false).unwrap();
        expected = expected.zip_map(&g, |_, e, g| e + g / tasks as f64).unwrap();
    }
    let err = relative_error(&got, &expected);
    assert!(err < 1e-12, "relative error {err:e}");
}

#[test]
fn task_batched_and_per_task_paths_agree() {
    // Both paths on the same network: two `tiny_net(5)` need not start alike (see `tiny_net`).
    let (vs, mlp, params) = tiny_net(5);
    for first_order in [false, true] {
        let b = batch(4);
        let mut grads = vec![];
        for task_batched in [true, false] {
            let config =
                MamlConfig { inner_lr: 0.2, inner_steps: 2, first_order, task_batched, ..Default::default() };
            let maml = Maml::new(mlp.clone(), params.shallow_clone(), &vs, TaskLoss::Mse, config).unwrap();
            let (loss, g) = maml.meta_gradient(&b).unwrap();
            let after_3 = maml.adapt_and_evaluate(&b, 3).unwrap().loss;
            grads.push((loss, g, after_3));
        }
        let ((l0, g0, e0), (l1, g1, e1)) = (&grads[0], &grads[1]);
        assert!((l0 - l1).abs() < 1e-12, "{l0} vs {l1}");
        assert!(relative_error(g1, g0) < 1e-12, "first_order = {first_order}");
        assert!(e0.allclose(e1, 1e-12, 1e-12, false));
    }
}

#[test]
fn meta_sgd_rate_gradients_match_finite_differences() {
    let (_vs, mlp, params) = tiny_net(6);
    let config = MetaSgdConfig { inner_steps: 2, init_lr: [0.1, 0.3], ..Default::default() };
    let meta_sgd = MetaSgd::new(mlp, params, TaskLoss::Mse, config).unwrap();
    let b = batch(7);
    let (_, analytic) = meta_sgd.meta_gradient(&b).unwrap();
    let everything = meta_sgd.meta_parameters();
    let numeric = finite_differences(&everything, || meta_loss_value(&meta_sgd, &b));
    let err = relative_error(&analytic, &numeric);
    assert!(err < 1e-6, "relative error {err:e}");
    assert!(analytic.sub("inner_lr").flatten().abs().max().double_value(&[]) > 1e-4);
}

#[test]
fn maml_plus_plus_rate_gradients_match_finite_differences() {
    let (_vs, mlp, params) = tiny_net(8);
    let config = MamlPlusPlusConfig {
        inner_steps: 3,
        init_inner_lr: 0.2,
        // Epoch 1 of 4 of the multi-step loss, second order from the start.
        iterations_per_epoch: 1,
        multi_step_loss_epochs: 4,
        first_order_epochs: 0,
        per_step_batch_norm: false,
        not_adapted: vec!["layers.1.bias".into()],
        ..Default::default()
    };
    let mpp = MamlPlusPlus::new(mlp, params, TaskLoss::Mse, config).unwrap();
    let b = batch(9);
    let (_, analytic) = mpp.meta_gradient(&b).unwrap();
    let everything = mpp.meta_parameters();
    assert_eq!(everything.sub("inner_lr").len(), 3, "one rate vector per adapted tensor");
    let numeric = finite_differences(&everything, || meta_loss_value(&mpp, &b));
    let err = relative_error(&analytic, &numeric);
    assert!(err < 1e-6, "relative error {err:e}");
}

#[test]
fn reptile_moves_theta_by_epsilon_times_mean_adapted_minus_theta() {
    let (_vs, mlp, params) = tiny_net(10);
    let before = params.deep_copy();
    let config = ReptileConfig {
        inner_lr: 0.1,
        inner_steps: 3,
        inner_batch: 0,
        inner_optimizer: Default::default(),
        outer_step_size: 0.3,
        anneal_iterations: 0,
        task_batched: true,
    };
    let mut reptile = Reptile::new(mlp.clone(), params.shallow_clone(), TaskLoss::Mse, config).unwrap();
    let b = batch(11);
    reptile.meta_train_step(&b).unwrap();

    // φᵢ from an independent per-task inner loop through the plain forward pass.
    let tasks = b.num_tasks();
    let mut mean_phi = before.map(|_, t| t.zeros_like());
    for i in 0..tasks {
        let (sx, sy) = (b.support_x.get(i as i64), b.support_y.get(i as i64));
        let phi = InnerLoop::sgd(InnerLr::Fixed(0.1), false)
            .run(
                before.detached_leaves(),
                3,
                |w, _| Ok(mlp.forward(w, &sx, true).mse_loss(&sy, tch::Reduction::Mean)),
                |_, _| Ok(()),
            )
            .unwrap();
        mean_phi = mean_phi.zip_map(&phi, |_, m, p| m + p.detach() / tasks as f64).unwrap();
    }
    let moved = params.zip_map(&before, |_, a, b| a.detach() - b).unwrap();
    let expected = mean_phi.zip_map(&before, |_, p, t| (p - t) * 0.3).unwrap();
    let err = (moved.flatten() - expected.flatten()).abs().max().double_value(&[]);
    assert!(err < 1e-14, "max error {err:e}");
    assert!(moved.flatten().abs().max().double_value(&[]) > 1e-3);
}

/// `f(x; θ) = θ x` with one weight, for the worked example of docs/meta-learning.md.
#[derive(Debug, Clone)]
struct Slope;

impl Model for Slope {
    fn init(&self, path: &nn::Path<'_>) -> metl_models::error::Result<Params> {
        let mut builder = metl_models::ParamsBuilder::new(path);
        builder.var("w", &[1], nn::Init::Const(0.0))?;
        builder.build()
    }

    fn forward(&self, params: &Params, x: &Tensor, _train: bool) -> Tensor {
        x * &params["w"]
    }

    fn forward_tasks(&self, params: &Params, x: &Tensor, _train: bool) -> Tensor {
        x * params["w"].unsqueeze(1)
    }
}

#[test]
fn worked_example_of_the_docs() {
    let batch = TaskBatch {
        support_x: Tensor::from_slice(&[1.0f64, 2.0]).view([1, 2, 1]),
        support_y: Tensor::from_slice(&[2.0f64, 4.0]).view([1, 2, 1]),
        query_x: Tensor::from_slice(&[3.0f64]).view([1, 1, 1]),
        query_y: Tensor::from_slice(&[6.0f64]).view([1, 1, 1]),
    };
    let slope = || {
        let mut vs = nn::VarStore::new(Device::Cpu);
        vs.set_kind(Kind::Double);
        let params = Slope.init(&vs.root()).unwrap();
        (vs, params)
    };
    for (first_order, expected) in [(false, -9.0), (true, -18.0)] {
        let (vs, params) = slope();
        let config = MamlConfig { inner_lr: 0.1, first_order, ..Default::default() };
        let maml = Maml::new(Slope, params, &vs, TaskLoss::Mse, config).unwrap();
        let (loss, grad) = maml.meta_gradient(&batch).unwrap();
        assert!((loss - 9.0).abs() < 1e-12, "meta-loss {loss}");
        assert!((grad["w"].double_value(&[0]) - expected).abs() < 1e-12, "first order {first_order}");
    }
    let (_vs, params) = slope();
    let config = ReptileConfig {
        inner_lr: 0.1,
        inner_steps: 1,
        inner_batch: 0,
        inner_optimizer: Default::default(),
        outer_step_size: 0.5,
        anneal_iterations: 0,
        task_batched: true,
    };
    let mut reptile = Reptile::new(Slope, params.shallow_clone(), TaskLoss::Mse, config).unwrap();
    reptile.meta_train_step(&batch).unwrap();
    assert!((params["w"].double_value(&[0]) - 0.5).abs() < 1e-12);

    // The prototypical network of the example: identity embedding in two dimensions.
    let vs = nn::VarStore::new(Device::Cpu);
    let (mlp, params) = MlpConfig::new([2, 2]).init(&vs.root()).unwrap();
    tch::no_grad(|| {
        params["layers.0.weight"].shallow_clone().copy_(&Tensor::eye(2, (Kind::Float, Device::Cpu)));
        let _ = params["layers.0.bias"].shallow_clone().zero_();
    });
    let protonet = metl_meta::protonet::ProtoNet::new(mlp, params, Default::default()).unwrap();
    let episode = TaskBatch {
        support_x: Tensor::from_slice(&[0.0f32, 0.0, 2.0, 0.0, 0.0, 2.0]).view([1, 3, 2]),
        support_y: Tensor::from_slice(&[0i64, 0, 1]).view([1, 3]),
        query_x: Tensor::from_slice(&[1.0f32, 1.0]).view([1, 1, 2]),
        query_y: Tensor::from_slice(&[0i64]).view([1, 1]),
    };
    let logits = protonet.adapt_and_predict(&episode, 0).unwrap();
    assert!(logits.allclose(&Tensor::from_slice(&[-1.0f32, -2.0]).view([1, 1, 2]), 1e-6, 1e-6, false));
    let p0 = logits.softmax(-1, None::<Kind>).double_value(&[0, 0, 0]);
    assert!((p0 - 0.731).abs() < 5e-4, "{p0}");
}
