//! metl-models: forward and backward passes of a meta-batch, per-task loop against
//! task-batched (batched matrix products, grouped convolutions): the MLP on a sinusoid
//! meta-batch (25 tasks) and Conv4 on an Omniglot 5-way 1-shot meta-batch (32 tasks; the
//! support set, the 15-per-class query set, and a whole MAML meta-gradient). See
//! `metl_benches::models`; ResNet-12 is in `models_resnet12`.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use metl_benches::models::{MetaBatch, Path, Set};
use std::time::Duration;
use tch::Device;

const PATHS: [(Path, &str); 2] = [(Path::Loop, "loop"), (Path::Batched, "batched")];

fn mlp_sinusoid(c: &mut Criterion) {
    tch::set_num_threads(2);
    let batch = MetaBatch::mlp_sinusoid(Device::Cpu);
    let mut group = c.benchmark_group("models_mlp_sinusoid");
    for (path, name) in PATHS {
        group.bench_function(format!("forward_backward/{name}"), |b| {
            b.iter(|| batch.forward_backward(Set::Support, path))
        });
        group.bench_function(format!("maml_second_order/{name}"), |b| b.iter(|| batch.maml_step(path, true)));
    }
    group.finish();
}

fn conv4_omniglot(c: &mut Criterion) {
    tch::set_num_threads(2);
    let batch = MetaBatch::conv4_omniglot(Device::Cpu, 32);
    let mut group = c.benchmark_group("models_conv4_omniglot");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    for (path, name) in PATHS {
        group.bench_function(format!("support_forward_backward/{name}"), |b| {
            b.iter(|| batch.forward_backward(Set::Support, path))
        });
        group.bench_function(format!("query_forward_backward/{name}"), |b| {
            b.iter(|| batch.forward_backward(Set::Query, path))
        });
        group.bench_function(format!("maml_second_order/{name}"), |b| b.iter(|| batch.maml_step(path, true)));
    }
    group.finish();
}

criterion_group!(benches, mlp_sinusoid, conv4_omniglot);
criterion_main!(benches);
