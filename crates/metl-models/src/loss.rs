//! Task losses, computed per task for task-stacked predictions.

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
}

impl TaskLoss {
    /// The mean loss of a batch: `prediction` `[B, ...]` against `target`.
    pub fn loss(self, prediction: &Tensor, target: &Tensor) -> Tensor {
        match self {
            TaskLoss::Mse => prediction.mse_loss(target, Reduction::Mean),
            TaskLoss::CrossEntropy => prediction.cross_entropy_for_logits(target),
        }
    }

    /// One mean loss per task for task-stacked `prediction` `[T, B, ...]`: shape `[T]`.
    pub fn per_task(self, prediction: &Tensor, target: &Tensor) -> Tensor {
        let tasks = prediction.size()[0];
        match self {
            TaskLoss::Mse => {
                (prediction - target).square().reshape([tasks, -1]).mean_dim(1, false, None::<Kind>)
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

    /// Per-task accuracy `[T]` for classification (fraction of argmax hits); `None` for
    /// regression.
    pub fn per_task_accuracy(self, prediction: &Tensor, target: &Tensor) -> Option<Tensor> {
        match self {
            TaskLoss::Mse => None,
            TaskLoss::CrossEntropy => {
                let hits = prediction.argmax(-1, false).eq_tensor(target).to_kind(Kind::Float);
                Some(hits.reshape([prediction.size()[0], -1]).mean_dim(1, false, None::<Kind>))
            }
        }
    }
}
