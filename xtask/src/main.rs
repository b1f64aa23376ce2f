//! `cargo xtask`: automation for metl, with nothing but the standard library so that it
//! builds in seconds and before libtorch exists.
//!
//! Cheapest first: `setup` installs libtorch once; every other task calls it (instantly
//! once done) and runs cargo with the right environment.

mod cmd;
mod compare;
mod diagram;
mod gpu_bundle;
mod gpu_check;
mod libtorch;
mod package;

use cmd::{cargo, run, Env, Result};
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <task> [args]

tasks:
  setup         make libtorch 2.13.0 available (uses $LIBTORCH if set, else installs
                torch==2.13.0 into a virtualenv under ~/.cache/metl once)
  env           print the shell exports with which plain `cargo build`/`cargo test` work:
                eval \"$(cargo xtask env)\"
  test [ARGS]   setup, then every test of the workspace (ARGS go to `cargo test`); without
                ARGS also builds examples/outside (metl as a dependency of another
                project) and runs its two programs, which must learn
  demo [ARGS]   setup, release build, then `metl demo ARGS`
  metl ARGS     setup, release build, then `metl ARGS` (e.g. metl train configs/….toml)
  lint          cargo fmt --check; the packages of the published crates (cargo package
                --no-verify: metadata, README, LICENSE-MIT, LICENSE-APACHE); clippy
                -D warnings (and metl-data without its images feature); rustdoc -D warnings
  package       only the package check of lint (before publishing)
  ci            lint, then test
  bench [ARGS]  setup, then the criterion benches (ARGS go to `cargo bench`)
  gpu-check     on a machine with an NVIDIA GPU: metl-models' tests on CUDA and a short
                speed table; without one, says so and succeeds
  gpu-bundle [--torch VERSION] [--check] [--no-data] [--tch V] [--python PY] [--out DIR]
                for a GPU machine with PyTorch VERSION (default 2.11.0) and no Rust:
                gpu-bundle/run.sh and the binaries of gpu-check and `metl bench`, built
                with the matching tch against that torch, without libtorch (< 60 MB);
                --check runs it here on the CPU (docs/performance.md, GPU)
  diagram       redraw docs/concepts.svg
  compare [--rounds N] [--only TEXT]
                metl beside the PyTorch reference scripts (benches/reference),
                alternating, several rounds; writes the table to docs/performance.md";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((task, rest)) => (task.as_str(), rest),
        None => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match task {
        "setup" => libtorch::ensure(true).map(|_| ()),
        "env" => print_env(),
        "test" => test(rest),
        "demo" => metl(&[&["demo".to_owned()], rest].concat()),
        "metl" => metl(rest),
        "lint" => lint(),
        "package" => package::check(),
        "ci" => lint().and_then(|()| test(&[])),
        "bench" => bench(rest),
        "gpu-check" => gpu_check::run(rest),
        "gpu-bundle" => gpu_bundle::run(rest),
        "diagram" => diagram::run(),
        "compare" => compare_args(rest).and_then(|(rounds, only)| compare::compare(rounds, only.as_deref())),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("unknown task `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(cmd::Failure(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn env() -> Result<Env> {
    Ok(libtorch::ensure(false)?.env())
}

fn compare_args(args: &[String]) -> Result<(usize, Option<String>)> {
    let (mut rounds, mut only) = (3, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match (arg.as_str(), it.next()) {
            ("--rounds", Some(n)) => {
                rounds = n
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| cmd::Failure(format!("--rounds {n}: a positive number")))?
            }
            ("--only", Some(text)) => only = Some(text.clone()),
            _ => {
                return Err(cmd::Failure(format!(
                    "compare: unexpected argument `{arg}`; usage: compare [--rounds N] [--only TEXT]"
                )))
            }
        }
    }
    Ok((rounds, only))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn print_env() -> Result {
    for (key, value) in env()? {
        println!("export {key}={}", shell_quote(&value.to_string_lossy()));
    }
    Ok(())
}

fn test(args: &[String]) -> Result {
    let env = env()?;
    let mut cmd = cargo();
    cmd.args(["test", "--workspace"]).args(args);
    run(cmd, &env)?;
    if args.is_empty() {
        outside_crate(&env)?;
    }
    Ok(())
}

/// Builds `examples/outside` — a project outside the workspace that depends on metl's
/// crates by path, as a user's would — and runs its two programs, each of which exits
/// non-zero unless it learned (MAML on the user's own model; PCGrad and UPGrad on the
/// user's own two-task model with a tch optimizer).
fn outside_crate(env: &Env) -> Result {
    let manifest = cmd::workspace_root().join("examples/outside/Cargo.toml");
    let mut passed = 0;
    for program in ["maml", "mtl"] {
        let mut cmd = cargo();
        cmd.arg("run").arg("--manifest-path").arg(&manifest).args(["--bin", program]);
        // The workspace's target folder: libtorch's bindings are built once for both.
        cmd.env("CARGO_TARGET_DIR", cmd::target_dir());
        run(cmd, env)?;
        passed += 1;
    }
    eprintln!("examples/outside: {passed} passed, 0 failed");
    Ok(())
}

/// Builds the `metl` binary in release mode and runs it with `args`.
fn metl(args: &[String]) -> Result {
    let env = env()?;
    let mut build = cargo();
    build.args(["build", "--release", "--package", "metl-runner", "--bin", "metl"]);
    run(build, &env)?;
    let binary = cmd::target_dir().join("release/metl");
    eprintln!("$ {} {}", binary.display(), args.join(" "));
    let status = std::process::Command::new(&binary)
        .current_dir(cmd::workspace_root())
        .args(args)
        .status()
        .map_err(|e| cmd::Failure(format!("cannot start {}: {e}", binary.display())))?;
    // metl has printed its own one-line error: pass its exit status through (2 = bad input).
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

fn bench(args: &[String]) -> Result {
    let env = env()?;
    let mut cmd = cargo();
    cmd.args(["bench", "--package", "metl-benches"]).args(args);
    run(cmd, &env)
}

/// Cheapest first: formatting (seconds), the packages (seconds, nothing compiled, no
/// libtorch needed), then clippy and rustdoc, which compile the workspace.
fn lint() -> Result {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run(fmt, &Env::new())?;
    package::check()?;
    let env = env()?;
    let mut clippy = cargo();
    clippy.args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]);
    run(clippy, &env)?;
    // metl-data without its default `images` feature is what metl-models, metl-mtl and
    // metl-meta build on; the workspace build above unifies features and never sees it.
    let mut lean = cargo();
    lean.args(["clippy", "-p", "metl-data", "--no-default-features", "--lib", "--", "-D", "warnings"]);
    run(lean, &env)?;
    let mut doc_env = env.clone();
    for (key, value) in &mut doc_env {
        if key == "RUSTDOCFLAGS" {
            let mut flags = value.clone();
            flags.push(" -D warnings");
            *value = flags;
        }
    }
    let mut doc = cargo();
    doc.args(["doc", "--workspace", "--no-deps"]);
    run(doc, &doc_env)?;
    eprintln!("lint: fmt, packages, clippy (also metl-data without images) and rustdoc are clean");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(super::shell_quote("/a b/it's"), r"'/a b/it'\''s'");
    }
}
