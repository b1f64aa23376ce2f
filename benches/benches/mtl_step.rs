//! One multi-task training step per strategy (forward, per-task losses, the strategy's
//! gradient work, Adam), 2 threads, `T ∈ {2, 10, 40}`, on the workloads of
//! `metl_mtl::workload`: group `mtl_step` is the PyTorch reference's
//! (`benches/reference/mtl_step.py`: MLP trunk 64→256→256, `T` linear heads, batch 256),
//! group `mtl_step_conv4` a Conv4 trunk on 28×28 images (batch 64, 5-way heads).
//!
//! `cargo bench -p metl-benches --bench mtl_step -- 'mtl_step/(ew|pcgrad|mgda_ub)/'` runs a
//! subset (criterion's filter is a regular expression on `<group>/<strategy>/<T>`).
//! `METL_BENCH_TASKS=2,10` restricts `T`.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use metl_mtl::registry::STRATEGIES;
use metl_mtl::workload::{batches, workload, Backbone};
use std::time::Duration;

fn task_counts() -> Vec<usize> {
    std::env::var("METL_BENCH_TASKS")
        .ok()
        .map(|s| s.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![2, 10, 40])
}

fn mtl_step(c: &mut Criterion) {
    tch::set_num_threads(2);
    for (backbone, group_name) in [(Backbone::Mlp, "mtl_step"), (Backbone::Conv4, "mtl_step_conv4")] {
        let mut group = c.benchmark_group(group_name);
        group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
        for tasks in task_counts() {
            let data = batches(backbone, tasks, 8);
            for info in STRATEGIES {
                let mut w = workload(backbone, info.name, tasks).unwrap();
                let mut i = 0;
                group.bench_function(BenchmarkId::new(info.name, tasks), |b| {
                    b.iter(|| {
                        let (train, val) = (&data[i % 8], &data[(i + 1) % 8]);
                        i += 1;
                        w.step(train, val).unwrap()
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, mtl_step);
criterion_main!(benches);
