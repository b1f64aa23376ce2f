//! Every ready-made experiment in `configs/` and its subfolders trains, validates,
//! checkpoints and tests in a short version (a few iterations through `--set` overrides).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn omniglot_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("METL_OMNIGLOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared/data/omniglot"));
    dir.exists().then_some(dir)
}

/// The overrides that shrink an experiment to a smoke run.
fn short(config: &str) -> Vec<String> {
    let text = fs::read_to_string(config).unwrap();
    let mut set = vec![
        "train.iterations=2",
        "train.log_every=1",
        "train.val_every=2",
        "train.checkpoint_every=2",
        "device=\"cpu\"",
    ];
    if text.contains("[episodes]") {
        set.push("episodes.meta_batch=2");
    }
    if text.contains("[test]") {
        set.extend(["test.episodes=4", "test.val_episodes=2", "test.batch=2"]);
    }
    if FEW_SHOT.iter().any(|(section, _)| text.contains(section)) {
        // The fixtures have 5 classes per split (CIFAR-100's have more).
        set.push("episodes.ways=5");
    }
    if text.contains("[data.omniglot50]") {
        // Two alphabets: the strategy and architecture still run on several tasks, and the
        // validation and test splits stay small.
        set.push("data.omniglot50.alphabets=[0,1]");
    }
    set.into_iter().map(str::to_owned).collect()
}

/// The few-shot benchmarks' sections and the fixture folder each reads.
const FEW_SHOT: [(&str, &str); 5] = [
    ("[data.cifar_fs]", "cifar100"),
    ("[data.fc100]", "cifar100"),
    ("[data.mini_imagenet]", "mini_imagenet"),
    ("[data.cub]", "cub"),
    ("[data.tiered_imagenet]", "tiered_imagenet"),
];

/// Writes the fixture `name` of a few-shot benchmark into `dir/name` (once) and returns
/// that folder.
fn few_shot_fixture(dir: &Path, name: &str) -> PathBuf {
    use metl_data::few_shot::fixtures;
    let folder = dir.join(name);
    if !folder.exists() {
        match name {
            // 16 images per class: 1 shot + 15 queries.
            "cifar100" => fixtures::write_cifar100(&folder, 12, 4).map(drop),
            "mini_imagenet" => fixtures::write_mini_imagenet_pickles(&folder, 5, 16),
            // 20 classes: 10 / 5 / 5 under Chen et al.'s rule.
            "cub" => fixtures::write_cub(&folder, 20, 16).map(drop),
            "tiered_imagenet" => fixtures::write_tiered_imagenet(&folder, 5, 16),
            other => unreachable!("no fixture {other}"),
        }
        .unwrap();
    }
    folder
}

/// For configs of datasets read from files under `data/`: writes a tiny fixture of the
/// dataset in its exact on-disk layout into `fixtures` (once) and returns the overrides
/// that point the config at it.
fn fixture_overrides(text: &str, fixtures: &Path) -> Vec<String> {
    use metl_data::multitask::fixtures;
    let mut set = Vec::new();
    let quoted = |p: &Path| format!("{:?}", p.to_str().unwrap());
    if text.contains("[data.csv]") {
        let path = fixtures.join("tabular.csv");
        if !path.exists() {
            fixtures::write_tabular_csv(&path, 120, 0).unwrap();
        }
        set.push(format!("data.csv.path={}", quoted(&path)));
    }
    if text.contains("[data.multi_mnist]") {
        let (mnist, fashion) = (fixtures.join("mnist"), fixtures.join("fashion-mnist"));
        if !mnist.exists() {
            fixtures::write_mnist(&mnist, 40, 20, true, 0).unwrap();
            fixtures::write_mnist(&fashion, 40, 20, false, 1).unwrap();
        }
        set.push(format!("data.multi_mnist.mnist_dir={}", quoted(&mnist)));
        set.push(format!("data.multi_mnist.fashion_dir={}", quoted(&fashion)));
    }
    if text.contains("[data.celeba]") {
        let root = fixtures.join("celeba");
        if !root.exists() {
            fixtures::write_celeba(&root, 30, 0).unwrap();
        }
        set.push(format!("data.celeba.root={}", quoted(&root)));
    }
    if text.contains("[data.nyuv2]") {
        let root = fixtures.join("nyuv2");
        if !root.exists() {
            fixtures::write_nyuv2(&root, 4, 2, [32, 64], 0).unwrap();
        }
        set.push(format!("data.nyuv2.root={}", quoted(&root)));
        // A narrow SegNet: the short run checks the pipeline, not the paper's network.
        set.push("model.segnet.widths=[4, 4, 4, 4, 4]".into());
    }
    for (section, name) in FEW_SHOT {
        if text.contains(section) {
            let root = few_shot_fixture(fixtures, name);
            let key = section.trim_start_matches('[').trim_end_matches(']');
            set.push(format!("{key}.root={}", quoted(&root)));
        }
    }
    set
}

#[test]
fn every_config_runs_in_a_short_version() {
    let configs_dir = workspace().join("configs");
    let mut configs = Vec::new();
    let mut folders = vec![configs_dir];
    while let Some(folder) = folders.pop() {
        for entry in fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                configs.push(path);
            }
        }
    }
    configs.sort();
    assert!(configs.len() >= 13 + 31, "configs/ lost files: {configs:?}");
    let out = std::env::temp_dir().join(format!("metl-configs-test-{}", std::process::id()));
    let omniglot = omniglot_dir();
    for config in &configs {
        let text = fs::read_to_string(config).unwrap();
        let needs_omniglot = text.contains("[data.omniglot");
        if needs_omniglot && omniglot.is_none() {
            eprintln!("skipped {}: no Omniglot folder (set METL_OMNIGLOT_DIR)", config.display());
            continue;
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_metl"));
        cmd.arg("train").arg(config).arg("--out").arg(&out).args(["--progress", "quiet"]);
        for s in
            short(config.to_str().unwrap()).into_iter().chain(fixture_overrides(&text, &out.join("fixtures")))
        {
            cmd.args(["--set", &s]);
        }
        if let Some(dir) = &omniglot {
            cmd.env("METL_OMNIGLOT_DIR", dir);
        }
        let started = std::time::Instant::now();
        let result = cmd.output().unwrap();
        eprintln!("{}: {:.1} s", config.display(), started.elapsed().as_secs_f64());
        assert!(
            result.status.success(),
            "{} failed:\n{}",
            config.display(),
            String::from_utf8_lossy(&result.stderr)
        );
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .map(|n| n.trim().trim_matches('"').to_owned())
            .unwrap();
        assert!(out.join(&name).join("eval.json").is_file(), "{name}: no eval.json");
    }
    fs::remove_dir_all(&out).ok();
}
