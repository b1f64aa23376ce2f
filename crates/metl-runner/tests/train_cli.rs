//! `metl train` end to end: reproducibility, exact resume, interrupts, and bad
//! configurations that must fail with one line, exit status 2 and no run folder.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn metl(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metl")).args(args).current_dir(cwd).output().unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("metl-train-test-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

const SINUSOID: &str = r#"
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

/// The metrics of a run without the timing column.
fn metrics(run: &Path) -> Vec<String> {
    fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("steps_per_second");
            v.to_string()
        })
        .collect()
}

fn eval_results(run: &Path) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
    v["results"].clone()
}

fn ok(out: &Output) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn same_seed_same_metrics_and_resume_matches_an_uninterrupted_run() {
    let dir = scratch("resume");
    fs::write(dir.join("sin.toml"), SINUSOID).unwrap();
    let quiet = ["--progress", "quiet"];
    ok(&metl(&[&["train", "sin.toml", "--out", "a"][..], &quiet].concat(), &dir));
    ok(&metl(&[&["train", "sin.toml", "--out", "b"][..], &quiet].concat(), &dir));
    let (a, b) = (dir.join("a/sin"), dir.join("b/sin"));
    assert_eq!(metrics(&a).len(), 4);
    assert_eq!(metrics(&a), metrics(&b), "two runs with one seed differ");
    assert_eq!(eval_results(&a), eval_results(&b));

    // Stop after 20 iterations, then continue to 40 from the checkpoint.
    ok(&metl(
        &[&["train", "sin.toml", "--out", "c", "--set", "train.iterations=20"][..], &quiet].concat(),
        &dir,
    ));
    let c = dir.join("c/sin");
    assert!(c.join("checkpoints/step-000000020/learner.safetensors").is_file());
    let c_str = c.to_str().unwrap();
    ok(&metl(&[&["train", "--resume", c_str, "--set", "train.iterations=40"][..], &quiet].concat(), &dir));
    assert_eq!(metrics(&a), metrics(&c), "the resumed run's metrics differ");
    assert_eq!(eval_results(&a), eval_results(&c));
    for plot in ["learning_curves.png", "eval.png"] {
        assert!(a.join("plots").join(plot).is_file(), "{plot} missing");
    }
    fs::remove_dir_all(&dir).unwrap();
}

fn expect_bad(config: &str, extra: &[&str], message: &str) {
    let dir = scratch("bad");
    fs::write(dir.join("c.toml"), config).unwrap();
    let out = metl(&[&["train", "c.toml", "--out", "runs", "--progress", "quiet"][..], extra].concat(), &dir);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    assert!(err.contains(message), "`{message}` not in: {err}");
    assert!(
        !dir.join("runs").exists() || fs::read_dir(dir.join("runs")).unwrap().next().is_none(),
        "a run folder was left behind"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_configurations_fail_cleanly() {
    expect_bad(
        &SINUSOID.replace("[meta.maml]", "[meta.maml]\ninner_lrr = 0.1"),
        &[],
        "meta.maml.inner_lrr: unknown field",
    );
    expect_bad(
        &SINUSOID.replace("iterations = 40", "iterations = \"many\""),
        &[],
        "train.iterations: invalid type",
    );
    expect_bad(SINUSOID, &["--set", "meta.maml.inner_lr=-0.4"], "meta.inner_lr = -0.4: must be > 0");
    expect_bad(SINUSOID, &["--set", "train.checkpoint_every=15"], "train.checkpoint_every = 15");
    expect_bad(&SINUSOID.replace("[meta.maml]", "[meta.mamml]"), &[], "unknown variant `mamml`");
    let omniglot = SINUSOID
        .replace("[data.sinusoid]", "[data.omniglot]\nprotocol = \"lake\"\nroot = \"no/such/folder\"")
        .replace("[model.mlp]\nwidths = [1, 40, 40, 1]", "[model.conv4]");
    expect_bad(&omniglot, &["--set", "episodes.ways=5"], "no/such/folder does not exist");
}

#[test]
fn too_many_ways_is_reported_before_training() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/omniglot");
    let root = std::env::var("METL_OMNIGLOT_DIR").map(PathBuf::from).unwrap_or(root);
    if !root.exists() {
        eprintln!("skipped: no Omniglot at {} (set METL_OMNIGLOT_DIR)", root.display());
        return;
    }
    let config = SINUSOID
        .replace(
            "[data.sinusoid]",
            &format!("[data.omniglot]\nprotocol = \"lake\"\nroot = {:?}", root.canonicalize().unwrap()),
        )
        .replace("[model.mlp]\nwidths = [1, 40, 40, 1]", "[model.conv4]");
    expect_bad(
        &config,
        &["--set", "episodes.ways=2000"],
        "episodes.ways = 2000: the training split has only 964 classes",
    );
}

#[test]
fn ctrl_c_writes_a_checkpoint_and_the_run_resumes() {
    let dir = scratch("interrupt");
    fs::write(dir.join("sin.toml"), SINUSOID.replace("iterations = 40", "iterations = 1000000")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_metl"))
        .args(["train", "sin.toml", "--out", "runs", "--progress", "quiet"])
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let run = dir.join("runs/sin");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !run.join("checkpoints/latest").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("metl train --resume"), "{err}");
    let latest = fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    let state: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(run.join("checkpoints").join(latest.trim()).join("state.json")).unwrap(),
    )
    .unwrap();
    let step = state["step"].as_u64().unwrap();
    assert!(step > 0);
    let run_str = run.to_str().unwrap();
    let until = format!("train.iterations={}", step + 5);
    ok(&metl(&["train", "--resume", run_str, "--set", &until, "--progress", "quiet"], &dir));
    assert!(run.join("eval.json").is_file());
    fs::remove_dir_all(&dir).unwrap();
}
