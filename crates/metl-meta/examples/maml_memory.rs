//! Peak memory and time of second-order MAML against the number of inner steps, with and
//! without gradient checkpointing of the inner loop (`MamlConfig::checkpointing`).
//!
//! The workload is Omniglot-sized and synthetic: MAML's strided Conv4 (batch-statistics
//! batch norm) with a linear head, 5-way 1-shot episodes of random 28×28 images, 5 queries
//! per class, 8 tasks per meta-batch, α = 0.4. It runs `--iterations` meta-iterations after
//! one warm-up iteration and prints one line: the peak resident memory of the process
//! (`VmHWM` of `/proc/self/status`) before and after training, and the mean time per
//! meta-iteration. Peak memory is per process, so run each setting as its own process:
//!
//! ```text
//! for steps in 1 5 10; do for ckpt in off on; do
//!   nice cargo run --release -p metl-meta --example maml_memory -- --steps $steps --checkpointing $ckpt
//! done; done
//! ```

use clap::{Parser, ValueEnum};
use metl_data::TaskBatch;
use metl_meta::{
    maml::{Maml, MamlConfig},
    MetaLearner,
};
use metl_models::{conv4::Conv4Config, head::LinearHead, BatchNormConfig, Classifier, Model, TaskLoss};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Switch {
    Off,
    On,
}

/// Second-order MAML's peak memory and time per meta-iteration on a synthetic Omniglot-sized
/// workload (default 5-way 1-shot).
#[derive(Debug, Parser)]
struct Args {
    /// Inner steps during meta-training.
    #[arg(long, default_value_t = 1)]
    steps: usize,
    /// Gradient checkpointing of the inner loop.
    #[arg(long, value_enum, default_value_t = Switch::Off)]
    checkpointing: Switch,
    /// Timed meta-iterations (after one warm-up iteration).
    #[arg(long, default_value_t = 3)]
    iterations: usize,
    /// Classes per episode.
    #[arg(long, default_value_t = 5)]
    ways: i64,
    /// Support examples per class.
    #[arg(long, default_value_t = 1)]
    shots: i64,
    /// Tasks per meta-batch.
    #[arg(long, default_value_t = 8)]
    meta_batch: i64,
    /// Adapt the tasks one after another instead of all at once.
    #[arg(long)]
    per_task: bool,
    /// Intra-op threads of libtorch.
    #[arg(long, default_value_t = 1)]
    threads: i32,
}

/// `VmHWM` (peak resident set size) of this process, in MiB.
fn peak_rss_mib() -> Result<f64, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).ok_or("no VmHWM in /proc/self/status")?;
    let kib: f64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse()?;
    Ok(kib / 1024.0)
}

/// A meta-batch of `tasks` episodes of random 28×28 images, 5 queries per class.
fn synthetic_batch(tasks: i64, ways: i64, shots: i64) -> TaskBatch {
    let queries = 5;
    let labels = |per_class: i64| {
        Tensor::arange(ways, (Kind::Int64, Device::Cpu)).repeat_interleave_self_int(per_class, None, None)
    };
    let opts = (Kind::Float, Device::Cpu);
    TaskBatch {
        support_x: Tensor::rand([tasks, ways * shots, 1, 28, 28], opts),
        support_y: labels(shots).unsqueeze(0).repeat([tasks, 1]),
        query_x: Tensor::rand([tasks, ways * queries, 1, 28, 28], opts),
        query_y: labels(queries).unsqueeze(0).repeat([tasks, 1]),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    tch::set_num_threads(args.threads);
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let backbone = Conv4Config::maml_strided(1).with_batch_norm(BatchNormConfig::batch()).build()?;
    let features = backbone.feature_dim(28, 28)?;
    let model = Classifier::new(backbone, LinearHead::new(features, args.ways)?);
    let theta = model.init(&vs.root())?;
    let config = MamlConfig {
        inner_lr: 0.4,
        inner_steps: args.steps,
        task_batched: !args.per_task,
        checkpointing: args.checkpointing == Switch::On,
        ..Default::default()
    };
    let mut maml = Maml::new(model, theta, &vs, TaskLoss::CrossEntropy, config)?;
    let batch = synthetic_batch(args.meta_batch, args.ways, args.shots);
    let before = peak_rss_mib()?;
    maml.meta_train_step(&batch)?;
    let start = Instant::now();
    let mut loss = f64::NAN;
    for _ in 0..args.iterations {
        loss = maml.meta_train_step(&batch)?.loss;
    }
    let per_iteration = start.elapsed().as_secs_f64() / args.iterations.max(1) as f64;
    println!(
        "{}-way {}-shot, steps {} checkpointing {:?} {}: peak RSS {:.0} MiB (before training {:.0} MiB), {:.3} s per \
         meta-iteration, loss {loss:.4}",
        args.ways,
        args.shots,
        args.steps,
        args.checkpointing,
        if args.per_task { "per-task" } else { "task-batched" },
        peak_rss_mib()?,
        before,
        per_iteration,
    );
    Ok(())
}
