//! Multi-task datasets: one input, `T` task targets.
//!
//! A [`MultiTaskDataset`] has three [`Split`]s of samples; [`MultiTaskDataset::batch`]
//! gathers samples into a [`MultiTaskBatch`]: the inputs, one target tensor per task, and a
//! `[N, T]` mask telling which sample is labelled for which task. Datasets whose samples
//! carry every task's label (the GradNorm regression, NYUv2-like sets) have an all-true
//! mask; datasets where each sample belongs to one task (Omniglot-50, where a character
//! belongs to one alphabet) also carry that task id per sample. A model then runs all its
//! heads on the batch and each task's loss uses its labelled rows
//! ([`MultiTaskBatch::labelled`]).
//!
//! [`MultiTaskLoader`] walks a split in seeded, shuffled mini-batches.
//!
//! Datasets: [`SyntheticRegression`] (GradNorm's toy problem), [`Omniglot50`] (one task per
//! alphabet), [`MultiMnist`] (two overlapping digits or clothing items), [`Celeba`] (40
//! binary face attributes), [`Nyuv2`] (segmentation, depth and surface normals), and your own
//! tabular or image data from a CSV file ([`CsvDataset`]). [`fixtures`] writes tiny
//! datasets in each on-disk layout.

#[cfg(feature = "images")]
mod celeba;
mod csv;
mod csv_file;
pub mod fixtures;
#[cfg(feature = "images")]
pub mod idx;
mod loader;
#[cfg(feature = "images")]
mod multi_mnist;
pub mod npy;
mod nyuv2;
#[cfg(feature = "images")]
mod omniglot50;
mod synthetic;

#[cfg(feature = "images")]
pub use celeba::{Celeba, CelebaConfig, CELEBA_ATTRIBUTES};
pub use csv::{CsvConfig, CsvDataset, CsvImage, CsvTask, CsvTaskKind};
pub use loader::MultiTaskLoader;
#[cfg(feature = "images")]
pub use multi_mnist::{compose as compose_multi_mnist, DigitSource, MultiMnist, MultiMnistConfig};
pub use nyuv2::{Nyuv2, Nyuv2Config, NYUV2_CLASSES};
#[cfg(feature = "images")]
pub use omniglot50::{Omniglot50, Omniglot50Config};
pub use synthetic::{SyntheticRegression, SyntheticRegressionConfig};

use crate::{
    error::{DataError, Result},
    Split,
};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// What a task predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskKind {
    /// Class indices `0..classes`; targets are `Int64` `[N]`.
    Classification {
        /// The number of classes.
        classes: usize,
    },
    /// Real vectors; targets are `Float` `[N, dims]`.
    Regression {
        /// The output dimension.
        dims: usize,
    },
    /// A yes/no attribute; targets are `Float` `[N, 1]` holding 0 or 1, the head outputs
    /// one logit.
    Binary,
    /// Per-pixel classes (semantic segmentation); targets are `Int64` `[N, H, W]`, `-1`
    /// marking pixels without a label; the head outputs `[N, classes, H, W]` logits.
    Segmentation {
        /// The number of classes.
        classes: usize,
    },
    /// Per-pixel depth; targets are `Float` `[N, 1, H, W]`, `0` marking pixels without a
    /// measurement.
    Depth,
    /// Per-pixel unit surface normals; targets are `Float` `[N, 3, H, W]`, the zero vector
    /// marking pixels without one.
    SurfaceNormals,
}

impl TaskKind {
    /// The width of a head predicting this task (classes, or output dimension).
    pub fn output_dim(&self) -> usize {
        match *self {
            TaskKind::Classification { classes } => classes,
            TaskKind::Regression { dims } => dims,
            TaskKind::Binary | TaskKind::Depth => 1,
            TaskKind::Segmentation { classes } => classes,
            TaskKind::SurfaceNormals => 3,
        }
    }

    /// Whether the task predicts a map of the input image (one output per pixel).
    pub fn is_dense(&self) -> bool {
        matches!(self, TaskKind::Segmentation { .. } | TaskKind::Depth | TaskKind::SurfaceNormals)
    }
}

/// A task of a [`MultiTaskDataset`]: its name and what it predicts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// A human-readable name (an alphabet, `task3`, `segmentation`, ...).
    pub name: String,
    /// What the task predicts.
    pub kind: TaskKind,
}

/// A mini-batch of a multi-task dataset, on one device.
#[derive(Debug)]
pub struct MultiTaskBatch {
    /// Inputs, `[N, ...]` (`Float`).
    pub inputs: Tensor,
    /// One target tensor per task: `Int64` `[N]` (classification) or `Float` `[N, D]`
    /// (regression). Rows whose sample is not labelled for the task hold 0 and must be
    /// ignored: see [`MultiTaskBatch::mask`].
    pub targets: Vec<Tensor>,
    /// `Bool` `[N, T]`: whether sample `n` is labelled for task `t`.
    pub mask: Tensor,
    /// `Int64` `[N]`: the one task each sample belongs to, for datasets whose samples each
    /// belong to a single task (Omniglot-50); `None` when samples are labelled for several.
    pub task_ids: Option<Tensor>,
}

impl MultiTaskBatch {
    /// A batch where every sample is labelled for every task.
    pub fn fully_labelled(inputs: Tensor, targets: Vec<Tensor>) -> Self {
        let n = inputs.size()[0];
        let mask = Tensor::ones([n, targets.len() as i64], (Kind::Bool, inputs.device()));
        Self { inputs, targets, mask, task_ids: None }
    }

    /// A batch where sample `n` belongs to task `task_ids[n]` only; `targets[t]` holds
    /// that sample's label in row `n` when `task_ids[n] == t` (0 elsewhere).
    pub fn one_task_per_sample(inputs: Tensor, targets: Vec<Tensor>, task_ids: Tensor) -> Self {
        let tasks = Tensor::arange(targets.len() as i64, (Kind::Int64, task_ids.device()));
        let mask = task_ids.unsqueeze(1).eq_tensor(&tasks.unsqueeze(0));
        Self { inputs, targets, mask, task_ids: Some(task_ids) }
    }

    /// The number of samples `N`.
    pub fn len(&self) -> usize {
        self.inputs.size()[0] as usize
    }

    /// Whether the batch has no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of tasks `T`.
    pub fn num_tasks(&self) -> usize {
        self.targets.len()
    }

    /// The device the tensors live on.
    pub fn device(&self) -> Device {
        self.inputs.device()
    }

    /// The batch moved to `device`.
    pub fn to_device(&self, device: Device) -> MultiTaskBatch {
        MultiTaskBatch {
            inputs: self.inputs.to_device(device),
            targets: self.targets.iter().map(|t| t.to_device(device)).collect(),
            mask: self.mask.to_device(device),
            task_ids: self.task_ids.as_ref().map(|t| t.to_device(device)),
        }
    }

    /// The `Int64` row indices labelled for `task`, `[N_t]`.
    pub fn rows_of(&self, task: usize) -> Tensor {
        self.mask.select(1, task as i64).nonzero().squeeze_dim(1)
    }

    /// `(prediction rows, target rows)` of `task`: the rows of `prediction` (the task head's
    /// output on the whole batch, `[N, ...]`) and of the task's targets that are labelled.
    /// Either may have zero rows.
    pub fn labelled(&self, task: usize, prediction: &Tensor) -> Result<(Tensor, Tensor)> {
        let target = self.targets.get(task).ok_or_else(|| {
            DataError::invalid("task", task, format!("must be below the batch's {} tasks", self.num_tasks()))
        })?;
        if self.task_ids.is_none() {
            // All rows labelled: no gather needed (a mask that is not all-true comes with
            // task ids or was built by hand, which the general path below handles).
            if bool::try_from(self.mask.select(1, task as i64).all())? {
                return Ok((prediction.shallow_clone(), target.shallow_clone()));
            }
        }
        let rows = self.rows_of(task);
        Ok((prediction.f_index_select(0, &rows)?, target.f_index_select(0, &rows)?))
    }
}

/// A dataset of samples labelled for some or all of `T` tasks, in three splits.
///
/// Implement it for your own data: give the tasks, the split sizes, and a way to gather
/// samples by index into a [`MultiTaskBatch`] on a device; [`MultiTaskLoader`] then does
/// the shuffling and batching.
pub trait MultiTaskDataset: Send + Sync {
    /// The tasks, in the order of [`MultiTaskBatch::targets`].
    fn tasks(&self) -> &[TaskInfo];

    /// The shape of one input, without the batch dimension (e.g. `[250]`, `[1, 28, 28]`).
    fn input_shape(&self) -> Vec<i64>;

    /// The number of samples in `split`.
    fn len(&self, split: Split) -> usize;

    /// Samples `indices` (each below `len(split)`) of `split` as a batch on `device`.
    fn batch(&self, split: Split, indices: &[usize], device: Device) -> Result<MultiTaskBatch>;

    /// The number of tasks `T`.
    fn num_tasks(&self) -> usize {
        self.tasks().len()
    }

    /// Whether `split` has no sample.
    fn is_empty(&self, split: Split) -> bool {
        self.len(split) == 0
    }
}

/// Checks that every index is below `len`, naming the split when one is not.
pub(crate) fn check_indices(split: Split, indices: &[usize], len: usize) -> Result<()> {
    match indices.iter().find(|&&i| i >= len) {
        Some(&i) => {
            Err(DataError::invalid("index", i, format!("must be below the {len} samples of split {split}")))
        }
        None => Ok(()),
    }
}

/// Sample indices `0..n` shuffled with `seed` and cut into train, validation and test by
/// `fractions` (non-negative, summing to 1; named `field` in errors). Each split keeps
/// its indices in increasing order.
pub(crate) fn split_by_fractions(
    n: usize,
    fractions: [f64; 3],
    seed: u64,
    field: &str,
) -> Result<[Vec<usize>; 3]> {
    use rand::seq::SliceRandom;
    let total: f64 = fractions.iter().sum();
    if fractions.iter().any(|f| !(f.is_finite() && *f >= 0.0)) || (total - 1.0).abs() > 1e-9 {
        return Err(DataError::invalid(
            field,
            format!("{fractions:?}"),
            "three non-negative fractions (train, validation, test) summing to 1",
        ));
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut crate::rng::substream(seed, 0x5350_4c49));
    let n_train = (fractions[0] * n as f64).round() as usize;
    let n_val = ((fractions[1] * n as f64).round() as usize).min(n - n_train);
    let mut parts = [
        order[..n_train].to_vec(),
        order[n_train..n_train + n_val].to_vec(),
        order[n_train + n_val..].to_vec(),
    ];
    parts.iter_mut().for_each(|p| p.sort_unstable());
    Ok(parts)
}

/// `u8` pixels `[N, C, H, W]` (255 = 1.0) as a `Float` tensor on `device`, converted there.
pub(crate) fn images_to_float(pixels: &[u8], dims: &[i64], device: Device) -> Result<Tensor> {
    let x = Tensor::f_from_slice(pixels)?.f_view(dims)?.f_to_device(device)?;
    Ok(x.f_to_kind(Kind::Float)?.f_div_scalar(255.0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_split_every_index_once() {
        let [train, val, test] = split_by_fractions(10, [0.6, 0.2, 0.2], 3, "f").unwrap();
        assert_eq!((train.len(), val.len(), test.len()), (6, 2, 2));
        let mut all = [train.clone(), val, test].concat();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_ne!(train, (0..6).collect::<Vec<_>>(), "shuffled");
        assert_eq!(split_by_fractions(10, [0.6, 0.2, 0.2], 3, "f").unwrap()[0], train);
        let err = split_by_fractions(10, [0.6, 0.2, 0.3], 3, "csv.split").unwrap_err().to_string();
        assert!(err.starts_with("csv.split = [0.6, 0.2, 0.3]"), "{err}");
    }

    #[test]
    fn labelled_rows_follow_the_task_ids() {
        let x = Tensor::arange(4, (Kind::Float, Device::Cpu)).unsqueeze(1);
        let y0 = Tensor::from_slice(&[3i64, 0, 5, 0]);
        let y1 = Tensor::from_slice(&[0i64, 1, 0, 2]);
        let ids = Tensor::from_slice(&[0i64, 1, 0, 1]);
        let batch = MultiTaskBatch::one_task_per_sample(x.shallow_clone(), vec![y0, y1], ids);
        let (pred, target) = batch.labelled(1, &(&x * 10)).unwrap();
        assert_eq!(Vec::<f32>::try_from(pred.flatten(0, -1)).unwrap(), [10.0, 30.0]);
        assert_eq!(Vec::<i64>::try_from(target).unwrap(), [1, 2]);
        assert_eq!(Vec::<i64>::try_from(batch.rows_of(0)).unwrap(), [0, 2]);
        assert!(batch.labelled(2, &x).is_err());
    }

    #[test]
    fn fully_labelled_batches_pass_everything_through() {
        let x = Tensor::ones([5, 2], (Kind::Float, Device::Cpu));
        let batch =
            MultiTaskBatch::fully_labelled(x.shallow_clone(), vec![x.shallow_clone(), x.shallow_clone()]);
        assert_eq!(batch.mask.size(), [5, 2]);
        let (pred, target) = batch.labelled(1, &x).unwrap();
        assert_eq!((pred.size(), target.size()), (vec![5, 2], vec![5, 2]));
    }
}
