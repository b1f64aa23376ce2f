//! Task losses, computed per task for task-stacked predictions.

use crate::dense_loss;
use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

/// The loss of a supervised task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskLoss {
    /// Mean squared error, `mean((ŷ − y)²)`, for regression.
    Mse,
    /// Cross-entropy of logits against class indices, for classification.
    CrossEntropy,
    /// Binary cross-entropy of one logit per sample against a 0/1 target,
    /// `mean(−y log σ(ŷ) − (1 − y) log(1 − σ(ŷ)))`, for yes/no attributes (CelebA's 40, as
    /// Nash-MTL and FAMO train them).
    BinaryCrossEntropy,
    /// Pixel-wise cross-entropy of logits `[B, C, H, W]` against classes `[B, H, W]`, pixels
    /// labelled −1 ignored ([`dense_loss::segmentation_cross_entropy`]).
    SegmentationCrossEntropy,
    /// Mean absolute depth error over the pixels with a (non-zero) target
    /// ([`dense_loss::depth_l1`]).
    DepthL1,
    /// One minus the mean cosine of normalised predicted and target surface normals over
    /// the pixels with a target ([`dense_loss::normal_cosine`]).
    NormalCosine,
}

/// Names and one-line descriptions of the task losses, for `metl list`.
pub const TASK_LOSSES: &[(&str, &str)] = &[
    ("mse", "mean squared error (regression tasks)"),
    ("cross_entropy", "cross-entropy of logits against class indices (classification tasks)"),
    (
        "binary_cross_entropy",
        "binary cross-entropy of one logit against 0/1 (yes/no attributes, e.g. CelebA)",
    ),
    ("segmentation_cross_entropy", "pixel-wise cross-entropy, label −1 ignored (semantic segmentation)"),
    ("depth_l1", "mean absolute error over pixels with a non-zero depth (MTAN, LibMTL)"),
    ("normal_cosine", "1 − mean cosine of unit normals over pixels with a normal (MTAN, LibMTL)"),
];

impl TaskLoss {
    /// The mean loss of a batch: `prediction` `[B, ...]` against `target`.
    pub fn loss(self, prediction: &Tensor, target: &Tensor) -> Tensor {
        match self {
            TaskLoss::Mse => prediction.mse_loss(target, Reduction::Mean),
            TaskLoss::CrossEntropy => prediction.cross_entropy_for_logits(target),
            TaskLoss::BinaryCrossEntropy => {
                prediction.binary_cross_entropy_with_logits::<Tensor>(target, None, None, Reduction::Mean)
            }
            TaskLoss::SegmentationCrossEntropy => dense_loss::segmentation_cross_entropy(prediction, target),
            TaskLoss::DepthL1 => dense_loss::depth_l1(prediction, target),
            TaskLoss::NormalCosine => dense_loss::normal_cosine(prediction, target),
        }
    }

    /// One mean loss per task for task-stacked `prediction` `[T, B, ...]`: shape `[T]`.
    pub fn per_task(self, prediction: &Tensor, target: &Tensor) -> Tensor {
        let tasks = prediction.size()[0];
        match self {
            TaskLoss::Mse => {
                (prediction - target).square().reshape([tasks, -1]).mean_dim(1, false, None::<Kind>)
            }
            TaskLoss::BinaryCrossEntropy => prediction
                .binary_cross_entropy_with_logits::<Tensor>(target, None, None, Reduction::None)
                .reshape([tasks, -1])
                .mean_dim(1, false, None::<Kind>),
            TaskLoss::SegmentationCrossEntropy | TaskLoss::DepthL1 | TaskLoss::NormalCosine => {
                let losses: Vec<Tensor> =
                    (0..tasks).map(|i| self.loss(&prediction.select(0, i), &target.select(0, i))).collect();
                Tensor::stack(&losses, 0)
            }
            TaskLoss::CrossEntropy => {
                let classes = *prediction.size().last().expect("logits have a class dimension");
                let flat = prediction.reshape([-1, classes]);
                flat.cross_entropy_loss::<Tensor>(&target.reshape([-1]), None, Reduction::None, -100, 0.0)
                    .reshape([tasks, -1])
                    .mean_dim(1, false, None::<Kind>)
            }
        }
    }

    /// Per-task accuracy `[T]` for classification (fraction of argmax hits) and binary
    /// tasks (fraction of `(ŷ > 0) = y`); `None` for regression and dense tasks (see
    /// [`crate::metrics`]).
    pub fn per_task_accuracy(self, prediction: &Tensor, target: &Tensor) -> Option<Tensor> {
        match self {
            TaskLoss::Mse
            | TaskLoss::SegmentationCrossEntropy
            | TaskLoss::DepthL1
            | TaskLoss::NormalCosine => None,
            TaskLoss::BinaryCrossEntropy => {
                let hits = prediction.gt(0.0).eq_tensor(&target.gt(0.5)).to_kind(Kind::Float);
                Some(hits.reshape([prediction.size()[0], -1]).mean_dim(1, false, None::<Kind>))
            }
            TaskLoss::CrossEntropy => {
                let hits = prediction.argmax(-1, false).eq_tensor(target).to_kind(Kind::Float);
                Some(hits.reshape([prediction.size()[0], -1]).mean_dim(1, false, None::<Kind>))
            }
        }
    }
}

/// What a loss's targets must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Targets {
    /// Class indices: `Int64`, non-negative.
    Classes,
    /// Real values of a floating-point kind.
    Values,
    /// Whatever the loss takes.
    Any,
}

/// A task loss as the meta-learners and multi-task code use it: the built-in [`TaskLoss`]es,
/// any closure `Fn(&Tensor, &Tensor) -> Tensor` giving the mean loss of a batch, or a type
/// of your own.
///
/// Only [`Loss::loss`] is required: the mean loss of one batch `prediction` `[B, ...]`
/// against `target`, differentiable (a closure such as
/// `|p, y| p.mse_loss(y, Reduction::Mean)` or a weighted cross-entropy). The per-task form
/// for task-stacked predictions `[T, B, ...]` defaults to one call per task; override
/// [`Loss::per_task`] with one batched kernel when speed matters (the built-ins do).
///
/// ```
/// use metl_models::{Loss, TaskLoss};
/// use tch::{Device, Kind, Reduction, Tensor};
///
/// let prediction = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 5.0]).view([2, 2, 1]); // [T, B, 1]
/// let target = Tensor::zeros([2, 2, 1], (Kind::Float, Device::Cpu));
/// // Mean absolute error, written as a closure: one mean per task.
/// let l1 = |p: &Tensor, y: &Tensor| p.l1_loss(y, Reduction::Mean);
/// assert_eq!(Vec::<f32>::try_from(l1.per_task(&prediction, &target)).unwrap(), [1.5, 4.0]);
/// // The built-in mean squared error, through the same interface.
/// let mse = Loss::per_task(&TaskLoss::Mse, &prediction, &target);
/// assert_eq!(Vec::<f32>::try_from(mse).unwrap(), [2.5, 17.0]);
/// ```
pub trait Loss: Send + Sync {
    /// What the targets must be (checked before a batch is used); the default takes
    /// anything with the right leading dimensions.
    fn targets(&self) -> Targets {
        Targets::Any
    }

    /// The mean loss of a batch: `prediction` `[B, ...]` against `target` `[B, ...]`; a
    /// differentiable scalar.
    fn loss(&self, prediction: &Tensor, target: &Tensor) -> Tensor;

    /// One mean loss per task for task-stacked `prediction` `[T, B, ...]` and `target`
    /// `[T, B, ...]`: shape `[T]`. The default calls [`Loss::loss`] once per task.
    fn per_task(&self, prediction: &Tensor, target: &Tensor) -> Tensor {
        let tasks = prediction.size()[0];
        let losses: Vec<Tensor> =
            (0..tasks).map(|i| self.loss(&prediction.select(0, i), &target.select(0, i))).collect();
        Tensor::stack(&losses, 0)
    }

    /// Per-task accuracy `[T]` where accuracy means something (classification); `None`
    /// otherwise (the default).
    fn per_task_accuracy(&self, prediction: &Tensor, target: &Tensor) -> Option<Tensor> {
        let _ = (prediction, target);
        None
    }
}

impl Loss for TaskLoss {
    fn targets(&self) -> Targets {
        match self {
            TaskLoss::Mse | TaskLoss::BinaryCrossEntropy | TaskLoss::DepthL1 | TaskLoss::NormalCosine => {
                Targets::Values
            }
            TaskLoss::CrossEntropy => Targets::Classes,
            // −1 marks ignored pixels: not class indices by `Targets::Classes`' rule.
            TaskLoss::SegmentationCrossEntropy => Targets::Any,
        }
    }

    fn loss(&self, prediction: &Tensor, target: &Tensor) -> Tensor {
        TaskLoss::loss(*self, prediction, target)
    }

    fn per_task(&self, prediction: &Tensor, target: &Tensor) -> Tensor {
        TaskLoss::per_task(*self, prediction, target)
    }

    fn per_task_accuracy(&self, prediction: &Tensor, target: &Tensor) -> Option<Tensor> {
        TaskLoss::per_task_accuracy(*self, prediction, target)
    }
}

/// Any closure computing the mean loss of a batch is a [`Loss`].
impl<F> Loss for F
where
    F: Fn(&Tensor, &Tensor) -> Tensor + Send + Sync,
{
    fn loss(&self, prediction: &Tensor, target: &Tensor) -> Tensor {
        self(prediction, target)
    }
}

/// A classification loss given as a closure, with accuracy reported (the argmax of the last
/// dimension against class indices), as [`TaskLoss::CrossEntropy`] reports it.
///
/// ```
/// use metl_models::loss::{Classification, Loss};
/// use tch::{Reduction, Tensor};
///
/// // Cross-entropy with label smoothing 0.1 over logits [B, N] and class indices [B].
/// let smoothed = Classification(|logits: &Tensor, y: &Tensor| {
///     logits.cross_entropy_loss::<Tensor>(y, None, Reduction::Mean, -100, 0.1)
/// });
/// let logits = Tensor::from_slice(&[3.0f32, 0.0, 0.0, 3.0]).view([1, 2, 2]); // [T, B, N]
/// let y = Tensor::from_slice(&[0i64, 0]).view([1, 2]);
/// assert_eq!(smoothed.per_task_accuracy(&logits, &y).unwrap().double_value(&[0]), 0.5);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Classification<F>(pub F);

impl<F> Loss for Classification<F>
where
    F: Fn(&Tensor, &Tensor) -> Tensor + Send + Sync,
{
    fn targets(&self) -> Targets {
        Targets::Classes
    }

    fn loss(&self, prediction: &Tensor, target: &Tensor) -> Tensor {
        (self.0)(prediction, target)
    }

    fn per_task_accuracy(&self, prediction: &Tensor, target: &Tensor) -> Option<Tensor> {
        TaskLoss::CrossEntropy.per_task_accuracy(prediction, target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn closure_per_task_matches_the_built_in_batched_kernels() {
        let logits = Tensor::randn([3, 4, 5], (Kind::Double, Device::Cpu));
        let labels = Tensor::randint(5, [3, 4], (Kind::Int64, Device::Cpu));
        // (`cross_entropy_for_logits` would compute in float32.)
        let ce = |p: &Tensor, y: &Tensor| p.cross_entropy_loss::<Tensor>(y, None, Reduction::Mean, -100, 0.0);
        let diff = (ce.per_task(&logits, &labels) - TaskLoss::CrossEntropy.per_task(&logits, &labels))
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-12, "{diff}");
        let x = Tensor::randn([3, 4, 2], (Kind::Double, Device::Cpu));
        let y = Tensor::randn([3, 4, 2], (Kind::Double, Device::Cpu));
        let mse = |p: &Tensor, y: &Tensor| p.mse_loss(y, Reduction::Mean);
        let diff = (mse.per_task(&x, &y) - TaskLoss::Mse.per_task(&x, &y)).abs().max().double_value(&[]);
        assert!(diff < 1e-12, "{diff}");
        assert!(mse.per_task_accuracy(&x, &y).is_none());
    }

    #[test]
    fn binary_cross_entropy_matches_the_formula() {
        // Logits 0, 2, −1 against 1, 0, 0: −log σ(0), −log(1 − σ(2)), −log(1 − σ(−1)).
        let logits = Tensor::from_slice(&[0.0f64, 2.0, -1.0]).view([1, 3, 1]);
        let y = Tensor::from_slice(&[1.0f64, 0.0, 0.0]).view([1, 3, 1]);
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let want = -(sigmoid(0.0).ln() + (1.0 - sigmoid(2.0)).ln() + (1.0 - sigmoid(-1.0)).ln()) / 3.0;
        let bce = TaskLoss::BinaryCrossEntropy;
        assert!((bce.per_task(&logits, &y).double_value(&[0]) - want).abs() < 1e-12);
        assert!((bce.loss(&logits.get(0), &y.get(0)).double_value(&[]) - want).abs() < 1e-12);
        // (0 > 0) = false ≠ 1, 2 > 0 ≠ 0, −1 > 0 = false = 0: one hit in three (float32).
        let accuracy = bce.per_task_accuracy(&logits, &y).unwrap().double_value(&[0]);
        assert!((accuracy - 1.0 / 3.0).abs() < 1e-7, "{accuracy}");
    }
}
