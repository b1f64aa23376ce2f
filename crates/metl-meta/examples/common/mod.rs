//! Helpers shared by the experiment drivers: devices, result files, timing.

#![allow(dead_code)]

use serde::Serialize;
use std::{path::Path, time::Instant};
use tch::Device;

/// Parses `cpu`, `cuda` or `cuda:N`, checking that the device exists.
pub fn parse_device(spec: &str) -> Result<Device, String> {
    let count = if tch::Cuda::is_available() { tch::Cuda::device_count() as usize } else { 0 };
    let index = match spec {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| format!("--device {other}: expected cpu, cuda or cuda:N"))?,
    };
    if index < count {
        Ok(Device::Cuda(index))
    } else {
        Err(format!("--device {spec}: {count} CUDA device(s) available"))
    }
}

/// Writes `value` as pretty JSON to `path` (creating its folder), if a path is given.
pub fn write_json(path: Option<&Path>, value: &impl Serialize) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(path) = path {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(value)?)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Meta-training progress: a line every `every` steps with the smoothed loss and the speed.
pub struct Progress {
    start: Instant,
    every: u64,
    total: u64,
    smoothed: Option<f64>,
}

impl Progress {
    /// Progress of `total` steps, printed every `every` (0: never).
    pub fn new(total: u64, every: u64) -> Self {
        Self { start: Instant::now(), every, total, smoothed: None }
    }

    /// Records step `step`'s loss (and accuracy).
    pub fn update(&mut self, step: u64, loss: f64, accuracy: Option<f64>) {
        let s = self.smoothed.map_or(loss, |s| 0.98 * s + 0.02 * loss);
        self.smoothed = Some(s);
        if self.every > 0 && (step % self.every == 0 || step == self.total) {
            let elapsed = self.start.elapsed().as_secs_f64();
            let acc = accuracy.map(|a| format!(", accuracy {:.1} %", 100.0 * a)).unwrap_or_default();
            eprintln!(
                "step {step}/{}: loss {s:.4}{acc} ({:.2} steps/s, {elapsed:.0} s)",
                self.total,
                step as f64 / elapsed
            );
        }
    }

    /// Seconds since the start.
    pub fn seconds(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

/// The machine, for result files: CPU model and core count.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}
