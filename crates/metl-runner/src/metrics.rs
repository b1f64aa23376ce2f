//! `metrics.jsonl` and `metrics.csv`: one record per logged step.

use anyhow::Context;
use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::{BufRead, BufReader, BufWriter, Write},
    path::{Path, PathBuf},
};

/// One logged record: the step and named values (`NaN` for a value not measured).
pub type Record = BTreeMap<String, f64>;

/// Appends records to `metrics.jsonl` and `metrics.csv` in a run directory.
///
/// The CSV columns are fixed by the first record (`step` first); later records must use
/// the same names (missing values are written empty).
#[derive(Debug)]
pub struct MetricsLog {
    jsonl: BufWriter<File>,
    csv: BufWriter<File>,
    columns: Vec<String>,
    csv_path: PathBuf,
}

impl MetricsLog {
    /// Opens (appending) the metrics files of `dir` with these columns.
    pub fn open(dir: &Path, columns: &[&str]) -> anyhow::Result<Self> {
        let open = |name: &str| -> anyhow::Result<File> {
            let path = dir.join(name);
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))
        };
        let csv_path = dir.join("metrics.csv");
        let new_csv = fs::metadata(&csv_path).map_or(true, |m| m.len() == 0);
        let mut columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        columns.retain(|c| c != "step");
        columns.insert(0, "step".into());
        let mut log = Self {
            jsonl: BufWriter::new(open("metrics.jsonl")?),
            csv: BufWriter::new(open("metrics.csv")?),
            columns,
            csv_path,
        };
        if new_csv {
            writeln!(log.csv, "{}", log.columns.join(","))?;
        }
        Ok(log)
    }

    /// Writes one record with `step`.
    pub fn log(&mut self, step: u64, values: &[(&str, f64)]) -> anyhow::Result<()> {
        let mut object = serde_json::Map::new();
        object.insert("step".into(), step.into());
        for (k, v) in values {
            object.insert(
                (*k).to_owned(),
                serde_json::Number::from_f64(*v).map_or(serde_json::Value::Null, Into::into),
            );
        }
        writeln!(self.jsonl, "{}", serde_json::Value::Object(object))?;
        let row: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                if c == "step" {
                    step.to_string()
                } else {
                    values
                        .iter()
                        .find(|(k, _)| k == c)
                        .map(|(_, v)| if v.is_nan() { String::new() } else { v.to_string() })
                        .unwrap_or_default()
                }
            })
            .collect();
        writeln!(self.csv, "{}", row.join(","))?;
        Ok(())
    }

    /// Flushes both files (call before a checkpoint, so that metrics and checkpoint agree).
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.jsonl.flush()?;
        self.csv.flush().with_context(|| format!("writing {}", self.csv_path.display()))
    }
}

/// Reads every record of a `metrics.jsonl`.
pub fn read_jsonl(path: &Path) -> anyhow::Result<Vec<Record>> {
    let file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut records = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        let record = value
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(f64::NAN))).collect())
            .unwrap_or_default();
        records.push(record);
    }
    Ok(records)
}

/// Drops the records after `step` from both metrics files of `dir` (resuming from a
/// checkpoint at `step` must not leave the interrupted run's later lines behind).
pub fn truncate_after(dir: &Path, step: u64) -> anyhow::Result<()> {
    for name in ["metrics.jsonl", "metrics.csv"] {
        let path = dir.join(name);
        let Ok(text) = fs::read_to_string(&path) else { continue };
        let mut kept = String::new();
        for (i, line) in text.lines().enumerate() {
            let line_step = if name.ends_with(".csv") {
                if i == 0 {
                    None
                } else {
                    line.split(',').next().and_then(|s| s.parse::<u64>().ok())
                }
            } else {
                serde_json::from_str::<serde_json::Value>(line).ok().and_then(|v| v["step"].as_u64())
            };
            if line_step.is_none_or(|s| s <= step) {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        crate::run_dir::write_atomically(&path, kept.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_reads_and_truncates() {
        let dir = std::env::temp_dir().join(format!("metl-metrics-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        {
            let mut log = MetricsLog::open(&dir, &["loss", "accuracy"]).unwrap();
            for step in 1..=4 {
                log.log(step, &[("loss", 1.0 / step as f64), ("accuracy", f64::NAN)]).unwrap();
            }
            log.flush().unwrap();
        }
        let records = read_jsonl(&dir.join("metrics.jsonl")).unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(records[1]["loss"], 0.5);
        assert!(records[1]["accuracy"].is_nan());
        truncate_after(&dir, 2).unwrap();
        assert_eq!(read_jsonl(&dir.join("metrics.jsonl")).unwrap().len(), 2);
        let csv = fs::read_to_string(dir.join("metrics.csv")).unwrap();
        assert_eq!(csv, "step,loss,accuracy\n1,1,\n2,0.5,\n");
        fs::remove_dir_all(dir).unwrap();
    }
}
