//! `Sequential`, the builder-made `Model`: the same function as metl's own MLP and Conv4
//! given the same parameters, PyTorch's parameter names and counts, typed errors for
//! stacks that cannot work, and second-order gradients that match finite differences.

use metl_models::{
    conv4::Conv4Config,
    gradcheck::{check_gradients, GradCheckConfig},
    head::LinearHead,
    mlp::MlpConfig,
    sequential::Sequential,
    BatchNormConfig, Classifier, Model, Params,
};
use tch::{nn, Device, Kind, Reduction, Tensor};

/// `to`'s tensors replaced, in order, by copies of `from`'s (same shapes).
fn copy_in_order(from: &Params, to: &Params) {
    assert_eq!(from.len(), to.len());
    tch::no_grad(|| {
        for (src, dst) in from.tensors().iter().zip(to.tensors()) {
            assert_eq!(src.size(), dst.size());
            dst.shallow_clone().copy_(src);
        }
    });
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn a_built_mlp_is_metls_mlp() {
    let vs = nn::VarStore::new(Device::Cpu);
    let (mlp, theta) = MlpConfig::new([1, 40, 40, 1]).init(&(vs.root() / "mlp")).unwrap();
    let seq = Sequential::builder().linear(1, 40).relu().linear(40, 40).relu().linear(40, 1).build().unwrap();
    let phi = seq.init(&(vs.root() / "seq")).unwrap();
    assert_eq!(phi.names(), ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]);
    copy_in_order(&theta, &phi);
    let x = Tensor::randn([16, 1], (Kind::Float, Device::Cpu));
    assert!(max_diff(&seq.forward(&phi, &x, true), &mlp.forward(&theta, &x, true)) < 1e-6);
}

#[test]
fn a_built_conv4_is_metls_conv4_with_a_linear_head() {
    let vs = nn::VarStore::new(Device::Cpu);
    let backbone = Conv4Config::new(1).with_batch_norm(BatchNormConfig::batch()).build().unwrap();
    let net = Classifier::new(backbone, LinearHead::new(64, 5).unwrap());
    let theta = net.init(&(vs.root() / "conv4")).unwrap();
    let mut builder = Sequential::builder();
    for c_in in [1, 64, 64, 64] {
        builder = builder
            .conv2d_with(c_in, 64, 3, 1, 1)
            .batch_norm2d_with(64, BatchNormConfig::batch())
            .relu()
            .max_pool2d(2);
    }
    let seq = builder.flatten().linear(64, 5).build().unwrap();
    let phi = seq.init(&(vs.root() / "seq")).unwrap();
    assert_eq!(phi.numel(), 112_261);
    assert_eq!(phi.numel(), theta.numel());
    assert_eq!(&phi.names()[phi.len() - 2..], ["17.weight", "17.bias"]);
    copy_in_order(&theta, &phi);
    let x = Tensor::rand([8, 1, 28, 28], (Kind::Float, Device::Cpu));
    let diff = max_diff(&seq.forward(&phi, &x, true), &net.forward(&theta, &x, true));
    assert!(diff < 1e-4, "{diff}");
    // Running averages are PyTorch's buffers.
    let running = Sequential::builder().conv2d(1, 4, 3).batch_norm2d(4).build().unwrap();
    running.init(&(vs.root() / "running")).unwrap();
    assert_eq!(running.buffers().names(), ["1.running_mean", "1.running_var", "1.num_batches_tracked"]);
}

#[test]
fn stacks_that_cannot_work_are_typed_errors_naming_the_layer() {
    let err = |b: metl_models::sequential::SequentialBuilder| b.build().unwrap_err().to_string();
    let e = err(Sequential::builder().conv2d(1, 8, 3).flatten().conv2d(8, 8, 3));
    assert!(e.contains("layer 2 (conv2d(8, 8, 3))") && e.contains("not flattened"), "{e}");
    let e = err(Sequential::builder().linear(4, 8).relu().linear(7, 1));
    assert!(e.contains("layer 2") && e.contains("takes 7 features, the layer before gives 8"), "{e}");
    let e = err(Sequential::builder().conv2d(3, 8, 3).linear(8, 2));
    assert!(e.contains("add flatten()"), "{e}");
    let e = err(Sequential::builder().conv2d(3, 8, 3).batch_norm2d(16));
    assert!(e.contains("normalises 16 channels, the layer before gives 8"), "{e}");
    let e = err(Sequential::builder().relu().flatten());
    assert!(e.contains("at least one layer with parameters"), "{e}");
}

#[test]
fn second_order_gradients_through_a_stack_match_finite_differences() {
    let mut vs = nn::VarStore::new(Device::Cpu);
    vs.set_kind(Kind::Double);
    let seq = Sequential::builder()
        .conv2d_with(1, 3, 3, 1, 1)
        .batch_norm2d_with(3, BatchNormConfig::batch())
        .tanh()
        .avg_pool2d(2)
        .flatten()
        .linear(12, 6)
        .leaky_relu(0.1)
        .linear(6, 2)
        .build()
        .unwrap();
    let theta = seq.init(&vs.root()).unwrap();
    let x = Tensor::randn([5, 1, 4, 4], (Kind::Double, Device::Cpu));
    let y = Tensor::randn([5, 2], (Kind::Double, Device::Cpu));
    let loss = |p: &Params| seq.forward(p, &x, true).mse_loss(&y, Reduction::Mean);
    let meta_loss = |p: &Params| {
        let g = p.grads(&loss(p), true).unwrap();
        loss(&p.sgd(&g, 0.3).unwrap())
    };
    let report = check_gradients(&theta, meta_loss, &GradCheckConfig::default()).unwrap();
    assert!(report.is_close(1e-6, 1e-9), "{report}");
}
