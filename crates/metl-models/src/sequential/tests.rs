use super::*;
use crate::{model::forward_tasks_looped, BatchNormConfig};
use tch::Device;

fn build_err(builder: SequentialBuilder) -> String {
    builder.build().unwrap_err().to_string()
}

#[test]
fn builder_checks_name_the_layer_at_fault() {
    let b = Sequential::builder;
    let e = build_err(b().linear(4, 8).flatten().max_pool2d(2));
    assert!(e.starts_with("sequential.layers[2] = max_pool2d(2): pooling needs [B, C, H, W]"), "{e}");
    let e = build_err(b().conv2d(1, 8, 3).batch_norm1d(8));
    assert!(e.starts_with("sequential.layers[1] = batch_norm1d(8): batch_norm1d needs [B, F]"), "{e}");
    let e = build_err(b().linear(4, 8).batch_norm2d(8));
    assert!(e.contains("layers[1] = batch_norm2d(8)"), "{e}");
    let e = build_err(b().conv2d_with(1, 8, 3, ConvOptions::default().with_stride(0)));
    assert!(e.contains("layers[0] = conv2d(1, 8, 3): channels, kernel and stride must be >= 1"), "{e}");
    let e = build_err(b().linear(2, 0));
    assert!(e.contains("layers[0] = linear(2, 0): features must be >= 1"), "{e}");
    let e = build_err(b().linear(2, 3).leaky_relu(f64::NAN));
    assert!(e.contains("layers[1] = leaky_relu(NaN)"), "{e}");
    let bad = BatchNormConfig { momentum: 2.0, ..BatchNormConfig::default() };
    let e = build_err(b().linear(2, 3).batch_norm1d_with(3, bad));
    assert!(e.contains("layers[1] = batch_norm1d(3)") && e.contains("batch_norm.momentum"), "{e}");
    let e = build_err(b().conv2d(3, 8, 3).max_pool2d(2).relu().conv2d(4, 8, 3));
    assert!(e.contains("layers[3]") && e.contains("takes 4 channels, the layer before gives 8"), "{e}");
    // Flatten keeps a known feature count.
    let e = build_err(b().linear(2, 3).flatten().linear(4, 1));
    assert!(e.contains("takes 4 features, the layer before gives 3"), "{e}");
    assert!(b().batch_norm2d(3).conv2d(3, 4, 1).flatten().linear(4, 1).build().is_ok());
}

#[test]
fn shapes_and_stages_follow_the_layers() {
    let net = Sequential::builder()
        .batch_norm2d(3)
        .conv2d_with(3, 8, 3, ConvOptions::default().with_padding(1).with_stride(2))
        .relu()
        .avg_pool2d(2)
        .conv2d_with(8, 4, 3, ConvOptions::default().without_bias())
        .flatten()
        .linear(4, 2)
        .build()
        .unwrap();
    assert_eq!(net.len(), 7);
    assert!(net.task_batchable(true) && !net.task_batchable(false));
    // 13 → ⌊(13 + 2 − 3) / 2⌋ + 1 = 7 → ⌊7 / 2⌋ = 3 → 3 − 3 + 1 = 1.
    let shapes = net.shapes(&[3, 13, 13]).unwrap();
    assert_eq!(shapes[3], [8, 3, 3]);
    assert_eq!(shapes.last().unwrap(), &[2]);
    let e = net.shapes(&[3, 1, 1]).unwrap_err().to_string();
    assert!(e.contains("layer 3 (avg_pool2d(2))") && e.contains("smaller than the window"), "{e}");
    assert!(net.shapes(&[1, 13, 13]).unwrap_err().to_string().contains("layer 0 (batch_norm2d(3))"));
    // Stages start at every convolution and linear layer; leading layers join the first.
    assert_eq!(net.stage_starts(), [0, 4, 6]);
    assert_eq!(net.stage_shapes(&[3, 13, 13]).unwrap(), [vec![8, 3, 3], vec![4], vec![2]]);
    let vs = nn::VarStore::new(Device::Cpu);
    let theta = net.init(&vs.root()).unwrap();
    assert!(theta.get("4.bias").is_none());
    let x = Tensor::randn([5, 3, 13, 13], (Kind::Float, Device::Cpu));
    let staged = net.forward_staged(&theta, &x, Mode::eval());
    assert!(staged.allclose(&net.forward(&theta, &x, false), 1e-6, 1e-6, false));
}

#[test]
fn batch_norm_1d_is_per_task_and_other_ranks_fall_back_to_the_loop() {
    let mut vs = nn::VarStore::new(Device::Cpu);
    vs.set_kind(Kind::Double);
    let net = Sequential::builder().linear(3, 4).batch_norm1d(4).leaky_relu(0.2).build().unwrap();
    let theta = net.init(&vs.root()).unwrap();
    let stacked = theta.expand_tasks(2).map(|_, t| t + Tensor::randn_like(t) * 0.1);
    assert!(net.task_batchable(false) && !net.task_batchable(true));
    // Features [T, B, F] take the batched path; [T, B, C, F] the loop (linear on the last
    // axis, batch norm over C).
    for shape in [[2i64, 6, 3].as_slice(), &[2, 6, 4, 3]] {
        let x = Tensor::randn(shape, (Kind::Double, Device::Cpu));
        let (batched_net, looped_net) = (net.clone(), net.clone());
        let batched = batched_net.forward_tasks(&stacked, &x, true);
        let looped = forward_tasks_looped(&looped_net, &stacked, &x, true);
        assert!(batched.allclose(&looped, 1e-12, 1e-12, false), "{shape:?}");
        let (b, l) = (batched_net.buffers(), looped_net.buffers());
        assert_eq!(b.names(), ["1.running_mean", "1.running_var", "1.num_batches_tracked"]);
        for (a, b) in b.tensors().iter().zip(l.tensors()) {
            assert!(a.allclose(b, 1e-12, 1e-12, false));
        }
    }
}

#[test]
fn image_outputs_come_back_task_major() {
    let mut vs = nn::VarStore::new(Device::Cpu);
    vs.set_kind(Kind::Double);
    let net = Sequential::builder()
        .conv2d(2, 3, 3)
        .batch_norm2d_with(3, BatchNormConfig::batch())
        .gelu()
        .build()
        .unwrap();
    let theta = net.init(&vs.root()).unwrap();
    let stacked = theta.expand_tasks(4).map(|_, t| t + Tensor::randn_like(t) * 0.1);
    let x = Tensor::randn([4, 5, 2, 6, 7], (Kind::Double, Device::Cpu));
    let batched = net.forward_tasks(&stacked, &x, true);
    assert_eq!(batched.size(), [4, 5, 3, 4, 5]);
    assert!(batched.allclose(&forward_tasks_looped(&net, &stacked, &x, true), 1e-12, 1e-12, false));
}
