//! Few-shot classification on Omniglot (28×28): meta-train a learner and report the test
//! accuracy over `--test-episodes` episodes with its 95% interval, under the protocol of
//! the paper each algorithm comes from (printed with the result).
//!
//! Defaults per algorithm follow the papers:
//!
//! | algorithm | split (`--protocol`) | network | training episodes |
//! | --- | --- | --- | --- |
//! | `protonet`, `matching` | Vinyals (rotations are classes) | Conv4, max-pool, running BN | 60-way, shots as test, 5 queries |
//! | `maml`, `fomaml`, `meta-sgd`, `anil` | MAML (random rotations) | Conv4, strided, batch-statistics BN + linear head | N-way as test, K queries; 32 tasks (5-way) / 16 (20-way); α 0.4, 1 step (5-way) / α 0.1, 5 steps (20-way); 3 / 5 steps at test |
//! | `maml-plus-plus` | MAML | Conv4, max-pool, per-step BN + linear head | N-way, 5 steps, α₀ 0.1 |
//! | `reptile` | MAML | Conv4, max-pool, running BN + linear head | N-way, Adam β₁=0 inside |
//! | `baseline`, `baseline-plus-plus` | Vinyals | Conv4, max-pool, running BN + linear / cosine head | batches of 16 images of all training classes |
//!
//! ```text
//! cargo run --release -p metl-meta --example omniglot -- --algorithm protonet --ways 5 --shots 1 \
//!     --iterations 20000 --out results/omniglot/protonet_5w1s.json
//! ```

mod common;

use clap::{Parser, ValueEnum};
use metl_data::{
    episode::PoolBatchSampler, EpisodeConfig, EpisodeSampler, Omniglot, OmniglotConfig, OmniglotProtocol,
};
use metl_meta::{
    anil::AnilConfig,
    baseline::{BaselineConfig, BaselineHead},
    evaluate,
    maml::MamlConfig,
    maml_plus_plus::MamlPlusPlusConfig,
    matching::{MatchingNet, MatchingNetConfig},
    meta_sgd::MetaSgdConfig,
    metric::MetricTraining,
    protonet::{ProtoNet, ProtoNetConfig},
    reptile::ReptileConfig,
    Evaluation, MetaLearner,
};
use metl_models::{
    conv4::{Conv4, Conv4Config},
    head::LinearHead,
    BatchNormConfig, Classifier, Model, TaskLoss,
};
use serde::Serialize;
use std::{path::PathBuf, sync::Arc};
use tch::{nn, Device};

use Algorithm as A;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Algorithm {
    Protonet,
    Matching,
    Maml,
    Fomaml,
    MetaSgd,
    Anil,
    MamlPlusPlus,
    Reptile,
    Baseline,
    BaselinePlusPlus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum TaskBatching {
    Auto,
    Batched,
    PerTask,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Protocol {
    Vinyals,
    Maml,
    Lake,
}

/// Meta-train on Omniglot and report the test accuracy with its 95% interval.
#[derive(Debug, Parser, Serialize)]
struct Args {
    #[arg(long, value_enum, default_value = "protonet")]
    algorithm: Algorithm,
    /// Test classes per episode (N).
    #[arg(long, default_value_t = 5)]
    ways: usize,
    /// Support examples per class (K), at test and (unless --train-shots) in training.
    #[arg(long, default_value_t = 1)]
    shots: usize,
    /// Query examples per class at test.
    #[arg(long, default_value_t = 15)]
    queries: usize,
    /// Classes per training episode (default: 60 for protonet/matching, else --ways).
    #[arg(long)]
    train_ways: Option<usize>,
    /// Support examples per class in training (default --shots).
    #[arg(long)]
    train_shots: Option<usize>,
    /// Query examples per class in training (default: 5 for protonet/matching, else --shots).
    #[arg(long)]
    train_queries: Option<usize>,
    /// Episodes per meta-batch (default: 32 for 5-way and 16 for 20-way with MAML-type
    /// learners, 5 for Reptile, 1 for protonet/matching; images per batch: 16 for the
    /// baselines).
    #[arg(long)]
    meta_batch: Option<usize>,
    /// Meta-training iterations.
    #[arg(long, default_value_t = 1000)]
    iterations: u64,
    /// Class split (default: the paper's; see the module docs).
    #[arg(long, value_enum)]
    protocol: Option<Protocol>,
    /// Inner learning rate (default: 0.4 for 5-way, 0.1 for 20-way; Reptile 0.001; MAML++ α₀ 0.1).
    #[arg(long)]
    inner_lr: Option<f64>,
    /// Inner steps in training (default: 1 for 5-way, 5 for 20-way; MAML++ and Reptile 5).
    #[arg(long)]
    inner_steps: Option<usize>,
    /// Inner steps at test (default: 3 for 5-way, 5 for 20-way MAML; training steps
    /// otherwise; Reptile 50; baselines: 100 epochs of head fitting).
    #[arg(long)]
    test_steps: Option<usize>,
    /// Outer learning rate (Reptile: its step size ε, default 1).
    #[arg(long)]
    outer_lr: Option<f64>,
    /// How the MAML family adapts the tasks of a meta-batch: all at once (grouped
    /// convolutions) or one after another. `auto`: per task on the CPU, where libtorch's
    /// grouped convolutions are slower than a loop (measured: 0.27 vs 0.52 meta-it/s for
    /// MAML 5-way 1-shot on one thread), task-batched on CUDA.
    #[arg(long, value_enum, default_value = "auto")]
    task_batching: TaskBatching,
    #[arg(long, default_value_t = 600)]
    test_episodes: usize,
    /// Test episodes per evaluation batch.
    #[arg(long, default_value_t = 50)]
    test_batch: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 12345)]
    test_seed: u64,
    /// The folder with images_background.zip and images_evaluation.zip [default:
    /// $METL_OMNIGLOT_DIR, else data/omniglot]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, default_value_t = 2)]
    threads: i32,
    #[arg(long, default_value_t = 100)]
    log_every: u64,
    /// Save the learner's state (safetensors) here after training.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Start from a state saved with --checkpoint (with --iterations 0: evaluate only, e.g.
    /// a ProtoNet trained once at 20-way test).
    #[arg(long)]
    load: Option<PathBuf>,
    /// Write the results as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The settings in effect after the per-algorithm defaults.
#[derive(Debug, Clone, Serialize)]
struct Resolved {
    protocol: Protocol,
    train_ways: usize,
    train_shots: usize,
    train_queries: usize,
    meta_batch: usize,
    inner_lr: f64,
    inner_steps: usize,
    test_steps: usize,
    outer_lr: f64,
    network: String,
}

#[derive(Debug, Serialize)]
struct Results<'a> {
    benchmark: &'static str,
    settings: &'a Args,
    resolved: Resolved,
    machine: String,
    train_seconds: f64,
    iterations_per_second: f64,
    final_train_loss_last_100: f64,
    final_train_accuracy_last_100: Option<f64>,
    test: Evaluation,
}

fn resolve(args: &Args) -> Resolved {
    let metric = matches!(args.algorithm, A::Protonet | A::Matching | A::Baseline | A::BaselinePlusPlus);
    let twenty = args.ways >= 20;
    let maml_type = matches!(args.algorithm, A::Maml | A::Fomaml | A::MetaSgd | A::Anil);
    let (inner_lr, inner_steps, test_steps) = match args.algorithm {
        A::MamlPlusPlus => (0.1, 5, 5),
        A::Reptile => (0.001, 5, 50),
        A::Baseline | A::BaselinePlusPlus => (0.01, 0, 100),
        A::Protonet | A::Matching => (0.0, 0, 0),
        _ if twenty => (0.1, 5, 5),
        _ => (0.4, 1, 3),
    };
    let inner_steps = args.inner_steps.unwrap_or(inner_steps);
    let network = match args.algorithm {
        A::Protonet | A::Matching => "Conv4 (max-pool, running BN), 64-d embedding",
        A::Maml | A::Fomaml | A::MetaSgd | A::Anil => {
            "Conv4 (stride 2, batch-statistics BN, mean-pooled) + linear head"
        }
        A::MamlPlusPlus => "Conv4 (max-pool, per-step BN with per-step affine) + linear head",
        A::Reptile => "Conv4 (max-pool, running BN) + linear head",
        A::Baseline => "Conv4 (max-pool, running BN) + linear head",
        A::BaselinePlusPlus => "Conv4 (max-pool, running BN) + cosine head",
    };
    Resolved {
        protocol: args.protocol.unwrap_or(if metric { Protocol::Vinyals } else { Protocol::Maml }),
        train_ways: args.train_ways.unwrap_or(if matches!(args.algorithm, A::Protonet | A::Matching) {
            60
        } else {
            args.ways
        }),
        train_shots: args.train_shots.unwrap_or(args.shots),
        train_queries: args.train_queries.unwrap_or(if metric { 5 } else { args.shots }),
        meta_batch: args.meta_batch.unwrap_or(match args.algorithm {
            A::Protonet | A::Matching => 1,
            A::Baseline | A::BaselinePlusPlus => 16,
            A::Reptile => 5,
            _ if maml_type && twenty => 16,
            _ => 32,
        }),
        inner_lr: args.inner_lr.unwrap_or(inner_lr),
        inner_steps,
        test_steps: args.test_steps.unwrap_or(if maml_type {
            test_steps
        } else {
            test_steps.max(inner_steps)
        }),
        outer_lr: args.outer_lr.unwrap_or(if args.algorithm == A::Reptile { 1.0 } else { 1e-3 }),
        network: network.to_owned(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let r = resolve(&args);
    let device = common::parse_device(&args.device)?;
    tch::set_num_threads(args.threads);
    tch::manual_seed(args.seed as i64);

    let dir = args.data_dir.clone().unwrap_or_else(|| metl_data::omniglot::omniglot_dir("data/omniglot"));
    let data = Arc::new(Omniglot::load(OmniglotConfig::new(&dir))?);
    let protocol = match r.protocol {
        Protocol::Vinyals => OmniglotProtocol::Vinyals,
        Protocol::Maml => OmniglotProtocol::Maml,
        Protocol::Lake => OmniglotProtocol::Lake,
    };
    let splits = data.splits(protocol, args.seed)?;
    println!(
        "{:?} on Omniglot {}-way {}-shot, {:?} split ({} train / {} test classes), {}, on {device:?}",
        args.algorithm,
        args.ways,
        args.shots,
        r.protocol,
        splits.train.len(),
        splits.test.len(),
        r.network
    );
    println!("resolved settings: {r:?}");

    let train_config = EpisodeConfig {
        ways: r.train_ways,
        shots: r.train_shots,
        queries: r.train_queries,
        meta_batch: r.meta_batch,
        within_group: false,
    };
    let test_config = EpisodeConfig {
        ways: args.ways,
        shots: args.shots,
        queries: args.queries,
        meta_batch: args.test_batch,
        within_group: false,
    };
    let vs = nn::VarStore::new(device);
    let mut learner = build(&args, &r, &vs, splits.train.len())?;
    let baseline = matches!(args.algorithm, Algorithm::Baseline | Algorithm::BaselinePlusPlus);
    if let Some(path) = &args.load {
        learner.load(path)?;
        println!("loaded {} ({} steps taken)", path.display(), learner.steps_taken());
    }

    let mut progress = common::Progress::new(args.iterations, args.log_every);
    let mut recent: Vec<(f64, Option<f64>)> = Vec::new();
    if baseline {
        let mut batches = PoolBatchSampler::new(data.clone(), splits.train.clone(), r.meta_batch, args.seed)?;
        for _ in 0..args.iterations {
            let batch = batches.sample_batch(device)?;
            let report = learner.meta_train_step(&batch)?;
            recent.push((report.loss, report.accuracy));
            progress.update(report.step, report.loss, report.accuracy);
        }
    } else {
        let mut train = EpisodeSampler::new(data.clone(), splits.train.clone(), train_config, args.seed)?
            .prefetch(2, device);
        for _ in 0..args.iterations {
            let report = learner.meta_train_step(&train.next_batch()?)?;
            recent.push((report.loss, report.accuracy));
            progress.update(report.step, report.loss, report.accuracy);
        }
    }
    let train_seconds = progress.seconds();
    if let Some(path) = &args.checkpoint {
        learner.save(path)?;
        println!("saved the learner's state to {}", path.display());
    }

    let mut test = EpisodeSampler::new(data, splits.test, test_config, args.test_seed)?;
    let batches = (0..args.test_episodes.div_ceil(args.test_batch))
        .map(|_| test.sample_batch(device))
        .collect::<Result<Vec<_>, _>>()?;
    let eval_start = std::time::Instant::now();
    let evaluation = evaluate(learner.as_ref(), batches, &[r.test_steps])?.remove(0);
    let accuracy = evaluation.accuracy.expect("classification");
    let last: Vec<_> = recent.iter().rev().take(100).collect();
    let results = Results {
        benchmark: "omniglot",
        settings: &args,
        resolved: r.clone(),
        machine: common::machine(),
        train_seconds,
        iterations_per_second: args.iterations as f64 / train_seconds.max(1e-9),
        final_train_loss_last_100: last.iter().map(|(l, _)| l).sum::<f64>() / last.len().max(1) as f64,
        final_train_accuracy_last_100: last
            .iter()
            .map(|(_, a)| *a)
            .collect::<Option<Vec<f64>>>()
            .map(|a| a.iter().sum::<f64>() / a.len().max(1) as f64),
        test: evaluation,
    };
    println!(
        "trained {} iterations in {train_seconds:.1} s ({:.3} it/s); evaluated in {:.1} s",
        args.iterations,
        results.iterations_per_second,
        eval_start.elapsed().as_secs_f64()
    );
    println!(
        "test accuracy, {}-way {}-shot, {} episodes ({} step(s)): {:.2} ± {:.2} %",
        args.ways,
        args.shots,
        accuracy.n,
        r.test_steps,
        100.0 * accuracy.mean,
        100.0 * accuracy.ci95
    );
    common::write_json(args.out.as_deref(), &results)
}

/// The learner of `args.algorithm` with its network, parameters under `vs`.
fn build(
    args: &Args,
    r: &Resolved,
    vs: &nn::VarStore,
    train_classes: usize,
) -> Result<Box<dyn MetaLearner>, Box<dyn std::error::Error>> {
    let root = vs.root();
    let ways = args.ways as i64;
    let classifier = |config: Conv4Config| -> Result<_, Box<dyn std::error::Error>> {
        let backbone = config.build()?;
        let features = backbone.feature_dim(28, 28)?;
        let model = Classifier::new(backbone, LinearHead::new(features, ways)?);
        let params = model.init(&root)?;
        Ok((model, params))
    };
    let strided = Conv4Config::maml_strided(1).with_batch_norm(BatchNormConfig::batch());
    let loss = TaskLoss::CrossEntropy;
    let task_batched = match args.task_batching {
        TaskBatching::Batched => true,
        TaskBatching::PerTask => false,
        TaskBatching::Auto => vs.device() != Device::Cpu,
    };
    Ok(match args.algorithm {
        A::Protonet | A::Matching => {
            let (conv4, theta) = Conv4Config::new(1).init(&root)?;
            let with_lr = |training: MetricTraining| MetricTraining { outer_lr: r.outer_lr, ..training };
            if args.algorithm == A::Protonet {
                let config = ProtoNetConfig::default();
                let config = ProtoNetConfig { training: with_lr(config.training), ..config };
                Box::new(ProtoNet::new(conv4, theta, config)?)
            } else {
                let config = MatchingNetConfig::default();
                let config = MatchingNetConfig { training: with_lr(config.training), ..config };
                Box::new(MatchingNet::new(conv4, theta, config)?)
            }
        }
        A::Maml | A::Fomaml => {
            let (model, theta) = classifier(strided)?;
            let config = MamlConfig {
                inner_lr: r.inner_lr,
                inner_steps: r.inner_steps,
                outer_lr: r.outer_lr,
                first_order: args.algorithm == A::Fomaml,
                task_batched,
                ..Default::default()
            };
            Box::new(metl_meta::maml::Maml::new(model, theta, vs, loss, config)?)
        }
        A::MetaSgd => {
            let (model, theta) = classifier(strided)?;
            let config = MetaSgdConfig {
                inner_steps: r.inner_steps,
                outer_lr: r.outer_lr,
                task_batched,
                ..Default::default()
            };
            Box::new(metl_meta::meta_sgd::MetaSgd::new(model, theta, loss, config)?)
        }
        A::Anil => {
            let (model, theta) = classifier(strided)?;
            let config = AnilConfig {
                inner_lr: r.inner_lr,
                inner_steps: r.inner_steps,
                outer_lr: r.outer_lr,
                task_batched,
                ..Default::default()
            };
            Box::new(metl_meta::anil::Anil::new(model, theta, loss, config)?)
        }
        A::MamlPlusPlus => {
            let bn = BatchNormConfig { per_step_affine: true, ..BatchNormConfig::per_step(r.inner_steps) };
            let (model, theta) = classifier(Conv4Config::new(1).with_batch_norm(bn))?;
            let config = MamlPlusPlusConfig {
                inner_steps: r.inner_steps,
                init_inner_lr: r.inner_lr,
                outer_lr: r.outer_lr,
                task_batched,
                ..Default::default()
            };
            Box::new(metl_meta::maml_plus_plus::MamlPlusPlus::new(model, theta, loss, config)?)
        }
        A::Reptile => {
            let (model, theta) = classifier(Conv4Config::new(1))?;
            let config = ReptileConfig {
                inner_lr: r.inner_lr,
                inner_steps: r.inner_steps,
                outer_step_size: r.outer_lr,
                anneal_iterations: args.iterations,
                task_batched,
                ..Default::default()
            };
            Box::new(metl_meta::reptile::Reptile::new(model, theta, loss, config)?)
        }
        A::Baseline | A::BaselinePlusPlus => {
            let (conv4, theta): (Conv4, _) = Conv4Config::new(1).init(&root)?;
            let features = conv4.feature_dim(28, 28)?;
            let head = if args.algorithm == A::Baseline {
                BaselineHead::Linear
            } else {
                BaselineHead::Cosine { scale: None }
            };
            let config =
                BaselineConfig { head, outer_lr: r.outer_lr, finetune_lr: r.inner_lr, ..Default::default() };
            Box::new(metl_meta::baseline::Baseline::new(conv4, theta, features, train_classes, config)?)
        }
    })
}
