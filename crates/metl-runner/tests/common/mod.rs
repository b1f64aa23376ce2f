//! Helpers shared by the command-line tests: run the `metl` binary, make a scratch folder,
//! assert success.

#![allow(dead_code)]

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// Runs `metl ARGS` in `cwd`.
pub fn metl(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metl")).args(args).current_dir(cwd).output().unwrap()
}

/// An empty folder in the temp dir, unique to this test process and `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("metl-cli-test-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Asserts that `out` succeeded, showing its stderr otherwise.
pub fn ok(out: &Output) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The metrics of a run (`metrics.jsonl`) without the timing column, which differs between
/// otherwise identical runs.
pub fn metrics(run: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("steps_per_second");
            v
        })
        .collect()
}

/// MAML on sinusoids, small: 40 iterations of meta-batches of 5 tasks.
pub const SINUSOID: &str = r#"
name = "sin"
seed = 3
device = "cpu"

[train]
iterations = 40
log_every = 10
val_every = 20
checkpoint_every = 20

[data.sinusoid]

[model.mlp]
widths = [1, 40, 40, 1]

[meta.maml]

[episodes]
ways = 1
shots = 10
queries = 10
meta_batch = 5

[test]
episodes = 20
val_episodes = 10
batch = 10
steps = [0, 1]
"#;

/// GradNorm's synthetic regression, small: three tasks of scales 1, 10, 100.
pub fn synthetic_config(strategy: &str) -> String {
    format!(
        r#"
name = "syn"
seed = 7
device = "cpu"

[train]
iterations = 60
batch_size = 32
log_every = 10
val_every = 20
checkpoint_every = 20

[data.synthetic_regression]
sigmas = [1.0, 10.0, 100.0]
input_dim = 16
output_dim = 4
sizes = [512, 128, 128]

[model.mlp]
widths = [16, 32, 32]

[mtl]
strategy = {{ name = "{strategy}" }}
lr = 0.01
"#
    )
}
