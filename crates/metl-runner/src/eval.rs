//! `metl eval RUN_DIR`: evaluates a trained run on its test (or validation) episodes, as
//! papers report it: the mean over many episodes with its 95% confidence interval.

use crate::{
    checkpoint,
    device::parse_device,
    error::bad_input,
    experiment::Kind,
    run_dir::RunDir,
    train::{load_experiment, meta, TrainingState},
};
use metl_data::Split;
use metl_meta::MetaLearner;
use metl_models::Params;
use std::path::PathBuf;
use tch::Device;

/// Which weights to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// The best validated weights (`best-state.safetensors`), else the latest checkpoint.
    Best,
    /// The latest checkpoint.
    Latest,
}

/// Options of `metl eval`.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Which weights.
    pub which: Which,
    /// `test` or `val`.
    pub split: Split,
    /// Episodes (default: the file's `test.episodes` or `test.val_episodes`).
    pub episodes: Option<usize>,
    /// `--set` overrides (e.g. `test.shots=5` to evaluate 5-shot).
    pub overrides: Vec<String>,
    /// `--device`.
    pub device: Option<String>,
}

/// The saved learner state of `run` (the best validated one, or the latest checkpoint's)
/// and the step it was saved at.
pub fn saved_state(run: &RunDir, which: Which, device: Device) -> anyhow::Result<(Params, u64)> {
    let latest = checkpoint::latest(&run.checkpoints())
        .ok_or_else(|| bad_input(format!("{}: no checkpoint yet", run.root().display())))?;
    let state: TrainingState = checkpoint::load_state(&latest)?;
    let best = run.join("best-state.safetensors");
    Ok(match (which, state.best_step) {
        (Which::Best, Some(step)) if best.is_file() => (Params::load_safetensors(&best, device)?, step),
        _ => (checkpoint::load_group(&latest, "learner", device)?, state.step),
    })
}

/// Loads the trained state of `run` into `learner` (built from the run's configuration);
/// returns the step it was saved at.
pub fn restore(
    run: &RunDir,
    learner: &mut dyn MetaLearner,
    which: Which,
    device: Device,
) -> anyhow::Result<u64> {
    let (saved, step) = saved_state(run, which, device)?;
    learner.load_state(&saved)?;
    Ok(step)
}

/// Runs `metl eval`.
pub fn run(options: &EvalOptions) -> anyhow::Result<()> {
    let run = RunDir::open(&options.run_dir)?;
    let mut overrides = options.overrides.clone();
    if let Some(device) = &options.device {
        overrides.push(format!("device={device:?}"));
    }
    let (experiment, _) = load_experiment(&run.config_path(), &overrides)?;
    let device = parse_device(&experiment.device)?;
    if experiment.kind() == Kind::Mtl {
        if options.episodes.is_some() {
            return Err(bad_input("--episodes: multi-task runs are evaluated on the whole split"));
        }
        return crate::train::mtl::evaluate_saved(
            &run,
            &experiment,
            options.which == Which::Latest,
            options.split,
            device,
        );
    }
    let mut setup = meta::setup(&experiment, device)?;
    let step = restore(&run, &mut *setup.learner, options.which, device)?;
    let test = experiment.test.clone().unwrap_or_default();
    let episodes = options.episodes.unwrap_or(match options.split {
        Split::Val => test.val_episodes,
        _ => test.episodes,
    });
    if episodes == 0 {
        return Err(bad_input("--episodes 0: must be >= 1"));
    }
    meta::evaluate_and_write(&experiment, &run, &setup, options.split, episodes, step, device)?;
    Ok(())
}
