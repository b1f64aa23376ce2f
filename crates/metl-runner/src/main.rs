//! The `metl` command.

use clap::Parser;
use metl_runner::{
    cli::{Cli, Command},
    demo, error,
};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(error::exit_status(&e))
        }
    }
}
