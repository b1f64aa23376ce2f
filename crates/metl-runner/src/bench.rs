//! `metl bench WORKLOAD`: times one of the standard workloads exactly as the PyTorch
//! reference scripts in `benches/reference/` do (same sizes, same warm-up, three timed
//! windows, the figure being iterations over the median window), and prints one JSON
//! object. `cargo xtask compare` runs these beside the reference scripts.
//!
//! Timed loops include sampling the data, as the reference's do.

use crate::{
    error::bad_input,
    experiment::data::resolve_omniglot_root,
    memory::{MemoryBudget, PassSizer},
};
use metl_data::{
    sinusoid::SinusoidBatches, ClassPool, EpisodeConfig, EpisodeSampler, Omniglot, OmniglotConfig,
};
use metl_dist::{Collective, Timed};
use metl_meta::{
    maml::{Maml, MamlConfig},
    protonet::{ProtoNet, ProtoNetConfig},
    MetaLearner,
};
use metl_models::{conv4::Conv4Config, head::LinearHead, BatchNormConfig, Classifier, Model, TaskLoss};
use serde::Serialize;
use std::{cell::Cell, rc::Rc, sync::Arc, time::Instant};
use tch::{nn, Device};

/// The workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// MAML on sinusoids: MLP 1-40-40-1, K = 10 + 10, meta-batch 25, 1 inner step.
    MamlSinusoid,
    /// MAML on Omniglot 5-way 1-shot 15-query, Conv4 (batch statistics), meta-batch 32.
    MamlOmniglot,
    /// Prototypical networks, 60-way 5-shot 5-query training episodes, Conv4.
    ProtonetOmniglot,
    /// One multi-task training step: MLP trunk 64→256→256, `--tasks` linear heads, batch
    /// 256, `--strategy` ([`metl_mtl::workload`]).
    MtlStep,
}

/// Options of `metl bench`.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The workload.
    pub workload: Workload,
    /// First-order MAML.
    pub first_order: bool,
    /// The weighting strategy of `mtl-step` (a registry name).
    pub strategy: String,
    /// The number of tasks of `mtl-step`.
    pub tasks: usize,
    /// MAML Omniglot: tasks per forward/backward pass (0: all 32 at once); `None`: chosen
    /// from `memory_budget` on the first warm-up step, as `metl train` does.
    pub tasks_per_pass: Option<usize>,
    /// MAML Omniglot: the memory budget that sizes the passes (`train.memory_budget`).
    pub memory_budget: MemoryBudget,
    /// Warm-up iterations (default: the reference's for the workload).
    pub warmup: Option<usize>,
    /// Iterations per timed window (default: the reference's).
    pub window: Option<usize>,
    /// Timed windows (default 3).
    pub windows: usize,
    /// libtorch intra-op threads (default 2, as the reference).
    pub threads: usize,
    /// The device.
    pub device: Device,
    /// Data-parallel processes (`--nproc`; MAML and ProtoNets on Omniglot): the meta-batch
    /// split among them (ProtoNets: one episode each per step).
    pub nproc: usize,
    /// After the timed windows, count the operators of this many more iterations (0: none).
    pub count_ops: usize,
}

/// What `metl bench` prints.
#[derive(Debug, Serialize)]
pub struct BenchResult {
    /// The workload, e.g. `maml_sinusoid`.
    pub workload: String,
    /// Its variant (`second_order`, `first_order`, `train`).
    pub variant: String,
    /// Iterations per second: window / median window time.
    pub per_second: f64,
    /// The unit of `per_second`.
    pub unit: &'static str,
    /// The timed windows, in seconds.
    pub window_seconds: Vec<f64>,
    /// Peak resident memory of the process, in MB.
    pub peak_rss_mb: f64,
    /// Peak resident memory before the timed loop, in MB.
    pub peak_rss_before_mb: f64,
    /// The last training loss (a sanity check that it trains).
    pub last_loss: f64,
    /// libtorch threads.
    pub threads: usize,
    /// The share of the timed windows spent waiting for the next batch (episode sampling
    /// and batch assembly, prefetched on another thread); 0 where batches are pre-built.
    pub data_wait_fraction: f64,
    /// Data-parallel processes (1 for a plain run).
    pub processes: usize,
    /// Rank 0's collectives per iteration of the timed windows.
    pub comm_calls_per_iteration: f64,
    /// Bytes rank 0 all-reduced or broadcast per iteration.
    pub comm_bytes_per_iteration: f64,
    /// Seconds rank 0 spent inside collectives per iteration (waiting for the other
    /// ranks included).
    pub comm_seconds_per_iteration: f64,
    /// MAML Omniglot: the tasks per pass used (0: one pass), given or chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks_per_pass: Option<usize>,
    /// MAML Omniglot: the memory budget, when it chose the tasks per pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_budget: Option<String>,
    /// With `--count-ops`: what an iteration dispatches, and the floor it implies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operators: Option<OperatorFloor>,
}

/// Operators per iteration (`--count-ops`) and the rate they allow at most.
#[derive(Debug, Serialize)]
pub struct OperatorFloor {
    /// `aten::*` operators dispatched per iteration (nested ones included).
    pub operators_per_iteration: f64,
    /// Autograd nodes executed per iteration.
    pub autograd_nodes_per_iteration: f64,
    /// Seconds one operator on a one-element tensor takes here (dispatch, allocation and
    /// the kernel's fixed cost): the median of 5 runs of 20,000 additions.
    pub seconds_per_tiny_operator: f64,
    /// The rate if every operator cost only that: `1 / (operators × seconds)`.
    pub dispatch_bound_per_second: f64,
}

/// Counts the operators of `iterations` calls of `step` and measures a tiny operator's cost.
fn operator_floor(
    iterations: usize,
    step: &mut dyn FnMut() -> anyhow::Result<f64>,
) -> anyhow::Result<OperatorFloor> {
    let ((), counted) = crate::op_count::count(|| {
        for _ in 0..iterations {
            step()?;
        }
        Ok(())
    })?;
    let a = tch::Tensor::ones([1], (tch::Kind::Float, Device::Cpu));
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..20_000 {
                let _ = &a + &a;
            }
            start.elapsed().as_secs_f64() / 20_000.0
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    let per_op = runs[2];
    let operators = counted.operators as f64 / iterations as f64;
    Ok(OperatorFloor {
        operators_per_iteration: operators,
        autograd_nodes_per_iteration: counted.autograd_nodes as f64 / iterations as f64,
        seconds_per_tiny_operator: per_op,
        dispatch_bound_per_second: 1.0 / (operators * per_op),
    })
}

/// The peak resident set size of this process in MB (`VmHWM`), 0 where unknown.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Runs `step` for `warmup` iterations, then `windows` windows of `window` iterations;
/// `data_wait` (seconds the steps spent waiting for data) restarts from 0 after the warm-up.
fn time_windows(
    warmup: usize,
    window: usize,
    windows: usize,
    data_wait: &Cell<f64>,
    mut step: impl FnMut() -> anyhow::Result<f64>,
) -> anyhow::Result<(Vec<f64>, f64)> {
    let mut last = f64::NAN;
    for _ in 0..warmup {
        last = step()?;
    }
    data_wait.set(0.0);
    let mut times = Vec::with_capacity(windows);
    for _ in 0..windows {
        let start = Instant::now();
        for _ in 0..window {
            last = step()?;
        }
        times.push(start.elapsed().as_secs_f64());
    }
    Ok((times, last))
}

/// `fetch()`, its duration added to `wait`.
fn timed<T>(wait: &Cell<f64>, fetch: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let value = fetch();
    wait.set(wait.get() + start.elapsed().as_secs_f64());
    value
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn omniglot_background() -> anyhow::Result<(Arc<Omniglot>, ClassPool)> {
    let root = resolve_omniglot_root(None);
    if !root.exists() {
        return Err(bad_input(format!("Omniglot not found at {} (set METL_OMNIGLOT_DIR)", root.display())));
    }
    let omniglot = Arc::new(Omniglot::load(OmniglotConfig::new(root)).map_err(bad_input)?);
    let background = omniglot.classes_of_set(metl_data::omniglot::OmniglotSet::Background);
    // The reference's training classes: 964 background characters × 4 rotations.
    Ok((omniglot, ClassPool::rotations_as_classes("background+rotations", background)))
}

/// Runs `metl bench` and prints its JSON line.
pub fn run(options: &BenchOptions) -> anyhow::Result<()> {
    let data_parallel = !matches!(options.workload, Workload::MamlOmniglot | Workload::ProtonetOmniglot);
    if options.nproc > 1 && data_parallel {
        return Err(bad_input("--nproc: data-parallel benchmarks are maml-omniglot and protonet-omniglot"));
    }
    if options.nproc > 1 && !crate::distributed::in_group() {
        return crate::distributed::launch(options.nproc);
    }
    tch::set_num_threads(options.threads as i32);
    tch::manual_seed(0);
    let (group, device) = crate::distributed::join(options.device)?;
    let comm = Arc::new(Timed::new(group));
    let collective: Arc<dyn Collective> = comm.clone();
    let (rank, world) = (collective.rank(), collective.world_size());
    let variant = if options.first_order { "first_order" } else { "second_order" };
    let wait = Rc::new(Cell::new(0.0));
    let passes = Rc::new(Cell::new(None));
    let mut memory_budget = None;
    let (name, variant, unit, warmup, window, mut step): (
        _,
        _,
        _,
        _,
        _,
        Box<dyn FnMut() -> anyhow::Result<f64>>,
    ) = match options.workload {
        Workload::MamlSinusoid => {
            let vs = nn::VarStore::new(device);
            let (mlp, theta) = metl_models::mlp::MlpConfig::new([1, 40, 40, 1]).init(&vs.root())?;
            let config = MamlConfig { first_order: options.first_order, ..Default::default() };
            let mut maml = Maml::new(mlp, theta, &vs, TaskLoss::Mse, config)?;
            // Tasks drawn ahead on a thread, as `metl train` does.
            let mut tasks = SinusoidBatches::new(Default::default(), 0, 25, 10, 10)?
                .prefetch(SinusoidBatches::PREFETCH_DEPTH, device);
            let w = Rc::clone(&wait);
            let step = move || -> anyhow::Result<f64> {
                let batch = timed(&w, || tasks.next_batch())?;
                Ok(maml.meta_train_step(&batch)?.loss)
            };
            (
                "maml_sinusoid",
                variant.to_owned(),
                "meta-iterations/s",
                50,
                200,
                Box::new(step) as Box<dyn FnMut() -> _>,
            )
        }
        Workload::MamlOmniglot => {
            let (omniglot, pool) = omniglot_background()?;
            let episodes =
                EpisodeConfig { ways: 5, shots: 1, queries: 15, meta_batch: 32, within_group: false };
            let sampler =
                EpisodeSampler::new(omniglot, pool, episodes, 0)?.shard(rank, world).map_err(bad_input)?;
            let mut sampler = sampler.prefetch(2, device);
            let vs = nn::VarStore::new(device);
            let backbone = Conv4Config::new(1).with_batch_norm(BatchNormConfig::batch()).build()?;
            let net = Classifier::new(backbone, LinearHead::new(64, 5)?);
            let theta = net.init(&vs.root())?;
            let config = MamlConfig {
                inner_lr: 0.4,
                inner_steps: 1,
                outer_lr: 1e-3,
                first_order: options.first_order,
                task_batched: true,
                tasks_per_pass: options.tasks_per_pass.unwrap_or(0),
                ..MamlConfig::default()
            };
            let mut maml = Maml::new(net, theta, &vs, TaskLoss::CrossEntropy, config)?;
            maml.set_collective(Arc::clone(&collective))?;
            let budget =
                if options.tasks_per_pass.is_some() { MemoryBudget(None) } else { options.memory_budget };
            let mut sizer = PassSizer::start(&mut maml, budget, None, device)?;
            if sizer.is_some() {
                memory_budget = Some(budget.to_string());
            }
            let (w, chosen) = (Rc::clone(&wait), Rc::clone(&passes));
            let step = move || -> anyhow::Result<f64> {
                let batch = timed(&w, || sampler.next_batch())?;
                let loss = maml.meta_train_step(&batch)?.loss;
                if let Some((_, line)) =
                    sizer.as_mut().map(|s| s.after_step(&mut maml, batch.num_tasks())).transpose()?.flatten()
                {
                    eprintln!("{line}");
                }
                chosen.set(MetaLearner::tasks_per_pass(&maml));
                Ok(loss)
            };
            (
                "maml_omniglot",
                variant.to_owned(),
                "meta-iterations/s",
                2,
                5,
                Box::new(step) as Box<dyn FnMut() -> _>,
            )
        }
        Workload::ProtonetOmniglot => {
            let (omniglot, pool) = omniglot_background()?;
            // One episode per process per step.
            let episodes =
                EpisodeConfig { ways: 60, shots: 5, queries: 5, meta_batch: world, within_group: false };
            let sampler =
                EpisodeSampler::new(omniglot, pool, episodes, 0)?.shard(rank, world).map_err(bad_input)?;
            let mut sampler = sampler.prefetch(2, device);
            let vs = nn::VarStore::new(device);
            let backbone = Conv4Config::new(1).build()?;
            let params = backbone.init(&vs.root())?;
            let mut protonet = ProtoNet::new(backbone, params, ProtoNetConfig::default())?;
            protonet.set_collective(Arc::clone(&collective))?;
            let w = Rc::clone(&wait);
            let step = move || -> anyhow::Result<f64> {
                let batch = timed(&w, || sampler.next_batch())?;
                Ok(protonet.meta_train_step(&batch)?.loss)
            };
            (
                "protonet_omniglot",
                "train".to_owned(),
                "episodes/s",
                10,
                50,
                Box::new(step) as Box<dyn FnMut() -> _>,
            )
        }
        Workload::MtlStep => {
            if device != Device::Cpu {
                return Err(bad_input("mtl-step: the reference workload runs on the CPU (--device cpu)"));
            }
            use metl_mtl::workload::{batches, workload, Backbone};
            let data = batches(Backbone::Mlp, options.tasks, 8);
            let mut w = workload(Backbone::Mlp, &options.strategy, options.tasks).map_err(bad_input)?;
            let mut i = 0;
            let step = move || -> anyhow::Result<f64> {
                i += 1;
                Ok(w.step(&data[i % 8], &data[(i + 1) % 8])?)
            };
            let variant = format!("{}_t{}", options.strategy, options.tasks);
            ("mtl_step", variant, "steps/s", 20, 100, Box::new(step) as Box<dyn FnMut() -> _>)
        }
    };
    let before = peak_rss_mb();
    let window = options.window.unwrap_or(window);
    let timed_comm = Rc::new(Cell::new(None));
    let (times, last_loss) = {
        let (comm, timed_comm) = (Arc::clone(&comm), Rc::clone(&timed_comm));
        let mut warmed = false;
        let warmup = options.warmup.unwrap_or(warmup);
        let mut done = 0;
        time_windows(warmup, window, options.windows, &wait, || {
            if !warmed && done == warmup {
                comm.reset();
                warmed = true;
            }
            done += 1;
            let loss = step()?;
            timed_comm.set(Some(comm.stats()));
            Ok(loss)
        })?
    };
    let data_wait_fraction = wait.get() / times.iter().sum::<f64>();
    let operators = match options.count_ops {
        0 => None,
        n => Some(operator_floor(n, &mut *step)?),
    };
    let stats = timed_comm.get().unwrap_or_default();
    // The loss of the whole meta-batch (each rank's is that of its share).
    let mut last_loss = [last_loss];
    crate::distributed::mean_over_ranks(collective.as_ref(), &mut last_loss)?;
    let [last_loss] = last_loss;
    let iterations = (window * options.windows) as f64;
    // ProtoNets: every process trains on its own episode.
    let per_iteration = if name == "protonet_omniglot" { world as f64 } else { 1.0 };
    if !collective.is_main() {
        return Ok(());
    }
    let result = BenchResult {
        workload: name.into(),
        variant,
        per_second: per_iteration * window as f64 / median(&times),
        unit,
        window_seconds: times,
        peak_rss_mb: peak_rss_mb(),
        peak_rss_before_mb: before,
        last_loss,
        threads: options.threads,
        data_wait_fraction,
        processes: world,
        comm_calls_per_iteration: stats.calls as f64 / iterations,
        comm_bytes_per_iteration: stats.bytes as f64 / iterations,
        comm_seconds_per_iteration: stats.seconds / iterations,
        tasks_per_pass: passes.get(),
        memory_budget,
        operators,
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
