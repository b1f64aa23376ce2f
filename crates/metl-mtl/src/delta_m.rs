//! Δm%: the average relative change of a multi-task model's metrics against single-task
//! baselines, in the two conventions in use.
//!
//! For metric `k` of task `t` with value `M`, baseline `B` and `sₖ = +1` when higher is
//! better (`−1` when lower is better), the signed relative improvement is
//! `rₖ = sₖ (M − B) / B`.
//!
//! - [`delta_m_libmtl`] (LibMTL, Lin & Zhang 2023): average `rₖ` within each task, then
//!   over tasks; **positive is better**.
//! - [`delta_m_flat`] (Maninis et al. 2019, as used by CAGrad, Nash-MTL and FAMO):
//!   `−100 · mean_k rₖ` over all metrics of all tasks at once; **lower is better**.
//!
//! With one metric per task the two are each other's negatives.
//!
//! The sign of every metric metl reports comes from its definition
//! ([`metl_models::metrics::METRICS`]) through [`better`] and [`Metric::named`]: higher is
//! better for accuracy, mIoU, pixel accuracy and the within-t° fractions of normals; lower
//! for error, MSE/MAE, depth abs/rel error and the mean/median normal angle — LibMTL's
//! NYUv2 weights `segmentation: [1, 1], depth: [0, 0], normal: [0, 0, 1, 1, 1]`.

use crate::error::{MtlError, Result};
use serde::{Deserialize, Serialize};

/// Whether a metric improves upwards (accuracy) or downwards (error, loss).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Higher is better.
    Higher,
    /// Lower is better.
    Lower,
}

/// One metric of one task: the model's value and the single-task baseline's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// The multi-task model's value.
    pub value: f64,
    /// The single-task baseline's value.
    pub baseline: f64,
    /// Which way is better.
    pub better: Better,
}

/// Which way metric `name` (one of [`metl_models::metrics::METRICS`]) improves.
pub fn better(name: &str) -> Option<Better> {
    metl_models::metrics::metric_info(name).map(|m| {
        if m.higher_is_better {
            Better::Higher
        } else {
            Better::Lower
        }
    })
}

impl Metric {
    /// The metric `name` of metl's metrics with the model's value and the baseline's; its
    /// direction from [`better`] (an error for a name metl does not define).
    pub fn named(name: &str, value: f64, baseline: f64) -> Result<Self> {
        let better = better(name).ok_or_else(|| {
            let known: Vec<&str> = metl_models::metrics::METRICS.iter().map(|m| m.name).collect();
            MtlError::invalid("delta_m metric", name, format!("one of {}", known.join(", ")))
        })?;
        Ok(Self { value, baseline, better })
    }

    /// `sₖ (M − B) / B`, checked: the baseline must be finite and non-zero.
    pub fn relative_improvement(&self, task: usize) -> Result<f64> {
        if !self.baseline.is_finite() || self.baseline == 0.0 || !self.value.is_finite() {
            return Err(MtlError::invalid(
                format!("delta_m: task {task} metric"),
                format!("value {} against baseline {}", self.value, self.baseline),
                "needs finite values and a non-zero baseline",
            ));
        }
        let sign = match self.better {
            Better::Higher => 1.0,
            Better::Lower => -1.0,
        };
        Ok(sign * (self.value - self.baseline) / self.baseline)
    }
}

/// LibMTL's Δp in percent: per-task mean of the relative improvements, averaged over tasks
/// (positive is better). `tasks[t]` holds task `t`'s metrics.
pub fn delta_m_libmtl(tasks: &[Vec<Metric>]) -> Result<f64> {
    if tasks.is_empty() || tasks.iter().any(Vec::is_empty) {
        return Err(MtlError::invalid("delta_m", "no metrics", "every task needs at least one metric"));
    }
    let mut total = 0.0;
    for (t, metrics) in tasks.iter().enumerate() {
        let sum = metrics.iter().map(|m| m.relative_improvement(t)).sum::<Result<f64>>()?;
        total += sum / metrics.len() as f64;
    }
    Ok(100.0 * total / tasks.len() as f64)
}

/// The Δm% of Maninis et al. (2019) as reported by CAGrad, Nash-MTL and FAMO: minus the mean
/// relative improvement over all metrics of all tasks, in percent (lower is better).
pub fn delta_m_flat(tasks: &[Vec<Metric>]) -> Result<f64> {
    let mut total = 0.0;
    let mut count = 0usize;
    for (t, metrics) in tasks.iter().enumerate() {
        for m in metrics {
            total += m.relative_improvement(t)?;
            count += 1;
        }
    }
    if count == 0 {
        return Err(MtlError::invalid("delta_m", "no metrics", "needs at least one metric"));
    }
    Ok(-100.0 * total / count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(value: f64, baseline: f64, better: Better) -> Metric {
        Metric { value, baseline, better }
    }

    #[test]
    fn hand_computed_example() {
        // Task A: mIoU 0.50 → 0.55 (+10 %), pixel accuracy 0.80 → 0.76 (−5 %);
        // task B: absolute error 0.20 → 0.18 (better by 10 %).
        let tasks = vec![
            vec![m(0.55, 0.50, Better::Higher), m(0.76, 0.80, Better::Higher)],
            vec![m(0.18, 0.20, Better::Lower)],
        ];
        // LibMTL: task A (10 − 5)/2 = 2.5, task B 10 → (2.5 + 10)/2 = 6.25 (positive = better).
        assert!((delta_m_libmtl(&tasks).unwrap() - 6.25).abs() < 1e-12);
        // Flat: −(10 − 5 + 10)/3 = −5 (negative = better).
        assert!((delta_m_flat(&tasks).unwrap() + 5.0).abs() < 1e-12);
    }

    #[test]
    fn one_metric_per_task_gives_opposite_numbers() {
        // Omniglot-50-like: test error per task, lower is better.
        let tasks: Vec<Vec<Metric>> = [(0.30, 0.40), (0.25, 0.20), (0.10, 0.10)]
            .iter()
            .map(|&(v, b)| vec![m(v, b, Better::Lower)])
            .collect();
        let libmtl = delta_m_libmtl(&tasks).unwrap();
        // (+25 % − 25 % + 0)/3 = 0.
        assert!(libmtl.abs() < 1e-12);
        assert!((delta_m_flat(&tasks).unwrap() + libmtl).abs() < 1e-12);
    }

    #[test]
    fn dense_metrics_take_libmtl_signs() {
        // LibMTL's examples/nyu: weight 1 = higher is better.
        let nyu = [
            ("miou", Better::Higher),
            ("pixel_accuracy", Better::Higher),
            ("abs_error", Better::Lower),
            ("rel_error", Better::Lower),
            ("mean_angle", Better::Lower),
            ("median_angle", Better::Lower),
            ("within_11.25", Better::Higher),
            ("within_22.5", Better::Higher),
            ("within_30", Better::Higher),
            ("error", Better::Lower),
            ("accuracy", Better::Higher),
        ];
        for (name, want) in nyu {
            assert_eq!(better(name), Some(want), "{name}");
        }
        // Segmentation mIoU 0.40 → 0.42 (+5 %), depth abs error 0.50 → 0.55 (−10 %),
        // normal median 20° → 18° (+10 %): LibMTL (5 − 10 + 10)/3 = 5/3 %.
        let tasks = vec![
            vec![Metric::named("miou", 0.42, 0.40).unwrap()],
            vec![Metric::named("abs_error", 0.55, 0.50).unwrap()],
            vec![Metric::named("median_angle", 18.0, 20.0).unwrap()],
        ];
        assert!((delta_m_libmtl(&tasks).unwrap() - 5.0 / 3.0).abs() < 1e-9);
        let err = Metric::named("iou", 1.0, 1.0).unwrap_err().to_string();
        assert!(err.contains("iou") && err.contains("miou"), "{err}");
    }

    #[test]
    fn a_zero_baseline_is_an_error() {
        let err = delta_m_flat(&[vec![m(0.1, 0.0, Better::Lower)]]).unwrap_err();
        assert!(err.to_string().contains("task 0"), "{err}");
        assert!(delta_m_libmtl(&[]).is_err());
    }
}
