//! Omniglot-50 (Meyerson & Miikkulainen 2018; Liang, Meyerson & Miikkulainen 2018): the 50
//! alphabets as 50 classification tasks, each character's 20 drawings split 10/4/6 into
//! train/validation/test with a fixed seed. Trains single-task baselines, a hard-sharing
//! Conv4 and an MMoE of Conv4 experts with the chosen strategies, and reports the mean test
//! error over the 50 tasks (at the step with the best mean validation error) and Δm% in
//! both conventions against the single-task baselines. Published: soft layer ordering
//! 33.41 %, CMTR (evolved routing) 12.81 % mean test error.
//!
//! ```text
//! cargo run --release -p metl-benches --example mtl_omniglot50 -- \
//!     --archs single,hard,mmoe --strategies all --steps 20000 --device cuda \
//!     --out runs/mtl_omniglot50
//! ```
//!
//! Options: `--data-dir` (default `$METL_OMNIGLOT_DIR`, else `data/omniglot`), `--image-size` (28; the
//! papers used the 105×105 originals), `--archs` (`single,hard,mmoe`), `--strategies`
//! (comma-separated or `all`; default `ew`), `--experts` (MMoE experts, 4), `--steps`
//! (20000; single-task models train `--single-steps`, default 2000 each), `--batch` (256),
//! `--threads` (libtorch threads, 2),
//! `--lr` (Adam, 1e-3), `--eval-every` (1000), `--device` (`cpu`, `cuda`, `cuda:N`), `--out`.
//! Writes `results.json` and `table.md`, with each model's training wall time.
//!
//! A long table survives interruptions: `results.json` is rewritten (atomically) after every
//! model, and a rerun with the same `--out` and the same settings keeps the models it holds
//! (each single-task model, each architecture/strategy pair) and trains only the others.

use metl_data::{
    multitask::{MultiTaskLoader, Omniglot50, Omniglot50Config},
    MultiTaskBatch, MultiTaskDataset, OmniglotConfig, Split,
};
use metl_models::{
    conv4::Conv4Config,
    head::LinearHead,
    multitask::{Mmoe, MmoeConfig},
    optim::{Adam, AdamConfig},
    HardSharing, MultiTaskModel, Params, TaskLoss,
};
use metl_mtl::{
    delta_m::{delta_m_flat, delta_m_libmtl, Better, Metric},
    registry::STRATEGIES,
    MtlStep, Setup, StrategyConfig,
};
use std::{fmt::Write as _, path::PathBuf};
use tch::{nn, Device, Kind, Tensor};

struct Args {
    data_dir: PathBuf,
    image_size: usize,
    archs: Vec<String>,
    strategies: Vec<String>,
    experts: usize,
    steps: usize,
    single_steps: usize,
    batch: usize,
    lr: f64,
    eval_every: usize,
    device: Device,
    threads: i32,
    out: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        data_dir: metl_data::omniglot::omniglot_dir("data/omniglot"),
        image_size: 28,
        archs: vec!["single".into(), "hard".into(), "mmoe".into()],
        strategies: vec!["ew".into()],
        experts: 4,
        steps: 20_000,
        single_steps: 2_000,
        batch: 256,
        lr: 1e-3,
        eval_every: 1_000,
        device: Device::Cpu,
        threads: 2,
        out: PathBuf::from("runs/mtl_omniglot50"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        let list = |v: &str| v.split(',').map(str::to_owned).collect::<Vec<_>>();
        match flag.as_str() {
            "--data-dir" => args.data_dir = PathBuf::from(value),
            "--image-size" => args.image_size = value.parse().map_err(|e| bad(&e))?,
            "--archs" => args.archs = list(&value),
            "--strategies" if value == "all" => {
                args.strategies = STRATEGIES.iter().map(|s| s.name.to_owned()).collect()
            }
            "--strategies" => args.strategies = list(&value),
            "--experts" => args.experts = value.parse().map_err(|e| bad(&e))?,
            "--steps" => args.steps = value.parse().map_err(|e| bad(&e))?,
            "--single-steps" => args.single_steps = value.parse().map_err(|e| bad(&e))?,
            "--batch" => args.batch = value.parse().map_err(|e| bad(&e))?,
            "--lr" => args.lr = value.parse().map_err(|e| bad(&e))?,
            "--eval-every" => args.eval_every = value.parse().map_err(|e| bad(&e))?,
            "--device" => {
                args.device = match value.as_str() {
                    "cpu" => Device::Cpu,
                    "cuda" => Device::Cuda(0),
                    v => Device::Cuda(
                        v.strip_prefix("cuda:")
                            .and_then(|n| n.parse().ok())
                            .ok_or_else(|| bad(&"cpu, cuda or cuda:N"))?,
                    ),
                }
            }
            "--threads" => args.threads = value.parse().map_err(|e| bad(&e))?,
            "--out" => args.out = PathBuf::from(value),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(args)
}

/// A whole split on the device, as one batch.
fn whole(
    data: &Omniglot50,
    split: Split,
    device: Device,
) -> Result<MultiTaskBatch, Box<dyn std::error::Error>> {
    let indices: Vec<usize> = (0..data.len(split)).collect();
    Ok(data.batch(split, &indices, device)?)
}

/// The rows of `batch` at `rows` (an `Int64` tensor on the batch's device).
fn rows(batch: &MultiTaskBatch, rows: &Tensor) -> MultiTaskBatch {
    MultiTaskBatch {
        inputs: batch.inputs.index_select(0, rows),
        targets: batch.targets.iter().map(|t| t.index_select(0, rows)).collect(),
        mask: batch.mask.index_select(0, rows),
        task_ids: batch.task_ids.as_ref().map(|t| t.index_select(0, rows)),
    }
}

/// Per-task error (1 − accuracy) of `model` on `batch`, in chunks of 1000 samples.
fn task_errors<M: MultiTaskModel>(model: &M, params: &Params, batch: &MultiTaskBatch) -> Vec<f64> {
    let t = batch.num_tasks();
    let (mut hits, mut counts) = (vec![0.0; t], vec![0.0; t]);
    tch::no_grad(|| {
        let n = batch.len() as i64;
        let mut start = 0;
        while start < n {
            let len = (n - start).min(1000);
            let idx = Tensor::arange_start(start, start + len, (Kind::Int64, batch.inputs.device()));
            let part = rows(batch, &idx);
            let outputs = model.forward(params, &part.inputs, false);
            for task in 0..t {
                let m = part.mask.select(1, task as i64).to_kind(Kind::Float);
                let c = m.sum(Kind::Double).double_value(&[]);
                if c > 0.0 {
                    let h =
                        outputs[task].argmax(-1, false).eq_tensor(&part.targets[task]).to_kind(Kind::Float);
                    hits[task] += (h * m).sum(Kind::Double).double_value(&[]);
                    counts[task] += c;
                }
            }
            start += len;
        }
    });
    hits.iter().zip(&counts).map(|(h, c)| 1.0 - h / c).collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// `results.json`: the settings and one entry per trained model, rewritten after each model
/// so that a rerun with the same settings continues where an interrupted one stopped.
struct Results {
    path: PathBuf,
    settings: serde_json::Value,
    entries: serde_json::Map<String, serde_json::Value>,
}

impl Results {
    /// The entries already in `out/results.json` when its settings are `settings`, else none.
    fn open(out: &std::path::Path, settings: serde_json::Value) -> Result<Self, Box<dyn std::error::Error>> {
        let path = out.join("results.json");
        let mut entries = serde_json::Map::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            let old: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            if old.get("settings") == Some(&settings) {
                if let Some(serde_json::Value::Object(kept)) = old.get("models") {
                    entries = kept.clone();
                }
                eprintln!("{}: keeping {} trained models", path.display(), entries.len());
            } else {
                eprintln!("{}: other settings, starting over", path.display());
            }
        }
        Ok(Self { path, settings, entries })
    }

    /// The test errors per task of a model trained before, and its entry.
    fn get(&self, key: &str) -> Option<(Vec<f64>, &serde_json::Value)> {
        let entry = self.entries.get(key)?;
        let errors =
            entry.get("test_errors")?.as_array()?.iter().map(|e| e.as_f64()).collect::<Option<_>>()?;
        Some((errors, entry))
    }

    /// Records `entry` under `key` and rewrites the file (a temporary file renamed over it).
    fn put(&mut self, key: String, entry: serde_json::Value) -> Result<(), Box<dyn std::error::Error>> {
        self.entries.insert(key, entry);
        let all = serde_json::json!({ "settings": self.settings, "models": self.entries });
        let partial = self.path.with_extension("json.partial");
        std::fs::write(&partial, serde_json::to_string_pretty(&all)?)?;
        std::fs::rename(&partial, &self.path)?;
        Ok(())
    }
}

/// Trains `model` with `strategy` on `train` batches from `next_batch`; returns the test
/// errors per task at the evaluation with the best mean validation error.
#[allow(clippy::too_many_arguments)]
fn train<M: MultiTaskModel>(
    model: M,
    vs: &nn::VarStore,
    params: Params,
    strategy: &str,
    steps: usize,
    args: &Args,
    mut next_batch: impl FnMut() -> Result<MultiTaskBatch, Box<dyn std::error::Error>>,
    val: &MultiTaskBatch,
    test: &MultiTaskBatch,
) -> Result<(Vec<f64>, usize), Box<dyn std::error::Error>> {
    let t = model.num_tasks();
    let built = StrategyConfig::default_for(strategy)?.build(&Setup {
        num_tasks: t,
        path: vs.root().sub("mtl"),
        seed: 0,
    })?;
    let mut adam = Adam::new(&Params::from_var_store(vs, "")?, AdamConfig::with_lr(args.lr))?;
    let mut trainer = MtlStep::new(model, params, vec![TaskLoss::CrossEntropy; t], built)?;
    let mut best = (f64::INFINITY, Vec::new(), 0);
    for step in 1..=steps {
        let batch = next_batch()?;
        let val_batch = if trainer.strategy().needs().validation { Some(next_batch()?) } else { None };
        trainer.step(&batch, &mut adam, val_batch.as_ref())?;
        if step % args.eval_every == 0 || step == steps {
            let v = mean(&task_errors(trainer.model(), trainer.params(), val));
            if v < best.0 {
                best = (v, task_errors(trainer.model(), trainer.params(), test), step);
            }
            eprintln!("  step {step}: mean validation error {:.2} %", 100.0 * v);
        }
    }
    Ok((best.1, best.2))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    std::fs::create_dir_all(&args.out)?;
    tch::set_num_threads(args.threads);
    let started = std::time::Instant::now();
    let data = Omniglot50::load(
        OmniglotConfig { image_size: args.image_size, ..OmniglotConfig::new(&args.data_dir) },
        Omniglot50Config::default(),
    )?;
    eprintln!("Omniglot-50 loaded in {:.1} s: {} tasks", started.elapsed().as_secs_f64(), data.num_tasks());
    let t = data.num_tasks();
    let classes: Vec<i64> = data.tasks().iter().map(|task| task.kind.output_dim() as i64).collect();
    let (train_all, val, test) = (
        whole(&data, Split::Train, args.device)?,
        whole(&data, Split::Val, args.device)?,
        whole(&data, Split::Test, args.device)?,
    );
    let size = args.image_size as i64;
    let conv4 = Conv4Config::new(1).build()?;
    let features = conv4.feature_dim(size, size)?;
    let heads = |only: Option<usize>| -> Result<Vec<LinearHead>, Box<dyn std::error::Error>> {
        let tasks: Vec<usize> = only.map_or((0..t).collect(), |i| vec![i]);
        Ok(tasks.iter().map(|&i| LinearHead::new(features, classes[i])).collect::<Result<_, _>>()?)
    };
    let settings = serde_json::json!({
        "image_size": args.image_size, "experts": args.experts, "steps": args.steps,
        "single_steps": args.single_steps, "batch": args.batch, "lr": args.lr,
        "eval_every": args.eval_every, "device": format!("{:?}", args.device),
    });
    let mut results = Results::open(&args.out, settings)?;
    let mut baseline: Option<Vec<f64>> = None;
    let mut table = String::from("| model | strategy | mean test error | Δm% LibMTL (↑) | Δm% flat (↓) | best step | minutes |\n| --- | --- | --- | --- | --- | --- | --- |\n");
    let sample = |batch: &MultiTaskBatch, n: usize| {
        rows(batch, &Tensor::randint(batch.len() as i64, [n as i64], (Kind::Int64, args.device)))
    };
    for arch in &args.archs {
        match arch.as_str() {
            "single" => {
                // One hard-sharing network with a single head per task, on that task's rows.
                let mut errors = Vec::with_capacity(t);
                let ids = train_all.task_ids.as_ref().ok_or("Omniglot-50 batches carry task ids")?;
                let mut seconds = 0.0;
                for task in 0..t {
                    let key = format!("single/{task}");
                    if let Some((e, entry)) = results.get(&key) {
                        errors.push(e[0]);
                        seconds += entry["seconds"].as_f64().unwrap_or(0.0);
                        continue;
                    }
                    let trained = std::time::Instant::now();
                    tch::manual_seed(task as i64);
                    let own = ids.eq(task as i64).nonzero().squeeze_dim(1);
                    let mine = rows(&train_all, &own);
                    let single = |b: &MultiTaskBatch| MultiTaskBatch {
                        inputs: b.inputs.shallow_clone(),
                        targets: vec![b.targets[task].shallow_clone()],
                        mask: b.mask.narrow(1, task as i64, 1),
                        task_ids: None,
                    };
                    let own_rows =
                        |b: &MultiTaskBatch| -> Result<MultiTaskBatch, Box<dyn std::error::Error>> {
                            let ids = b.task_ids.as_ref().ok_or("Omniglot-50 batches carry task ids")?;
                            Ok(single(&rows(b, &ids.eq(task as i64).nonzero().squeeze_dim(1))))
                        };
                    let (val_t, test_t) = (own_rows(&val)?, own_rows(&test)?);
                    let vs = nn::VarStore::new(args.device);
                    let model = HardSharing::new(conv4.clone(), heads(Some(task))?);
                    let params = model.init(&vs.root().sub("model"))?;
                    let (e, _) = train(
                        model,
                        &vs,
                        params,
                        "ew",
                        args.single_steps,
                        &args,
                        || Ok(single(&sample(&mine, args.batch))),
                        &val_t,
                        &test_t,
                    )?;
                    errors.push(e[0]);
                    let spent = trained.elapsed().as_secs_f64();
                    seconds += spent;
                    eprintln!("single-task {task}: test error {:.2} % ({spent:.0} s)", 100.0 * e[0]);
                    results.put(key, serde_json::json!({ "test_errors": e, "seconds": spent }))?;
                }
                writeln!(
                    table,
                    "| single-task | — | {:.2} % | 0 | 0 | {} | {:.0} |",
                    100.0 * mean(&errors),
                    args.single_steps,
                    seconds / 60.0
                )?;
                baseline = Some(errors);
            }
            "hard" | "mmoe" => {
                for strategy in &args.strategies {
                    let key = format!("{arch}/{strategy}");
                    let trained = std::time::Instant::now();
                    let (errors, best, seconds) = match results.get(&key) {
                        Some((errors, entry)) => (
                            errors,
                            entry["best_step"].as_u64().unwrap_or(0) as usize,
                            entry["seconds"].as_f64().unwrap_or(0.0),
                        ),
                        None => {
                            tch::manual_seed(0);
                            let vs = nn::VarStore::new(args.device);
                            let mut loader = MultiTaskLoader::new(&data, Split::Train, args.batch, Some(1))?;
                            let next = || -> Result<MultiTaskBatch, Box<dyn std::error::Error>> {
                                Ok(loader.next_batch(args.device)?)
                            };
                            let (errors, best) = if arch == "hard" {
                                let model = HardSharing::new(conv4.clone(), heads(None)?);
                                let params = model.init(&vs.root().sub("model"))?;
                                train(model, &vs, params, strategy, args.steps, &args, next, &val, &test)?
                            } else {
                                let model = Mmoe::new(
                                    &conv4,
                                    heads(None)?,
                                    &[1, size, size],
                                    MmoeConfig { num_experts: args.experts },
                                )?;
                                let params = model.init(&vs.root().sub("model"))?;
                                train(model, &vs, params, strategy, args.steps, &args, next, &val, &test)?
                            };
                            let seconds = trained.elapsed().as_secs_f64();
                            let entry = serde_json::json!({
                                "test_errors": errors, "best_step": best, "seconds": seconds,
                            });
                            results.put(key, entry)?;
                            (errors, best, seconds)
                        }
                    };
                    let (libmtl, flat) = match &baseline {
                        Some(b) => {
                            let metrics: Vec<Vec<Metric>> = errors
                                .iter()
                                .zip(b)
                                .map(|(&value, &baseline)| {
                                    vec![Metric { value, baseline, better: Better::Lower }]
                                })
                                .collect();
                            (
                                format!("{:+.2}", delta_m_libmtl(&metrics)?),
                                format!("{:+.2}", delta_m_flat(&metrics)?),
                            )
                        }
                        None => ("—".into(), "—".into()),
                    };
                    writeln!(
                        table,
                        "| {arch} | {strategy} | {:.2} % | {libmtl} | {flat} | {best} | {:.0} |",
                        100.0 * mean(&errors),
                        seconds / 60.0
                    )?;
                    eprintln!(
                        "{arch} {strategy}: mean test error {:.2} % ({seconds:.0} s)",
                        100.0 * mean(&errors)
                    );
                }
            }
            other => return Err(format!("unknown architecture {other}: single, hard or mmoe").into()),
        }
    }
    std::fs::write(args.out.join("table.md"), &table)?;
    println!("{table}");
    Ok(())
}
