//! The plots of a run folder (`plots/*.png`), drawn from `metrics.jsonl` and `eval.json`;
//! `metl plot RUN_DIR` redraws them.
//!
//! - `learning_curves.png`: training loss (and validation loss), training and validation
//!   accuracy, and the learning rate, against the step;
//! - `tasks.png` (multi-task runs): each task's loss and weight against the step;
//! - `eval.png`: test accuracy (or MSE) with its 95% interval per number of adaptation steps.

use crate::{
    metrics::{read_jsonl, Record},
    plot::{colors, draw_panels, Mark, Panel, Series},
    run_dir::RunDir,
};
use anyhow::Context;
use std::{collections::BTreeSet, path::PathBuf};

fn series(records: &[Record], column: &str, label: &str, color: usize, mark: Mark) -> Option<Series> {
    let points: Vec<(f64, f64)> = records
        .iter()
        .filter_map(|r| Some((*r.get("step")?, *r.get(column)?)))
        .filter(|(_, v)| v.is_finite())
        .collect();
    (!points.is_empty()).then(|| Series { label: label.to_owned(), points, mark, color: colors::pick(color) })
}

fn panel(title: &str, y_label: &str, log_y: bool, series: Vec<Option<Series>>) -> Option<Panel> {
    let series: Vec<Series> = series.into_iter().flatten().collect();
    (!series.is_empty()).then(|| Panel {
        title: title.to_owned(),
        x_label: "step".into(),
        y_label: y_label.to_owned(),
        log_y,
        series,
    })
}

/// Draws every plot of `run` that its files allow; returns the files written.
pub fn draw_run(run: &RunDir) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let metrics = run.join("metrics.jsonl");
    let records = if metrics.is_file() { read_jsonl(&metrics)? } else { Vec::new() };
    let dir = run.plots()?;
    let positive_loss = records.iter().all(|r| r.get("loss").is_none_or(|v| !v.is_finite() || *v > 0.0));
    let curves: Vec<Panel> = [
        panel(
            "loss",
            "loss",
            positive_loss,
            vec![
                series(&records, "loss", "training", 0, Mark::Line),
                series(&records, "val_loss", "validation", 1, Mark::Line),
            ],
        ),
        panel(
            "accuracy",
            "accuracy",
            false,
            vec![
                series(&records, "accuracy", "training", 0, Mark::Line),
                series(&records, "val_accuracy", "validation", 1, Mark::Line),
            ],
        ),
        panel("learning rate", "lr", false, vec![series(&records, "lr", "lr", 2, Mark::Line)]),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !curves.is_empty() {
        let path = dir.join("learning_curves.png");
        draw_panels(&path, &curves, curves.len().min(3), (520 * curves.len().min(3) as u32, 420))
            .with_context(|| format!("drawing {}", path.display()))?;
        written.push(path);
    }
    if let Some(path) = draw_tasks(&records, &dir)? {
        written.push(path);
    }
    if let Some(path) = draw_eval(run, &dir)? {
        written.push(path);
    }
    Ok(written)
}

/// Per-task losses and weights (columns `loss.<task>` and `weight.<task>`).
fn draw_tasks(records: &[Record], dir: &std::path::Path) -> anyhow::Result<Option<PathBuf>> {
    let tasks: BTreeSet<String> = records
        .iter()
        .flat_map(|r| r.keys())
        .filter_map(|k| k.strip_prefix("loss.").map(str::to_owned))
        .collect();
    if tasks.is_empty() {
        return Ok(None);
    }
    let of = |prefix: &str| -> Vec<Option<Series>> {
        tasks
            .iter()
            .enumerate()
            .map(|(i, t)| series(records, &format!("{prefix}.{t}"), t, i, Mark::Line))
            .collect()
    };
    let panels: Vec<Panel> = [
        panel("per-task training loss", "loss", true, of("loss")),
        panel("task weights", "weight", false, of("weight")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let path = dir.join("tasks.png");
    draw_panels(&path, &panels, panels.len(), (640 * panels.len() as u32, 480))?;
    Ok(Some(path))
}

/// Test accuracy (or MSE) with its 95% interval, per number of adaptation steps.
fn draw_eval(run: &RunDir, dir: &std::path::Path) -> anyhow::Result<Option<PathBuf>> {
    let path = run.join("eval.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
    let eval: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let Some(results) = eval["results"].as_array() else { return Ok(None) };
    let mut mean = Vec::new();
    let mut band = Vec::new();
    let metric = if results.iter().any(|r| r["accuracy"].is_object()) { "accuracy" } else { "loss" };
    for r in results {
        let steps = r["steps"].as_f64().unwrap_or(0.0);
        let (m, ci) = (r[metric]["mean"].as_f64(), r[metric]["ci95"].as_f64());
        if let (Some(m), Some(ci)) = (m, ci) {
            mean.push((steps, m));
            band.push((steps, m - ci));
            band.push((steps, m + ci));
        }
    }
    if mean.is_empty() {
        return Ok(None);
    }
    let panel = Panel {
        title: format!("test {metric} (95% interval)"),
        x_label: "adaptation steps".into(),
        y_label: metric.into(),
        log_y: false,
        series: vec![
            Series { label: "mean".into(), points: mean, mark: Mark::Dots, color: colors::pick(0) },
            Series { label: "95% interval".into(), points: band, mark: Mark::Dots, color: colors::BASE },
        ],
    };
    let out = dir.join("eval.png");
    draw_panels(&out, &[panel], 1, (560, 420))?;
    Ok(Some(out))
}
