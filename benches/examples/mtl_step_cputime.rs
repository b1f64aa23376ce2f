//! CPU time per multi-task training step (one thread), for comparisons on a busy machine
//! where wall-clock benchmarks are meaningless: same workload as `benches/mtl_step.rs`.
//!
//! `cargo run --release -p metl-benches --example mtl_step_cputime -- 10,40 ew,pcgrad,mgda_ub 100`

use metl_data::MultiTaskBatch;
use metl_models::{
    mlp::MlpConfig,
    optim::{Adam, AdamConfig},
    HardSharing, MultiTaskModel, Params, TaskLoss,
};
use metl_mtl::{MtlStep, Setup, StrategyConfig};
use tch::{nn, Device, Kind, Tensor};

/// User + system CPU seconds of this process (`/proc/self/stat`, clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("procfs");
    let fields: Vec<&str> = stat.rsplit_once(')').expect("comm").1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

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
            MultiTaskBatch::fully_labelled(x, (0..tasks as i64).map(|t| y.narrow(1, t, 1)).collect())
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let tasks: Vec<usize> = args[1].split(',').map(|s| s.parse().unwrap()).collect();
    let names: Vec<&str> = if args[2] == "all" {
        metl_mtl::registry::STRATEGIES.iter().map(|s| s.name).collect()
    } else {
        args[2].split(',').collect()
    };
    let steps: usize = args[3].parse().unwrap();
    tch::set_num_threads(1);
    for &t in &tasks {
        let data = batches(t, 8);
        for name in &names {
            let vs = nn::VarStore::new(Device::Cpu);
            let model = HardSharing::new(
                MlpConfig::new([64, 256, 256]).build().unwrap(),
                (0..t).map(|_| MlpConfig::new([256, 1]).build().unwrap()).collect(),
            );
            let params = model.init(&vs.root().sub("model")).unwrap();
            let strategy = StrategyConfig::default_for(name)
                .unwrap()
                .build(&Setup { num_tasks: t, path: vs.root().sub("mtl"), seed: 0 })
                .unwrap();
            let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
            variables.sort_by(|a, b| a.0.cmp(&b.0));
            let mut adam =
                Adam::new(&Params::from_named(variables).unwrap(), AdamConfig::with_lr(1e-3)).unwrap();
            let mut trainer = MtlStep::new(model, params, vec![TaskLoss::Mse; t], strategy).unwrap();
            for i in 0..5 {
                trainer.step(&data[i % 8], &mut adam, Some(&data[(i + 1) % 8])).unwrap();
            }
            let start = cpu_seconds();
            for i in 0..steps {
                trainer.step(&data[i % 8], &mut adam, Some(&data[(i + 1) % 8])).unwrap();
            }
            let per_step = (cpu_seconds() - start) / steps as f64;
            println!(
                "{name:>16} T={t:3}: {:8.2} ms CPU/step  ({:7.1} steps/s uncontended, 1 thread)",
                per_step * 1e3,
                1.0 / per_step
            );
        }
    }
}
