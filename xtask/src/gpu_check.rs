//! `cargo xtask gpu-check`: on a machine with an NVIDIA GPU, runs metl-models'
//! device-generic tests on CUDA (`METL_TEST_DEVICE=cuda`) and a short speed table
//! (`metl-benches`' `models_speed` example), with two GPUs or more also metl-dist's NCCL
//! test and a two-process `metl bench maml-omniglot`, then prints a summary; on a machine without one
//! it says so and succeeds, so that scripts can call it anywhere.
//!
//! The GPU is detected with `nvidia-smi -L` (`$METL_NVIDIA_SMI` names another program), so
//! the check costs nothing where there is none; whether libtorch itself sees CUDA is then
//! checked by the tests and the example, which fail with a clear message if not.

use crate::cmd::{cargo, describe, fail, Env, Result};
use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

const USAGE: &str = "usage: cargo xtask gpu-check [--tests-only | --bench-only]";

/// The program that lists GPUs.
fn nvidia_smi() -> PathBuf {
    std::env::var_os("METL_NVIDIA_SMI")
        .filter(|p| !p.is_empty())
        .map_or_else(|| "nvidia-smi".into(), PathBuf::from)
}

/// The GPU names in `nvidia-smi -L` output (`GPU 0: NVIDIA H200 (UUID: GPU-…)`).
fn parse_gpu_list(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| line.trim().strip_prefix("GPU "))
        .filter_map(|rest| rest.split_once(": ").map(|(_, name)| name))
        .map(|name| name.split(" (UUID").next().unwrap_or(name).trim().to_owned())
        .collect()
}

/// The GPUs `program -L` lists, or why there are none.
fn detect_gpus(program: &PathBuf) -> std::result::Result<Vec<String>, String> {
    let output = Command::new(program)
        .arg("-L")
        .output()
        .map_err(|e| format!("`{} -L` could not run: {e}", program.display()))?;
    if !output.status.success() {
        return Err(format!("`{} -L` failed ({})", program.display(), output.status));
    }
    let gpus = parse_gpu_list(&String::from_utf8_lossy(&output.stdout));
    if gpus.is_empty() {
        return Err(format!("`{} -L` lists no GPU", program.display()));
    }
    Ok(gpus)
}

/// What the check did.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// No GPU: nothing ran.
    NoGpu(String),
    /// Steps ran on these GPUs.
    Ran(Vec<String>),
}

/// Runs a command with the libtorch environment and `extra` variables, timing it.
fn step(mut cmd: Command, env: &Env, extra: &[(&str, &str)]) -> (bool, Duration) {
    for (k, v) in env {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    eprintln!("$ {}", describe(&cmd));
    let start = Instant::now();
    let ok = cmd.status().map(|s| s.success()).unwrap_or_else(|e| {
        eprintln!("cannot start {}: {e}", describe(&cmd));
        false
    });
    (ok, start.elapsed())
}

fn check(args: &[String], program: &PathBuf, env: impl FnOnce() -> Result<Env>) -> Result<Outcome> {
    let (mut tests, mut bench) = (true, true);
    for arg in args {
        match arg.as_str() {
            "--tests-only" => bench = false,
            "--bench-only" => tests = false,
            other => fail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    let gpus = match detect_gpus(program) {
        Ok(gpus) => gpus,
        Err(reason) => return Ok(Outcome::NoGpu(reason)),
    };
    eprintln!("gpu-check: {} GPU(s): {}", gpus.len(), gpus.join(", "));
    let env = env()?;
    let mut summary = Vec::new();
    if tests {
        let mut cmd = cargo();
        cmd.args(["test", "--release", "-p", "metl-models", "--tests"]);
        summary.push((
            "metl-models tests on CUDA (METL_TEST_DEVICE=cuda)",
            step(cmd, &env, &[("METL_TEST_DEVICE", "cuda")]),
        ));
    }
    if tests && gpus.len() >= 2 {
        // Data-parallel across GPUs: NCCL collectives between two processes, then two
        // processes of MAML Omniglot, one GPU each.
        let mut cmd = cargo();
        cmd.args(["test", "--release", "-p", "metl-dist", "--test", "nccl", "--", "--nocapture"]);
        summary.push(("metl-dist NCCL collectives on 2 GPUs", step(cmd, &env, &[])));
        let mut cmd = cargo();
        cmd.args(["run", "--release", "-p", "metl-runner", "--bin", "metl", "--", "bench", "maml-omniglot"]);
        cmd.args(["--device", "cuda", "--nproc", "2"]);
        summary.push(("MAML Omniglot data-parallel on 2 GPUs (JSON above)", step(cmd, &env, &[])));
    }
    if bench {
        let mut cmd = cargo();
        cmd.args([
            "run",
            "--release",
            "-p",
            "metl-benches",
            "--example",
            "models_speed",
            "--",
            "--device",
            "cuda",
        ]);
        summary.push(("models_speed table on CUDA (above)", step(cmd, &env, &[])));
    }
    println!("\ngpu-check on {}\n", gpus.join(", "));
    println!("| step | result | seconds |");
    println!("| --- | --- | ---: |");
    for (name, (ok, time)) in &summary {
        println!("| {name} | {} | {:.0} |", if *ok { "passed" } else { "FAILED" }, time.as_secs_f64());
    }
    let failed: Vec<&str> = summary.iter().filter(|(_, (ok, _))| !ok).map(|(name, _)| *name).collect();
    if !failed.is_empty() {
        fail!("gpu-check failed: {}", failed.join("; "));
    }
    Ok(Outcome::Ran(gpus))
}

/// `cargo xtask gpu-check [--tests-only | --bench-only]`.
pub fn run(args: &[String]) -> Result {
    match check(args, &nvidia_smi(), crate::env)? {
        Outcome::NoGpu(reason) => {
            println!("gpu-check: no NVIDIA GPU on this machine ({reason}); nothing to check.");
            println!("gpu-check: run it where `nvidia-smi -L` lists a GPU to test metl-models on CUDA.");
        }
        Outcome::Ran(_) => println!("gpu-check: all steps passed"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nvidia_smi_listings() {
        let listing = "GPU 0: NVIDIA H200 (UUID: GPU-1234)\nGPU 1: NVIDIA A100-SXM4-80GB (UUID: GPU-5678)\n";
        assert_eq!(parse_gpu_list(listing), ["NVIDIA H200", "NVIDIA A100-SXM4-80GB"]);
        assert!(parse_gpu_list("No devices were found\n").is_empty());
    }

    #[test]
    fn without_a_gpu_nothing_runs_and_the_check_succeeds() {
        let missing = PathBuf::from("/nonexistent/nvidia-smi");
        let outcome = check(&[], &missing, || panic!("no environment is needed without a GPU")).unwrap();
        assert!(matches!(outcome, Outcome::NoGpu(reason) if reason.contains("could not run")));
        // `true -L` succeeds but lists nothing.
        let outcome = check(&[], &PathBuf::from("true"), || panic!("not needed")).unwrap();
        assert_eq!(outcome, Outcome::NoGpu("`true -L` lists no GPU".into()));
        assert!(check(&["--bogus".into()], &missing, || panic!("not needed")).is_err());
    }
}
