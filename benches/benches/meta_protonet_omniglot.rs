//! One prototypical-network training episode: 60-way 5-shot, 5 queries per class (600
//! images of 28×28), Conv4 with max-pooling and running-statistics batch norm, Adam — the
//! training step of `benches/reference/protonet_omniglot.py` (PyTorch: 0.99 episodes/s on
//! two cores). The images are random (the speed does not depend on them).

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use metl_data::TaskBatch;
use metl_meta::{
    protonet::{ProtoNet, ProtoNetConfig},
    MetaLearner,
};
use metl_models::conv4::Conv4Config;
use std::time::Duration;
use tch::{nn, Device, Kind, Tensor};

fn protonet_episode(c: &mut Criterion) {
    tch::set_num_threads(2);
    tch::manual_seed(0);
    let (ways, shots, queries) = (60i64, 5i64, 5i64);
    let labels = |per_class: i64| {
        Tensor::arange(ways, (Kind::Int64, Device::Cpu))
            .repeat_interleave_self_int(per_class, 0, None::<i64>)
            .unsqueeze(0)
    };
    let batch = TaskBatch {
        support_x: Tensor::rand([1, ways * shots, 1, 28, 28], (Kind::Float, Device::Cpu)),
        support_y: labels(shots),
        query_x: Tensor::rand([1, ways * queries, 1, 28, 28], (Kind::Float, Device::Cpu)),
        query_y: labels(queries),
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let (conv4, theta) = Conv4Config::new(1).init(&vs.root()).unwrap();
    let mut protonet = ProtoNet::new(conv4, theta, ProtoNetConfig::default()).unwrap();
    let mut group = c.benchmark_group("meta_protonet_omniglot");
    group.sample_size(10).warm_up_time(Duration::from_secs(3)).measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(1));
    group.bench_function("60w5s5q_episode", |b| b.iter(|| protonet.meta_train_step(&batch).unwrap()));
    group.finish();
}

criterion_group!(benches, protonet_episode);
criterion_main!(benches);
