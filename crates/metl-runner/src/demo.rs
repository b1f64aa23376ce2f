//! `metl demo`: MAML on the sinusoid family of Finn et al. (2017), from an embedded
//! default that needs no data files.
//!
//! MLP 1-40-40-1 with ReLU, K = 10 support and 10 query points per task, meta-batch 25,
//! one inner SGD step with α = 0.01, Adam with β = 1e-3, second order. After training it
//! adapts to fresh test tasks and reports the MSE on 100 query points per task before
//! adaptation and after 1 and 10 inner steps, with 95% intervals.

use crate::{
    cli::DemoArgs,
    device::parse_device,
    error::bad_input,
    plot::{colors, draw_panels, Mark, Panel, Series},
    progress::Progress,
};
use anyhow::Context;
use metl_data::{
    episode::Prefetcher,
    rng::substream,
    sinusoid::{SinusoidConfig, SinusoidTask, SinusoidTasks},
    TaskBatch,
};
use metl_meta::{
    evaluate,
    maml::{Maml, MamlConfig},
    Evaluation, MetaLearner,
};
use metl_models::{
    mlp::{Mlp, MlpConfig},
    TaskLoss,
};
use serde::Serialize;
use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};
use tch::{nn, Device, Kind, Tensor};

/// Tasks per meta-batch.
pub const META_BATCH: usize = 25;
/// Support (and training query) points per task.
pub const K: usize = 10;
/// Query points per test task on which the MSE is measured.
pub const TEST_QUERY: usize = 100;
/// Adaptation steps reported: before adaptation, after 1 and after 10 steps.
pub const EVAL_STEPS: [usize; 3] = [0, 1, 10];

/// The summary written to `results.json`.
#[derive(Debug, Serialize)]
pub struct DemoResults {
    /// Meta-training iterations run.
    pub iterations: u64,
    /// The seed.
    pub seed: u64,
    /// The device, e.g. `Cpu`.
    pub device: String,
    /// Wall time of meta-training in seconds.
    pub train_seconds: f64,
    /// Meta-training iterations per second.
    pub iterations_per_second: f64,
    /// Test MSE after 0, 1 and 10 adaptation steps.
    pub evaluations: Vec<Evaluation>,
}

/// Makes `dir` and checks that files can be written in it.
pub fn prepare_output_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir)
        .map_err(|e| bad_input(format!("cannot create output folder {}: {e}", dir.display())))?;
    let probe = dir.join(format!(".metl-write-test-{}", std::process::id()));
    fs::write(&probe, b"")
        .map_err(|e| bad_input(format!("cannot write to output folder {}: {e}", dir.display())))?;
    fs::remove_file(&probe).ok();
    Ok(())
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let device = parse_device(&args.device)?;
    prepare_output_dir(&args.out)?;
    tch::manual_seed(args.seed as i64);

    let vs = nn::VarStore::new(device);
    let (mlp, theta) = MlpConfig::new([1, 40, 40, 1]).init(&vs.root())?;
    let mut maml = Maml::new(mlp, theta, &vs, TaskLoss::Mse, MamlConfig::default())?;
    let family = SinusoidConfig::default();
    // The training tasks are drawn ahead on a thread (the same sequence).
    let mut sampler = SinusoidTasks::from_rng(family, substream(args.seed, 0));
    let mut train_tasks = Prefetcher::from_fn(2, move || sampler.sample_batch(META_BATCH, K, K, device));

    println!(
        "metl demo: MAML on sinusoids (MLP 1-40-40-1, K={K}, meta-batch {META_BATCH}, 1 inner step, second order) on {device:?}"
    );
    let mut progress = Progress::new("meta-train", args.iterations, args.progress);
    let mut curve = Vec::with_capacity(args.iterations as usize);
    let mut smoothed = None;
    for _ in 0..args.iterations {
        let batch = train_tasks.next_batch()?;
        let report = maml.meta_train_step(&batch)?;
        curve.push((report.step, report.loss));
        let s = smoothed.map_or(report.loss, |s: f64| 0.99 * s + 0.01 * report.loss);
        smoothed = Some(s);
        progress.update(report.step, &format!("loss {s:.3}"));
    }
    let train_seconds = progress.finish().as_secs_f64();

    let mut test_tasks = SinusoidTasks::from_rng(family, substream(args.seed, 1));
    let test_batches = (0..args.test_tasks.div_ceil(META_BATCH as u64))
        .map(|i| {
            let n = (args.test_tasks - i * META_BATCH as u64).min(META_BATCH as u64) as usize;
            test_tasks.sample_batch(n, K, TEST_QUERY, device)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let evaluations = evaluate(&maml, test_batches, &EVAL_STEPS)?;

    let results = DemoResults {
        iterations: args.iterations,
        seed: args.seed,
        device: format!("{device:?}"),
        train_seconds,
        iterations_per_second: args.iterations as f64 / train_seconds,
        evaluations,
    };
    println!(
        "trained {} iterations in {:.1} s ({:.1} it/s)",
        results.iterations, results.train_seconds, results.iterations_per_second
    );
    println!("test MSE over {} new tasks ({TEST_QUERY} query points each, mean ± 95% CI):", args.test_tasks);
    for e in &results.evaluations {
        let what = if e.steps == 0 {
            "before adaptation".to_owned()
        } else {
            format!("after {:>2} step(s)", e.steps)
        };
        println!("  {what:<18} {:.3}", e.loss);
    }
    let pre = results.evaluations[0].loss.mean;
    let post = results.evaluations[1].loss.mean;
    println!("  one gradient step lowers the MSE {:.1}x", pre / post);

    write_outputs(&args.out, &results, &curve, &maml, &family, args.seed, device)
}

fn write_outputs(
    out: &Path,
    results: &DemoResults,
    curve: &[(u64, f64)],
    maml: &Maml<Mlp>,
    family: &SinusoidConfig,
    seed: u64,
    device: Device,
) -> anyhow::Result<()> {
    let json = out.join("results.json");
    write_atomically(&json, serde_json::to_string_pretty(results)?.as_bytes())?;
    let mut csv = String::from("step,loss\n");
    for (step, loss) in curve {
        csv.push_str(&format!("{step},{loss}\n"));
    }
    let csv_path = out.join("metrics.csv");
    write_atomically(&csv_path, csv.as_bytes())?;
    let png = out.join("demo.png");
    plot_demo(&png, maml, family, seed, device, curve)
        .with_context(|| format!("plotting {}", png.display()))?;
    println!("wrote {}, {} and {}", png.display(), csv_path.display(), json.display());
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp: PathBuf = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// Four panels: three test tasks (true curve, support points, predictions before and
/// after adaptation) and the meta-training curve.
fn plot_demo(
    path: &Path,
    maml: &Maml<Mlp>,
    family: &SinusoidConfig,
    seed: u64,
    device: Device,
    curve: &[(u64, f64)],
) -> anyhow::Result<()> {
    const SHOWN: usize = 3;
    const GRID: i64 = 200;
    let mut tasks = SinusoidTasks::from_rng(*family, substream(seed, 2));
    let (support, drawn): (TaskBatch, Vec<SinusoidTask>) =
        tasks.sample_batch_with_tasks(SHOWN, K, 1, device)?;
    let [lo, hi] = family.x_range;
    let grid = Tensor::linspace(lo, hi, GRID, (Kind::Float, device));
    let batch = TaskBatch {
        query_x: grid.view([1, GRID, 1]).expand([SHOWN as i64, GRID, 1], false).contiguous(),
        query_y: Tensor::zeros([SHOWN as i64, GRID, 1], (Kind::Float, device)),
        ..support
    };
    let xs = Vec::<f64>::try_from(grid.to_kind(Kind::Double).to_device(Device::Cpu))?;
    let to_rows = |t: Tensor| -> anyhow::Result<Vec<Vec<f64>>> {
        let t = t.to_kind(Kind::Double).to_device(Device::Cpu).view([SHOWN as i64, -1]);
        (0..SHOWN).map(|i| Ok(Vec::<f64>::try_from(t.get(i as i64))?)).collect()
    };
    let predictions: Vec<(usize, Vec<Vec<f64>>)> = [0, 1, 10]
        .into_iter()
        .map(|steps| Ok((steps, to_rows(maml.adapt_and_predict(&batch, steps)?)?)))
        .collect::<anyhow::Result<_>>()?;
    let sx = to_rows(batch.support_x.shallow_clone())?;
    let sy = to_rows(batch.support_y.shallow_clone())?;

    let mut panels = Vec::new();
    for (i, task) in drawn.iter().enumerate() {
        let mut series = vec![Series {
            label: "true function".into(),
            points: xs.iter().map(|&x| (x, task.eval(x))).collect(),
            mark: Mark::Line,
            color: colors::TRUTH,
        }];
        for (steps, rows) in &predictions {
            let label =
                if *steps == 0 { "before adaptation".to_owned() } else { format!("after {steps} step(s)") };
            let (mark, color) = match steps {
                0 => (Mark::Dashed, colors::BASE),
                1 => (Mark::Line, colors::pick(0)),
                _ => (Mark::Line, colors::pick(1)),
            };
            let points = xs.iter().copied().zip(rows[i].iter().copied()).collect();
            series.push(Series { label, points, mark, color });
        }
        series.push(Series {
            label: format!("{K} support points"),
            points: sx[i].iter().copied().zip(sy[i].iter().copied()).collect(),
            mark: Mark::Dots,
            color: colors::pick(2),
        });
        panels.push(Panel {
            title: format!("test task: A = {:.2}, phase = {:.2}", task.amplitude, task.phase),
            x_label: "x".into(),
            y_label: "y".into(),
            log_y: false,
            series,
        });
    }
    let stride = (curve.len() / 2000).max(1);
    let window = 100.min(curve.len()).max(1);
    let smoothed: Vec<(f64, f64)> = curve
        .windows(window)
        .step_by(stride)
        .map(|w| (w[w.len() - 1].0 as f64, w.iter().map(|p| p.1).sum::<f64>() / w.len() as f64))
        .collect();
    panels.push(Panel {
        title: "meta-training: query MSE after one step".into(),
        x_label: "iteration".into(),
        y_label: "MSE (moving average of 100)".into(),
        log_y: true,
        series: vec![Series {
            label: "meta-loss".into(),
            points: smoothed,
            mark: Mark::Line,
            color: colors::pick(0),
        }],
    });
    draw_panels(path, &panels, 2, (1400, 1000))
}
