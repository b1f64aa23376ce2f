//! The `metl` command.

use clap::Parser;
use metl_runner::{
    cli::{Cli, Command},
    demo, error, eval, list, plots, train,
};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Train(args) => train::run(&train::TrainOptions {
            config: args.config,
            resume: args.resume,
            overrides: args.overrides,
            out: args.out,
            device: args.device,
            progress: args.progress,
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
