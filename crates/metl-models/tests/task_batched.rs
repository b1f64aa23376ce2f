//! The task-batched forward passes (batched matrix products, grouped convolutions, per-task
//! batch norm) agree with the per-task loop: outputs, gradients, second-order
//! meta-gradients and batch-norm buffers, to 1e-5 in float32 and 1e-10 in float64.
//!
//! Networks with ReLU or max-pooling are compared in float32 for their outputs and in
//! float64 for their gradients. Their gradients are discontinuous where a ReLU input is 0
//! or two values of a pooling window are equal; an input within float32 rounding of such a
//! point (about one run in twenty at these sizes: ~10⁵ activations, rounding ~1e-7) makes
//! any two float32 implementations take different branches — PyTorch's own float32 and
//! float64 gradients differ by 0.4% on such a case. In float64 that does not happen. The
//! kernels themselves (grouped convolution, per-task batch norm, batched linear maps) are
//! compared in float32, gradients included, in their unit tests and here on smooth
//! networks (tanh MLP, heads).

mod common;

use common::{check_against_loop, check_second_order, rand, var_store, TASKS};
use metl_models::{
    conv4::{Conv4, Conv4Config},
    head::{CosineHead, CosineHeadConfig, LinearHead},
    mlp::{Activation, MlpConfig},
    resnet12::ResNet12Config,
    BatchNormConfig, Classifier, Model, Params,
};
use tch::{Kind, Tensor};

fn conv4_classifier(config: Conv4Config, kind: Kind) -> (Classifier<Conv4, LinearHead>, Params) {
    let vs = var_store(kind);
    let net = Classifier::new(config.build().unwrap(), LinearHead::new(64, 5).unwrap());
    let theta = net.init(&vs.root()).unwrap();
    (net, theta)
}

fn labels(ways: i64, per_class: i64) -> Tensor {
    Tensor::arange(ways, (Kind::Int64, common::device()))
        .repeat_interleave_self_int(per_class, None, None)
        .repeat([TASKS as i64, 1])
}

fn images(per_task: i64, channels: i64, size: i64, kind: Kind) -> Tensor {
    rand(&[TASKS as i64, per_task, channels, size, size], kind)
}

#[test]
fn mlp_matches_loop() {
    for kind in [Kind::Float, Kind::Double] {
        let vs = var_store(kind);
        let (mlp, theta) =
            MlpConfig::new([3, 16, 16, 2]).with_activation(Activation::Tanh).init(&vs.root()).unwrap();
        check_against_loop(&mlp, &theta, &rand(&[TASKS as i64, 7, 3], kind), true, 0, true);
    }
}

#[test]
fn conv4_with_batch_statistics_matches_loop_first_and_second_order() {
    let config = Conv4Config::new(1).with_batch_norm(BatchNormConfig::batch());
    for (kind, grads) in [(Kind::Float, false), (Kind::Double, true)] {
        let (net, theta) = conv4_classifier(config.clone(), kind);
        let x = images(5, 1, 28, kind);
        check_against_loop(&net, &theta, &x, true, 0, grads);
        check_against_loop(&net, &theta, &x, false, 0, grads);
        if grads {
            let query = images(10, 1, 28, kind);
            check_second_order(&net, &theta, (&x, &labels(5, 1)), (&query, &labels(5, 2)));
        }
    }
}

#[test]
fn strided_conv4_matches_loop_first_and_second_order() {
    let config = Conv4Config::maml_strided(1).with_batch_norm(BatchNormConfig::batch());
    for (kind, grads) in [(Kind::Float, false), (Kind::Double, true)] {
        let (net, theta) = conv4_classifier(config.clone(), kind);
        let x = images(5, 1, 28, kind);
        check_against_loop(&net, &theta, &x, true, 0, grads);
        if grads {
            let query = images(5, 1, 28, kind);
            check_second_order(&net, &theta, (&x, &labels(5, 1)), (&query, &labels(5, 1)));
        }
    }
}

#[test]
fn conv4_with_running_statistics_matches_loop_and_updates_buffers_alike() {
    let config = Conv4Config::new(1).with_batch_norm(BatchNormConfig::running());
    for (kind, grads) in [(Kind::Float, false), (Kind::Double, true)] {
        let (net, theta) = conv4_classifier(config.clone(), kind);
        let x = images(6, 1, 28, kind);
        check_against_loop(&net, &theta, &x, true, 0, grads);
        // Give the running statistics values that matter, then evaluate with them.
        for _ in 0..3 {
            let _ = net.forward_tasks(&theta.expand_tasks(TASKS), &x, true);
        }
        assert_eq!(net.buffers()["backbone.blocks.0.bn.num_batches_tracked"].int64_value(&[]), 9);
        check_against_loop(&net, &theta, &x, false, 0, grads);
    }
}

#[test]
fn conv4_with_per_step_statistics_matches_loop_at_every_step() {
    let bn = BatchNormConfig { per_step_affine: true, ..BatchNormConfig::per_step(3) };
    let config = Conv4Config::new(1).with_batch_norm(bn);
    for (kind, grads) in [(Kind::Float, false), (Kind::Double, true)] {
        let (net, theta) = conv4_classifier(config.clone(), kind);
        let x = images(5, 1, 28, kind);
        for step in [0, 2, 7] {
            check_against_loop(&net, &theta, &x, true, step, grads);
        }
        // A training pass at step 1 counts 3 task batches in that step's statistics only.
        let _ = net.forward_tasks_at_step(&theta.expand_tasks(TASKS), &x, true, 1);
        let counts = net.buffers()["backbone.blocks.3.bn.num_batches_tracked"].to_device(tch::Device::Cpu);
        assert_eq!(Vec::<i64>::try_from(&counts).unwrap(), [0, 3, 0]);
        for step in [0, 1, 2] {
            check_against_loop(&net, &theta, &x, false, step, grads);
        }
    }
}

#[test]
fn resnet12_matches_loop_first_and_second_order() {
    let config =
        ResNet12Config::default().with_channels([8, 16, 16, 32]).with_batch_norm(BatchNormConfig::batch());
    for (kind, grads) in [(Kind::Float, false), (Kind::Double, true)] {
        let vs = var_store(kind);
        let net = Classifier::new(config.build().unwrap(), LinearHead::new(32, 5).unwrap());
        let theta = net.init(&vs.root()).unwrap();
        let x = images(5, 3, 32, kind);
        check_against_loop(&net, &theta, &x, true, 0, grads);
        if grads {
            let query = images(5, 3, 32, kind);
            check_second_order(&net, &theta, (&x, &labels(5, 1)), (&query, &labels(5, 1)));
        }
    }
}

#[test]
fn heads_match_loop() {
    for kind in [Kind::Float, Kind::Double] {
        let vs = var_store(kind);
        let cosine =
            CosineHead::new(12, 5, CosineHeadConfig { scale: Some(10.0), learn_scale: true }).unwrap();
        let theta = cosine.init(&vs.root().sub("cosine")).unwrap();
        check_against_loop(&cosine, &theta, &rand(&[TASKS as i64, 4, 12], kind), true, 0, true);
        let linear = LinearHead::new(12, 5).unwrap();
        let theta = linear.init(&vs.root().sub("linear")).unwrap();
        check_against_loop(&linear, &theta, &rand(&[TASKS as i64, 4, 12], kind), true, 0, true);
    }
}
