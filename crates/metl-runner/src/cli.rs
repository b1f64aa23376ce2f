//! The command-line interface of `metl`.

use crate::progress::ProgressMode;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// metl: multi-task learning and meta-learning on libtorch.
#[derive(Debug, Parser)]
#[command(name = "metl", version, propagate_version = true)]
#[command(about = "metl: multi-task learning and meta-learning on libtorch")]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// MAML on sinusoid regression (Finn et al. 2017) from an embedded default: trains,
    /// reports pre- and post-adaptation MSE on fresh tasks, and plots a few of them.
    Demo(DemoArgs),
    /// Trains an experiment file into a new run folder (`runs/<name>`), or continues one
    /// with `--resume RUN_DIR`.
    Train(TrainArgs),
    /// Evaluates a trained run on its test episodes (mean ± 95% interval), or a multi-task run on its test split.
    Eval(EvalArgs),
    /// Redraws the plots of a run folder.
    Plot(PlotArgs),
    /// Embeds your images with a trained run's backbone: one line of numbers per image
    /// (or a .npy file); image paths as arguments or on stdin.
    Embed(EmbedArgs),
    /// Classifies query images from a few labelled examples (a folder of class folders)
    /// with a trained run; writes image,class,probability as CSV.
    Fewshot(FewshotArgs),
    /// Lists the datasets, models, multi-task architectures, weighting strategies and
    /// meta-learning algorithms a configuration file can name.
    List,
    /// Times a standard workload as the PyTorch reference scripts do and prints JSON
    /// (used by `cargo xtask compare`).
    Bench(BenchArgs),
}

/// Options of `metl bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The workload.
    #[arg(value_enum)]
    pub workload: crate::bench::Workload,
    /// First-order MAML.
    #[arg(long)]
    pub first_order: bool,
    /// The weighting strategy of `mtl-step` (see `metl list`).
    #[arg(long, default_value = "ew")]
    pub strategy: String,
    /// The number of tasks of `mtl-step`.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub tasks: u64,
    /// `maml-omniglot`: tasks per forward/backward pass (0: the whole meta-batch at once;
    /// default: chosen from `--memory-budget` on the first warm-up step)
    #[arg(long)]
    pub tasks_per_pass: Option<u64>,
    /// `maml-omniglot`: the resident memory a step may reach, which sizes the passes
    /// when `--tasks-per-pass` is not given (e.g. 2GB; none = one pass)
    #[arg(long, default_value = "1GB", value_parser = |s: &str| crate::memory::MemoryBudget::parse(s))]
    pub memory_budget: crate::memory::MemoryBudget,
    /// Warm-up iterations (default: the reference script's).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Iterations per timed window (default: the reference script's).
    #[arg(long)]
    pub window: Option<usize>,
    /// Timed windows.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub windows: u64,
    /// After the timed windows, count the libtorch operators of N more iterations and
    /// report them with the rate their dispatch alone would allow
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub count_ops: u64,
    /// libtorch intra-op threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub threads: u64,
    /// Device: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Data-parallel processes on this machine (maml-omniglot, protonet-omniglot); give
    /// each `--threads` of its own.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub nproc: u64,
}

/// Options of `metl embed`.
#[derive(Debug, Clone, Args)]
pub struct EmbedArgs {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Image files (PNG or JPEG); none reads paths from stdin, one per line.
    pub images: Vec<PathBuf>,
    /// Write the embeddings `[N, D]` to this .npy file instead of standard output.
    #[arg(long, value_name = "FILE.npy")]
    pub npy: Option<PathBuf>,
    /// Which weights: the best validated ones, or the latest checkpoint.
    #[arg(long, value_enum, default_value_t = crate::eval::Which::Best)]
    pub checkpoint: crate::eval::Which,
    /// Device: cpu, cuda, cuda:N or auto.
    #[arg(long)]
    pub device: Option<String>,
}

/// Options of `metl fewshot`.
#[derive(Debug, Clone, Args)]
pub struct FewshotArgs {
    /// The run folder.
    pub run_dir: PathBuf,
    /// A folder of class folders holding the labelled (support) images.
    #[arg(long, value_name = "DIR")]
    pub support: PathBuf,
    /// A folder of images to classify.
    #[arg(long, value_name = "DIR")]
    pub query: PathBuf,
    /// Write the CSV here instead of standard output.
    #[arg(long, value_name = "FILE.csv")]
    pub out: Option<PathBuf>,
    /// Adaptation steps for gradient-based learners (default: the run's test steps).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Which weights: the best validated ones, or the latest checkpoint.
    #[arg(long, value_enum, default_value_t = crate::eval::Which::Best)]
    pub checkpoint: crate::eval::Which,
    /// Device: cpu, cuda, cuda:N or auto.
    #[arg(long)]
    pub device: Option<String>,
}

/// Options of `metl eval`.
#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Which weights: the best validated ones, or the latest checkpoint.
    #[arg(long, value_enum, default_value_t = crate::eval::Which::Best)]
    pub checkpoint: crate::eval::Which,
    /// Evaluate the validation split instead of the test split.
    #[arg(long)]
    pub val: bool,
    /// Episodes (default: the run's `test.episodes`).
    #[arg(long)]
    pub episodes: Option<usize>,
    /// Override a field, e.g. `--set test.shots=5` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Device: cpu, cuda, cuda:N or auto.
    #[arg(long)]
    pub device: Option<String>,
}

/// Options of `metl train`.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// The experiment file (TOML; see configs/).
    #[arg(required_unless_present = "resume")]
    pub config: Option<PathBuf>,
    /// Continue the run in this folder from its latest checkpoint.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "config")]
    pub resume: Option<PathBuf>,
    /// Override a field: `--set meta.maml.inner_lr=0.4` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// The folder holding run folders.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Device (overrides the file's): cpu, cuda, cuda:N or auto.
    #[arg(long)]
    pub device: Option<String>,
    /// How to show progress.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Data-parallel training in N processes on this machine (CPU: Gloo, the cores shared
    /// among them; CUDA: NCCL, one GPU each). Under `torchrun`-style variables
    /// (`WORLD_SIZE`, `RANK`, ...) `metl train` joins that group instead.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub nproc: Option<u64>,
}

/// Options of `metl plot`.
#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// The run folder.
    pub run_dir: PathBuf,
}

/// Options of `metl demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Meta-training iterations (meta-batches of 25 tasks); the default is the MAML
    /// paper's 70,000, about two minutes on two CPU cores.
    #[arg(long, default_value_t = 70_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: u64,
    /// Seed for the model, the training tasks and the test tasks.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder for the plot (`demo.png`), the training curve (`metrics.csv`) and the
    /// results (`results.json`).
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Device: cpu, cuda, cuda:N, or auto (CUDA when available).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// How to show progress.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Test tasks for the final evaluation.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub test_tasks: u64,
}
