//! One MAML meta-training step on Omniglot-shaped 5-way 1-shot episodes, 15 queries per
//! class, meta-batch 32, 1 inner step (α = 0.4), Adam: the workload of
//! `benches/reference/maml_omniglot.py` (learn2learn: 0.23 meta-it/s second order, 0.32
//! first order on two cores). Network as there: Conv4 with max-pooling and batch-statistics
//! batch norm, linear head 64 → 5. Second and first order, task-batched (grouped
//! convolutions) and per task. The images are random (the speed does not depend on them).

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use metl_data::TaskBatch;
use metl_meta::{
    maml::{Maml, MamlConfig},
    MetaLearner,
};
use metl_models::{conv4::Conv4Config, head::LinearHead, BatchNormConfig, Classifier, Model, TaskLoss};
use std::time::Duration;
use tch::{nn, Device, Kind, Tensor};

/// A meta-batch of `tasks` random `ways`-way episodes of 28×28 images.
fn episodes(tasks: i64, ways: i64, shots: i64, queries: i64) -> TaskBatch {
    let labels = |per_class: i64| {
        Tensor::arange(ways, (Kind::Int64, Device::Cpu))
            .repeat_interleave_self_int(per_class, 0, None::<i64>)
            .repeat([tasks, 1])
    };
    TaskBatch {
        support_x: Tensor::rand([tasks, ways * shots, 1, 28, 28], (Kind::Float, Device::Cpu)),
        support_y: labels(shots),
        query_x: Tensor::rand([tasks, ways * queries, 1, 28, 28], (Kind::Float, Device::Cpu)),
        query_y: labels(queries),
    }
}

fn maml_step(c: &mut Criterion) {
    tch::set_num_threads(2);
    tch::manual_seed(0);
    let batch = episodes(32, 5, 1, 15);
    let mut group = c.benchmark_group("meta_maml_omniglot_5w1s_mb32");
    group.sample_size(10).warm_up_time(Duration::from_secs(5)).measurement_time(Duration::from_secs(40));
    for task_batched in [true, false] {
        for first_order in [false, true] {
            let vs = nn::VarStore::new(Device::Cpu);
            let backbone = Conv4Config::new(1).with_batch_norm(BatchNormConfig::batch()).build().unwrap();
            let model = Classifier::new(backbone, LinearHead::new(64, 5).unwrap());
            let params = model.init(&vs.root()).unwrap();
            let config = MamlConfig { inner_lr: 0.4, first_order, task_batched, ..Default::default() };
            let mut maml = Maml::new(model, params, &vs, TaskLoss::CrossEntropy, config).unwrap();
            let name = format!(
                "{}/{}",
                if first_order { "first_order" } else { "second_order" },
                if task_batched { "task_batched" } else { "per_task" }
            );
            group.bench_function(name, |b| b.iter(|| maml.meta_train_step(&batch).unwrap()));
        }
    }
    group.finish();
}

criterion_group!(benches, maml_step);
criterion_main!(benches);
