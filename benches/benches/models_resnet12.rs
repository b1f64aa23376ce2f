//! metl-models: forward and backward passes of ResNet-12 (64-160-320-640) on a 5-way
//! 1-shot 84×84 support set, per-task loop against task-batched (grouped convolutions).
//! Kept to 4 tasks: one pass over 20 images takes seconds on two CPU cores. See
//! `metl_benches::models`.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use metl_benches::models::{MetaBatch, Path, Set};
use std::time::Duration;
use tch::Device;

fn resnet12(c: &mut Criterion) {
    tch::set_num_threads(2);
    let batch = MetaBatch::resnet12_mini_imagenet(Device::Cpu, 4);
    let mut group = c.benchmark_group("models_resnet12_mini_imagenet");
    group.sample_size(10).measurement_time(Duration::from_secs(60));
    for (path, name) in [(Path::Loop, "loop"), (Path::Batched, "batched")] {
        group.bench_function(format!("support_forward_backward/{name}"), |b| {
            b.iter(|| batch.forward_backward(Set::Support, path))
        });
    }
    group.finish();
}

criterion_group!(benches, resnet12);
criterion_main!(benches);
