//! The multi-task training loop: shuffled mini-batches of the training split, one
//! [`MtlStep`] per iteration, per-task losses and task weights logged, the agreement of
//! task gradients measured, validation on the validation split, atomic checkpoints, exact
//! resume, and the final per-task test metrics.

use super::{stream_seed, RunContext, TrainingState};
use crate::{
    checkpoint,
    error::bad_input,
    experiment::{
        data::load_multitask,
        mtl::{build_model, task_loss, AnyMultiTask},
        Experiment,
    },
    interrupt,
    metrics::MetricsLog,
    progress::Progress,
    run_dir::{write_json, RunDir},
};
use anyhow::Context;
use metl_data::{
    multitask::{MultiTaskLoader, TaskInfo},
    MultiTaskDataset, Split,
};
use metl_models::{
    metrics::TaskMetrics as MetricSums,
    multitask::split_by_task,
    optim::{Adam, AdamConfig, Optimizer},
    MultiTaskModel, Params,
};
use metl_mtl::{MtlError, MtlStep, Setup};
use serde::Serialize;
use std::{collections::BTreeMap, sync::Arc, time::Instant};
use tch::{nn, Device, Kind, Tensor};

/// Everything built from the configuration before the run folder exists.
pub struct MtlSetup {
    /// The dataset.
    pub dataset: Arc<dyn MultiTaskDataset>,
    /// Its tasks.
    pub tasks: Vec<TaskInfo>,
    /// The training step (model, parameters, strategy).
    pub step: MtlStep<AnyMultiTask>,
    /// Every variable of the run (model parameters and the strategy's learned ones), named
    /// as in the checkpoints.
    pub variables: Params,
    /// Adam over `variables`.
    pub optimizer: Adam,
    /// Keeps the variables alive.
    _store: nn::VarStore,
}

/// Loads the data and builds model, strategy and optimizer of a multi-task experiment.
pub fn setup(exp: &Experiment, device: Device) -> anyhow::Result<MtlSetup> {
    let mtl = exp.mtl.as_ref().expect("validated: a multi-task experiment has [mtl]");
    let dataset = load_multitask(&exp.data)?;
    let tasks = dataset.tasks().to_vec();
    let input_shape = dataset.input_shape();
    for split in [Split::Train, Split::Val, Split::Test] {
        if dataset.is_empty(split) {
            return Err(bad_input(format!(
                "the {split} split of data.{} is empty",
                crate::experiment::data::name_of(&exp.data)
            )));
        }
    }
    tch::manual_seed(exp.seed as i64);
    let backbone = exp.model.build().map_err(bad_input)?;
    let model = build_model(&mtl.architecture, backbone, &tasks, &input_shape, device).map_err(bad_input)?;
    let store = nn::VarStore::new(device);
    let params = model.init(&store.root().sub("model"))?;
    let setup =
        Setup { num_tasks: tasks.len(), path: store.root().sub("strategy"), seed: stream_seed(exp.seed, 5) };
    let strategy = mtl.strategy.build(&setup).map_err(bad_input)?;
    let losses = tasks.iter().map(task_loss).collect();
    let step = MtlStep::new(model, params, losses, strategy).map_err(bad_input)?;
    let variables = Params::from_var_store(&store, "")?;
    let config = AdamConfig { lr: mtl.lr, weight_decay: mtl.weight_decay, ..AdamConfig::default() };
    let optimizer = Adam::new(&variables, config).map_err(bad_input)?;
    Ok(MtlSetup { dataset, tasks, step, variables, optimizer, _store: store })
}

/// Per-task metrics of a split.
#[derive(Debug, Clone, Serialize)]
pub struct TaskMetrics {
    /// The task's name.
    pub task: String,
    /// Mean loss over the split's labelled samples.
    pub loss: f64,
    /// Accuracy (classification tasks).
    pub accuracy: Option<f64>,
    /// Error rate `1 − accuracy` in percent (classification tasks).
    pub error_percent: Option<f64>,
    /// Every metric of the task over the split (`metl_models::metrics`: accuracy and error,
    /// MSE and MAE, mIoU and pixel accuracy, depth and normal errors), by name.
    pub metrics: BTreeMap<String, f64>,
    /// Labelled samples.
    pub samples: usize,
}

/// The results written to `eval.json` by multi-task runs.
#[derive(Debug, Serialize)]
pub struct MtlEvaluation {
    /// The split evaluated.
    pub split: String,
    /// The step of the weights evaluated.
    pub checkpoint_step: u64,
    /// The strategy.
    pub strategy: String,
    /// Every task.
    pub tasks: Vec<TaskMetrics>,
    /// Mean loss over tasks.
    pub mean_loss: f64,
    /// Mean error over the classification tasks, in percent.
    pub mean_error_percent: Option<f64>,
}

/// Evaluates every task on the whole of `split`, in evaluation mode.
pub fn evaluate(
    setup: &MtlSetup,
    split: Split,
    batch_size: usize,
    device: Device,
) -> anyhow::Result<Vec<TaskMetrics>> {
    let mut loader = MultiTaskLoader::new(&*setup.dataset, split, batch_size, None)?;
    let t = setup.tasks.len();
    let losses: Vec<metl_models::TaskLoss> = setup.tasks.iter().map(task_loss).collect();
    let mut sums: Vec<MetricSums> = losses.iter().map(|&l| MetricSums::new(l)).collect();
    let (mut loss_sum, mut counts) = (vec![0.0; t], vec![0usize; t]);
    for _ in 0..loader.batches_per_epoch() {
        let batch = loader.next_batch(device)?;
        let per_task = Vec::<i64>::try_from(
            batch.mask.sum_dim_intlist(0i64, false, Kind::Int64).to_device(Device::Cpu),
        )?;
        tch::no_grad(|| -> anyhow::Result<()> {
            let outputs = setup.step.model().forward(setup.step.params(), &batch.inputs, false);
            let values = metl_mtl::trainer::task_losses(&batch, &outputs, &losses)?;
            for task in 0..t {
                let (n, Some(loss)) = (per_task[task] as usize, &values[task]) else { continue };
                loss_sum[task] += loss.double_value(&[]) * n as f64;
                counts[task] += n;
                let (prediction, target) = batch.labelled(task, &outputs[task])?;
                sums[task].update(&prediction, &target)?;
            }
            Ok(())
        })?;
    }
    setup
        .tasks
        .iter()
        .zip(&sums)
        .enumerate()
        .map(|(task, (info, sums))| {
            let metrics: BTreeMap<String, f64> =
                sums.values()?.into_iter().map(|(name, v)| (name.to_owned(), v)).collect();
            let accuracy = metrics.get("accuracy").copied();
            Ok(TaskMetrics {
                task: info.name.clone(),
                loss: loss_sum[task] / counts[task].max(1) as f64,
                accuracy,
                error_percent: accuracy.map(|a| 100.0 * (1.0 - a)),
                metrics,
                samples: counts[task],
            })
        })
        .collect()
}

/// The evaluation batch size: at least 256 samples, but the training batch size for dense
/// tasks (whole images through an encoder-decoder).
fn eval_batch_size(setup: &MtlSetup, train_batch: usize) -> usize {
    if setup.tasks.iter().any(|t| t.kind.is_dense()) {
        train_batch
    } else {
        train_batch.max(256)
    }
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = values.collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Mean loss and mean classification error of per-task metrics.
fn summary(metrics: &[TaskMetrics]) -> (f64, Option<f64>) {
    (
        mean(metrics.iter().map(|m| m.loss)).unwrap_or(f64::NAN),
        mean(metrics.iter().filter_map(|m| m.error_percent)),
    )
}

/// The mean pairwise cosine of the task gradients with respect to the shared parameters
/// on `batch`, and the fraction of task pairs whose gradients conflict (cosine < 0): how
/// much the tasks pull the shared parameters apart at this point of training.
fn gradient_agreement(
    setup: &MtlSetup,
    batch: &metl_data::MultiTaskBatch,
) -> anyhow::Result<Option<(f64, f64)>> {
    let model = setup.step.model();
    let (shared, _) = split_by_task(model, setup.step.params());
    if shared.is_empty() || setup.tasks.len() < 2 {
        return Ok(None);
    }
    let outputs = model.forward(setup.step.params(), &batch.inputs, true);
    let losses: Vec<metl_models::TaskLoss> = setup.tasks.iter().map(task_loss).collect();
    let per_task = metl_mtl::trainer::task_losses(batch, &outputs, &losses)?;
    let mut rows = Vec::new();
    for loss in per_task.iter().flatten() {
        // The tasks share the trunk's graph: keep it for the next task's gradient.
        let grads = Tensor::f_run_backward(&[loss], shared.tensors(), true, false)?;
        let flat: Vec<Tensor> = grads
            .iter()
            .zip(shared.tensors())
            .map(|(g, p)| if g.defined() { g.flatten(0, -1) } else { p.zeros_like().flatten(0, -1) })
            .collect();
        let g = Tensor::cat(&flat, 0);
        rows.push(&g / g.norm().clamp_min(1e-12));
    }
    drop(per_task);
    if rows.len() < 2 {
        return Ok(None);
    }
    let unit = Tensor::stack(&rows, 0);
    let cos = unit.matmul(&unit.transpose(0, 1)).to_kind(Kind::Double).to_device(Device::Cpu);
    let k = rows.len() as i64;
    let (mut sum, mut conflicts, mut pairs) = (0.0, 0.0, 0.0);
    for i in 0..k {
        for j in i + 1..k {
            let c = cos.double_value(&[i, j]);
            sum += c;
            conflicts += f64::from(u8::from(c < 0.0));
            pairs += 1.0;
        }
    }
    Ok(Some((sum / pairs, conflicts / pairs)))
}

impl MtlSetup {
    /// The checkpoint groups: all variables, the optimizer's moments, the model's buffers
    /// and the strategy's tensors.
    fn groups(&self) -> Vec<(&'static str, Params)> {
        let checkpoint = self.step.checkpoint();
        let strategy_tensors = Params::from_named(checkpoint.strategy.tensors.into_iter().collect())
            .expect("strategy tensor names are unique");
        vec![
            ("variables", self.variables.shallow_clone()),
            ("optimizer", self.optimizer.state()),
            ("buffers", self.step.model().buffers()),
            ("strategy", strategy_tensors),
        ]
    }
}

/// The state saved with every checkpoint of a multi-task run.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct MtlState {
    /// The state common to all runs.
    #[serde(flatten)]
    pub common: TrainingState,
    /// The strategy's host state (its tensors are the checkpoint's `strategy` group).
    pub strategy: metl_mtl::strategy::StrategyStateHost,
}

fn evaluation(
    setup: &MtlSetup,
    split: Split,
    step: u64,
    exp: &Experiment,
    device: Device,
) -> anyhow::Result<MtlEvaluation> {
    let tasks = evaluate(setup, split, eval_batch_size(setup, exp.train.batch_size), device)?;
    let (mean_loss, mean_error_percent) = summary(&tasks);
    Ok(MtlEvaluation {
        split: split.to_string(),
        checkpoint_step: step,
        strategy: setup.step.strategy().name().to_owned(),
        tasks,
        mean_loss,
        mean_error_percent,
    })
}

/// Writes and prints a multi-task evaluation.
pub fn report(run: &RunDir, evaluation: &MtlEvaluation) -> anyhow::Result<()> {
    let file = if evaluation.split == "test" {
        "eval.json".to_owned()
    } else {
        format!("eval-{}.json", evaluation.split)
    };
    write_json(&run.join(file), evaluation)?;
    println!(
        "{} (strategy {}, weights of step {}): mean loss {:.4}{}",
        evaluation.split,
        evaluation.strategy,
        evaluation.checkpoint_step,
        evaluation.mean_loss,
        evaluation.mean_error_percent.map_or(String::new(), |e| format!(", mean error {e:.2} %"))
    );
    for t in &evaluation.tasks {
        match t.error_percent {
            Some(e) => println!("  {:<40} error {e:6.2} %  loss {:.4}", t.task, t.loss),
            None => {
                let metrics: Vec<String> =
                    t.metrics.iter().map(|(name, v)| format!("{name} {v:.4}")).collect();
                println!("  {:<40} loss {:.6}  {}", t.task, t.loss, metrics.join("  "))
            }
        }
    }
    Ok(())
}

/// `metl eval` of a multi-task run: the best validated weights (or the latest checkpoint's
/// with `latest`, or without validation) on `split`, written and printed like the final test.
pub fn evaluate_saved(
    run: &RunDir,
    exp: &Experiment,
    latest: bool,
    split: Split,
    device: Device,
) -> anyhow::Result<()> {
    let mut setup = setup(exp, device)?;
    let dir = checkpoint::latest(&run.checkpoints())
        .ok_or_else(|| bad_input(format!("{}: no checkpoint yet", run.root().display())))?;
    let state: MtlState = checkpoint::load_state(&dir)?;
    let best = if latest { None } else { load_best(&setup, run, state.common.best_step, device)? };
    let step = match best {
        Some(step) => step,
        None => restore(&mut setup, &dir, device)?.common.step,
    };
    report(run, &evaluation(&setup, split, step, exp, device)?)
}

/// Loads the best validated weights and buffers of `run` into `setup`, if it has them;
/// returns their step.
fn load_best(
    setup: &MtlSetup,
    run: &RunDir,
    best_step: Option<u64>,
    device: Device,
) -> anyhow::Result<Option<u64>> {
    let best = run.join("best.safetensors");
    match best_step {
        Some(step) if best.is_file() => {
            setup.variables.copy_from(&Params::load_safetensors(&best, device)?)?;
            setup
                .step
                .model()
                .load_buffers(&Params::load_safetensors(run.join("best-buffers.safetensors"), device)?)?;
            Ok(Some(step))
        }
        _ => Ok(None),
    }
}

/// Restores a checkpoint into `setup`; returns its state.
pub fn restore(setup: &mut MtlSetup, dir: &std::path::Path, device: Device) -> anyhow::Result<MtlState> {
    let state: MtlState = checkpoint::load_state(dir)?;
    setup.variables.copy_from(&checkpoint::load_group(dir, "variables", device)?)?;
    setup.optimizer.load_state(&checkpoint::load_group(dir, "optimizer", device)?, state.common.step)?;
    setup.step.model().load_buffers(&checkpoint::load_group(dir, "buffers", device)?)?;
    let tensors = checkpoint::load_group(dir, "strategy", device)?;
    let strategy = metl_mtl::strategy::StrategyState::from_parts(
        state.strategy.clone(),
        tensors.iter().map(|(n, t)| (n.to_owned(), t.shallow_clone())).collect(),
    );
    setup
        .step
        .restore(&metl_mtl::trainer::MtlStepState { steps: state.common.step, strategy })
        .with_context(|| format!("restoring {}", dir.display()))?;
    Ok(state)
}

/// Runs (or resumes) multi-task training and the final test.
pub fn train(ctx: &mut RunContext<'_>, mut setup: MtlSetup) -> anyhow::Result<()> {
    let exp = ctx.experiment;
    let device = ctx.device;
    let cfg = exp.train;
    let mut state = match &ctx.resume_from {
        Some(dir) => restore(&mut setup, dir, device)?.common.resumed(&cfg),
        None => TrainingState::new(exp.seed),
    };
    let collective = Arc::clone(&ctx.collective);
    let (rank, world) = (collective.rank(), collective.world_size());
    let main = collective.is_main();
    if world > 1 {
        // Every rank starts from rank 0's weights (the optimizer's and the strategy's state
        // are fresh, or restored from the same checkpoint, on every rank), then steps on
        // its block of the rows of every batch.
        setup.step.set_collective(Arc::clone(&collective));
        setup.step.broadcast_parameters()?;
    }
    // Rank `rank`'s block of rows of a batch every rank loads whole (`None` for one
    // process: the whole batch).
    let share = |whole: &metl_data::MultiTaskBatch| -> anyhow::Result<Option<metl_data::MultiTaskBatch>> {
        if world == 1 {
            return Ok(None);
        }
        Ok(Some(metl_mtl::trainer::split_batch(whole, world)?.swap_remove(rank)))
    };
    let dataset = Arc::clone(&setup.dataset);
    let mut loader =
        MultiTaskLoader::new(&*dataset, Split::Train, cfg.batch_size, Some(stream_seed(exp.seed, 0)))?
            .drop_last(true);
    let bilevel = setup.step.strategy().needs().validation;
    let mut val_loader =
        MultiTaskLoader::new(&*dataset, Split::Val, cfg.batch_size, Some(stream_seed(exp.seed, 1)))?;
    // Resuming: the loaders' orders are functions of the seed; replay their positions.
    for _ in 0..state.step {
        loader.next_indices();
        if bilevel {
            val_loader.next_indices();
        }
    }
    let names: Vec<String> = setup.tasks.iter().map(|t| t.name.clone()).collect();
    let mut columns: Vec<String> =
        ["loss", "lr", "steps_per_second", "grad_cosine", "grad_conflicts", "val_loss", "val_error"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    columns.extend(names.iter().map(|n| format!("loss.{n}")));
    columns.extend(names.iter().map(|n| format!("weight.{n}")));
    let column_refs: Vec<&str> = columns.iter().map(String::as_str).collect();
    let mut log = if main { Some(MetricsLog::open(ctx.run.root(), &column_refs)?) } else { None };
    let mut progress = Progress::new("multi-task", cfg.iterations, ctx.progress);
    progress.update(state.step, "");
    let t = names.len();
    let (mut loss_sums, mut weight_sums, mut counts) = (vec![0.0; t], vec![0.0; t], vec![0u64; t]);
    let mut window = (Instant::now(), 0u64);
    let started = Instant::now();
    let elapsed_before = state.elapsed_seconds;
    let mut last_checkpoint = ctx.resume_from.clone();
    while state.step < cfg.iterations && !state.stopped_early {
        let step = state.step + 1;
        let epoch = loader.epoch();
        let whole = loader.next_batch(device)?;
        let mine = share(&whole)?;
        let batch = mine.as_ref().unwrap_or(&whole);
        let validation = match bilevel {
            true => {
                let whole = val_loader.next_batch(device)?;
                Some(share(&whole)?.unwrap_or(whole))
            }
            false => None,
        };
        tch::manual_seed(stream_seed(exp.seed, 1_000_000 + step) as i64);
        let report = match setup.step.step(batch, &mut setup.optimizer, validation.as_ref()) {
            Ok(report) => report,
            Err(MtlError::NonFiniteLoss { task, value, .. }) => {
                let last = last_checkpoint.map_or("none".to_owned(), |p| p.display().to_string());
                return Err(anyhow::anyhow!(
                    "the loss of task {} is {value} at step {step}: training stopped (last good checkpoint: {last}); \
                     lower mtl.lr or check the data",
                    names.get(task).map_or("?", String::as_str)
                ));
            }
            Err(e) => return Err(e.into()),
        };
        if loader.epoch() != epoch {
            setup.step.end_epoch();
        }
        state.step = step;
        for task in 0..t {
            if report.losses[task].is_finite() {
                loss_sums[task] += report.losses[task];
                weight_sums[task] += report.weights[task];
                counts[task] += 1;
            }
        }
        window.1 += 1;
        // Every rank stops at the same step when one is interrupted.
        let mut stop = [f64::from(u8::from(interrupt::requested()))];
        crate::distributed::mean_over_ranks(collective.as_ref(), &mut stop)?;
        let interrupted = stop[0] > 0.0;
        let validate = (cfg.val_every > 0 && step % cfg.val_every == 0) || step == cfg.iterations;
        let Some(log) = log.as_mut() else {
            if interrupted {
                return Err(crate::error::Interrupted { step, run: ctx.run.root().to_owned() }.into());
            }
            if validate && state.stop_early(&cfg, collective.as_ref())? {
                break;
            }
            continue;
        };
        if step % cfg.log_every == 0 || step == cfg.iterations {
            let rate = window.1 as f64 / window.0.elapsed().as_secs_f64().max(1e-9);
            let task_losses: Vec<f64> = (0..t)
                .map(|i| if counts[i] > 0 { loss_sums[i] / counts[i] as f64 } else { f64::NAN })
                .collect();
            let mut values: Vec<(String, f64)> = vec![
                (
                    "loss".into(),
                    mean(task_losses.iter().copied().filter(|v| v.is_finite())).unwrap_or(f64::NAN),
                ),
                ("lr".into(), setup.optimizer.lr()),
                ("steps_per_second".into(), rate),
            ];
            for i in 0..t {
                values.push((format!("loss.{}", names[i]), task_losses[i]));
                let w = if counts[i] > 0 { weight_sums[i] / counts[i] as f64 } else { f64::NAN };
                values.push((format!("weight.{}", names[i]), w));
            }
            if let Some((cosine, conflicts)) = gradient_agreement(&setup, &whole)? {
                values.push(("grad_cosine".into(), cosine));
                values.push(("grad_conflicts".into(), conflicts));
            }
            if validate {
                let val = evaluate(&setup, Split::Val, eval_batch_size(&setup, cfg.batch_size), device)?;
                let (val_loss, val_error) = summary(&val);
                values.push(("val_loss".into(), val_loss));
                if let Some(e) = val_error {
                    values.push(("val_error".into(), e));
                }
                let score = -val_error.unwrap_or(val_loss);
                if state.best_val.is_none_or(|b| score > b) {
                    state.best_val = Some(score);
                    state.best_step = Some(step);
                    setup.variables.save_safetensors(ctx.run.join("best.safetensors"))?;
                    setup
                        .step
                        .model()
                        .buffers()
                        .save_safetensors(ctx.run.join("best-buffers.safetensors"))?;
                }
            }
            let refs: Vec<(&str, f64)> = values.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            log.log(step, &refs)?;
            progress.update(step, &format!("loss {:.4}", refs[0].1));
            (loss_sums, weight_sums, counts) = (vec![0.0; t], vec![0.0; t], vec![0; t]);
            window = (Instant::now(), 0);
        }
        let stop = validate && state.stop_early(&cfg, collective.as_ref())?;
        if step % cfg.checkpoint_every == 0 || step == cfg.iterations || interrupted || stop {
            log.flush()?;
            state.elapsed_seconds = elapsed_before + started.elapsed().as_secs_f64();
            let groups = setup.groups();
            let refs: Vec<(&str, &Params)> = groups.iter().map(|(n, p)| (*n, p)).collect();
            let saved = MtlState { common: state.clone(), strategy: setup.step.checkpoint().strategy.host() };
            last_checkpoint = Some(checkpoint::save(&ctx.run.checkpoints(), step, &refs, &saved)?);
        }
        if interrupted {
            progress.finish();
            return Err(crate::error::Interrupted { step, run: ctx.run.root().to_owned() }.into());
        }
    }
    progress.finish();
    let Some(mut log) = log else {
        // Rank 0 evaluates and writes the results.
        return Ok(());
    };
    log.flush()?;
    let step = load_best(&setup, ctx.run, state.best_step, device)?.unwrap_or(state.step);
    let test = evaluation(&setup, Split::Test, step, exp, device)?;
    report(ctx.run, &test)
}
