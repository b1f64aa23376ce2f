//! Gradients of every backbone, head and multi-task architecture agree with finite
//! differences in float64, and so do second-order meta-gradients (the query loss after one
//! differentiable inner SGD step) — see `metl_models::gradcheck`.

mod common;

use common::{rand, seeded, var_store};
use metl_models::{
    conv4::{Conv4, Conv4Config},
    gradcheck::{check_gradients, GradCheckConfig},
    head::{CosineHead, CosineHeadConfig, LinearHead},
    mlp::{Activation, Mlp, MlpConfig},
    multitask::{
        Cgc, CgcConfig, CrossStitch, CrossStitchConfig, DSelectK, DSelectKConfig, Mmoe, MmoeConfig, Mtan,
        MtanConfig, Ple, PleConfig, Routing,
    },
    resnet12::ResNet12Config,
    BatchNormConfig, Classifier, HardSharing, Model, MultiTaskModel, Params, TaskLoss,
};
use tch::{Kind, Tensor};

const K: Kind = Kind::Double;

/// Every test runs at a fixed random point ([`seeded`]): at a point drawn anew on each run,
/// about one run in fifty put a ReLU or max-pooling kink within ε of the point in one
/// direction, where a central difference measures neither side's derivative (in second
/// order the inner gradient jumps there: −694 against autograd's −0.19).
///
/// Each direction within 1e-6 of its own size plus 1e-6 of the largest: a central
/// difference of a network's output carries rounding noise of about ε_machine·|f|/ε, a few
/// 1e-9 here, which a small directional derivative beside large ones cannot be held below
/// (ResNet-12 once failed with 1.7814669e-3 against 1.7814703e-3 next to 2.6).
fn assert_gradients(what: &str, params: &Params, f: impl Fn(&Params) -> Tensor) {
    let report = check_gradients(params, f, &GradCheckConfig::default()).unwrap();
    assert!(report.is_close(1e-6, 1e-6 * report.scale()), "{what}:\n{report}");
}

/// A random linear functional of a model's output.
fn check_model<M: Model>(what: &str, model: &M, params: &Params, x: &Tensor, train: bool, step: usize) {
    let w = Tensor::randn_like(&model.forward_at_step(params, x, train, step));
    assert_gradients(what, params, |p| (model.forward_at_step(p, x, train, step) * &w).sum(K));
}

fn tiny_conv4(bn: BatchNormConfig) -> Conv4Config {
    Conv4Config::new(1).with_hidden(3).with_batch_norm(bn)
}

#[test]
fn mlp_gradients() {
    let _seeded = seeded(1);
    for activation in [Activation::Tanh, Activation::Relu, Activation::Gelu, Activation::Sigmoid] {
        let vs = var_store(K);
        let (mlp, params) =
            MlpConfig::new([3, 5, 4, 2]).with_activation(activation).init(&vs.root()).unwrap();
        check_model(&format!("mlp {activation:?}"), &mlp, &params, &rand(&[6, 3], K), true, 0);
    }
}

#[test]
fn conv4_gradients_in_every_batch_norm_mode() {
    let _seeded = seeded(2);
    let x = rand(&[4, 1, 16, 16], K);
    let vs = var_store(K);
    let (conv4, params) = tiny_conv4(BatchNormConfig::batch()).init(&vs.root().sub("batch")).unwrap();
    check_model("conv4 batch statistics", &conv4, &params, &x, true, 0);
    let (conv4, params) = tiny_conv4(BatchNormConfig::running()).init(&vs.root().sub("running")).unwrap();
    for _ in 0..3 {
        let _ = conv4.forward(&params, &rand(&[4, 1, 16, 16], K), true);
    }
    check_model("conv4 running statistics (train)", &conv4, &params, &x, true, 0);
    check_model("conv4 running statistics (eval)", &conv4, &params, &x, false, 0);
    let per_step = BatchNormConfig { per_step_affine: true, ..BatchNormConfig::per_step(2) };
    let (conv4, params) = tiny_conv4(per_step).init(&vs.root().sub("per_step")).unwrap();
    let _ = conv4.forward_at_step(&params, &x, true, 1);
    check_model("conv4 per-step statistics (train)", &conv4, &params, &x, true, 1);
    check_model("conv4 per-step statistics (eval)", &conv4, &params, &x, false, 1);
    let strided = Conv4Config::maml_strided(1).with_hidden(3).with_batch_norm(BatchNormConfig::batch());
    let (conv4, params) = strided.init(&vs.root().sub("strided")).unwrap();
    check_model("conv4 strided", &conv4, &params, &x, true, 0);
}

#[test]
fn resnet12_gradients() {
    let _seeded = seeded(3);
    let vs = var_store(K);
    let config = ResNet12Config { in_channels: 2, channels: vec![2, 3, 3, 4], ..ResNet12Config::default() };
    let (resnet, params) = config.init(&vs.root()).unwrap();
    check_model("resnet12", &resnet, &params, &rand(&[3, 2, 16, 16], K), true, 0);
    let flat = ResNet12Config { avg_pool: false, batch_norm: BatchNormConfig::batch(), ..config };
    let (resnet, params) = flat.init(&vs.root().sub("flat")).unwrap();
    check_model("resnet12 flattened", &resnet, &params, &rand(&[3, 2, 16, 16], K), true, 0);
}

#[test]
fn head_and_task_batched_gradients() {
    let _seeded = seeded(4);
    let vs = var_store(K);
    let cosine = CosineHead::new(6, 4, CosineHeadConfig { scale: Some(5.0), learn_scale: true }).unwrap();
    let params = cosine.init(&vs.root().sub("cosine")).unwrap();
    check_model("cosine head", &cosine, &params, &rand(&[5, 6], K), true, 0);
    let linear = LinearHead::new(6, 4).unwrap();
    let params = linear.init(&vs.root().sub("linear")).unwrap();
    check_model("linear head", &linear, &params, &rand(&[5, 6], K), true, 0);
    // The grouped-convolution path, differentiated with respect to task-stacked parameters.
    let net = Classifier::new(
        tiny_conv4(BatchNormConfig::batch()).build().unwrap(),
        LinearHead::new(3, 2).unwrap(),
    );
    let theta = net.init(&vs.root().sub("net")).unwrap();
    let stacked = theta.expand_tasks(2).map(|_, t| t.detach().copy() + Tensor::randn_like(t) * 0.1);
    let x = rand(&[2, 3, 1, 16, 16], K);
    let w = Tensor::randn([2, 3, 2], (K, x.device()));
    assert_gradients("task-batched conv4", &stacked, |p| (net.forward_tasks(p, &x, true) * &w).sum(K));
}

/// The query loss after one differentiable inner SGD step on the support set, all tasks at
/// once: its gradient with respect to θ involves Hessian-vector products.
fn maml_loss<M: Model>(
    model: &M,
    theta: &Params,
    support: (&Tensor, &Tensor),
    query: (&Tensor, &Tensor),
    loss: TaskLoss,
) -> Tensor {
    let tasks = support.0.size()[0] as usize;
    let fast = theta.expand_tasks(tasks);
    let inner = loss.per_task(&model.forward_tasks(&fast, support.0, true), support.1).sum(K);
    let fast = fast.sgd(&fast.grads(&inner, true).unwrap(), 0.1).unwrap();
    loss.per_task(&model.forward_tasks(&fast, query.0, true), query.1).mean(K)
}

#[test]
fn second_order_gradients() {
    let _seeded = seeded(5);
    let vs = var_store(K);
    let device = common::device();
    // MLP regression.
    let (mlp, theta) =
        MlpConfig::new([1, 6, 6, 1]).with_activation(Activation::Tanh).init(&vs.root().sub("mlp")).unwrap();
    let (xs, xq) = (rand(&[2, 5, 1], K), rand(&[2, 5, 1], K));
    let (ys, yq) = (xs.sin(), xq.sin());
    assert_gradients("second order mlp", &theta, |p| {
        maml_loss(&mlp, p, (&xs, &ys), (&xq, &yq), TaskLoss::Mse)
    });
    // Conv4 and ResNet-12 classifiers, batch statistics (MAML's setting).
    let labels = Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2]).to_device(device).view([2, 3]);
    let (xs, xq) = (rand(&[2, 3, 1, 16, 16], K), rand(&[2, 3, 1, 16, 16], K));
    let conv = Classifier::new(
        tiny_conv4(BatchNormConfig::batch()).build().unwrap(),
        LinearHead::new(3, 3).unwrap(),
    );
    let theta = conv.init(&vs.root().sub("conv4")).unwrap();
    assert_gradients("second order conv4", &theta, |p| {
        maml_loss(&conv, p, (&xs, &labels), (&xq, &labels), TaskLoss::CrossEntropy)
    });
    let config = ResNet12Config {
        in_channels: 1,
        channels: vec![2, 2, 3, 3],
        batch_norm: BatchNormConfig::batch(),
        ..Default::default()
    };
    let resnet = Classifier::new(config.build().unwrap(), LinearHead::new(3, 3).unwrap());
    let theta = resnet.init(&vs.root().sub("resnet")).unwrap();
    assert_gradients("second order resnet12", &theta, |p| {
        maml_loss(&resnet, p, (&xs, &labels), (&xq, &labels), TaskLoss::CrossEntropy)
    });
}

/// A random linear functional of all task outputs, plus the auxiliary loss.
fn check_multitask<M: MultiTaskModel>(what: &str, model: &M, params: &Params, x: &Tensor) {
    let weights: Vec<Tensor> = model.forward(params, x, true).iter().map(Tensor::randn_like).collect();
    assert_gradients(what, params, |p| {
        let outputs = model.forward(p, x, true);
        let mut loss = outputs
            .iter()
            .zip(&weights)
            .map(|(y, w)| (y * w).sum(K))
            .fold(Tensor::zeros([], (K, x.device())), |a, b| a + b);
        if let Some(aux) = model.auxiliary_loss(p, x) {
            loss += aux;
        }
        loss
    });
}

fn mlp(widths: &[i64]) -> Mlp {
    MlpConfig::new(widths.to_vec()).with_activation(Activation::Tanh).build().unwrap()
}

fn heads(tasks: usize, features: i64) -> Vec<LinearHead> {
    (0..tasks).map(|t| LinearHead::new(features, 1 + t as i64).unwrap()).collect()
}

#[test]
fn multitask_architecture_gradients() {
    let _seeded = seeded(6);
    let vs = var_store(K);
    let x = rand(&[5, 4], K);
    let expert = mlp(&[4, 6, 5]);
    let model = HardSharing::new(expert.clone(), heads(2, 5));
    check_multitask("hard sharing", &model, &model.init(&vs.root().sub("hps")).unwrap(), &x);
    let model = Mmoe::new(&expert, heads(2, 5), &[4], MmoeConfig { num_experts: 3 }).unwrap();
    check_multitask("mmoe", &model, &model.init(&vs.root().sub("mmoe")).unwrap(), &x);
    let model =
        Cgc::new(&expert, heads(3, 5), &[4], CgcConfig { shared_experts: 2, task_experts: 1 }).unwrap();
    check_multitask("cgc", &model, &model.init(&vs.root().sub("cgc")).unwrap(), &x);
    for shared_gates in [true, false] {
        let config = PleConfig { shared_gates, ..PleConfig::new(2, 1) };
        let model = Ple::new(&expert, heads(2, 5), &[4], config).unwrap();
        check_multitask(
            "ple",
            &model,
            &model.init(&vs.root().sub(format!("ple{shared_gates}"))).unwrap(),
            &x,
        );
    }
    let model = CrossStitch::new(&expert, heads(3, 5), CrossStitchConfig::default()).unwrap();
    check_multitask("cross-stitch", &model, &model.init(&vs.root().sub("cs")).unwrap(), &x);
    let model = Mtan::new(expert.clone(), heads(2, 5), &[4], MtanConfig::default()).unwrap();
    check_multitask("mtan", &model, &model.init(&vs.root().sub("mtan")).unwrap(), &x);
    for routing in [Routing::PerExample, Routing::Static] {
        let config = DSelectKConfig { routing, ..DSelectKConfig::new(3, 2) };
        let model = DSelectK::new(&expert, heads(2, 5), &[4], config).unwrap();
        check_multitask(
            "dselect-k",
            &model,
            &model.init(&vs.root().sub(format!("dsk{routing:?}"))).unwrap(),
            &x,
        );
    }
}

#[test]
fn convolutional_multitask_architecture_gradients() {
    let _seeded = seeded(7);
    let vs = var_store(K);
    let x = rand(&[4, 1, 16, 16], K);
    let backbone: Conv4 = tiny_conv4(BatchNormConfig::batch()).build().unwrap();
    let model = Ple::new(&backbone, heads(2, 3), &[1, 16, 16], PleConfig::new(1, 1)).unwrap();
    check_multitask("ple on conv4", &model, &model.init(&vs.root().sub("ple")).unwrap(), &x);
    let model = CrossStitch::new(&backbone, heads(2, 3), CrossStitchConfig::default()).unwrap();
    check_multitask("cross-stitch on conv4", &model, &model.init(&vs.root().sub("cs")).unwrap(), &x);
    let mtan = MtanConfig { batch_norm: BatchNormConfig::batch() };
    let model = Mtan::new(backbone.clone(), heads(2, 3), &[1, 16, 16], mtan).unwrap();
    check_multitask("mtan on conv4", &model, &model.init(&vs.root().sub("mtan")).unwrap(), &x);
    let model = Mmoe::new(&backbone, heads(2, 3), &[1, 16, 16], MmoeConfig { num_experts: 2 }).unwrap();
    check_multitask("mmoe on conv4", &model, &model.init(&vs.root().sub("mmoe")).unwrap(), &x);
}
