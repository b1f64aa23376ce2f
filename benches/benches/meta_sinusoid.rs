//! One meta-training step of each MAML relative on sinusoids (MLP 1-40-40-1, meta-batch 25,
//! K = 10): Meta-SGD, ANIL (head = last layer), MAML++ (1 step, multi-step loss on) and
//! Reptile (5 SGD steps); MAML itself is in `maml_sinusoid`.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use metl_data::sinusoid::{SinusoidConfig, SinusoidTasks};
use metl_meta::{
    anil::{Anil, AnilConfig},
    maml_plus_plus::{MamlPlusPlus, MamlPlusPlusConfig},
    meta_sgd::{MetaSgd, MetaSgdConfig},
    reptile::{Reptile, ReptileConfig},
    MetaLearner,
};
use metl_models::{mlp::MlpConfig, TaskLoss};
use tch::{nn, Device};

fn learners(c: &mut Criterion) {
    tch::set_num_threads(2);
    let mut group = c.benchmark_group("meta_sinusoid");
    let make = |name: &str| -> Box<dyn MetaLearner> {
        let vs = nn::VarStore::new(Device::Cpu);
        let (mlp, theta) = MlpConfig::new([1, 40, 40, 1]).init(&vs.root()).unwrap();
        let loss = TaskLoss::Mse;
        match name {
            "meta_sgd" => Box::new(MetaSgd::new(mlp, theta, loss, MetaSgdConfig::default()).unwrap()),
            "anil" => {
                let config =
                    AnilConfig { head: vec!["layers.2".into()], inner_lr: 0.01, ..Default::default() };
                Box::new(Anil::new(mlp, theta, loss, config).unwrap())
            }
            "maml_plus_plus" => {
                let config = MamlPlusPlusConfig {
                    inner_steps: 1,
                    init_inner_lr: 0.01,
                    first_order_epochs: 0,
                    not_adapted: vec![],
                    ..Default::default()
                };
                Box::new(MamlPlusPlus::new(mlp, theta, loss, config).unwrap())
            }
            _ => {
                let config = ReptileConfig {
                    inner_lr: 0.02,
                    inner_batch: 0,
                    inner_optimizer: Default::default(),
                    ..Default::default()
                };
                Box::new(Reptile::new(mlp, theta, loss, config).unwrap())
            }
        }
    };
    for name in ["meta_sgd", "anil", "maml_plus_plus", "reptile"] {
        let mut learner = make(name);
        let mut tasks = SinusoidTasks::new(SinusoidConfig::default(), 0);
        group.bench_function(name, |b| {
            b.iter(|| {
                let batch = tasks.sample_batch(25, 10, 10, Device::Cpu).unwrap();
                learner.meta_train_step(&batch).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, learners);
criterion_main!(benches);
