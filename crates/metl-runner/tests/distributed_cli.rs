//! `metl train --nproc 2`: two processes (Gloo on loopback) train like one process on the
//! whole meta-batch, write the same run folder (rank 0 alone writes it), and a run resumes
//! at another process count.

mod common;
use common::{metl, metrics, ok, scratch, synthetic_config, SINUSOID};
use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

/// [`SINUSOID`] with a meta-batch two processes share (4 tasks) and its own seed.
fn sinusoid() -> String {
    SINUSOID.replace("seed = 3", "seed = 5").replace("meta_batch = 5", "meta_batch = 4")
}

/// Every file and folder under `root`, relative to it.
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            out.insert(path.strip_prefix(root).unwrap().to_owned());
            if path.is_dir() {
                walk(&path, root, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// Asserts that two metric logs hold the same steps and columns with values equal to
/// `tol` relative (the ranks sum in another order than one process).
fn assert_close(a: &[serde_json::Value], b: &[serde_json::Value], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x.as_object().unwrap(), y.as_object().unwrap());
        assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
        for (key, u) in x {
            let (u, v) = (u.as_f64().unwrap(), y[key].as_f64().unwrap());
            assert!((u - v).abs() <= tol * (1.0 + u.abs()), "{key}: {u} vs {v}");
        }
    }
}

fn eval_loss(run: &Path) -> Vec<f64> {
    let v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
    v["results"].as_array().unwrap().iter().map(|r| r["loss"]["mean"].as_f64().unwrap()).collect()
}

#[test]
fn two_processes_train_like_one_and_write_the_same_run_folder() {
    let dir = scratch("nproc");
    fs::write(dir.join("sin.toml"), sinusoid()).unwrap();
    let quiet = ["--progress", "quiet"];
    ok(&metl(&[&["train", "sin.toml", "--out", "one"][..], &quiet].concat(), &dir));
    let two = metl(&[&["train", "sin.toml", "--out", "two", "--nproc", "2"][..], &quiet].concat(), &dir);
    ok(&two);
    let stdout = String::from_utf8_lossy(&two.stdout);
    assert_eq!(stdout.matches("run folder:").count(), 1, "rank 0 alone reports: {stdout}");
    assert!(stdout.contains("data-parallel: 2 processes (gloo)"), "{stdout}");
    let (one, two) = (dir.join("one/sin"), dir.join("two/sin"));
    assert_eq!(tree(&one), tree(&two));
    assert_eq!(fs::read_dir(dir.join("two")).unwrap().count(), 1, "one run folder");
    assert_close(&metrics(&one), &metrics(&two), 1e-3);
    let (a, b) = (eval_loss(&one), eval_loss(&two));
    assert!(a.iter().zip(&b).all(|(u, v)| (u - v).abs() <= 1e-3 * (1.0 + u.abs())), "{a:?} vs {b:?}");
    let info: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(two.join("run.json")).unwrap()).unwrap();
    assert_eq!(info["processes"], 2);

    // Saved at 2 processes, resumed at 1: the same as the uninterrupted run.
    let half = [
        &["train", "sin.toml", "--out", "mixed", "--nproc", "2", "--set", "train.iterations=20"][..],
        &quiet,
    ];
    ok(&metl(&half.concat(), &dir));
    let mixed = dir.join("mixed/sin");
    let resume =
        ["train", "--resume", mixed.to_str().unwrap(), "--set", "train.iterations=40", "--progress", "quiet"];
    ok(&metl(&resume, &dir));
    // Validation at step 20 ran against the 20-iteration schedule; the training metrics match.
    let strip = |m: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
        m.into_iter()
            .map(|mut v| {
                let o = v.as_object_mut().unwrap();
                o.retain(|k, _| !k.starts_with("val_"));
                v
            })
            .collect()
    };
    assert_close(&strip(metrics(&one)), &strip(metrics(&mixed)), 1e-3);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_configuration_fails_every_rank_with_status_2() {
    let dir = scratch("nproc-bad");
    fs::write(dir.join("sin.toml"), sinusoid().replace("widths = [1, 40, 40, 1]", "widths = [1, 40, 40, 2]"))
        .unwrap();
    let out = metl(&["train", "sin.toml", "--nproc", "2", "--progress", "quiet"], &dir);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.join("runs").exists(), "no run folder");
    let _ = fs::remove_dir_all(&dir);
}

/// [`synthetic_config`], 30 iterations validated and saved every 10.
fn mtl_config(strategy: &str) -> String {
    synthetic_config(strategy)
        .replace("iterations = 60", "iterations = 30")
        .replace("val_every = 20", "val_every = 10")
        .replace("checkpoint_every = 20", "checkpoint_every = 10")
}

#[test]
fn two_processes_train_a_multi_task_model_like_one() {
    // A loss-weighting strategy, a parameter-space gradient strategy, a stateful one, and
    // a representation-space one.
    for strategy in ["ew", "pcgrad", "famo", "mgda_ub"] {
        let dir = scratch(&format!("nproc-mtl-{strategy}"));
        fs::write(dir.join("syn.toml"), mtl_config(strategy)).unwrap();
        let quiet = ["--progress", "quiet"];
        ok(&metl(&[&["train", "syn.toml", "--out", "one"][..], &quiet].concat(), &dir));
        ok(&metl(&[&["train", "syn.toml", "--out", "two", "--nproc", "2"][..], &quiet].concat(), &dir));
        let (one, two) = (dir.join("one/syn"), dir.join("two/syn"));
        assert_eq!(tree(&one), tree(&two), "{strategy}");
        // grad_cosine is rank 0's measure on the whole batch, like one process's.
        assert_close(&metrics(&one), &metrics(&two), 1e-3);
        let _ = fs::remove_dir_all(&dir);
    }
}

#[test]
fn two_processes_stop_early_at_the_same_step() {
    // Learning rates too small to change an f32 weight: validation never improves on the
    // first one (step 10), so patience 2 ends training at step 30 on both ranks (a rank
    // that went on would wait for the other at its next collective until the timeout).
    let meta = sinusoid().replace("[meta.maml]", "[meta.maml]\nouter_lr = 1e-30");
    let mtl = mtl_config("pcgrad").replace("lr = 0.01", "lr = 1e-30");
    for (name, config) in [("sin", meta), ("syn", mtl)] {
        let dir = scratch(&format!("nproc-patience-{name}"));
        let config = config
            .replace("val_every = 20", "val_every = 10")
            .replace("iterations = 40", "iterations = 1000")
            .replace("iterations = 30", "iterations = 1000")
            .replace("[train]", "[train]\npatience = 2");
        fs::write(dir.join("c.toml"), config).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_metl"))
            .args(["train", "c.toml", "--nproc", "2", "--progress", "quiet"])
            .env("METL_DIST_TIMEOUT", "60")
            .current_dir(&dir)
            .output()
            .unwrap();
        ok(&out);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout.matches("stopping early at step 30").count(), 1, "{name}: {stdout}");
        let run = dir.join("runs").join(name);
        assert_eq!(metrics(&run).last().unwrap()["step"].as_u64(), Some(30), "{name}");
        assert!(run.join("eval.json").is_file(), "{name}");
        let _ = fs::remove_dir_all(&dir);
    }
}
