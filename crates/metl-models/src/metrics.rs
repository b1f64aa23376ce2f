//! Task metrics accumulated over a whole split, batch after batch, as the multi-task
//! literature reports them ([`TaskMetrics`]), with the direction in which each improves
//! ([`METRICS`], which Δm reads).
//!
//! | task (loss) | metrics |
//! | --- | --- |
//! | classification | `accuracy`, `error` (1 − accuracy) |
//! | binary attribute | `accuracy`, `error` (threshold 0 on the logit) |
//! | regression | `mse`, `mae` |
//! | segmentation | `miou`, `pixel_accuracy` |
//! | depth | `abs_error`, `rel_error` |
//! | surface normals | `mean_angle`, `median_angle` (degrees), `within_11.25`, `within_22.5`, `within_30` |
//!
//! The dense metrics follow LibMTL's `examples/nyu/utils.py` (MTAN's definitions):
//!
//! - segmentation: one confusion matrix over all labelled pixels of the split (label −1
//!   ignored), `IoU_c = C_cc / (Σ_j C_cj + Σ_i C_ic − C_cc)`, `miou` its mean over the
//!   classes that occur in the labels or the predictions (LibMTL averages all 13, which is
//!   the same once every class occurs, as on NYUv2's test set), `pixel_accuracy = Σ_c C_cc /
//!   Σ C`;
//! - depth, over the pixels with a non-zero target: `abs_error = mean |ŷ − y|`,
//!   `rel_error = mean |ŷ − y| / y`;
//! - normals, over the pixels whose target components do not sum to zero: the angle
//!   `acos(clamp(⟨ŷ/‖ŷ‖, n⟩, −1, 1))` in degrees, its mean, its median, and the fractions of
//!   pixels with an angle below 11.25°, 22.5° and 30°. The median comes from a histogram of
//!   0.001° bins kept on the device (LibMTL keeps every angle of the split on the host): it
//!   is exact to 0.001°.
//!
//! All sums are taken on the predictions' device in double precision; the host sees one
//! small transfer per batch.

use crate::{dense_loss, TaskLoss};
use tch::{Device, Kind, Tensor};

/// A metric: its name, what it measures, and whether a higher value is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricInfo {
    /// The name in results files (`miou`, `abs_error`, ...).
    pub name: &'static str,
    /// One line on what it is.
    pub description: &'static str,
    /// Whether a higher value is better (`false`: lower is better).
    pub higher_is_better: bool,
}

const fn metric(name: &'static str, description: &'static str, higher_is_better: bool) -> MetricInfo {
    MetricInfo { name, description, higher_is_better }
}

/// Every metric a [`TaskMetrics`] reports, for `metl list` and Δm.
pub const METRICS: &[MetricInfo] = &[
    metric("accuracy", "fraction of correct predictions (classification, binary attributes)", true),
    metric("error", "1 − accuracy (classification, binary attributes; CelebA's per-attribute error)", false),
    metric("mse", "mean squared error (regression)", false),
    metric("mae", "mean absolute error (regression)", false),
    metric("miou", "mean intersection over union of the classes (segmentation)", true),
    metric("pixel_accuracy", "fraction of labelled pixels classified right (segmentation)", true),
    metric("abs_error", "mean |ŷ − y| over pixels with depth (depth)", false),
    metric("rel_error", "mean |ŷ − y| / y over pixels with depth (depth)", false),
    metric("mean_angle", "mean angle between predicted and true normals, degrees (normals)", false),
    metric("median_angle", "median angle between predicted and true normals, degrees (normals)", false),
    metric("within_11.25", "fraction of pixels with a normal angle below 11.25° (normals)", true),
    metric("within_22.5", "fraction of pixels with a normal angle below 22.5° (normals)", true),
    metric("within_30", "fraction of pixels with a normal angle below 30° (normals)", true),
];

/// The entry of [`METRICS`] named `name`.
pub fn metric_info(name: &str) -> Option<&'static MetricInfo> {
    METRICS.iter().find(|m| m.name == name)
}

/// Histogram bins per degree of the normal angles.
const BINS_PER_DEGREE: f64 = 1000.0;
/// The angle thresholds of the `within_*` metrics, degrees.
const THRESHOLDS: [f64; 3] = [11.25, 22.5, 30.0];

/// The running sums of one task's metrics over the batches seen so far.
#[derive(Debug)]
pub enum TaskMetrics {
    /// Hits and count (classification, binary).
    Accuracy {
        /// Binary (a logit thresholded at 0) or multi-class (argmax).
        binary: bool,
        /// Correct predictions and predictions.
        sums: [f64; 2],
    },
    /// Squared and absolute errors and the number of values (regression).
    Regression {
        /// Σ (ŷ − y)², Σ |ŷ − y|, count.
        sums: [f64; 3],
    },
    /// The confusion matrix `[classes, classes]` (rows: labels), on the device.
    Segmentation {
        /// `Int64` counts, created at the first batch.
        confusion: Option<Tensor>,
    },
    /// Σ |ŷ − y|, Σ |ŷ − y| / y, count over valid pixels (depth).
    Depth {
        /// The three sums.
        sums: [f64; 3],
    },
    /// Angle sums and histogram (normals).
    Normals {
        /// Σ angle, count, and the counts below each threshold.
        sums: [f64; 5],
        /// `Int64` counts of angles in 0.001° bins, created at the first batch.
        histogram: Option<Tensor>,
    },
}

impl TaskMetrics {
    /// Empty sums for a task trained with `loss`.
    pub fn new(loss: TaskLoss) -> Self {
        match loss {
            TaskLoss::CrossEntropy => TaskMetrics::Accuracy { binary: false, sums: [0.0; 2] },
            TaskLoss::BinaryCrossEntropy => TaskMetrics::Accuracy { binary: true, sums: [0.0; 2] },
            TaskLoss::Mse => TaskMetrics::Regression { sums: [0.0; 3] },
            TaskLoss::SegmentationCrossEntropy => TaskMetrics::Segmentation { confusion: None },
            TaskLoss::DepthL1 => TaskMetrics::Depth { sums: [0.0; 3] },
            TaskLoss::NormalCosine => TaskMetrics::Normals { sums: [0.0; 5], histogram: None },
        }
    }

    /// Adds a batch: `prediction` (the task head's output, `[N, ...]`) against `target`,
    /// both restricted to the labelled samples ([`metl_data::MultiTaskBatch::labelled`]).
    pub fn update(&mut self, prediction: &Tensor, target: &Tensor) -> Result<(), tch::TchError> {
        let host = |values: &[Tensor]| -> Result<Vec<f64>, tch::TchError> {
            let stacked = Tensor::f_stack(values, 0)?.f_to_device(Device::Cpu)?;
            Vec::<f64>::try_from(&stacked)
        };
        let double = |t: &Tensor| t.f_sum(Kind::Double);
        match self {
            TaskMetrics::Accuracy { binary, sums } => {
                let hits = if *binary {
                    prediction.f_gt(0.0)?.f_eq_tensor(&target.f_gt(0.5)?)?
                } else {
                    prediction.f_argmax(-1, false)?.f_eq_tensor(target)?
                };
                sums[0] += host(&[double(&hits)?])?[0];
                sums[1] += target.size()[0] as f64;
            }
            TaskMetrics::Regression { sums } => {
                let diff = prediction.f_sub(target)?;
                let v = host(&[double(&diff.f_square()?)?, double(&diff.f_abs()?)?])?;
                sums[0] += v[0];
                sums[1] += v[1];
                sums[2] += diff.numel() as f64;
            }
            TaskMetrics::Segmentation { confusion } => {
                let classes = prediction.size()[1];
                let predicted = prediction.f_argmax(1, false)?.f_flatten(0, -1)?;
                let labels = target.f_flatten(0, -1)?;
                let keep = labels.f_ge(0)?.f_logical_and(&labels.f_lt(classes)?)?;
                let index = labels
                    .f_masked_select(&keep)?
                    .f_mul_scalar(classes)?
                    .f_add(&predicted.f_masked_select(&keep)?)?;
                let counts =
                    index.f_bincount::<Tensor>(None, classes * classes)?.f_view([classes, classes])?;
                *confusion = Some(match confusion.take() {
                    Some(c) => c.f_add(&counts)?,
                    None => counts,
                });
            }
            TaskMetrics::Depth { sums } => {
                let mask = dense_loss::valid_pixels(target).f_to_kind(Kind::Bool)?;
                let (p, y) = (prediction.f_masked_select(&mask)?, target.f_masked_select(&mask)?);
                let error = p.f_sub(&y)?.f_abs()?;
                let v = host(&[double(&error)?, double(&error.f_div(&y)?)?])?;
                sums[0] += v[0];
                sums[1] += v[1];
                sums[2] += y.numel() as f64;
            }
            TaskMetrics::Normals { sums, histogram } => {
                let mask = dense_loss::valid_pixels(target).f_squeeze_dim(1)?.f_to_kind(Kind::Bool)?;
                let cosine = dense_loss::unit_normals(prediction).f_mul(target)?.f_sum_dim_intlist(
                    1,
                    false,
                    Kind::Double,
                )?;
                let angles = cosine.f_masked_select(&mask)?.f_clamp(-1.0, 1.0)?.f_arccos()?.f_rad2deg()?;
                let mut values = vec![double(&angles)?];
                for t in THRESHOLDS {
                    values.push(double(&angles.f_lt(t)?)?);
                }
                let v = host(&values)?;
                sums[0] += v[0];
                sums[1] += angles.numel() as f64;
                for i in 0..3 {
                    sums[2 + i] += v[1 + i];
                }
                let bins = (180.0 * BINS_PER_DEGREE) as i64 + 1;
                let index = angles.f_mul_scalar(BINS_PER_DEGREE)?.f_floor()?.f_to_kind(Kind::Int64)?;
                let counts = index.f_bincount::<Tensor>(None, bins)?;
                *histogram = Some(match histogram.take() {
                    Some(h) => h.f_add(&counts)?,
                    None => counts,
                });
            }
        }
        Ok(())
    }

    /// The metrics of the batches seen so far, by name (see [`METRICS`]); `NaN` where no
    /// value was seen.
    pub fn values(&self) -> Result<Vec<(&'static str, f64)>, tch::TchError> {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        Ok(match self {
            TaskMetrics::Accuracy { sums, .. } => {
                let accuracy = ratio(sums[0], sums[1]);
                vec![("accuracy", accuracy), ("error", 1.0 - accuracy)]
            }
            TaskMetrics::Regression { sums } => {
                vec![("mse", ratio(sums[0], sums[2])), ("mae", ratio(sums[1], sums[2]))]
            }
            TaskMetrics::Segmentation { confusion } => {
                let Some(c) = confusion else {
                    return Ok(vec![("miou", f64::NAN), ("pixel_accuracy", f64::NAN)]);
                };
                let classes = c.size()[0] as usize;
                let c = Vec::<i64>::try_from(&c.f_flatten(0, -1)?.f_to_device(Device::Cpu)?)?;
                let at = |i: usize, j: usize| c[i * classes + j] as f64;
                let (mut iou_sum, mut present, mut diagonal) = (0.0, 0.0, 0.0);
                for k in 0..classes {
                    let row: f64 = (0..classes).map(|j| at(k, j)).sum();
                    let column: f64 = (0..classes).map(|i| at(i, k)).sum();
                    let union = row + column - at(k, k);
                    if union > 0.0 {
                        iou_sum += at(k, k) / union;
                        present += 1.0;
                    }
                    diagonal += at(k, k);
                }
                let total: f64 = c.iter().map(|&v| v as f64).sum();
                vec![("miou", ratio(iou_sum, present)), ("pixel_accuracy", ratio(diagonal, total))]
            }
            TaskMetrics::Depth { sums } => {
                vec![("abs_error", ratio(sums[0], sums[2])), ("rel_error", ratio(sums[1], sums[2]))]
            }
            TaskMetrics::Normals { sums, histogram } => {
                let median = match histogram {
                    Some(h) => median_of_histogram(&Vec::<i64>::try_from(&h.f_to_device(Device::Cpu)?)?),
                    None => f64::NAN,
                };
                vec![
                    ("mean_angle", ratio(sums[0], sums[1])),
                    ("median_angle", median),
                    ("within_11.25", ratio(sums[2], sums[1])),
                    ("within_22.5", ratio(sums[3], sums[1])),
                    ("within_30", ratio(sums[4], sums[1])),
                ]
            }
        })
    }
}

/// The median of the values counted in 1/[`BINS_PER_DEGREE`]° bins, each value taken at its
/// bin's centre; the mean of the two middle values for an even count, as `np.median`.
fn median_of_histogram(counts: &[i64]) -> f64 {
    let n: i64 = counts.iter().sum();
    if n == 0 {
        return f64::NAN;
    }
    let value_at = |rank: i64| {
        let mut seen = 0;
        for (bin, &c) in counts.iter().enumerate() {
            seen += c;
            if seen > rank {
                return (bin as f64 + 0.5) / BINS_PER_DEGREE;
            }
        }
        unreachable!("rank below the count")
    };
    (value_at((n - 1) / 2) + value_at(n / 2)) / 2.0
}
