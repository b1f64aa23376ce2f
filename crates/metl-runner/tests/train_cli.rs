//! `metl train` end to end: reproducibility, exact resume, interrupts, and bad
//! configurations that must fail with one line, exit status 2 and no run folder.

mod common;
use common::{metl, metrics, ok, scratch, SINUSOID};
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

fn eval_results(run: &Path) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
    v["results"].clone()
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
    expect_bad(
        SINUSOID,
        &["--set", "train.val_every=0", "--set", "train.patience=2"],
        "train.patience = 2: early stopping counts validations",
    );
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

/// The last checkpoint's `state.json` of a run.
fn last_state(run: &Path) -> serde_json::Value {
    let latest = fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    let path = run.join("checkpoints").join(latest.trim()).join("state.json");
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn early_stopping_ends_after_patience_validations_and_resumes_with_more() {
    // With an outer learning rate too small to change an f32 weight the validation score
    // (the same episodes each time) never improves on the first one
    // (step 10), so patience 2 stops at the validation of step 30.
    let dir = scratch("patience");
    let config = SINUSOID
        .replace("iterations = 40", "iterations = 1000\npatience = 2")
        .replace("val_every = 20", "val_every = 10")
        .replace("checkpoint_every = 20", "checkpoint_every = 100")
        .replace("[meta.maml]", "[meta.maml]\nouter_lr = 1e-30");
    fs::write(dir.join("sin.toml"), config).unwrap();
    let out = metl(&["train", "sin.toml", "--out", "runs", "--progress", "quiet"], &dir);
    ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("stopping early at step 30"), "{stdout}");
    let run = dir.join("runs/sin");
    let state = last_state(&run);
    assert_eq!((state["step"].as_u64(), state["best_step"].as_u64()), (Some(30), Some(10)));
    assert_eq!(state["stopped_early"], serde_json::Value::Bool(true));
    assert_eq!(metrics(&run).last().unwrap()["step"].as_u64(), Some(30));
    assert!(run.join("eval.json").is_file());

    // Resuming with the same patience trains no further; with patience 3 it trains one
    // more validation period.
    let run_str = run.to_str().unwrap();
    ok(&metl(&["train", "--resume", run_str, "--progress", "quiet"], &dir));
    assert_eq!(last_state(&run)["step"].as_u64(), Some(30));
    ok(&metl(&["train", "--resume", run_str, "--set", "train.patience=3", "--progress", "quiet"], &dir));
    assert_eq!(last_state(&run)["step"].as_u64(), Some(40));
    let recorded = fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(recorded.contains("patience = 3"), "the resumed run's config.toml: {recorded}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_memory_budget_sizes_the_passes_and_a_resumed_run_keeps_the_choice() {
    let dir = scratch("budget");
    // A budget below what the process already holds: one task per pass.
    let config = SINUSOID.replace("[train]", "[train]\nmemory_budget = \"1B\"");
    fs::write(dir.join("sin.toml"), config).unwrap();
    let quiet = ["--progress", "quiet"];
    let out = metl(&[&["train", "sin.toml", "--out", "a"][..], &quiet].concat(), &dir);
    ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.contains("memory budget") {
        eprintln!("skipped: resident memory cannot be measured here ({stdout})");
        return;
    }
    assert!(stdout.contains("memory budget 1B: 1 task per pass"), "{stdout}");
    let a = dir.join("a/sin");
    assert_eq!(last_state(&a)["tasks_per_pass"].as_u64(), Some(1));
    ok(&metl(
        &[&["train", "sin.toml", "--out", "b", "--set", "train.iterations=20"][..], &quiet].concat(),
        &dir,
    ));
    let b = dir.join("b/sin");
    let resumed = metl(
        &[&["train", "--resume", b.to_str().unwrap(), "--set", "train.iterations=40"][..], &quiet].concat(),
        &dir,
    );
    ok(&resumed);
    assert!(!String::from_utf8_lossy(&resumed.stdout).contains("memory budget"), "measured again on resume");
    assert_eq!(metrics(&a), metrics(&b), "the resumed run's metrics differ");
    // With room for everything: one pass.
    let out = metl(
        &[&["train", "sin.toml", "--out", "c", "--set", "train.memory_budget=\"64GB\""][..], &quiet].concat(),
        &dir,
    );
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("memory budget 64GB: all 5 tasks in one pass"));
    fs::remove_dir_all(&dir).unwrap();
}

/// Writes a gray PNG of `side`×`side` with a bright square at a class-dependent place.
fn write_png(path: &Path, side: u32, class: u32, jitter: u32) {
    let mut pixels = vec![0u8; (side * side) as usize];
    let (x0, y0) = ((class * 5 + jitter) % (side - 8), (class * 3) % (side - 8));
    for y in y0..y0 + 8 {
        for x in x0..x0 + 8 {
            pixels[(y * side + x) as usize] = 255;
        }
    }
    let file = fs::File::create(path).unwrap();
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header().unwrap().write_image_data(&pixels).unwrap();
}

#[test]
fn image_folder_run_then_embed_and_fewshot_on_new_images() {
    let dir = scratch("images");
    for class in 0..12 {
        let class_dir = dir.join(format!("data/class{class:02}"));
        fs::create_dir_all(&class_dir).unwrap();
        for i in 0..6 {
            write_png(&class_dir.join(format!("{i}.png")), 40, class, i % 2);
        }
    }
    let config = r#"
name = "mine"
device = "cpu"
[train]
iterations = 6
log_every = 3
checkpoint_every = 3
[data.image_folder]
root = "data"
image_size = [28, 28]
channels = 1
split = [0.5, 0.25, 0.25]
[model.conv4]
[meta.protonet]
[episodes]
ways = 3
shots = 2
queries = 2
meta_batch = 2
[test]
queries = 2
episodes = 10
val_episodes = 4
"#;
    fs::write(dir.join("mine.toml"), config).unwrap();
    ok(&metl(&["train", "mine.toml", "--out", "runs", "--progress", "quiet"], &dir));
    let run = dir.join("runs/mine");
    let images: Vec<String> = (0..3).map(|c| format!("data/class{c:02}/0.png")).collect();
    let mut args = vec!["embed", run.to_str().unwrap()];
    args.extend(images.iter().map(String::as_str));
    let out = metl(&args, &dir);
    ok(&out);
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l.split(' ').count() == 64), "64 features per image");

    fs::create_dir_all(dir.join("query")).unwrap();
    for c in [9, 10, 11] {
        fs::create_dir_all(dir.join(format!("support/c{c}"))).unwrap();
        write_png(&dir.join(format!("support/c{c}/a.png")), 40, c, 0);
        write_png(&dir.join(format!("query/q{c}.png")), 40, c, 1);
    }
    let out = metl(
        &["fewshot", run.to_str().unwrap(), "--support", "support", "--query", "query", "--out", "p.csv"],
        &dir,
    );
    ok(&out);
    let csv = fs::read_to_string(dir.join("p.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "image,class,probability");
    assert_eq!(rows.len(), 4);
    for row in &rows[1..] {
        let p: f64 = row.rsplit(',').next().unwrap().parse().unwrap();
        assert!((0.0..=1.0).contains(&p), "{row}");
    }
    let out = metl(&["fewshot", run.to_str().unwrap(), "--support", "query", "--query", "query"], &dir);
    assert_eq!(out.status.code(), Some(2), "a support folder without class folders is bad input");
    // Too few examples for the test episodes: refused before a run folder exists.
    let out = metl(
        &["train", "mine.toml", "--out", "runs2", "--set", "test.queries=15", "--progress", "quiet"],
        &dir,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs 17 examples"));
    assert!(!dir.join("runs2/mine").exists());

    // Baseline++ pre-trains on global labels, then fits a cosine head per episode.
    let baseline = config
        .replace("[meta.protonet]", "[meta.baseline_plus_plus]")
        .replace("name = \"mine\"", "name = \"bpp\"");
    fs::write(dir.join("bpp.toml"), baseline).unwrap();
    ok(&metl(
        &["train", "bpp.toml", "--out", "runs", "--progress", "quiet", "--set", "test.steps=[5]"],
        &dir,
    ));
    let eval: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("runs/bpp/eval.json")).unwrap()).unwrap();
    assert_eq!(eval["results"][0]["steps"], 5);
    let run = dir.join("runs/bpp");
    ok(&metl(
        &["fewshot", run.to_str().unwrap(), "--support", "support", "--query", "query", "--steps", "5"],
        &dir,
    ));
    fs::remove_dir_all(&dir).unwrap();
}
