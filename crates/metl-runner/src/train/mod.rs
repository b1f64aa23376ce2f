//! `metl train`: runs an experiment file into a run folder, or resumes one.

pub mod meta;
pub mod mtl;

use crate::{
    checkpoint, config,
    device::parse_device,
    distributed,
    error::bad_input,
    experiment::{Experiment, Kind, TrainConfig},
    interrupt, metrics,
    progress::ProgressMode,
    run_dir::{write_json, RunDir, RunInfo},
};
use metl_dist::Collective;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};
use tch::Device;

/// The training state saved with every checkpoint (`state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    /// Completed iterations.
    pub step: u64,
    /// The experiment seed (every data stream is a function of it and its position).
    pub seed: u64,
    /// The best validation score so far (accuracy, or minus the loss).
    pub best_val: Option<f64>,
    /// The step of the best validation score.
    pub best_step: Option<u64>,
    /// Training wall time so far, in seconds.
    pub elapsed_seconds: f64,
    /// Whether training ended early (`train.patience` validations without improvement).
    #[serde(default)]
    pub stopped_early: bool,
    /// The tasks per pass chosen from `train.memory_budget` (0: one pass), once chosen.
    #[serde(default)]
    pub tasks_per_pass: Option<usize>,
}

impl TrainingState {
    /// The state of a new run.
    pub fn new(seed: u64) -> Self {
        Self {
            step: 0,
            seed,
            best_val: None,
            best_step: None,
            elapsed_seconds: 0.0,
            stopped_early: false,
            tasks_per_pass: None,
        }
    }

    /// Whether `train.patience` validations have passed since the best one (early stopping).
    /// Validations happen every `val_every` iterations and the best is one of them, so the
    /// distance to it reaches `patience × val_every` exactly at a validation.
    pub fn patience_exhausted(&self, train: &TrainConfig) -> bool {
        match (train.patience, self.best_step) {
            (Some(patience), Some(best)) => {
                self.step.saturating_sub(best) >= patience.saturating_mul(train.val_every)
            }
            _ => false,
        }
    }

    /// At a validation step: whether training stops early, as rank 0 (which validated)
    /// decides, on every rank. Sets `stopped_early` and says so on rank 0.
    pub fn stop_early(&mut self, train: &TrainConfig, collective: &dyn Collective) -> anyhow::Result<bool> {
        if train.patience.is_none() {
            return Ok(false);
        }
        let mut decision = [f64::from(u8::from(collective.is_main() && self.patience_exhausted(train)))];
        if collective.world_size() > 1 {
            collective.all_reduce_f64(&mut decision, metl_dist::ReduceOp::Max, Device::Cpu)?;
        }
        self.stopped_early = decision[0] > 0.0;
        if self.stopped_early && collective.is_main() {
            println!(
                "stopping early at step {}: no better validation score in {} validations since step {}",
                self.step,
                train.patience.unwrap_or_default(),
                self.best_step.unwrap_or_default()
            );
        }
        Ok(self.stopped_early)
    }

    /// A resumed state: still stopped only if its patience is still exhausted (a resume
    /// with a larger `train.patience` continues training).
    pub fn resumed(mut self, train: &TrainConfig) -> Self {
        self.stopped_early = self.stopped_early && self.patience_exhausted(train);
        self
    }
}

/// The seed of data stream `index` of an experiment seed.
pub fn stream_seed(seed: u64, index: u64) -> u64 {
    metl_data::rng::substream(seed, 0x6d65_746c_0000 + index).next_u64()
}

/// What a training loop needs.
pub struct RunContext<'a> {
    /// The experiment.
    pub experiment: &'a Experiment,
    /// Its run folder.
    pub run: &'a RunDir,
    /// The device.
    pub device: Device,
    /// How to show progress.
    pub progress: ProgressMode,
    /// The state to resume from, if resuming.
    pub resume: Option<TrainingState>,
    /// The checkpoint folder to resume from, if resuming.
    pub resume_from: Option<PathBuf>,
    /// The data-parallel group ([`metl_dist::Local`] for one process). Rank 0 alone writes
    /// files, shows progress and evaluates.
    pub collective: Arc<dyn Collective>,
}

impl RunContext<'_> {
    /// Whether this process writes the run folder (rank 0).
    pub fn is_main(&self) -> bool {
        self.collective.is_main()
    }
}

/// Options of a `metl train` invocation.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The experiment file (new runs).
    pub config: Option<PathBuf>,
    /// The run folder to continue (`--resume`).
    pub resume: Option<PathBuf>,
    /// `--set key=value` overrides.
    pub overrides: Vec<String>,
    /// The folder holding run folders (default `runs`).
    pub out: PathBuf,
    /// `--device`, overriding the file's.
    pub device: Option<String>,
    /// How to show progress.
    pub progress: ProgressMode,
    /// Processes to launch on this machine (`--nproc`; 1 trains in this process).
    pub nproc: usize,
}

/// Loads, overrides and validates an experiment file; returns it with its resolved table.
pub fn load_experiment(path: &Path, overrides: &[String]) -> anyhow::Result<(Experiment, toml::Table)> {
    let (experiment, table): (Experiment, toml::Table) = config::load(path, overrides)?;
    experiment.validate().map_err(|e| bad_input(format!("{}: {e}", path.display())))?;
    Ok((experiment, table))
}

/// Runs `metl train`.
pub fn run(options: &TrainOptions) -> anyhow::Result<()> {
    let _ = interrupt::install();
    if options.nproc > 1 && !distributed::in_group() {
        return distributed::launch(options.nproc);
    }
    let (run, experiment, resume) = match (&options.config, &options.resume) {
        (Some(path), None) => {
            let mut overrides = options.overrides.clone();
            if let Some(device) = &options.device {
                overrides.push(format!("device={device:?}"));
            }
            let (experiment, table) = load_experiment(path, &overrides)?;
            (None, (experiment, table), None)
        }
        (None, Some(dir)) => {
            let run = RunDir::open(dir)?;
            let mut overrides = options.overrides.clone();
            if let Some(device) = &options.device {
                overrides.push(format!("device={device:?}"));
            }
            let loaded = load_experiment(&run.config_path(), &overrides)?;
            let latest = checkpoint::latest(&run.checkpoints());
            (Some(run), loaded, latest)
        }
        (Some(_), Some(_)) => return Err(bad_input("give either CONFIG or --resume RUN_DIR, not both")),
        (None, None) => {
            return Err(bad_input("give an experiment file (metl train CONFIG.toml) or --resume RUN_DIR"))
        }
    };
    let (experiment, table) = experiment;
    let (collective, device) = distributed::join(parse_device(&experiment.device)?)?;
    let main = collective.is_main();
    if let Some(threads) = experiment.threads {
        tch::set_num_threads(threads as i32);
    }
    // Everything that can fail on bad input happens before the run folder exists.
    enum Built {
        Meta(Box<meta::MetaSetup>),
        Mtl(Box<mtl::MtlSetup>),
    }
    let setup = match experiment.kind() {
        Kind::Meta => Built::Meta(Box::new(meta::setup(&experiment, device)?)),
        Kind::Mtl => Built::Mtl(Box::new(mtl::setup(&experiment, device)?)),
    };
    let run = match run {
        Some(run) => {
            if main && !options.overrides.is_empty() {
                // The run folder's configuration is the one training continues with.
                run.write_config(&table)?;
                println!("{}: updated with {}", run.config_path().display(), options.overrides.join(" "));
            }
            run
        }
        None if main => {
            let run = RunDir::create(&options.out, &experiment.name)?;
            run.write_config(&table)?;
            let mut info = RunInfo::current(device);
            info.processes = collective.world_size();
            write_json(&run.join("run.json"), &info)?;
            distributed::share_path(collective.as_ref(), Some(run.root()))?;
            run
        }
        // Rank 0 created it; the others only read from it.
        None => RunDir::open(&distributed::share_path(collective.as_ref(), None)?)?,
    };
    let (state, resume_from) = match resume {
        Some(path) => {
            let state: TrainingState = checkpoint::load_state(&path)?;
            if main {
                metrics::truncate_after(run.root(), state.step)?;
                eprintln!("resuming {} from step {}", run.root().display(), state.step);
            }
            (Some(state), Some(path))
        }
        None => (None, None),
    };
    if main {
        println!("run folder: {}", run.root().display());
        if collective.world_size() > 1 {
            println!(
                "data-parallel: {} processes ({})",
                collective.world_size(),
                metl_dist::Backend::for_device(device).name()
            );
        }
    }
    let mut ctx = RunContext {
        experiment: &experiment,
        run: &run,
        device,
        progress: if main { options.progress } else { ProgressMode::Quiet },
        resume: state,
        resume_from,
        collective,
    };
    match setup {
        Built::Meta(setup) => meta::train(&mut ctx, *setup)?,
        Built::Mtl(setup) => mtl::train(&mut ctx, *setup)?,
    }
    if main {
        crate::plots::draw_run(&run)?;
    }
    Ok(())
}
