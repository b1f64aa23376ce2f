//! `Sequential`, the builder-made `Model`: the same function as metl's own MLP and Conv4
//! given the same parameters (and PyTorch's parameter names and counts), task-batched
//! passes that agree with the per-task loop, typed errors naming the layer for stacks that
//! cannot work, and second-order gradients that match finite differences.

mod common;

use common::{
    assert_close, check_against_loop, check_second_order, device, distinct_task_params, rand, var_store,
    TASKS,
};
use metl_models::{
    conv4::Conv4Config,
    gradcheck::{check_gradients, GradCheckConfig},
    head::LinearHead,
    mlp::MlpConfig,
    sequential::{ConvOptions, Sequential, SequentialBuilder},
    BatchNormConfig, Classifier, Model, ModelError, Params,
};
use tch::{Kind, Reduction, Tensor};

/// `theta` renamed by `rename` (every name must map), as fresh leaves of the same values.
fn renamed(theta: &Params, rename: impl Fn(&str) -> String) -> Params {
    Params::from_named(theta.iter().map(|(n, t)| (rename(n), t.detach().copy())).collect()).unwrap()
}

/// `to`'s tensors set, name by name, to `from`'s.
fn copy_by_name(from: &Params, to: &Params) {
    to.check_same_names(from).unwrap();
    tch::no_grad(|| {
        for (name, dst) in to.iter() {
            dst.shallow_clone().copy_(&from[name]);
        }
    });
}

/// Conv4 + linear head as a stack: 4 × [conv 3×3 (padding 1), batch norm, ReLU, max-pool 2],
/// flatten, linear.
fn conv4_stack(batch_norm: BatchNormConfig, ways: i64) -> Sequential {
    let mut builder = Sequential::builder();
    for c_in in [1, 64, 64, 64] {
        builder = builder
            .conv2d_with(c_in, 64, 3, ConvOptions::default().with_padding(1))
            .batch_norm2d_with(64, batch_norm)
            .relu()
            .max_pool2d(2);
    }
    builder.flatten().linear(64, ways).build().unwrap()
}

/// The name of a `Classifier<Conv4, LinearHead>` parameter or buffer in [`conv4_stack`].
fn conv4_name_in_stack(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        ["backbone", "blocks", i, layer, leaf] => {
            let block: usize = i.parse().unwrap();
            let offset = if *layer == "conv" { 0 } else { 1 };
            format!("{}.{leaf}", 4 * block + offset)
        }
        ["head", leaf] => format!("17.{leaf}"),
        _ => panic!("unexpected name {name}"),
    }
}

#[test]
fn a_built_mlp_is_metls_mlp() {
    let vs = var_store(Kind::Float);
    let (mlp, theta) = MlpConfig::new([1, 40, 40, 1]).init(&(vs.root() / "mlp")).unwrap();
    let seq = Sequential::builder().linear(1, 40).relu().linear(40, 40).relu().linear(40, 1).build().unwrap();
    let phi = seq.init(&(vs.root() / "seq")).unwrap();
    assert_eq!(phi.names(), ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]);
    assert_eq!(phi.numel(), 1761);
    // layers.{i}.* is {2i}.*
    let rename = |n: &str| {
        let (i, leaf) = n.strip_prefix("layers.").unwrap().split_once('.').unwrap();
        format!("{}.{leaf}", 2 * i.parse::<usize>().unwrap())
    };
    copy_by_name(&renamed(&theta, rename), &phi);
    let x = rand(&[16, 1], Kind::Float);
    assert_close(&seq.forward(&phi, &x, true), &mlp.forward(&theta, &x, true), 1e-6, "forward");
    let (theta_t, phi_t) = (distinct_task_params(&theta, TASKS), distinct_task_params(&phi, TASKS));
    copy_by_name(&renamed(&theta_t, rename), &phi_t);
    let x = rand(&[TASKS as i64, 16, 1], Kind::Float);
    let (a, b) = (seq.forward_tasks(&phi_t, &x, true), mlp.forward_tasks(&theta_t, &x, true));
    assert_close(&a, &b, 1e-6, "forward_tasks");
}

#[test]
fn a_built_conv4_is_metls_conv4_with_a_linear_head() {
    for bn in [BatchNormConfig::batch(), BatchNormConfig::running()] {
        let vs = var_store(Kind::Float);
        let backbone = Conv4Config::new(1).with_batch_norm(bn).build().unwrap();
        let net = Classifier::new(backbone, LinearHead::new(64, 5).unwrap());
        let theta = net.init(&(vs.root() / "conv4")).unwrap();
        let seq = conv4_stack(bn, 5);
        let phi = seq.init(&(vs.root() / "seq")).unwrap();
        // torch: nn.Sequential of the same layers has 112,261 parameters.
        assert_eq!(phi.numel(), 112_261);
        assert_eq!(phi.len(), theta.len());
        assert_eq!(&phi.names()[..4], ["0.weight", "0.bias", "1.weight", "1.bias"]);
        assert_eq!(&phi.names()[phi.len() - 2..], ["17.weight", "17.bias"]);
        copy_by_name(&renamed(&theta, conv4_name_in_stack), &phi);
        let x = rand(&[8, 1, 28, 28], Kind::Float);
        for train in [true, false] {
            let (a, b) = (seq.forward(&phi, &x, train), net.forward(&theta, &x, train));
            assert_close(&a, &b, common::f32_tolerance(), &format!("{bn:?}, train = {train}"));
        }
        let x = rand(&[TASKS as i64, 5, 1, 28, 28], Kind::Float);
        let (a, b) = (
            seq.forward_tasks(&phi.expand_tasks(TASKS), &x, true),
            net.forward_tasks(&theta.expand_tasks(TASKS), &x, true),
        );
        assert_close(&a, &b, common::f32_tolerance(), &format!("{bn:?}, forward_tasks"));
        // The running averages are the same buffers under PyTorch's Sequential names.
        let (seq_buffers, net_buffers) = (seq.buffers(), net.buffers());
        assert_eq!(seq_buffers.len(), if bn.tracks_running_stats() { 12 } else { 0 });
        for (name, t) in net_buffers.iter() {
            let renamed = conv4_name_in_stack(name);
            assert_close(&seq_buffers[renamed.as_str()], t, 1e-5, &renamed);
        }
    }
}

fn labels(ways: i64) -> Tensor {
    Tensor::arange(ways, (Kind::Int64, device())).repeat([TASKS as i64, 1])
}

#[test]
fn conv_stack_matches_loop_first_and_second_order() {
    // Every layer kind on images: convolutions with stride, padding and no bias, batch norm
    // in each mode, both poolings, two activations.
    let stack = |bn: BatchNormConfig| {
        Sequential::builder()
            .conv2d_with(2, 6, 3, ConvOptions::default().with_padding(1).without_bias())
            .batch_norm2d_with(6, bn)
            .leaky_relu(0.1)
            .max_pool2d(2)
            .conv2d_with(6, 8, 3, ConvOptions::default().with_stride(2))
            .batch_norm2d_with(8, bn)
            .tanh()
            .avg_pool2d(2)
            .flatten()
            .linear(8, 4)
            .build()
            .unwrap()
    };
    let per_step = BatchNormConfig { per_step_affine: true, ..BatchNormConfig::per_step(2) };
    for bn in [BatchNormConfig::batch(), BatchNormConfig::running(), per_step] {
        for (kind, grads) in [(Kind::Float, false), (Kind::Double, true)] {
            let vs = var_store(kind);
            let net = stack(bn);
            let theta = net.init(&vs.root()).unwrap();
            let x = rand(&[TASKS as i64, 4, 2, 12, 12], kind);
            for (train, step) in [(true, 0), (true, 1), (false, 0), (false, 3)] {
                check_against_loop(&net, &theta, &x, train, step, grads);
            }
            if grads && bn == BatchNormConfig::batch() {
                check_second_order(
                    &net,
                    &theta,
                    (&x, &labels(4)),
                    (&rand(&[TASKS as i64, 4, 2, 12, 12], kind), &labels(4)),
                );
            }
        }
    }
}

#[test]
fn mlp_stack_with_batch_norm_1d_matches_loop_first_and_second_order() {
    let stack = |bn: BatchNormConfig| {
        Sequential::builder()
            .linear(3, 16)
            .batch_norm1d_with(16, bn)
            .relu()
            .linear_without_bias(16, 16)
            .sigmoid()
            .linear(16, 4)
            .build()
            .unwrap()
    };
    for bn in [BatchNormConfig::batch(), BatchNormConfig::running(), BatchNormConfig::per_step(2)] {
        for kind in [Kind::Float, Kind::Double] {
            let vs = var_store(kind);
            let net = stack(bn);
            let theta = net.init(&vs.root()).unwrap();
            let x = rand(&[TASKS as i64, 4, 3], kind);
            for (train, step) in [(true, 0), (true, 1), (false, 0), (false, 1)] {
                check_against_loop(&net, &theta, &x, train, step, kind == Kind::Double);
            }
            if kind == Kind::Double {
                check_second_order(
                    &net,
                    &theta,
                    (&x, &labels(4)),
                    (&rand(&[TASKS as i64, 4, 3], kind), &labels(4)),
                );
            }
        }
    }
}

#[test]
fn stacks_that_cannot_work_are_typed_errors_naming_the_layer() {
    let config_error = |b: SequentialBuilder| match b.build().unwrap_err() {
        ModelError::Config(e) => (e.field, e.value, e.allowed),
        other => panic!("not a configuration error: {other}"),
    };
    let (field, value, why) = config_error(Sequential::builder().conv2d(1, 8, 3).flatten().conv2d(8, 8, 3));
    assert_eq!((field.as_str(), value.as_str()), ("sequential.layers[2]", "conv2d(8, 8, 3)"));
    assert!(why.contains("a convolution needs [B, C, H, W] inputs"), "{why}");
    let (field, _, why) = config_error(Sequential::builder().linear(4, 8).relu().linear(7, 1));
    assert_eq!(field, "sequential.layers[2]");
    assert_eq!(why, "takes 7 features, the layer before gives 8");
    let (field, _, why) = config_error(Sequential::builder().conv2d(3, 8, 3).relu().linear(8, 2));
    assert_eq!(field, "sequential.layers[2]");
    assert!(why.contains("add flatten()"), "{why}");
    let (field, value, why) = config_error(Sequential::builder().conv2d(3, 8, 3).batch_norm2d(16));
    assert_eq!((field.as_str(), value.as_str()), ("sequential.layers[1]", "batch_norm2d(16)"));
    assert_eq!(why, "takes 16 channels, the layer before gives 8");
    let (field, _, why) = config_error(Sequential::builder().relu().flatten());
    assert_eq!(field, "sequential.layers");
    assert!(why.contains("at least one layer with parameters"), "{why}");
    // The full message names the layer too.
    let e = Sequential::builder().linear(4, 8).max_pool2d(2).build().unwrap_err().to_string();
    assert!(e.starts_with("sequential.layers[1] = max_pool2d(2): pooling needs [B, C, H, W]"), "{e}");
}

#[test]
fn second_order_gradients_through_a_stack_match_finite_differences() {
    let vs = var_store(Kind::Double);
    let seq = Sequential::builder()
        .conv2d_with(1, 3, 3, ConvOptions::default().with_padding(1))
        .batch_norm2d_with(3, BatchNormConfig::batch())
        .tanh()
        .avg_pool2d(2)
        .flatten()
        .linear(12, 6)
        .batch_norm1d_with(6, BatchNormConfig::batch())
        .sigmoid()
        .linear(6, 2)
        .build()
        .unwrap();
    let theta = seq.init(&vs.root()).unwrap();
    let x = rand(&[5, 1, 4, 4], Kind::Double);
    let y = rand(&[5, 2], Kind::Double);
    let loss = |p: &Params| seq.forward(p, &x, true).mse_loss(&y, Reduction::Mean);
    let meta_loss = |p: &Params| {
        let g = p.grads(&loss(p), true).unwrap();
        loss(&p.sgd(&g, 0.3).unwrap())
    };
    let report = check_gradients(&theta, meta_loss, &GradCheckConfig::default()).unwrap();
    assert!(report.is_close(1e-6, 1e-9), "{report}");
}
