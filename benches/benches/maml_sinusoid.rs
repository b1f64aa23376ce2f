//! One MAML meta-training step on sinusoids (MLP 1-40-40-1, meta-batch 25, K = 10),
//! second and first order.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use metl_data::sinusoid::{SinusoidConfig, SinusoidTasks};
use metl_meta::{
    maml::{Maml, MamlConfig},
    MetaLearner,
};
use metl_models::{mlp::MlpConfig, TaskLoss};
use tch::{nn, Device};

fn maml_step(c: &mut Criterion) {
    tch::set_num_threads(2);
    let mut group = c.benchmark_group("maml_sinusoid");
    for first_order in [false, true] {
        let vs = nn::VarStore::new(Device::Cpu);
        let (mlp, theta) = MlpConfig::new([1, 40, 40, 1]).init(&vs.root()).unwrap();
        let config = MamlConfig { first_order, ..Default::default() };
        let mut maml = Maml::new(mlp, theta, &vs, TaskLoss::Mse, config).unwrap();
        let mut tasks = SinusoidTasks::new(SinusoidConfig::default(), 0);
        let name = if first_order { "first_order" } else { "second_order" };
        group.bench_function(name, |b| {
            b.iter(|| {
                let batch = tasks.sample_batch(25, 10, 10, Device::Cpu).unwrap();
                maml.meta_train_step(&batch).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, maml_step);
criterion_main!(benches);
