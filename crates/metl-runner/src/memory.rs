//! `train.memory_budget`: the size of a MAML-family meta-batch's passes chosen from a
//! bound on the process's resident memory.
//!
//! Second-order MAML keeps the graph of every task's inner loop until the outer backward
//! pass, so memory grows with the tasks back-propagated together: `metl bench
//! maml-omniglot` (32 tasks of 5-way 1-shot Omniglot, Conv4) peaked at 2.7 GB in one pass
//! and at about 0.55 GB + 75 MB per task in passes (`tasks_per_pass`). With a budget `B`,
//! the first training step runs in passes of [`PROBE_TASKS`] tasks and measures how far the
//! resident set grew above where it started (`r₀`) — its per-task cost `m` — and the
//! following steps use passes of
//!
//! ```text
//! k = clamp(⌊(B − r₀) / m⌋, 1, T)      (one pass when k = T, the tasks of a rank's step)
//! ```
//!
//! The probe's growth also holds one-time costs (libtorch's kernels' caches), so `m` errs
//! high and the choice low. The choice is printed and kept in the checkpoints, so a resumed
//! run continues with it. Linux only (`/proc/self/status`); elsewhere, and on CUDA where
//! the graph lives in GPU memory, the budget has no effect (set `tasks_per_pass`).

use metl_meta::MetaLearner;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use tch::Device;

/// Tasks per pass of the first (measured) step.
pub const PROBE_TASKS: usize = 2;

/// A memory budget: bytes, or none (one pass, the fastest and largest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget(pub Option<u64>);

impl Default for MemoryBudget {
    /// 1 GB: about PyTorch's own peak on MAML Omniglot (learn2learn and `torch.func`
    /// adapt one task at a time).
    fn default() -> Self {
        Self(Some(1_000_000_000))
    }
}

impl MemoryBudget {
    /// Parses `"1GB"`, `"1.5 GiB"`, `"800MB"`, `"512MiB"`, a number of bytes, or `"none"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("none") {
            return Ok(Self(None));
        }
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (number, unit) = (&t[..split], t[split..].trim());
        let value: f64 =
            number.parse().map_err(|_| format!("{text:?}: expected e.g. \"1GB\", \"800MB\" or \"none\""))?;
        let scale = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "kb" => 1e3,
            "mb" => 1e6,
            "gb" => 1e9,
            "kib" => 1024.0,
            "mib" => 1024.0 * 1024.0,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            other => return Err(format!("{text:?}: unknown unit {other:?} (B, kB, MB, GB, KiB, MiB, GiB)")),
        };
        let bytes = value * scale;
        if !(bytes >= 1.0 && bytes.is_finite()) {
            return Err(format!("{text:?}: must be at least one byte"));
        }
        Ok(Self(Some(bytes as u64)))
    }
}

impl fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => write!(f, "none"),
            Some(b) if b >= 1_000_000_000 => write!(f, "{}GB", b as f64 / 1e9),
            Some(b) if b >= 1_000_000 => write!(f, "{}MB", b as f64 / 1e6),
            Some(b) => write!(f, "{b}B"),
        }
    }
}

impl Serialize for MemoryBudget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for MemoryBudget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// This process's resident set and its peak (`VmRSS`, `VmHWM`) in bytes, where known.
pub fn resident() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find_map(|l| l.strip_prefix(name))?;
        Some(line.trim().trim_end_matches("kB").trim().parse::<u64>().ok()? * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Resets the peak (`VmHWM`) to the current resident set; false where the kernel does not
/// allow it.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The tasks per pass for a `budget`, from a measured step: passes of `probe` tasks grew
/// the resident set from `before` to `peak` bytes; a step has `tasks` tasks. 0 means one
/// pass (everything fits).
pub fn choose_tasks_per_pass(budget: u64, before: u64, peak: u64, probe: usize, tasks: usize) -> usize {
    let per_task = (peak.saturating_sub(before) / probe.max(1) as u64).max(1);
    let fit = budget.saturating_sub(before) / per_task;
    match usize::try_from(fit).unwrap_or(usize::MAX) {
        k if k >= tasks => 0,
        k => k.max(1),
    }
}

/// The probe of the first step: where the resident set started.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    before: u64,
}

impl Probe {
    /// Starts measuring (resets the peak); `None` where memory cannot be measured.
    pub fn start() -> Option<Self> {
        let (rss, _) = resident()?;
        reset_peak().then_some(Self { before: rss })
    }

    /// The choice for `budget` after the probed step of `tasks` tasks, with a line that says
    /// what was measured.
    pub fn finish(self, budget: u64, tasks: usize) -> Option<(usize, String)> {
        let (_, peak) = resident()?;
        let k = choose_tasks_per_pass(budget, self.before, peak, PROBE_TASKS, tasks);
        let choice = match k {
            0 => format!("all {tasks} tasks in one pass"),
            1 => "1 task per pass".to_owned(),
            k => format!("{k} tasks per pass"),
        };
        let line = format!(
            "memory budget {}: {choice} (the first step's passes of {PROBE_TASKS} tasks grew the resident set \
             from {:.0} MB to {:.0} MB)",
            MemoryBudget(Some(budget)),
            self.before as f64 / 1e6,
            peak as f64 / 1e6
        );
        Some((k, line))
    }
}

/// Sizes the passes of a learner's meta-training steps from a budget: applies a recorded
/// choice, or probes the first step (see the module documentation).
#[derive(Debug)]
pub struct PassSizer {
    budget: u64,
    probe: Option<Probe>,
}

impl PassSizer {
    /// Prepares `learner` for training under `budget`. With a `recorded` choice (a resumed
    /// run) it is applied and there is nothing to measure; otherwise the first step is
    /// probed when the budget applies: a learner with passes left at 0 (not set by hand),
    /// a budget, a CPU device and a measurable resident set.
    pub fn start(
        learner: &mut dyn MetaLearner,
        budget: MemoryBudget,
        recorded: Option<usize>,
        device: Device,
    ) -> anyhow::Result<Option<Self>> {
        let (Some(0), Some(budget)) = (learner.tasks_per_pass(), budget.0) else {
            return Ok(None);
        };
        if let Some(k) = recorded {
            learner.set_tasks_per_pass(k)?;
            return Ok(None);
        }
        if device != Device::Cpu {
            return Ok(None);
        }
        let Some(probe) = Probe::start() else {
            return Ok(None);
        };
        learner.set_tasks_per_pass(PROBE_TASKS)?;
        Ok(Some(Self { budget, probe: Some(probe) }))
    }

    /// After a step of `tasks` tasks: the first time, sets the learner's passes from what
    /// the step measured and returns the choice with a line saying why.
    pub fn after_step(
        &mut self,
        learner: &mut dyn MetaLearner,
        tasks: usize,
    ) -> anyhow::Result<Option<(usize, String)>> {
        let Some(probe) = self.probe.take() else {
            return Ok(None);
        };
        let Some((k, line)) = probe.finish(self.budget, tasks) else {
            learner.set_tasks_per_pass(0)?;
            return Ok(None);
        };
        learner.set_tasks_per_pass(k)?;
        Ok(Some((k, line)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_in_decimal_and_binary_units() {
        let bytes = |t: &str| MemoryBudget::parse(t).unwrap().0;
        assert_eq!(bytes("1GB"), Some(1_000_000_000));
        assert_eq!(bytes("1.5 GiB"), Some(1_610_612_736));
        assert_eq!(bytes("800mb"), Some(800_000_000));
        assert_eq!(bytes("4096"), Some(4096));
        assert_eq!(bytes("none"), None);
        assert!(MemoryBudget::parse("2 GBs").unwrap_err().contains("unknown unit"));
        assert!(MemoryBudget::parse("lots").unwrap_err().contains("expected e.g."));
        assert!(MemoryBudget::parse("0MB").unwrap_err().contains("at least one byte"));
        assert_eq!(MemoryBudget::parse("1.5GB").unwrap().to_string(), "1.5GB");
    }

    #[test]
    fn the_choice_fills_the_room_left_by_the_resident_set() {
        const MB: u64 = 1_000_000;
        // MAML Omniglot's shape: 560 MB resident, passes of 2 tasks grew it by 160 MB.
        assert_eq!(choose_tasks_per_pass(1000 * MB, 560 * MB, 720 * MB, 2, 32), 5);
        // Everything fits: one pass.
        assert_eq!(choose_tasks_per_pass(4000 * MB, 560 * MB, 720 * MB, 2, 32), 0);
        // Not even one task fits: one task per pass all the same.
        assert_eq!(choose_tasks_per_pass(500 * MB, 560 * MB, 720 * MB, 2, 32), 1);
        // No measurable growth: one pass.
        assert_eq!(choose_tasks_per_pass(1000 * MB, 560 * MB, 560 * MB, 2, 32), 0);
    }
}
