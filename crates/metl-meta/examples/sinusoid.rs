//! Sinusoid regression (Finn et al. 2017, section 5.1): meta-train MAML, first-order MAML,
//! Meta-SGD, ANIL, MAML++ or Reptile on an MLP 1-40-40-1 and measure the test MSE before
//! adaptation and after 1 and 10 inner steps, three ways:
//!
//! - `maml`: K support and K query points per task at random, over `--test-tasks` tasks
//!   (600), as Finn et al. and Li et al. report it;
//! - `grid`: K random support points, the MSE on a 100-point grid over [−5, 5], as CAVIA
//!   (Zintgraf et al. 2019) reports it;
//! - `reference`: K random support points, 100 random query points, over 1000 tasks — the
//!   protocol of `benches/reference/maml_sinusoid.py` (MAML K=10 after 20,000 iterations:
//!   2.94 / 0.389 / 0.0995).
//!
//! ```text
//! cargo run --release -p metl-meta --example sinusoid -- --algorithm maml --k 10 \
//!     --iterations 20000 --out results/sinusoid/maml_k10.json
//! ```

mod common;

use clap::{Parser, ValueEnum};
use metl_data::{
    rng::substream,
    sinusoid::{SinusoidConfig, SinusoidTasks},
    TaskBatch,
};
use metl_meta::{
    anil::{Anil, AnilConfig},
    evaluate,
    maml::{Maml, MamlConfig},
    maml_plus_plus::{MamlPlusPlus, MamlPlusPlusConfig},
    meta_sgd::{MetaSgd, MetaSgdConfig},
    reptile::{Reptile, ReptileConfig},
    Evaluation, MetaLearner,
};
use metl_models::{mlp::MlpConfig, TaskLoss};
use serde::Serialize;
use std::path::PathBuf;
use tch::{nn, Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Algorithm {
    Maml,
    Fomaml,
    MetaSgd,
    Anil,
    MamlPlusPlus,
    Reptile,
}

/// Meta-train on sinusoids and evaluate as MAML, CAVIA and the PyTorch reference do.
#[derive(Debug, Parser, Serialize)]
struct Args {
    #[arg(long, value_enum, default_value = "maml")]
    algorithm: Algorithm,
    /// Support points per task (K); also the query points per training task.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Meta-training iterations (Finn et al.: 70,000; the PyTorch reference: 20,000).
    #[arg(long, default_value_t = 20_000)]
    iterations: u64,
    #[arg(long, default_value_t = 25)]
    meta_batch: usize,
    /// Inner learning rate α (default 0.01; Reptile 0.02; Meta-SGD: ignored, α is learned).
    #[arg(long)]
    inner_lr: Option<f64>,
    /// Inner steps in training (default 1; Reptile 5).
    #[arg(long)]
    inner_steps: Option<usize>,
    /// Outer Adam learning rate (default 1e-3); Reptile: its step size ε (default 0.1,
    /// decayed linearly to 0).
    #[arg(long)]
    outer_lr: Option<f64>,
    /// Test tasks of the `maml` and `grid` protocols.
    #[arg(long, default_value_t = 600)]
    test_tasks: usize,
    /// Test tasks of the `reference` protocol.
    #[arg(long, default_value_t = 1000)]
    reference_tasks: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 12345)]
    test_seed: u64,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// libtorch intra-op threads.
    #[arg(long, default_value_t = 2)]
    threads: i32,
    /// Print progress every this many iterations (0: never).
    #[arg(long, default_value_t = 1000)]
    log_every: u64,
    /// Write the results as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Protocol {
    name: &'static str,
    description: String,
    evaluations: Vec<Evaluation>,
}

#[derive(Debug, Serialize)]
struct Results<'a> {
    benchmark: &'static str,
    settings: &'a Args,
    machine: String,
    train_seconds: f64,
    iterations_per_second: f64,
    final_train_loss_last_1000: f64,
    protocols: Vec<Protocol>,
}

const STEPS: [usize; 3] = [0, 1, 10];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let device = common::parse_device(&args.device)?;
    tch::set_num_threads(args.threads);
    tch::manual_seed(args.seed as i64);
    let vs = nn::VarStore::new(device);
    let (mlp, theta) = MlpConfig::new([1, 40, 40, 1]).init(&vs.root())?;
    let reptile = args.algorithm == Algorithm::Reptile;
    let (k, loss) = (args.k, TaskLoss::Mse);
    let steps = args.inner_steps.unwrap_or(if reptile { 5 } else { 1 });
    let inner_lr = args.inner_lr.unwrap_or(if reptile { 0.02 } else { 0.01 });
    let outer_lr = args.outer_lr.unwrap_or(if reptile { 0.1 } else { 1e-3 });
    let mut learner: Box<dyn MetaLearner> = match args.algorithm {
        Algorithm::Maml | Algorithm::Fomaml => {
            let first_order = args.algorithm == Algorithm::Fomaml;
            let config =
                MamlConfig { inner_lr, inner_steps: steps, outer_lr, first_order, ..Default::default() };
            Box::new(Maml::new(mlp, theta, &vs, loss, config)?)
        }
        Algorithm::MetaSgd => {
            let config = MetaSgdConfig { inner_steps: steps, outer_lr, ..Default::default() };
            Box::new(MetaSgd::new(mlp, theta, loss, config)?)
        }
        Algorithm::Anil => {
            let config = AnilConfig {
                head: vec!["layers.2".into()],
                inner_lr,
                inner_steps: steps,
                outer_lr,
                ..Default::default()
            };
            Box::new(Anil::new(mlp, theta, loss, config)?)
        }
        Algorithm::MamlPlusPlus => {
            let config = MamlPlusPlusConfig {
                inner_steps: steps,
                init_inner_lr: inner_lr,
                outer_lr,
                epochs: 100,
                iterations_per_epoch: args.iterations.div_ceil(100).max(1),
                not_adapted: vec![],
                ..Default::default()
            };
            Box::new(MamlPlusPlus::new(mlp, theta, loss, config)?)
        }
        Algorithm::Reptile => {
            let config = ReptileConfig {
                inner_lr,
                inner_steps: steps,
                inner_batch: 0,
                inner_optimizer: Default::default(),
                outer_step_size: outer_lr,
                anneal_iterations: args.iterations,
                task_batched: true,
            };
            Box::new(Reptile::new(mlp, theta, loss, config)?)
        }
    };

    let family = SinusoidConfig::default();
    let mut train = SinusoidTasks::from_rng(family, substream(args.seed, 0));
    println!(
        "{:?} on sinusoids: K = {k}, {} iterations of {} tasks, {steps} inner step(s), on {device:?}",
        args.algorithm, args.iterations, args.meta_batch
    );
    let mut progress = common::Progress::new(args.iterations, args.log_every);
    let mut recent = std::collections::VecDeque::with_capacity(1000);
    for _ in 0..args.iterations {
        let batch = train.sample_batch(args.meta_batch, k, k, device)?;
        let report = learner.meta_train_step(&batch)?;
        if recent.len() == 1000 {
            recent.pop_front();
        }
        recent.push_back(report.loss);
        progress.update(report.step, report.loss, None);
    }
    let train_seconds = progress.seconds();

    let setups = [
        (
            "maml",
            format!("{k} random query points, {} tasks", args.test_tasks),
            args.test_tasks,
            Query::Random(k),
        ),
        (
            "grid",
            format!("100-point grid over [-5, 5], {} tasks", args.test_tasks),
            args.test_tasks,
            Query::Grid(100),
        ),
        (
            "reference",
            format!("100 random query points, {} tasks", args.reference_tasks),
            args.reference_tasks,
            Query::Random(100),
        ),
    ];
    let mut protocols = vec![];
    for (stream, (name, description, tasks, query)) in setups.into_iter().enumerate() {
        let batches = test_batches(family, args.test_seed, stream as u64, tasks, k, query, device)?;
        protocols.push(Protocol {
            name,
            description,
            evaluations: evaluate(learner.as_ref(), batches, &STEPS)?,
        });
    }
    println!(
        "trained in {train_seconds:.1} s ({:.1} it/s); test MSE (mean ± 95% CI):",
        args.iterations as f64 / train_seconds
    );
    println!("  {:<10} {:>16} {:>16} {:>16}", "protocol", "pre-update", "1 step", "10 steps");
    for p in &protocols {
        let cell = |i: usize| format!("{:.4}", p.evaluations[i].loss);
        println!("  {:<10} {:>16} {:>16} {:>16}   ({})", p.name, cell(0), cell(1), cell(2), p.description);
    }
    let results = Results {
        benchmark: "sinusoid",
        settings: &args,
        machine: common::machine(),
        train_seconds,
        iterations_per_second: args.iterations as f64 / train_seconds,
        final_train_loss_last_1000: recent.iter().sum::<f64>() / recent.len().max(1) as f64,
        protocols,
    };
    common::write_json(args.out.as_deref(), &results)
}

enum Query {
    Random(usize),
    Grid(i64),
}

/// `tasks` test tasks in batches of 100 from stream `stream` of `seed`.
fn test_batches(
    family: SinusoidConfig,
    seed: u64,
    stream: u64,
    tasks: usize,
    k: usize,
    query: Query,
    device: Device,
) -> Result<Vec<TaskBatch>, Box<dyn std::error::Error>> {
    let mut source = SinusoidTasks::from_rng(family, substream(seed, stream));
    let mut batches = vec![];
    for start in (0..tasks).step_by(100) {
        let n = (tasks - start).min(100);
        let batch = match query {
            Query::Random(q) => source.sample_batch(n, k, q, device)?,
            Query::Grid(points) => {
                let (support, drawn) = source.sample_batch_with_tasks(n, k, 1, device)?;
                let [lo, hi] = family.x_range;
                let grid = Tensor::linspace(lo, hi, points, (Kind::Double, Device::Cpu));
                let xs = Vec::<f64>::try_from(&grid)?;
                let ys: Vec<f32> =
                    drawn.iter().flat_map(|t| xs.iter().map(move |&x| t.eval(x) as f32)).collect();
                let query_x =
                    grid.to_kind(Kind::Float).view([1, points, 1]).expand([n as i64, points, 1], false);
                TaskBatch {
                    query_x: query_x.contiguous().to_device(device),
                    query_y: Tensor::from_slice(&ys).view([n as i64, points, 1]).to_device(device),
                    ..support
                }
            }
        };
        batches.push(batch);
    }
    Ok(batches)
}
