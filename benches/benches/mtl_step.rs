//! One multi-task training step per strategy (forward, per-task losses, the strategy's
//! gradient work, Adam) on the workload of the PyTorch reference
//! `../shared/reference/mtl_step.py`: a shared MLP trunk 64→256→256, `T` linear heads
//! 256→1, batch 256, MSE per task on a random tanh teacher (8 pre-generated batches used in
//! turn), Adam lr 1e-3, 2 threads, for `T ∈ {2, 10, 40}`.
//!
//! `cargo bench -p metl-benches --bench mtl_step -- 'mtl_step/(ew|pcgrad|mgda_ub)/'` runs a
//! subset (criterion's filter is a regular expression on `mtl_step/<strategy>/<T>`).
//! `METL_BENCH_TASKS=2,10` restricts `T`.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use metl_data::MultiTaskBatch;
use metl_models::{
    mlp::MlpConfig,
    optim::{Adam, AdamConfig},
    HardSharing, MultiTaskModel, Params, TaskLoss,
};
use metl_mtl::{registry::STRATEGIES, MtlStep, Setup, StrategyConfig};
use std::time::Duration;
use tch::{nn, Device, Kind, Tensor};

/// The reference's synthetic data: a fixed random tanh teacher per task plus noise.
fn batches(tasks: usize, count: usize) -> Vec<MultiTaskBatch> {
    tch::manual_seed(0);
    let opts = (Kind::Float, Device::Cpu);
    let teacher_in = Tensor::randn([64, 32], opts) / 8.0;
    let teacher_out = Tensor::randn([32, tasks as i64], opts) / 32f64.sqrt();
    (0..count)
        .map(|_| {
            let x = Tensor::randn([256, 64], opts);
            let y = x.matmul(&teacher_in).tanh().matmul(&teacher_out)
                + Tensor::randn([256, tasks as i64], opts) * 0.1;
            let targets = (0..tasks as i64).map(|t| y.narrow(1, t, 1)).collect();
            MultiTaskBatch::fully_labelled(x, targets)
        })
        .collect()
}

fn task_counts() -> Vec<usize> {
    std::env::var("METL_BENCH_TASKS")
        .ok()
        .map(|s| s.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![2, 10, 40])
}

fn mtl_step(c: &mut Criterion) {
    tch::set_num_threads(2);
    let mut group = c.benchmark_group("mtl_step");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    for tasks in task_counts() {
        let data = batches(tasks, 8);
        for info in STRATEGIES {
            let vs = nn::VarStore::new(Device::Cpu);
            let model = HardSharing::new(
                MlpConfig::new([64, 256, 256]).build().unwrap(),
                (0..tasks).map(|_| MlpConfig::new([256, 1]).build().unwrap()).collect(),
            );
            let params = model.init(&vs.root().sub("model")).unwrap();
            let setup = Setup { num_tasks: tasks, path: vs.root().sub("mtl"), seed: 0 };
            let strategy = StrategyConfig::default_for(info.name).unwrap().build(&setup).unwrap();
            let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
            variables.sort_by(|a, b| a.0.cmp(&b.0));
            let mut adam =
                Adam::new(&Params::from_named(variables).unwrap(), AdamConfig::with_lr(1e-3)).unwrap();
            let mut trainer = MtlStep::new(model, params, vec![TaskLoss::Mse; tasks], strategy).unwrap();
            let mut i = 0;
            group.bench_function(BenchmarkId::new(info.name, tasks), |b| {
                b.iter(|| {
                    let (train, val) = (&data[i % 8], &data[(i + 1) % 8]);
                    i += 1;
                    trainer.step(train, &mut adam, Some(val)).unwrap()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, mtl_step);
criterion_main!(benches);
