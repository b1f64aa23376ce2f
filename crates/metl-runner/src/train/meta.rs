//! The meta-learning training loop: meta-batches from the training classes, periodic
//! metrics, validation on held-out classes, atomic checkpoints, exact resume, and the
//! final test evaluation with 95% intervals.

use super::{stream_seed, RunContext, TrainingState};
use crate::{
    checkpoint,
    error::bad_input,
    experiment::{
        data::{
            load_image_classes, shard_of, DataConfig, EpisodeStream, ImageClasses, ImageStream,
            PretrainStream, Shard, SinusoidStream,
        },
        meta::{build_learner, Output},
        task_weighting::StrategyCombiner,
        Experiment,
    },
    interrupt,
    memory::PassSizer,
    metrics::MetricsLog,
    progress::Progress,
    run_dir::write_json,
};
use anyhow::Context;
use metl_data::{EpisodeConfig, EpisodeSampler, Split};
use metl_meta::{evaluate, Evaluation, MetaError, MetaLearner};
use serde::Serialize;
use std::time::Instant;
use tch::Device;

/// Stream indices of the data seeds.
const TRAIN_STREAM: u64 = 0;
const VAL_STREAM: u64 = 1;
const TEST_STREAM: u64 = 2;

/// Everything built from the configuration before the run folder exists: building it
/// checks the data and the model, so that a bad file leaves nothing behind.
pub struct MetaSetup {
    /// The learner.
    pub learner: Box<dyn MetaLearner>,
    /// The image classes (not for sinusoids).
    pub classes: Option<ImageClasses>,
    /// The input shape without the batch dimension.
    pub input_shape: Vec<i64>,
}

/// Loads the data and builds the learner of a meta-learning experiment.
pub fn setup(exp: &Experiment, device: Device) -> anyhow::Result<MetaSetup> {
    let classes = match &exp.data {
        DataConfig::Sinusoid(_) => None,
        data => {
            let classes = load_image_classes(data, exp.seed)?;
            let train = exp.train_episodes();
            let pool = classes.splits.get(Split::Train).len();
            if train.ways > pool {
                return Err(bad_input(format!(
                    "episodes.ways = {}: the training split has only {pool} classes",
                    train.ways
                )));
            }
            // Every split must be able to fill its episodes: check now, before any folder exists.
            for (split, config) in
                [(Split::Train, train), (Split::Val, exp.test_episodes()), (Split::Test, exp.test_episodes())]
            {
                let pool = classes.splits.get(split);
                if split == Split::Val && pool.is_empty() {
                    continue;
                }
                let config = EpisodeConfig { within_group: classes.within_group, ..config };
                EpisodeSampler::new(std::sync::Arc::clone(&classes.data), pool.clone(), config, 0)
                    .map_err(|e| bad_input(format!("{split} episodes: {e}")))?;
            }
            Some(classes)
        }
    };
    let train_classes = classes.as_ref().map_or(0, |c| c.splits.train.len());
    let (learner, input_shape) = learner_for(exp, device, train_classes)?;
    if let Some(c) = &classes {
        debug_assert_eq!(
            c.input_shape(),
            input_shape,
            "the loader and the configuration agree on the input shape"
        );
    }
    Ok(MetaSetup { learner, classes, input_shape })
}

/// The experiment's learner, freshly initialised from its seed, without loading any data
/// (for inference from a trained run); `train_classes` sizes the baselines' pre-training
/// head. Also returns the input shape.
pub fn learner_for(
    exp: &Experiment,
    device: Device,
    train_classes: usize,
) -> anyhow::Result<(Box<dyn MetaLearner>, Vec<i64>)> {
    let algorithm = exp.meta.as_ref().expect("validated: a meta experiment has [meta]");
    let input_shape = exp.data.input_spec().shape;
    let output = match &exp.data {
        DataConfig::Sinusoid(_) => Output::Regression(1),
        _ => Output::Classes(exp.train_episodes().ways as i64),
    };
    tch::manual_seed(exp.seed as i64);
    let backbone = exp.model.build().map_err(bad_input)?;
    let mut learner = build_learner(algorithm, backbone, &input_shape, output, train_classes, device)?;
    if let Some(strategy) = &exp.task_weighting {
        let combiner = StrategyCombiner::new(strategy.clone(), stream_seed(exp.seed, 6), device)?;
        learner
            .set_task_combiner(Box::new(combiner))
            .map_err(|e| bad_input(format!("task_weighting with meta.{}: {e}", algorithm.name())))?;
    }
    Ok((learner, input_shape))
}

/// A stream of meta-batches of `split` starting at meta-batch `start`, `shard`'s share of
/// each.
pub fn stream(
    exp: &Experiment,
    setup: &MetaSetup,
    split: Split,
    episodes: EpisodeConfig,
    start: u64,
    shard: Shard,
    device: Device,
) -> anyhow::Result<Box<dyn EpisodeStream>> {
    let index = match split {
        Split::Train => TRAIN_STREAM,
        Split::Val => VAL_STREAM,
        Split::Test => TEST_STREAM,
    };
    let seed = stream_seed(exp.seed, index);
    let pretrains = exp.meta.as_ref().is_some_and(|a| a.pretrains());
    Ok(match (&exp.data, &setup.classes) {
        (DataConfig::Sinusoid(c), _) => {
            shard.check("episodes.meta_batch", episodes.meta_batch)?;
            shard_of(Box::new(SinusoidStream::new(*c, episodes, seed, start, device)?), shard, false)
        }
        (_, Some(classes)) if pretrains && split == Split::Train => {
            shard.check("train.batch_size", exp.train.batch_size)?;
            let whole = PretrainStream::new(classes, exp.train.batch_size, seed, start, device)?;
            shard_of(Box::new(whole), shard, true)
        }
        (_, Some(classes)) => {
            Box::new(ImageStream::new(classes, split, episodes, seed, start, shard, device)?)
        }
        (_, None) => unreachable!("image experiments have classes"),
    })
}

/// The results written to `eval.json`.
#[derive(Debug, Serialize)]
pub struct MetaEvaluation {
    /// The split evaluated (`test` or `val`).
    pub split: String,
    /// The step of the checkpoint evaluated.
    pub checkpoint_step: u64,
    /// `N`-way `K`-shot, queries per class.
    pub ways: usize,
    /// Support examples per class.
    pub shots: usize,
    /// Query examples per class.
    pub queries: usize,
    /// One entry per number of adaptation steps.
    pub results: Vec<Evaluation>,
}

/// Evaluates `learner` on `episodes` episodes of `split`, after each step count.
pub fn evaluate_split(
    exp: &Experiment,
    setup: &MetaSetup,
    split: Split,
    episodes: usize,
    device: Device,
) -> anyhow::Result<Vec<Evaluation>> {
    let mut config = exp.test_episodes();
    // The largest meta-batch up to the configured one that divides the episode count, so
    // that exactly `episodes` episodes are evaluated.
    config.meta_batch = (1..=config.meta_batch.min(episodes)).rev().find(|b| episodes % b == 0).unwrap_or(1);
    let batches = (episodes / config.meta_batch) as u64;
    let mut source = stream(exp, setup, split, config, 0, Shard::WHOLE, device)?;
    let mut failure = None;
    let iter = (0..batches).map_while(|_| match source.next_batch() {
        Ok(batch) => Some(batch),
        Err(e) => {
            failure = Some(e);
            None
        }
    });
    let results = evaluate(&*setup.learner, iter, &exp.test_steps()).context("evaluating")?;
    match failure {
        Some(e) => Err(e),
        None => Ok(results),
    }
}

/// The validation metric to maximise: accuracy, or minus the loss for regression.
fn score(results: &[Evaluation]) -> f64 {
    let last = results.last().expect("at least one step count");
    last.accuracy.map_or(-last.loss.mean, |a| a.mean)
}

/// Runs (or resumes) meta-training and the final test.
pub fn train(ctx: &mut RunContext<'_>, mut setup: MetaSetup) -> anyhow::Result<()> {
    let exp = ctx.experiment;
    let device = ctx.device;
    let train_cfg = exp.train;
    let mut state = ctx.resume.take().map_or_else(|| TrainingState::new(exp.seed), |s| s.resumed(&train_cfg));
    if let Some(path) = &ctx.resume_from {
        let saved = checkpoint::load_group(path, "learner", device)?;
        setup.learner.load_state(&saved).with_context(|| format!("restoring {}", path.display()))?;
    }
    let has_val = exp.data.has_validation(&setup.classes);
    let collective = std::sync::Arc::clone(&ctx.collective);
    let main = collective.is_main();
    let shard = Shard { rank: collective.rank(), world: collective.world_size() };
    if shard.world > 1 {
        // Every rank starts from rank 0's state (parameters, optimizer, step count), then
        // averages its meta-gradients with the others'.
        let start = setup.learner.state();
        collective.broadcast(start.tensors(), 0)?;
        setup.learner.load_state(&start)?;
        setup.learner.set_collective(std::sync::Arc::clone(&collective))?;
    }
    let mut episodes = exp.train_episodes();
    if episodes.meta_batch % shard.world != 0 {
        // One episode (say) per step cannot be split: each rank draws its own, and a step
        // averages all of them — one process with meta_batch × processes.
        episodes.meta_batch *= shard.world;
        if main {
            println!(
                "episodes.meta_batch = {} is not a multiple of {} processes: each draws {} per step, a step \
                 averages {} (as meta_batch = {} in one process)",
                episodes.meta_batch / shard.world,
                shard.world,
                episodes.meta_batch / shard.world,
                episodes.meta_batch,
                episodes.meta_batch
            );
        }
    }
    let mut passes =
        PassSizer::start(setup.learner.as_mut(), train_cfg.memory_budget, state.tasks_per_pass, device)?;
    let mut train_stream = stream(exp, &setup, Split::Train, episodes, state.step, shard, device)?;
    let columns =
        ["loss", "accuracy", "lr", "steps_per_second", "val_loss", "val_accuracy", "val_accuracy_ci95"];
    let mut log = if main { Some(MetricsLog::open(ctx.run.root(), &columns)?) } else { None };
    let mut progress = Progress::new("meta-train", train_cfg.iterations, ctx.progress);
    progress.update(state.step, "");
    let (mut window_loss, mut window_acc, mut window_n) = (0.0, 0.0, 0u64);
    let mut window_start = Instant::now();
    let started = Instant::now();
    let elapsed_before = state.elapsed_seconds;
    let mut last_checkpoint = ctx.resume_from.clone();
    while state.step < train_cfg.iterations && !state.stopped_early {
        let step = state.step + 1;
        let batch = train_stream.next_batch()?;
        tch::manual_seed(stream_seed(exp.seed, 1_000_000 + step) as i64);
        let report = match setup.learner.meta_train_step(&batch) {
            Ok(report) => report,
            Err(MetaError::NonFiniteLoss { what, value, .. }) => {
                let last = last_checkpoint.map_or("none".to_owned(), |p| p.display().to_string());
                return Err(anyhow::anyhow!(
                    "{what} is {value} at step {step}: training stopped (last good checkpoint: {last}); \
                     lower the learning rates or check the data"
                ));
            }
            Err(e) => return Err(e.into()),
        };
        if let Some((k, line)) = passes
            .as_mut()
            .map(|p| p.after_step(setup.learner.as_mut(), batch.num_tasks()))
            .transpose()?
            .flatten()
        {
            state.tasks_per_pass = Some(k);
            if main {
                println!("{line}");
            }
        }
        state.step = step;
        // The whole meta-batch's loss and accuracy, and whether any rank was interrupted
        // (all ranks stop at the same step).
        let mut shared =
            [report.loss, report.accuracy.unwrap_or(f64::NAN), f64::from(u8::from(interrupt::requested()))];
        crate::distributed::mean_over_ranks(collective.as_ref(), &mut shared)?;
        let [loss, accuracy, interrupted] = shared;
        window_loss += loss;
        window_acc += accuracy;
        window_n += 1;
        let validate = has_val
            && ((train_cfg.val_every > 0 && step % train_cfg.val_every == 0) || step == train_cfg.iterations);
        let Some(log) = log.as_mut() else {
            if interrupted > 0.0 {
                return Err(crate::error::Interrupted { step, run: ctx.run.root().to_owned() }.into());
            }
            if validate && state.stop_early(&train_cfg, collective.as_ref())? {
                break;
            }
            continue;
        };
        if step % train_cfg.log_every == 0 || step == train_cfg.iterations {
            let n = window_n as f64;
            let rate = n / window_start.elapsed().as_secs_f64().max(1e-9);
            let mut values =
                vec![("loss", window_loss / n), ("lr", report.outer_lr), ("steps_per_second", rate)];
            if report.accuracy.is_some() {
                values.push(("accuracy", window_acc / n));
            }
            if validate {
                let test = exp.test.clone().unwrap_or_default();
                let results = evaluate_split(exp, &setup, Split::Val, test.val_episodes, device)?;
                let last = results.last().expect("one step count at least");
                values.push(("val_loss", last.loss.mean));
                if let Some(acc) = last.accuracy {
                    values.push(("val_accuracy", acc.mean));
                    values.push(("val_accuracy_ci95", acc.ci95));
                }
                let s = score(&results);
                if state.best_val.is_none_or(|b| s > b) {
                    state.best_val = Some(s);
                    state.best_step = Some(step);
                    setup.learner.meta_parameters().save_safetensors(ctx.run.join("best.safetensors"))?;
                    let best_state = setup.learner.state();
                    best_state.save_safetensors(ctx.run.join("best-state.safetensors"))?;
                }
            }
            log.log(step, &values)?;
            let metrics = match report.accuracy {
                Some(_) => format!("loss {:.3} acc {:.3}", window_loss / n, window_acc / n),
                None => format!("loss {:.4}", window_loss / n),
            };
            progress.update(step, &metrics);
            (window_loss, window_acc, window_n) = (0.0, 0.0, 0);
            window_start = Instant::now();
        }
        let interrupted = interrupted > 0.0;
        let stop = validate && state.stop_early(&train_cfg, collective.as_ref())?;
        if step % train_cfg.checkpoint_every == 0 || step == train_cfg.iterations || interrupted || stop {
            log.flush()?;
            state.elapsed_seconds = elapsed_before + started.elapsed().as_secs_f64();
            let learner_state = setup.learner.state();
            let params = setup.learner.meta_parameters();
            let dir = checkpoint::save(
                &ctx.run.checkpoints(),
                step,
                &[("learner", &learner_state), ("params", &params)],
                &state,
            )?;
            last_checkpoint = Some(dir);
        }
        if interrupted {
            progress.finish();
            return Err(crate::error::Interrupted { step, run: ctx.run.root().to_owned() }.into());
        }
    }
    progress.finish();
    match log {
        Some(mut log) => {
            log.flush()?;
            final_test(ctx, &mut setup, &state)
        }
        // Rank 0 evaluates and writes the results.
        None => Ok(()),
    }
}

/// Evaluates the best validated weights (or the last ones without validation) on the
/// test split and writes `eval.json`.
fn final_test(ctx: &RunContext<'_>, setup: &mut MetaSetup, state: &TrainingState) -> anyhow::Result<()> {
    let best = ctx.run.join("best-state.safetensors");
    let checkpoint_step = match state.best_step {
        Some(step) if best.is_file() => {
            let saved = metl_models::Params::load_safetensors(&best, ctx.device)?;
            setup.learner.load_state(&saved)?;
            step
        }
        _ => state.step,
    };
    let episodes = ctx.experiment.test.clone().unwrap_or_default().episodes;
    evaluate_and_write(ctx.experiment, ctx.run, setup, Split::Test, episodes, checkpoint_step, ctx.device)?;
    Ok(())
}

/// Evaluates `setup.learner` on `episodes` episodes of `split`, prints the result and
/// writes it to the run folder (`eval.json` for the test split, `eval-<split>.json`
/// otherwise).
pub fn evaluate_and_write(
    exp: &Experiment,
    run: &crate::run_dir::RunDir,
    setup: &MetaSetup,
    split: Split,
    episodes: usize,
    checkpoint_step: u64,
    device: Device,
) -> anyhow::Result<MetaEvaluation> {
    let results = evaluate_split(exp, setup, split, episodes, device)?;
    let config = exp.test_episodes();
    let evaluation = MetaEvaluation {
        split: split.to_string(),
        checkpoint_step,
        ways: config.ways,
        shots: config.shots,
        queries: config.queries,
        results,
    };
    let file = if split == Split::Test { "eval.json".to_owned() } else { format!("eval-{split}.json") };
    write_json(&run.join(file), &evaluation)?;
    report(&evaluation);
    Ok(evaluation)
}

/// Prints an evaluation as papers report it.
pub fn report(evaluation: &MetaEvaluation) {
    println!(
        "{} ({}-way {}-shot, {} queries per class, checkpoint of step {}):",
        evaluation.split, evaluation.ways, evaluation.shots, evaluation.queries, evaluation.checkpoint_step
    );
    for r in &evaluation.results {
        let steps = if r.steps == 0 { String::new() } else { format!("after {} step(s): ", r.steps) };
        match r.accuracy {
            Some(acc) => println!(
                "  {steps}accuracy {:.2} ± {:.2} % over {} episodes (loss {:.4})",
                100.0 * acc.mean,
                100.0 * acc.ci95,
                acc.n,
                r.loss.mean
            ),
            None => println!("  {steps}MSE {:.4} ± {:.4} over {} tasks", r.loss.mean, r.loss.ci95, r.loss.n),
        }
    }
}
