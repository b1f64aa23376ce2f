//! Devices and kinds: every tensor a model creates is on the device of its parameters and
//! inputs and in their kind — float32 and float64 everywhere, bfloat16 and float16 on CUDA —
//! and reduced-precision passes agree with float32 within their precision.
//!
//! Run on a GPU with `METL_TEST_DEVICE=cuda` (what `cargo xtask gpu-check` does).

mod common;

use common::{device, var_store};
use metl_models::{
    conv4::{Conv4, Conv4Config},
    head::LinearHead,
    mlp::MlpConfig,
    model::forward_tasks_looped,
    multitask::{Mtan, MtanConfig},
    resnet12::ResNet12Config,
    BatchNormConfig, Classifier, Model, MultiTaskModel, Params,
};
use tch::{Kind, Tensor};

/// The kinds under test on this device, with the tolerance of a comparison against float32
/// (relative to the output scale): reduced precision only on CUDA, where libtorch supports
/// it for convolutions and batch norm.
fn kinds() -> Vec<(Kind, f64)> {
    let mut kinds = vec![(Kind::Float, 1e-5), (Kind::Double, 1e-5)];
    if device().is_cuda() {
        kinds.extend([(Kind::BFloat16, 1e-1), (Kind::Half, 2e-2)]);
    }
    kinds
}

fn conv4_net(bn: BatchNormConfig) -> Classifier<Conv4, LinearHead> {
    Classifier::new(
        Conv4Config::new(1).with_hidden(16).with_batch_norm(bn).build().unwrap(),
        LinearHead::new(16, 5).unwrap(),
    )
}

fn assert_on(t: &Tensor, kind: Kind, what: &str) {
    assert_eq!(t.device(), device(), "{what}: device");
    assert_eq!(t.kind(), kind, "{what}: kind");
}

#[test]
fn every_tensor_stays_on_the_device_in_the_kind_of_the_parameters() {
    for (kind, tol) in kinds() {
        for bn in [BatchNormConfig::batch(), BatchNormConfig::running(), BatchNormConfig::per_step(2)] {
            let vs = var_store(kind);
            let net = conv4_net(bn);
            let theta = net.init(&vs.root()).unwrap();
            for (_, t) in theta.iter() {
                assert_on(t, kind, "parameter");
            }
            let x = Tensor::rand([4, 6, 1, 28, 28], (kind, device()));
            let stacked = theta.expand_tasks(4);
            let batched = net.forward_tasks_at_step(&stacked, &x, true, 1);
            assert_on(&batched, kind, "task-batched output");
            let grads =
                stacked.grads(&batched.to_kind(Kind::Float).square().sum(Kind::Float), false).unwrap();
            for (name, g) in grads.iter() {
                assert_on(g, kind, name);
            }
            for (name, b) in net.buffers().iter() {
                let expected = if name.ends_with("num_batches_tracked") { Kind::Int64 } else { kind };
                assert_on(b, expected, name);
            }
            let eval = net.forward(&theta, &x.get(0), false);
            assert_on(&eval, kind, "evaluation output");
            assert!(bool::try_from(eval.isfinite().all()).unwrap(), "{kind:?}: non-finite output");
            // The task-batched pass agrees with the loop within the kind's precision.
            let looped = forward_tasks_looped(&net.clone(), &stacked, &x, true);
            let err = common::scaled_error(&net.clone().forward_tasks(&stacked, &x, true), &looped);
            assert!(err <= tol.max(common::f32_tolerance()), "{kind:?}: batched vs looped {err:e}");
        }
    }
}

#[test]
fn reduced_precision_agrees_with_float32() {
    let vs = var_store(Kind::Float);
    let net = conv4_net(BatchNormConfig::batch());
    let theta = net.init(&vs.root()).unwrap();
    let x = Tensor::rand([4, 8, 1, 28, 28], (Kind::Float, device()));
    let reference = net.forward_tasks(&theta.expand_tasks(4), &x, true);
    for (kind, tol) in kinds() {
        let y = net.forward_tasks(&theta.to_kind(kind).expand_tasks(4), &x.to_kind(kind), true);
        let err = common::scaled_error(&y, &reference);
        assert!(err <= tol.max(common::f32_tolerance()), "{kind:?} vs float32: {err:e}");
    }
}

#[test]
fn resnet_mlp_and_architectures_run_on_the_device() {
    let vs = var_store(Kind::Float);
    let config = ResNet12Config::default().with_channels([4, 8, 8, 16]);
    let (resnet, theta) = config.init(&vs.root().sub("resnet")).unwrap();
    let y = resnet.forward_tasks(
        &theta.expand_tasks(2),
        &Tensor::rand([2, 3, 3, 32, 32], (Kind::Float, device())),
        true,
    );
    assert_on(&y, Kind::Float, "resnet12");
    let (mlp, theta) = MlpConfig::new([3, 8, 2]).init(&vs.root().sub("mlp")).unwrap();
    assert_on(&mlp.forward(&theta, &Tensor::rand([4, 3], (Kind::Float, device())), true), Kind::Float, "mlp");
    let backbone = Conv4Config::new(1).with_hidden(4).build().unwrap();
    let heads = vec![LinearHead::new(4, 2).unwrap(), LinearHead::new(4, 3).unwrap()];
    let mtan = Mtan::new(backbone, heads, &[1, 28, 28], MtanConfig::default()).unwrap();
    let theta: Params = mtan.init(&vs.root().sub("mtan")).unwrap();
    for y in mtan.forward(&theta, &Tensor::rand([5, 1, 28, 28], (Kind::Float, device())), true) {
        assert_on(&y, Kind::Float, "mtan output");
    }
    for (name, b) in mtan.buffers().iter() {
        assert_eq!(b.device(), device(), "{name}");
    }
}
