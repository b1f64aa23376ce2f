//! `cargo xtask compare`: metl beside the project's PyTorch reference scripts
//! (`benches/reference/`), on the same machine, in the same run.
//!
//! For every workload it runs the reference implementation(s) and `metl bench` (same
//! sizes, 2 threads, same warm-up and timed windows, data sampling inside the timed loop
//! for both), alternately, for several rounds; prints a table of medians, ratios and
//! spreads; and writes it into docs/performance.md between the `compare` markers, with
//! the date, the machine and the command.
//!
//! `metl` keeps freed memory for reuse by default (glibc's variables below, set by
//! `crates/metl-runner/src/malloc.rs`); each reference runs twice per round, as users run
//! it (glibc's defaults) and with the same variables, so that both ratios are reported.

use crate::{
    cmd::{cargo, fail, run, workspace_root, Env, Failure, Result},
    libtorch,
};
use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

/// The glibc settings `metl` runs with by default (`crates/metl-runner/src/malloc.rs`'s
/// `SETTINGS`; a test there checks that these are the same).
const METL_MALLOC: [(&str, &str); 3] = [
    ("MALLOC_MMAP_THRESHOLD_", "4294967296"),
    ("MALLOC_TRIM_THRESHOLD_", "68719476736"),
    ("MALLOC_TOP_PAD_", "1073741824"),
];

/// One reference run and its metl counterpart.
struct Workload {
    /// Row label, e.g. `MAML sinusoid, second order`.
    label: &'static str,
    /// The reference script and its arguments (the implementation is added per variant).
    script: &'static str,
    args: &'static [&'static str],
    /// Reference implementations to run (`--impl`), or none for single-implementation scripts.
    impls: &'static [&'static str],
    /// The JSON key of the reference's rate (`a.b` for nested; `results[method,T]` for mtl).
    key: &'static str,
    /// `metl bench` arguments.
    metl: &'static [&'static str],
    /// Needs Omniglot.
    omniglot: bool,
    /// The target ratio against the fastest reference implementation.
    target: &'static str,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        label: "MAML sinusoid, second order",
        script: "maml_sinusoid.py",
        args: &["--iters", "650", "--skip-eval"],
        impls: &["vmap", "func", "l2l"],
        key: "meta_iters_per_s",
        metl: &["maml-sinusoid"],
        omniglot: false,
        target: "≥ 2.5× vmap, ≥ 15× l2l",
    },
    Workload {
        label: "MAML sinusoid, first order",
        script: "maml_sinusoid.py",
        args: &["--iters", "650", "--skip-eval", "--first-order"],
        impls: &["vmap", "func", "l2l"],
        key: "meta_iters_per_s",
        metl: &["maml-sinusoid", "--first-order"],
        omniglot: false,
        target: "≥ 2× vmap, ≥ 15× l2l",
    },
    Workload {
        label: "MAML Omniglot 5w1s, meta-batch 32, second order (default: passes sized by the 1 GB memory budget)",
        script: "maml_omniglot.py",
        args: &["--warmup", "2", "--window", "5", "--iters", "0", "--skip-eval", "--log-every", "0"],
        impls: &["l2l", "func"],
        key: "meta_iters_per_s",
        metl: &["maml-omniglot"],
        omniglot: true,
        target: "≥ 1.4× fastest, memory ≤ PyTorch",
    },
    Workload {
        label: "MAML Omniglot 5w1s, meta-batch 32, second order, all tasks in one pass",
        script: "maml_omniglot.py",
        args: &["--warmup", "2", "--window", "5", "--iters", "0", "--skip-eval", "--log-every", "0"],
        impls: &["l2l", "func"],
        key: "meta_iters_per_s",
        metl: &["maml-omniglot", "--memory-budget", "none"],
        omniglot: true,
        target: "≥ 1.8× fastest",
    },
    Workload {
        label: "MAML Omniglot 5w1s, meta-batch 32, first order",
        script: "maml_omniglot.py",
        args: &[
            "--warmup",
            "2",
            "--window",
            "5",
            "--iters",
            "0",
            "--skip-eval",
            "--log-every",
            "0",
            "--first-order",
        ],
        impls: &["l2l", "func"],
        key: "meta_iters_per_s",
        metl: &["maml-omniglot", "--first-order"],
        omniglot: true,
        target: "≥ 1.9× fastest",
    },
    Workload {
        label: "ProtoNets 60-way 5-shot episode",
        script: "protonet_omniglot.py",
        args: &["--iters", "0", "--skip-eval", "--log-every", "0"],
        impls: &[],
        key: "episodes_per_s",
        metl: &["protonet-omniglot"],
        omniglot: true,
        target: "≥ 1.6× as users run PyTorch, ≥ 1.1× with the same malloc settings",
    },
    Workload {
        label: "MTL step, EW, T = 2",
        script: "mtl_step.py",
        args: &["--tasks", "2", "--methods", "equal"],
        impls: &[],
        key: "results.0.steps_per_s",
        metl: &["mtl-step", "--strategy", "ew", "--tasks", "2"],
        omniglot: false,
        target: "≥ 1.2×",
    },
    Workload {
        label: "MTL step, PCGrad, T = 2",
        script: "mtl_step.py",
        args: &["--tasks", "2", "--methods", "pcgrad"],
        impls: &[],
        key: "results.0.steps_per_s",
        metl: &["mtl-step", "--strategy", "pcgrad", "--tasks", "2"],
        omniglot: false,
        target: "-",
    },
    Workload {
        label: "MTL step, MGDA-UB, T = 2",
        script: "mtl_step.py",
        args: &["--tasks", "2", "--methods", "mgda"],
        impls: &[],
        key: "results.0.steps_per_s",
        metl: &["mtl-step", "--strategy", "mgda_ub", "--tasks", "2"],
        omniglot: false,
        target: "≥ 1.2×",
    },
    Workload {
        label: "MTL step, EW, T = 10",
        script: "mtl_step.py",
        args: &["--tasks", "10", "--methods", "equal"],
        impls: &[],
        key: "results.0.steps_per_s",
        metl: &["mtl-step", "--strategy", "ew", "--tasks", "10"],
        omniglot: false,
        target: "≥ 1.2×",
    },
    Workload {
        label: "MTL step, PCGrad, T = 10",
        script: "mtl_step.py",
        args: &["--tasks", "10", "--methods", "pcgrad"],
        impls: &[],
        key: "results.0.steps_per_s",
        metl: &["mtl-step", "--strategy", "pcgrad", "--tasks", "10"],
        omniglot: false,
        target: "≥ 1.5×",
    },
    Workload {
        label: "MTL step, MGDA-UB, T = 10",
        script: "mtl_step.py",
        args: &["--tasks", "10", "--methods", "mgda"],
        impls: &[],
        key: "results.0.steps_per_s",
        metl: &["mtl-step", "--strategy", "mgda_ub", "--tasks", "10"],
        omniglot: false,
        target: "≥ 1.5×",
    },
    Workload {
        label: "MTL step, EW, T = 40",
        script: "mtl_step.py",
        args: &["--tasks", "40", "--methods", "equal"],
        impls: &[],
        key: "results.0.steps_per_s",
        metl: &["mtl-step", "--strategy", "ew", "--tasks", "40"],
        omniglot: false,
        target: "≥ 1.2×",
    },
    Workload {
        label: "MTL step, PCGrad, T = 40",
        script: "mtl_step.py",
        args: &["--tasks", "40", "--methods", "pcgrad"],
        impls: &[],
        key: "results.0.steps_per_s",
        metl: &["mtl-step", "--strategy", "pcgrad", "--tasks", "40"],
        omniglot: false,
        target: "≥ 3×",
    },
    Workload {
        label: "MTL step, MGDA-UB, T = 40",
        script: "mtl_step.py",
        args: &["--tasks", "40", "--methods", "mgda"],
        impls: &[],
        key: "results.0.steps_per_s",
        metl: &["mtl-step", "--strategy", "mgda_ub", "--tasks", "40"],
        omniglot: false,
        target: "-",
    },
];

/// The folder of the reference scripts: `$METL_REFERENCE_DIR`, else the project's own
/// `benches/reference`.
fn reference_dir() -> PathBuf {
    std::env::var_os("METL_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("benches/reference"))
}

/// Omniglot's folder: `$METL_OMNIGLOT_DIR`, else the workspace's `data/omniglot`.
fn omniglot_dir() -> PathBuf {
    std::env::var_os("METL_OMNIGLOT_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("data/omniglot"))
}

/// Makes sure the reference scripts' Python packages are in the virtualenv: numpy and
/// Pillow always; learn2learn 0.2.0 when it can be built (its sdist needs its Cython files
/// regenerated on Python 3.11, as benches/reference/README.md describes). Returns whether
/// learn2learn is available.
fn ensure_reference_packages(python: &Path) -> Result<bool> {
    let imports = |modules: &str| {
        Command::new(python)
            .args(["-c", &format!("import {modules}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !imports("numpy, PIL") {
        let mut pip = Command::new(python);
        pip.args(["-m", "pip", "install", "--quiet", "numpy", "pillow"]);
        run(pip, &Env::new())?;
    }
    if imports("learn2learn") {
        return Ok(true);
    }
    eprintln!("compare: installing learn2learn 0.2.0 for the l2l reference variants");
    let work = std::env::temp_dir().join(format!("metl-l2l-{}", std::process::id()));
    let result = install_learn2learn(python, &work);
    let _ = std::fs::remove_dir_all(&work);
    match result {
        Ok(()) if imports("learn2learn") => Ok(true),
        Ok(()) => Ok(false),
        Err(Failure(message)) => {
            eprintln!("compare: learn2learn unavailable ({message}); its rows are skipped");
            Ok(false)
        }
    }
}

fn install_learn2learn(python: &Path, work: &Path) -> Result {
    std::fs::create_dir_all(work)?;
    let step = |args: &[&str], dir: &Path| -> Result {
        let out = Command::new(python).args(args).current_dir(dir).output()?;
        if out.status.success() {
            Ok(())
        } else {
            fail!(
                "`python {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
            )
        }
    };
    step(&["-m", "pip", "install", "--quiet", "cython"], work)?;
    step(
        &[
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "learn2learn==0.2.0",
            "-d",
            ".",
        ],
        work,
    )?;
    let tar = Command::new("tar").args(["xzf", "learn2learn-0.2.0.tar.gz"]).current_dir(work).status()?;
    if !tar.success() {
        fail!("cannot unpack learn2learn-0.2.0.tar.gz");
    }
    let src = work.join("learn2learn-0.2.0");
    for pyx in ["meta_dataset", "task_dataset", "transforms"] {
        step(&["-m", "cython", "-3", &format!("learn2learn/data/{pyx}.pyx")], &src)?;
    }
    step(&["-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "."], &src)?;
    let constraint = work.join("constraints.txt");
    std::fs::write(&constraint, "torch==2.13.0\n")?;
    let constraint = constraint.display().to_string();
    step(
        &[
            "-m",
            "pip",
            "install",
            "--quiet",
            "-c",
            &constraint,
            "gym",
            "tqdm",
            "requests",
            "scipy",
            "torchvision",
        ],
        work,
    )
}

/// A measured rate and peak memory.
#[derive(Debug, Clone, Copy)]
struct Measure {
    rate: f64,
    rss_mb: f64,
    /// metl only: the share of the timed windows spent waiting for data.
    data_wait: f64,
}

/// Reads `key` (dotted; numbers index lists), `peak_rss_mb` and `data_wait_fraction` (metl's;
/// 0 where absent) from a JSON file through Python's json module (xtask has no JSON parser of
/// its own, by design).
fn read_json(python: &Path, file: &Path, key: &str) -> Result<Measure> {
    let script = format!(
        "import json,sys\nd=json.load(open(sys.argv[1]))\nv=d\nfor k in {key:?}.split('.'):\n    v=v[int(k)] if isinstance(v, list) else v[k]\nprint(v, d.get('peak_rss_mb', 0), d.get('data_wait_fraction', 0))"
    );
    let out = Command::new(python).args(["-c", &script]).arg(file).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace().map(str::parse::<f64>);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(rate)), Some(Ok(rss_mb)), Some(Ok(data_wait))) if out.status.success() => {
            Ok(Measure { rate, rss_mb, data_wait })
        }
        _ => fail!(
            "cannot read `{key}` from {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// How a reference script's process allocates memory.
#[derive(Debug, Clone, Copy)]
enum Malloc {
    /// glibc's defaults, as users run PyTorch.
    AsUsersRunIt,
    /// [`METL_MALLOC`], metl's default.
    LikeMetl,
}

fn run_reference(
    python: &Path,
    w: &Workload,
    implementation: Option<&str>,
    malloc: Malloc,
    out_dir: &Path,
    name: &str,
) -> Result<Measure> {
    let mut cmd = Command::new(python);
    for (var, value) in METL_MALLOC {
        match malloc {
            Malloc::AsUsersRunIt => cmd.env_remove(var),
            Malloc::LikeMetl => cmd.env(var, value),
        };
    }
    cmd.arg(reference_dir().join(w.script)).args(w.args).args(["--threads", "2", "--out-dir"]).arg(out_dir);
    cmd.args(["--name", name]);
    if let Some(i) = implementation {
        cmd.args(["--impl", i]);
    }
    if w.omniglot {
        cmd.arg("--data-dir").arg(omniglot_dir());
    }
    let out = cmd.output()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        fail!(
            "{} failed:\n{}",
            w.script,
            err.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    read_json(python, &out_dir.join(format!("{name}.json")), w.key)
}

fn run_metl(python: &Path, w: &Workload, out_dir: &Path, name: &str) -> Result<Measure> {
    let metl = crate::cmd::target_dir().join("release/metl");
    let mut cmd = Command::new(metl);
    cmd.arg("bench").args(w.metl).args(["--threads", "2"]);
    // metl as users run it: its own default (it sets the variables itself).
    cmd.env_remove("METL_MALLOC");
    for (var, _) in METL_MALLOC {
        cmd.env_remove(var);
    }
    if w.omniglot {
        cmd.env("METL_OMNIGLOT_DIR", omniglot_dir());
    }
    let out = cmd.output()?;
    if !out.status.success() {
        fail!("metl bench {} failed: {}", w.metl.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    let file = out_dir.join(format!("{name}.json"));
    std::fs::write(&file, &out.stdout)?;
    read_json(python, &file, "per_second")
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn spread(v: &[f64]) -> f64 {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    100.0 * (hi - lo) / median(v)
}

/// One row of the table.
struct Row {
    label: String,
    reference: String,
    /// PyTorch as users run it.
    torch: Vec<Measure>,
    /// PyTorch with metl's allocator settings.
    tuned: Vec<Measure>,
    metl: Vec<Measure>,
    target: &'static str,
}

/// Runs the comparison: `rounds` alternations, optionally only workloads whose label
/// contains `only`.
pub fn compare(rounds: usize, only: Option<&str>) -> Result {
    let torch = libtorch::ensure(false)?;
    let Some(python) = libtorch::python(&torch) else {
        fail!(
            "compare runs the PyTorch reference scripts with a Python that has torch 2.13.0: set METL_PYTHON, \
             or run `cargo xtask setup` without LIBTORCH once to create the virtualenv"
        );
    };
    if !reference_dir().join("maml_sinusoid.py").is_file() {
        fail!(
            "the PyTorch reference scripts are not at {} (set METL_REFERENCE_DIR)",
            reference_dir().display()
        );
    }
    let workloads: Vec<&Workload> = WORKLOADS
        .iter()
        .filter(|w| only.is_none_or(|o| w.label.to_lowercase().contains(&o.to_lowercase())))
        .collect();
    if workloads.iter().any(|w| w.omniglot)
        && !omniglot_dir().join("images_background.zip").is_file()
        && !omniglot_dir().join("images_background").is_dir()
    {
        fail!(
            "Omniglot is not at {} (set METL_OMNIGLOT_DIR to the folder with images_background.zip)",
            omniglot_dir().display()
        );
    }
    let l2l = ensure_reference_packages(&python)?;
    let env = torch.env();
    let mut build = cargo();
    build.args(["build", "--release", "--package", "metl-runner", "--bin", "metl"]);
    run(build, &env)?;
    let out_dir = std::env::temp_dir().join(format!("metl-compare-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir)?;
    let mut rows: Vec<Row> = Vec::new();
    for w in &workloads {
        let impls: Vec<Option<&str>> = if w.impls.is_empty() {
            vec![None]
        } else {
            w.impls.iter().filter(|i| l2l || **i != "l2l").map(|i| Some(*i)).collect()
        };
        for i in &impls {
            rows.push(Row {
                label: w.label.to_owned(),
                reference: i.map_or("PyTorch".to_owned(), |i| format!("PyTorch {i}")),
                torch: Vec::new(),
                tuned: Vec::new(),
                metl: Vec::new(),
                target: w.target,
            });
        }
    }
    for round in 0..rounds {
        let mut row = 0;
        for (wi, w) in workloads.iter().enumerate() {
            let impls: Vec<Option<&str>> = if w.impls.is_empty() {
                vec![None]
            } else {
                w.impls.iter().filter(|i| l2l || **i != "l2l").map(|i| Some(*i)).collect()
            };
            let metl_name = format!("metl-{wi}-{round}");
            eprintln!("compare round {}/{rounds}: {} — metl", round + 1, w.label);
            let metl = run_metl(&python, w, &out_dir, &metl_name)?;
            for i in impls {
                eprintln!("compare round {}/{rounds}: {} — {}", round + 1, w.label, i.unwrap_or("PyTorch"));
                let name = format!("ref-{wi}-{}-{round}", i.unwrap_or("torch"));
                let measure = run_reference(&python, w, i, Malloc::AsUsersRunIt, &out_dir, &name)?;
                rows[row].torch.push(measure);
                eprintln!(
                    "compare round {}/{rounds}: {} — {} with metl's allocator settings",
                    round + 1,
                    w.label,
                    i.unwrap_or("PyTorch")
                );
                let tuned =
                    run_reference(&python, w, i, Malloc::LikeMetl, &out_dir, &format!("{name}-malloc"))?;
                rows[row].tuned.push(tuned);
                rows[row].metl.push(metl);
                row += 1;
            }
        }
    }
    let table = render(&rows);
    println!("{table}");
    write_performance_md(&table, rounds)?;
    let _ = std::fs::remove_dir_all(&out_dir);
    Ok(())
}

fn render(rows: &[Row]) -> String {
    let mut s = String::from(
        "| workload | reference | PyTorch median | metl median | ratio | PyTorch, metl's malloc settings | ratio | \
         spread PyTorch / same malloc / metl | peak RSS MB PyTorch / same malloc / metl | metl data wait | target |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        let rates = |m: &[Measure]| m.iter().map(|x| x.rate).collect::<Vec<_>>();
        let (t, u, m) = (rates(&r.torch), rates(&r.tuned), rates(&r.metl));
        let rss = |m: &[Measure]| m.iter().map(|x| x.rss_mb).fold(0.0, f64::max);
        let _ = writeln!(
            s,
            "| {} | {} | {:.3} /s | {:.3} /s | {:.2}× | {:.3} /s | {:.2}× | {:.0}% / {:.0}% / {:.0}% | {:.0} / {:.0} / {:.0} | {:.2}% | {} |",
            r.label,
            r.reference,
            median(&t),
            median(&m),
            median(&m) / median(&t),
            median(&u),
            median(&m) / median(&u),
            spread(&t),
            spread(&u),
            spread(&m),
            rss(&r.torch),
            rss(&r.tuned),
            rss(&r.metl),
            100.0 * median(&r.metl.iter().map(|x| x.data_wait).collect::<Vec<_>>()),
            r.target
        );
    }
    s
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {}", model.unwrap_or_else(|| "unknown CPU".into()))
}

fn today() -> String {
    Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown date".into())
}

const BEGIN: &str = "<!-- compare:begin (written by cargo xtask compare) -->";
const END: &str = "<!-- compare:end -->";

fn write_performance_md(table: &str, rounds: usize) -> Result {
    let path = workspace_root().join("docs/performance.md");
    let existing =
        std::fs::read_to_string(&path).unwrap_or_else(|_| format!("# Performance\n\n{BEGIN}\n{END}\n"));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let block = format!(
        "{BEGIN}\nMeasured {} on {} by `cargo xtask {}` ({rounds} round(s), reference and metl alternating, 2 threads each; \
         figures are medians over rounds of each run's median window; ratio = metl / PyTorch, higher is better; metl runs with its \
         default allocator settings, PyTorch as users run it and, in the second pair of columns, with the same settings: \
         MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=1073741824).\n\n{table}{END}",
        today(),
        machine(),
        args.join(" ")
    );
    let updated = match (existing.find(BEGIN), existing.find(END)) {
        (Some(a), Some(b)) if a < b => format!("{}{block}{}", &existing[..a], &existing[b + END.len()..]),
        _ => format!("{existing}\n{block}\n"),
    };
    std::fs::write(&path, updated)?;
    eprintln!("wrote the table into {}", path.display());
    Ok(())
}
