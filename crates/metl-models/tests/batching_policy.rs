//! The task-batching policy (memory format, task chunks) changes speed, never results:
//! every combination gives the per-task loop's outputs, gradients and batch-norm buffers.
//!
//! In its own test binary, since the policy is process-wide.

mod common;

use common::{assert_close, assert_params_close, distinct_task_params, rand, var_store};
use metl_models::{
    batching::{set_task_batching, ConvFormat, TaskBatching},
    conv4::Conv4Config,
    head::LinearHead,
    model::forward_tasks_looped,
    resnet12::ResNet12Config,
    BatchNormConfig, Classifier, Model,
};
use tch::{Kind, Tensor};

#[test]
fn every_format_and_chunk_size_gives_the_same_results() {
    let kind = Kind::Double;
    let vs = var_store(kind);
    let conv4 = Classifier::new(
        Conv4Config::new(1).with_hidden(8).with_batch_norm(BatchNormConfig::running()).build().unwrap(),
        LinearHead::new(8, 5).unwrap(),
    );
    let resnet = Classifier::new(
        ResNet12Config::default().with_channels([4, 4, 8, 8]).build().unwrap(),
        LinearHead::new(8, 5).unwrap(),
    );
    let theta_conv4 = conv4.init(&vs.root().sub("conv4")).unwrap();
    let theta_resnet = resnet.init(&vs.root().sub("resnet")).unwrap();
    let x_conv4 = rand(&[5, 4, 1, 28, 28], kind);
    let x_resnet = rand(&[5, 3, 3, 32, 32], kind);
    // One task of the Conv4 input is 4 · 8 · 28 · 28 doubles = 200,704 bytes.
    for format in [ConvFormat::Contiguous, ConvFormat::ChannelsLast] {
        for chunk_bytes in [Some(0), Some(1), Some(450_000), None] {
            set_task_batching(TaskBatching { format, chunk_bytes });
            let what = format!("{format:?}, chunk bytes {chunk_bytes:?}");
            for train in [true, false] {
                let stacked = distinct_task_params(&theta_conv4, 5);
                let (a, b) = (conv4.clone(), conv4.clone());
                let batched = a.forward_tasks(&stacked, &x_conv4, train);
                let looped = forward_tasks_looped(&b, &stacked, &x_conv4, train);
                assert_close(&batched, &looped, 1e-10, &format!("conv4 outputs, {what}"));
                let w = Tensor::randn_like(&looped);
                let gb = stacked.grads(&(&batched * &w).sum(kind), false).unwrap();
                let gl = stacked.grads(&(&looped * &w).sum(kind), false).unwrap();
                assert_params_close(&gb, &gl, 1e-10, &format!("conv4 gradients, {what}"));
                assert_params_close(&a.buffers(), &b.buffers(), 1e-10, &format!("conv4 buffers, {what}"));
            }
            let stacked = distinct_task_params(&theta_resnet, 5);
            let batched = resnet.forward_tasks(&stacked, &x_resnet, true);
            let looped = forward_tasks_looped(&resnet, &stacked, &x_resnet, true);
            assert_close(&batched, &looped, 1e-10, &format!("resnet12 outputs, {what}"));
            // A single forward pass in either format.
            let single = conv4.forward(&theta_conv4, &x_conv4.get(0), false);
            set_task_batching(TaskBatching { format: ConvFormat::Contiguous, chunk_bytes });
            let reference = conv4.forward(&theta_conv4, &x_conv4.get(0), false);
            assert_close(&single, &reference, 1e-12, &format!("single pass, {what}"));
        }
    }
    set_task_batching(TaskBatching::default());
}
