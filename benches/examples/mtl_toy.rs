//! Every metl strategy on the two-objective toy problem of CAGrad / Nash-MTL / FAMO
//! (`metl_benches::mtl_toy`), from Nash-MTL's five start points with Adam (lr 1e-3):
//! whether each run ends on the Pareto set, how far from the average-loss optimum, and a
//! PNG of the trajectories over the contours of the mean loss.
//!
//! ```text
//! cargo run --release -p metl-benches --example mtl_toy -- \
//!     --steps 35000 --scales 0.1,1 --threads 2 --out runs/mtl_toy
//! ```
//!
//! Options: `--steps` (default 35000, Nash-MTL's; CAGrad runs 100000, FAMO 50000),
//! `--scales` (the factor of L₁; default `0.1,1`), `--strategies` (comma-separated names;
//! default all), `--threads` (parallel runs), `--tol` (distance in x₂ that counts as on the
//! Pareto set; default 0.05), `--out` (folder for `results.json`, `table.md`, `toy_*.png`).

use metl_benches::mtl_toy::{distance_to_optimum, losses_at, on_pareto_set, run, ToyRun, PARETO_X2, STARTS};
use metl_mtl::{registry::STRATEGIES, StrategyConfig};
use plotters::prelude::*;
use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf, sync::Mutex};

const FONT: &str = "metl-toy-sans";

struct Args {
    steps: usize,
    scales: Vec<f64>,
    strategies: Vec<String>,
    threads: usize,
    tol: f64,
    out: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        steps: 35_000,
        scales: vec![0.1, 1.0],
        strategies: STRATEGIES.iter().map(|s| s.name.to_owned()).collect(),
        threads: 2,
        tol: 0.05,
        out: PathBuf::from("runs/mtl_toy"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--steps" => args.steps = value.parse().map_err(|e| bad(&e))?,
            "--scales" => {
                args.scales = value
                    .split(',')
                    .map(|s| s.parse::<f64>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| bad(&e))?
            }
            "--strategies" => args.strategies = value.split(',').map(str::to_owned).collect(),
            "--threads" => args.threads = value.parse().map_err(|e| bad(&e))?,
            "--tol" => args.tol = value.parse().map_err(|e| bad(&e))?,
            "--out" => args.out = PathBuf::from(value),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    for name in &args.strategies {
        StrategyConfig::default_for(name)?;
    }
    std::fs::create_dir_all(&args.out)?;
    tch::set_num_threads(1);
    let jobs: Vec<(String, f64, usize)> = args
        .strategies
        .iter()
        .flat_map(|s| {
            args.scales.iter().flat_map(move |&scale| (0..STARTS.len()).map(move |i| (s.clone(), scale, i)))
        })
        .collect();
    let queue = Mutex::new(jobs.into_iter());
    let results: Mutex<BTreeMap<(String, u64, usize), ToyRun>> = Mutex::new(BTreeMap::new());
    let record_every = (args.steps / 500).max(1);
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..args.threads.max(1) {
            scope.spawn(|| loop {
                let Some((name, scale, start)) = queue.lock().expect("queue").next() else { break };
                let config = StrategyConfig::default_for(&name).expect("checked");
                let result = run(&config, scale, STARTS[start], args.steps, record_every);
                results.lock().expect("results").insert((name, scale.to_bits(), start), result);
            });
        }
    });
    let results = results.into_inner()?;
    eprintln!("{} runs of {} steps in {:.1} s", results.len(), args.steps, started.elapsed().as_secs_f64());

    let mut json = serde_json::Map::new();
    let mut table = String::new();
    for &scale in &args.scales {
        writeln!(table, "\n**L₁ scale {scale}** ({} Adam steps, lr 1e-3; on the Pareto set: |x₂ + 8.3552| ≤ {} and x₁ ∈ [−7, 7])\n", args.steps, args.tol)?;
        writeln!(
            table,
            "| strategy | on Pareto set | mean distance to (0, −8.3552) | ends (x₁, x₂) from the 5 starts |"
        )?;
        writeln!(table, "| --- | --- | --- | --- |")?;
        let mut per_scale = serde_json::Map::new();
        for name in &args.strategies {
            let runs: Vec<&ToyRun> =
                (0..STARTS.len()).map(|i| &results[&(name.clone(), scale.to_bits(), i)]).collect();
            let on = runs
                .iter()
                .filter(|r| r.error.is_none() && on_pareto_set(r.end.0, r.end.1, args.tol))
                .count();
            let distances: Vec<f64> = runs.iter().map(|r| distance_to_optimum(r.end.0, r.end.1)).collect();
            let mean = distances.iter().sum::<f64>() / distances.len() as f64;
            let ends: Vec<String> = runs
                .iter()
                .map(|r| match &r.error {
                    None => format!("({:.2}, {:.2})", r.end.0, r.end.1),
                    Some(_) => "error".into(),
                })
                .collect();
            writeln!(table, "| {name} | {on}/5 | {mean:.2} | {} |", ends.join(" "))?;
            per_scale.insert(
                name.clone(),
                serde_json::json!(runs
                    .iter()
                    .zip(&distances)
                    .map(|(r, d)| serde_json::json!({
                        "end": [r.end.0, r.end.1],
                        "on_pareto_set": r.error.is_none() && on_pareto_set(r.end.0, r.end.1, args.tol),
                        "distance_to_optimum": d,
                        "error": r.error,
                    }))
                    .collect::<Vec<_>>()),
            );
        }
        json.insert(format!("scale_{scale}"), serde_json::Value::Object(per_scale));
        let path = args.out.join(format!("toy_scale_{scale}.png"));
        plot(&path, scale, &args.strategies, &results, args.steps)?;
        eprintln!("wrote {}", path.display());
    }
    json.insert("steps".into(), args.steps.into());
    std::fs::write(args.out.join("results.json"), serde_json::to_string_pretty(&json)?)?;
    std::fs::write(args.out.join("table.md"), &table)?;
    println!("{table}");
    Ok(())
}

/// Contour segments of `values` (an `n×n` grid over `[lo, hi]²`) at `level`, by marching
/// squares (each cell's crossing edges joined pairwise).
fn contour(values: &[Vec<f64>], lo: f64, hi: f64, level: f64) -> Vec<[(f64, f64); 2]> {
    let n = values.len();
    let at = |i: usize| lo + (hi - lo) * i as f64 / (n - 1) as f64;
    let mut segments = Vec::new();
    for i in 0..n - 1 {
        for j in 0..n - 1 {
            // Corners (x index i, y index j) counter-clockwise.
            let corners = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)];
            let mut crossings = Vec::new();
            for k in 0..4 {
                let (a, b) = (corners[k], corners[(k + 1) % 4]);
                let (va, vb) = (values[a.1][a.0], values[b.1][b.0]);
                if (va < level) != (vb < level) {
                    let t = (level - va) / (vb - va);
                    let x = at(a.0) + t * (at(b.0) - at(a.0));
                    let y = at(a.1) + t * (at(b.1) - at(a.1));
                    crossings.push((x, y));
                }
            }
            for pair in crossings.chunks(2) {
                if let [p, q] = pair {
                    segments.push([*p, *q]);
                }
            }
        }
    }
    segments
}

fn plot(
    path: &std::path::Path,
    scale: f64,
    strategies: &[String],
    results: &BTreeMap<(String, u64, usize), ToyRun>,
    steps: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let font: &'static [u8] = include_bytes!("../../crates/metl-runner/assets/DejaVuSans.ttf");
    plotters::style::register_font(FONT, FontStyle::Normal, font)
        .map_err(|_| "the embedded font is invalid")?;
    let (lo, hi, n) = (-10.0, 10.0, 161);
    let grid: Vec<Vec<f64>> = (0..n)
        .map(|j| {
            let y = lo + (hi - lo) * j as f64 / (n - 1) as f64;
            (0..n)
                .map(|i| {
                    let x = lo + (hi - lo) * i as f64 / (n - 1) as f64;
                    let [a, b] = losses_at(x, y, scale);
                    (a + b) / 2.0
                })
                .collect()
        })
        .collect();
    let mut sorted: Vec<f64> = grid.iter().flatten().copied().collect();
    sorted.sort_by(f64::total_cmp);
    let levels: Vec<f64> = (1..12).map(|k| sorted[k * (sorted.len() - 1) / 12]).collect();
    let contours: Vec<[(f64, f64); 2]> = levels.iter().flat_map(|&l| contour(&grid, lo, hi, l)).collect();

    let columns = 6;
    let rows = strategies.len().div_ceil(columns);
    let root = BitMapBackend::new(path, (columns as u32 * 330, rows as u32 * 330 + 40)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(40);
    title.draw_text(
        &format!(
            "Toy problem, L1 scale {scale}: {steps} Adam steps from 5 starts over the mean-loss contours"
        ),
        &(FONT, 20).into_font().color(&BLACK),
        (10, 10),
    )?;
    let colors = [
        RGBColor(214, 39, 40),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
    ];
    for (name, area) in strategies.iter().zip(body.split_evenly((rows, columns))) {
        let mut chart = ChartBuilder::on(&area)
            .caption(name, (FONT, 16))
            .margin(6)
            .x_label_area_size(20)
            .y_label_area_size(28)
            .build_cartesian_2d(lo..hi, lo..hi)?;
        chart.configure_mesh().disable_mesh().label_style((FONT, 10)).x_labels(5).y_labels(5).draw()?;
        let grey = RGBColor(190, 190, 190);
        chart.draw_series(contours.iter().map(|s| PathElement::new(s.to_vec(), grey.stroke_width(1))))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(-7.0, PARETO_X2), (7.0, PARETO_X2)],
            RGBColor(90, 90, 90).stroke_width(4),
        )))?;
        for (i, color) in colors.iter().enumerate() {
            let r = &results[&(name.clone(), scale.to_bits(), i)];
            chart.draw_series(std::iter::once(PathElement::new(
                r.trajectory.clone(),
                color.stroke_width(2),
            )))?;
            chart.draw_series(std::iter::once(Circle::new(r.trajectory[0], 4, color.filled())))?;
            chart.draw_series(std::iter::once(Cross::new(r.end, 5, BLACK.stroke_width(2))))?;
        }
        chart.draw_series(std::iter::once(TriangleMarker::new((0.0, PARETO_X2), 6, BLACK.filled())))?;
    }
    root.present()?;
    Ok(())
}
