//! Data-parallel `MtlStep`: two processes on loopback (c10d's Gloo), each stepping on its
//! own uneven shard of every batch (7 rows split 4/3; tasks partially labelled, one task
//! never labelled on rank 0, a step where rank 1 has no label at all, a step without any
//! label), end every registered strategy — on a hard-sharing network, and the
//! representation-space ones also on MMoE (representation `[E, B, d]`) — in the state of
//! one process stepping on the whole batches with SGD and momentum: the same reported
//! losses and weights (or the same error), parameters (the model's and the strategy's
//! learned ones) and strategy state to 1e-9 relative in `f64` (CAGrad: to its solver's
//! accuracy), and bit-identical on the two ranks. Rank 1 starts from other parameters:
//! `broadcast_parameters` must bring rank 0's. Ranks whose strategy states diverge fail
//! the check after the step.
//!
//! Each test starts this test binary twice more with `METL_MTL_DP_WORKER` naming the
//! worker (the `workers` test below dispatches it; without the variable it does nothing).
//! One launch runs every strategy; each rank writes what it ended with to a JSON file the
//! test compares with the same runs in this process on one rank.

use metl_data::{rng::substream, MultiTaskBatch};
use metl_dist::{launch_local, Collective, LocalLaunch, ProcessGroup};
use metl_models::{
    gradcheck::Waves,
    mlp::MlpConfig,
    multitask::{Mmoe, MmoeConfig},
    optim::{Optimizer, Sgd, SgdConfig},
    HardSharing, MultiTaskModel, Params, TaskLoss,
};
use metl_mtl::{registry::STRATEGIES, strategies::stch::StchConfig, MtlStep, Setup, StrategyConfig};
use rand::Rng as _;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, path::PathBuf, process::Command, sync::Arc, time::Duration};
use tch::{nn, Device, Kind, Tensor};

const WORKER: &str = "METL_MTL_DP_WORKER";
const OUT: &str = "METL_MTL_DP_OUT";
const TASKS: usize = 3;
const INPUTS: usize = 8;
/// The whole batch, and rank 0's rows of it (rank 1 has the rest).
const BATCH: i64 = 7;
const RANK0_ROWS: i64 = 4;
/// The whole validation batch (Auto-Lambda), and rank 0's rows of it.
const VALIDATION: i64 = 5;
const RANK0_VALIDATION: i64 = 3;
const STEPS: u64 = 5;
/// Relative tolerance against one process (`f64` throughout).
const TOLERANCE: f64 = 1e-9;
/// Strategies equivalent to one process in distribution only: for these the test checks
/// only that they run and stay identical on the ranks. None: every strategy of the
/// registry is exact when rank r's shard is the r-th block of rows.
const IN_DISTRIBUTION_ONLY: &[&str] = &[];
/// Strategies whose weights come from an iterative solver that stops at its own tolerance
/// (CAGrad's projected gradient descent): inputs equal to rounding can take another path
/// to the optimum, so they agree with one process to that solver's accuracy only.
const SOLVER_TOLERANCE: &[(&str, f64)] = &[("cagrad", 1e-6)];

/// Normal samples from the metl-data generator of `(seed, stream)`.
fn normals(seed: u64, stream: u64, n: usize) -> Vec<f64> {
    let mut rng = substream(seed, stream);
    (0..n).map(|_| rng.sample::<f64, _>(StandardNormal)).collect()
}

/// The batch of `n` rows drawn from stream `stream`: task `t` regresses a fixed random
/// function of the inputs scaled by 10^(t−1); task 1 is labelled on rows 4 and 6 only
/// (none of rank 0's), task 2 on rows 0, 2 and 5 (on a single row, 1, in stream 2). In
/// stream 3 only rank 0's rows are labelled (rank 1 has none; MoDo's and SDMGrad's third
/// part neither, which is an error for them), in stream 5 none at all.
fn batch(stream: u64, n: i64) -> MultiTaskBatch {
    let x = Tensor::from_slice(&normals(1, stream, n as usize * INPUTS)).view([n, INPUTS as i64]);
    let targets = (0..TASKS)
        .map(|t| {
            let w = Tensor::from_slice(&normals(2, t as u64, INPUTS)).view([INPUTS as i64, 1]);
            (x.matmul(&w).tanh() + 1.5) * 10f64.powi(t as i32 - 1)
        })
        .collect();
    let batch = MultiTaskBatch::fully_labelled(x, targets);
    let rows = |r: &[i64]| Tensor::from_slice(&(0..n).map(|i| r.contains(&i)).collect::<Vec<_>>());
    batch.mask.select(1, 1).copy_(&rows(&[4, 6]));
    batch.mask.select(1, 2).copy_(&rows(if stream == 2 { &[1] } else { &[0, 2, 5] }));
    match stream {
        3 => {
            let _ = batch.mask.narrow(0, RANK0_ROWS, n - RANK0_ROWS).fill_(0);
        }
        5 => {
            let _ = batch.mask.shallow_clone().fill_(0);
        }
        _ => {}
    }
    batch
}

/// Rows `[from, from + len)` of `batch`.
fn rows(batch: &MultiTaskBatch, from: i64, len: i64) -> MultiTaskBatch {
    MultiTaskBatch {
        inputs: batch.inputs.narrow(0, from, len),
        targets: batch.targets.iter().map(|t| t.narrow(0, from, len)).collect(),
        mask: batch.mask.narrow(0, from, len),
        task_ids: None,
    }
}

/// Rank `rank`'s shard of `batch` (`first` rows for rank 0, the rest for rank 1), or the
/// whole batch.
fn shard(batch: MultiTaskBatch, first: i64, rank: Option<usize>) -> MultiTaskBatch {
    let n = batch.len() as i64;
    match rank {
        None => batch,
        Some(0) => rows(&batch, 0, first),
        Some(_) => rows(&batch, first, n - first),
    }
}

/// A training run: the variables (model and strategy), the trainer, the optimizer.
struct Run<M> {
    vs: nn::VarStore,
    trainer: MtlStep<M>,
    /// SGD with momentum: its step is linear in the gradient (Adam's would hide a wrong
    /// scale of it).
    sgd: Sgd,
}

/// The models: hard sharing (representation `[B, 16]`) for every strategy, and MMoE with
/// as many experts as rank 0 has rows (representation `[E, B, 16]`: the batch dimension
/// is the second, and the first has rank 0's row count too) for the strategies in the
/// representation space.
const MMOE_STRATEGIES: &[&str] = &["mgda_ub", "aligned_mtl_ub", "graddrop"];

fn hard_sharing() -> impl MultiTaskModel {
    let encoder = MlpConfig::new([INPUTS as i64, 16, 16]).build().unwrap();
    let heads = (0..TASKS).map(|_| MlpConfig::new([16, 1]).build().unwrap()).collect();
    HardSharing::new(encoder, heads)
}

fn mmoe() -> impl MultiTaskModel {
    let expert = MlpConfig::new([INPUTS as i64, 16, 16]).build().unwrap();
    let heads = (0..TASKS).map(|_| MlpConfig::new([16, 1]).build().unwrap()).collect();
    let config = MmoeConfig { num_experts: RANK0_ROWS as usize };
    Mmoe::new(&expert, heads, &[INPUTS as i64], config).unwrap()
}

/// Every variable of `vs` (the model's and the strategy's learned ones), sorted by name.
fn variables(vs: &nn::VarStore) -> Params {
    Params::from_var_store(vs, "").unwrap()
}

/// A fresh `f64` run of strategy `name` on `model` whose variables start at deterministic
/// values set by `phase`.
fn build<M: MultiTaskModel>(model: M, name: &str, phase: f64) -> Run<M> {
    build_seeded(model, name, phase, 3)
}

/// [`build`] with the strategy's seed `seed`.
fn build_seeded<M: MultiTaskModel>(model: M, name: &str, phase: f64, seed: u64) -> Run<M> {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let params = model.init(&vs.root().sub("model")).unwrap();
    let config = match StrategyConfig::default_for(name).unwrap() {
        // Out of its warm-up within the run: the nadir point is set at step 3.
        StrategyConfig::Stch(c) => StrategyConfig::Stch(StchConfig { warmup_epochs: 1, ..c }),
        c => c,
    };
    let strategy = config.build(&Setup { num_tasks: TASKS, path: vs.root().sub("mtl"), seed }).unwrap();
    vs.double();
    // The model's variables (not the strategy's: they keep their configured start).
    let model_variables = variables(&vs);
    let model_variables = model_variables.iter().filter(|(n, _)| n.starts_with("model")).map(|(_, t)| t);
    Waves { frequency: 0.7, phase, scale: 0.4 }.fill(model_variables).unwrap();
    let sgd =
        Sgd::new(&variables(&vs), SgdConfig { lr: 0.02, momentum: 0.9, ..SgdConfig::default() }).unwrap();
    let trainer = MtlStep::new(model, params, vec![TaskLoss::Mse; TASKS], strategy).unwrap();
    Run { vs, trainer, sgd }
}

/// Bits of `f64` values (NaN-safe through JSON, exact).
fn bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|v| v.to_bits()).collect()
}

fn values_of(t: &Tensor) -> Vec<u64> {
    bits(&Vec::<f64>::try_from(t.detach().to_kind(Kind::Double).reshape([-1])).unwrap())
}

/// A step's reported weights and losses (as bits), or its error.
type Reported = Result<(Vec<u64>, Vec<u64>), String>;

/// What a run ends with.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Outcome {
    /// Per step: the reported weights and losses, or the error.
    reports: Vec<Reported>,
    /// Every variable by name.
    variables: BTreeMap<String, Vec<u64>>,
    /// The strategy state: host numbers, host words, tensors.
    values: BTreeMap<String, Vec<u64>>,
    words: BTreeMap<String, Vec<u64>>,
    tensors: BTreeMap<String, Vec<u64>>,
    /// Optimizer and trainer steps.
    steps: (u64, u64),
}

/// Trains `run` for [`STEPS`] steps on rank `rank`'s shards (the whole batches without).
fn train<M: MultiTaskModel>(mut run: Run<M>, rank: Option<usize>) -> Outcome {
    let mut reports = Vec::new();
    for step in 1..=STEPS {
        let train = shard(batch(step, BATCH), RANK0_ROWS, rank);
        let validation = shard(batch(1000 + step, VALIDATION), RANK0_VALIDATION, rank);
        let report = run.trainer.step(&train, &mut run.sgd, Some(&validation));
        reports.push(report.map(|r| (bits(&r.weights), bits(&r.losses))).map_err(|e| e.to_string()));
        run.trainer.end_epoch();
    }
    let state = run.trainer.strategy().state();
    Outcome {
        reports,
        variables: variables(&run.vs).iter().map(|(n, t)| (n.to_owned(), values_of(t))).collect(),
        values: state.values.iter().map(|(k, v)| (k.clone(), bits(v))).collect(),
        words: state.words.clone(),
        tensors: state.tensors.iter().map(|(k, t)| (k.clone(), values_of(t))).collect(),
        steps: (run.sgd.steps(), run.trainer.steps()),
    }
}

/// The worker side (a no-op in a normal test run).
#[test]
fn workers() {
    match std::env::var(WORKER).as_deref() {
        Ok("every_strategy") => every_strategy_worker(),
        Ok("diverging_seeds") => diverging_seeds_worker(),
        Ok(other) => panic!("unknown worker {other}"),
        Err(_) => {}
    }
}

/// Trains `run` as rank `group.rank()` (rank 1 started elsewhere, its strategy's learned
/// parameters too: the broadcast must bring rank 0's).
fn train_on_ranks<M: MultiTaskModel>(mut run: Run<M>, group: &Arc<dyn Collective>) -> Outcome {
    if group.rank() == 1 {
        tch::no_grad(|| {
            for t in run.trainer.strategy().parameters() {
                let _ = t.shallow_clone().g_add_scalar_(0.25);
            }
        });
    }
    run.trainer.set_collective(Arc::clone(group));
    run.trainer.broadcast_parameters().unwrap();
    train(run, Some(group.rank()))
}

/// RLW seeded differently on the two ranks: the first step's weights differ, and the
/// check after the step says so on both ranks.
fn diverging_seeds_worker() {
    let group: Arc<dyn Collective> =
        Arc::new(ProcessGroup::from_env(Device::Cpu).unwrap().expect("launched with WORLD_SIZE"));
    let rank = group.rank();
    let mut run = build_seeded(hard_sharing(), "rlw", 0.0, rank as u64);
    run.trainer.set_collective(Arc::clone(&group));
    let train = shard(batch(1, BATCH), RANK0_ROWS, Some(rank));
    let err = run.trainer.step(&train, &mut run.sgd, None).unwrap_err();
    let out = PathBuf::from(std::env::var(OUT).unwrap()).join(format!("rank{rank}.txt"));
    std::fs::write(out, err.to_string()).unwrap();
}

fn every_strategy_worker() {
    let group: Arc<dyn Collective> =
        Arc::new(ProcessGroup::from_env(Device::Cpu).unwrap().expect("launched with WORLD_SIZE"));
    let rank = group.rank();
    let mut outcomes = BTreeMap::new();
    for info in STRATEGIES {
        let run = build(hard_sharing(), info.name, rank as f64);
        outcomes.insert(format!("hard_sharing/{}", info.name), train_on_ranks(run, &group));
    }
    for name in MMOE_STRATEGIES {
        let run = build(mmoe(), name, rank as f64);
        outcomes.insert(format!("mmoe/{name}"), train_on_ranks(run, &group));
    }
    let out = PathBuf::from(std::env::var(OUT).unwrap()).join(format!("rank{rank}.json"));
    std::fs::write(out, serde_json::to_string(&outcomes).unwrap()).unwrap();
}

/// The largest relative difference between `a` and `b` (`∞` for different lengths or a
/// NaN against a number), relative to the larger magnitude but at least 10⁻².
fn difference(a: &[u64], b: &[u64]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter().zip(b).fold(0.0, |worst, (x, y)| {
        let (x, y) = (f64::from_bits(*x), f64::from_bits(*y));
        let d = if x.is_nan() && y.is_nan() {
            0.0
        } else if x.is_nan() || y.is_nan() {
            f64::INFINITY
        } else {
            (x - y).abs() / x.abs().max(y.abs()).max(1e-2)
        };
        worst.max(d)
    })
}

/// The largest relative difference over the entries of two maps (`∞` if the keys differ).
fn map_difference(a: &BTreeMap<String, Vec<u64>>, b: &BTreeMap<String, Vec<u64>>) -> f64 {
    if a.keys().ne(b.keys()) {
        return f64::INFINITY;
    }
    a.iter().map(|(k, v)| difference(v, &b[k])).fold(0.0, f64::max)
}

/// The largest relative difference between a data-parallel outcome and one process's:
/// reported weights and losses, variables, strategy state; the words (counters, random
/// generators) and step counts must be equal.
fn outcome_difference(name: &str, a: &Outcome, one: &Outcome) -> f64 {
    assert_eq!(a.steps, one.steps, "{name}: step counts");
    assert_eq!(a.words, one.words, "{name}: state words (counters, random generators)");
    let reports = a
        .reports
        .iter()
        .zip(&one.reports)
        .enumerate()
        .map(|(step, (a, one))| match (a, one) {
            (Ok((w, l)), Ok((w1, l1))) => difference(w, w1).max(difference(l, l1)),
            (a, one) => {
                assert_eq!(a, one, "{name}, step {}: the outcomes differ", step + 1);
                0.0
            }
        })
        .fold(0.0, f64::max);
    [reports, map_difference(&a.variables, &one.variables), map_difference(&a.values, &one.values)]
        .into_iter()
        .chain([map_difference(&a.tensors, &one.tensors)])
        .fold(0.0, f64::max)
}

/// Runs worker `name` on two ranks writing into a fresh folder, which it returns.
fn launch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("metl-mtl-data-parallel-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut launch = LocalLaunch::new(2);
    launch.threads_per_process = Some(1);
    launch.grace = Duration::from_secs(20);
    launch_local(&launch, |_| {
        let mut cmd = Command::new(&exe);
        cmd.args(["workers", "--exact", "--nocapture", "--test-threads=1"])
            .env(WORKER, name)
            .env(OUT, &dir)
            .env("METL_DIST_TIMEOUT", "60");
        cmd
    })
    .unwrap();
    dir
}

#[test]
fn strategy_state_that_diverges_across_ranks_is_an_error_on_every_rank() {
    let dir = launch("diverging_seeds");
    for rank in 0..2 {
        let err = std::fs::read_to_string(dir.join(format!("rank{rank}.txt"))).unwrap();
        assert!(err.contains("the weights of strategy `rlw` at step 1"), "rank {rank}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_ranks_with_uneven_shards_step_as_one_process_for_every_strategy() {
    let started = std::time::Instant::now();
    let dir = launch("every_strategy");
    println!(
        "two ranks, {} + {} runs: {:.1} s",
        STRATEGIES.len(),
        MMOE_STRATEGIES.len(),
        started.elapsed().as_secs_f64()
    );
    let read = |rank: usize| -> BTreeMap<String, Outcome> {
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("rank{rank}.json"))).unwrap()).unwrap()
    };
    let (rank0, rank1) = (read(0), read(1));
    let _ = std::fs::remove_dir_all(&dir);
    let mut failures = Vec::new();
    let runs = STRATEGIES
        .iter()
        .map(|i| ("hard_sharing", i.name))
        .chain(MMOE_STRATEGIES.iter().map(|&n| ("mmoe", n)));
    for (model, name) in runs {
        let key = format!("{model}/{name}");
        let (a, b) = (&rank0[&key], &rank1[&key]);
        // The ranks agree bit for bit: parameters, reports, strategy state.
        assert_eq!(a, b, "{key}: the two ranks differ");
        // Errors where one process has them too: MoDo and SDMGrad at step 3 (no task with
        // labels in every part of the batch).
        for (step, report) in a.reports.iter().enumerate() {
            let expected = step == 2 && ["modo", "sdmgrad"].contains(&name);
            assert_eq!(report.is_err(), expected, "{key}, step {}: {report:?}", step + 1);
        }
        // The step without a single label changes nothing: weights 0, losses NaN.
        assert_eq!(a.reports[4], Ok((vec![0; TASKS], vec![f64::NAN.to_bits(); TASKS])), "{key}");
        if IN_DISTRIBUTION_ONLY.contains(&name) {
            println!("{key:>28}: identical on the ranks (equivalent in distribution only)");
            continue;
        }
        let one = match model {
            "mmoe" => train(build(mmoe(), name, 0.0), None),
            _ => train(build(hard_sharing(), name, 0.0), None),
        };
        let d = outcome_difference(&key, a, &one);
        let tolerance = SOLVER_TOLERANCE.iter().find(|(n, _)| *n == name).map_or(TOLERANCE, |(_, t)| *t);
        println!("{key:>28}: identical on the ranks, {d:.1e} from one process");
        if d > tolerance {
            failures.push(format!("{key}: {d:e} > {tolerance:e}"));
        }
    }
    assert!(failures.is_empty(), "differ from one process: {failures:?}");
}
