//! The `metl` command.

use clap::Parser;
use metl_runner::{
    bench,
    cli::{Cli, Command},
    demo, device, error, eval, infer, list, plots, train,
};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that train or evaluate keep freed activation memory for reuse (this
    // restarts the process once with glibc's settings; see metl_runner::malloc).
    if !matches!(cli.command, Command::List | Command::Plot(_)) {
        metl_runner::malloc::keep_freed_memory();
    }
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Train(args) => train::run(&train::TrainOptions {
            config: args.config,
            resume: args.resume,
            overrides: args.overrides,
            out: args.out,
            device: args.device,
            progress: args.progress,
            nproc: args.nproc.map_or(1, |n| n as usize),
        }),
        Command::Eval(args) => eval::run(&eval::EvalOptions {
            run_dir: args.run_dir,
            which: args.checkpoint,
            split: if args.val { metl_data::Split::Val } else { metl_data::Split::Test },
            episodes: args.episodes,
            overrides: args.overrides,
            device: args.device,
        }),
        Command::List => list::run(),
        Command::Embed(args) => infer::embed(&infer::EmbedOptions {
            run_dir: args.run_dir,
            images: args.images,
            npy: args.npy,
            which: args.checkpoint,
            device: args.device,
        }),
        Command::Fewshot(args) => infer::fewshot(&infer::FewshotOptions {
            run_dir: args.run_dir,
            support: args.support,
            query: args.query,
            out: args.out,
            steps: args.steps,
            which: args.checkpoint,
            device: args.device,
        }),
        Command::Bench(args) => device::parse_device(&args.device).and_then(|device| {
            bench::run(&bench::BenchOptions {
                workload: args.workload,
                first_order: args.first_order,
                strategy: args.strategy.clone(),
                tasks: args.tasks as usize,
                tasks_per_pass: args.tasks_per_pass.map(|k| k as usize),
                memory_budget: args.memory_budget,
                count_ops: args.count_ops as usize,
                warmup: args.warmup,
                window: args.window,
                windows: args.windows as usize,
                threads: args.threads as usize,
                device,
                nproc: args.nproc as usize,
            })
        }),
        Command::Plot(args) => metl_runner::run_dir::RunDir::open(&args.run_dir)
            .and_then(|run| plots::draw_run(&run))
            .map(|written| {
                for path in written {
                    println!("wrote {}", path.display());
                }
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(error::exit_status(&e))
        }
    }
}
