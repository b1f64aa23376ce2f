//! NYUv2 for dense multi-task learning: Silberman, Hoiem, Kohli & Fergus (2012), "Indoor
//! Segmentation and Support Inference from RGBD Images" (ECCV), in the preprocessed form of
//! Liu, Johns & Davison (2019), "End-to-End Multi-Task Learning with Attention" (MTAN),
//! which LibMTL, CAGrad, Nash-MTL and FAMO use: 795 training and 654 test images at
//! 288×384, each with three tasks — 13-class semantic segmentation, depth, surface normals.
//!
//! Layout (MTAN's `nyuv2.zip`, as its `create_dataset.py` and LibMTL's read it):
//!
//! ```text
//! root/train/image/0.npy   [288, 384, 3]  float, RGB
//! root/train/label/0.npy   [288, 384]     float, class 0..12, −1 where unlabelled
//! root/train/depth/0.npy   [288, 384, 1]  float, 0 where unmeasured
//! root/train/normal/0.npy  [288, 384, 3]  float, unit vectors, 0 where unknown
//! root/val/...             the 654 test images, likewise
//! ```
//!
//! Files are numbered `0.npy` up to the count of `*.npy` files in `image/`; channels last
//! on disk, moved first (`np.moveaxis(x, -1, 0)`) as in those loaders. Any float or integer
//! dtype is read; everything is converted to float32, labels to int64. Samples are read
//! when a batch is gathered. The papers have no validation split: by default the test
//! images double as validation images (`val_fraction = 0`), so model selection sees the
//! test set as LibMTL's best-epoch protocol does; a fraction of the training images can be
//! held out instead.

use super::{
    check_indices, npy::read_npy, split_by_fractions, MultiTaskBatch, MultiTaskDataset, TaskInfo, TaskKind,
};
use crate::{
    error::{DataError, Result},
    Split,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The number of segmentation classes of the preprocessed NYUv2.
pub const NYUV2_CLASSES: usize = 13;

const DOWNLOAD: &str =
    "the preprocessed NYUv2 of MTAN (github.com/lorenmt/mtan: nyuv2.zip, also linked from \
                        LibMTL's examples/nyu): unzip it so that <root>/train/image/0.npy exists";

/// The four folders of a split, in the order image, label, depth, normal.
const FOLDERS: [&str; 4] = ["image", "label", "depth", "normal"];

fn default_root() -> PathBuf {
    PathBuf::from("data/nyuv2")
}

/// How to read NYUv2 (`[data.nyuv2]` in configs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nyuv2Config {
    /// The folder holding `train/` and `val/`; default `data/nyuv2`.
    #[serde(default = "default_root")]
    pub root: PathBuf,
    /// The fraction of the training images held out for validation; default 0: the test
    /// images double as validation images, as in MTAN and LibMTL.
    #[serde(default)]
    pub val_fraction: f64,
    /// Seed of the validation hold-out; default 0.
    #[serde(default)]
    pub seed: u64,
}

impl Default for Nyuv2Config {
    fn default() -> Self {
        Self { root: default_root(), val_fraction: 0.0, seed: 0 }
    }
}

/// The preprocessed NYUv2 as a [`MultiTaskDataset`] (see the module docs).
#[derive(Debug, Clone)]
pub struct Nyuv2 {
    root: PathBuf,
    tasks: Vec<TaskInfo>,
    /// `[height, width]` of every image.
    size: [i64; 2],
    /// Per split: `(folder, file index)` of each sample.
    samples: [Vec<(&'static str, usize)>; 3],
}

/// The number of `*.npy` files in `dir`.
fn count_npy(dir: &Path) -> Result<usize> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut n = 0;
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        n += usize::from(entry.path().extension().is_some_and(|e| e == "npy"));
    }
    Ok(n)
}

/// Reads `path` as a float32 (or int64, for labels) tensor of shape `want`.
fn read(path: &Path, want: &[i64], kind: Kind) -> Result<Tensor> {
    let tensor = read_npy(path)?;
    if tensor.size() != want {
        return Err(DataError::layout(path, format!("shape {:?}, expected {want:?}", tensor.size())));
    }
    Ok(tensor.f_to_kind(kind)?)
}

impl Nyuv2 {
    /// Counts the samples of `train/` and `val/` and checks that every file exists and
    /// that the first sample's arrays have matching shapes (each sample is checked again
    /// when it is read).
    pub fn load(config: &Nyuv2Config) -> Result<Self> {
        if !(0.0..1.0).contains(&config.val_fraction) {
            return Err(DataError::invalid("nyuv2.val_fraction", config.val_fraction, "must be in [0, 1)"));
        }
        let root = &config.root;
        let mut counts = [0usize; 2];
        for (count, split) in counts.iter_mut().zip(["train", "val"]) {
            let images = root.join(split).join("image");
            if !images.is_dir() {
                return Err(DataError::NotFound { path: images, what: DOWNLOAD.into() });
            }
            *count = count_npy(&images)?;
            if *count == 0 {
                return Err(DataError::layout(&images, format!("no .npy file ({DOWNLOAD})")));
            }
            for folder in FOLDERS {
                for i in 0..*count {
                    let path = root.join(split).join(folder).join(format!("{i}.npy"));
                    if !path.is_file() {
                        return Err(DataError::NotFound {
                            path,
                            what: format!("sample {i} of {split}/ ({count} files in {split}/image/)"),
                        });
                    }
                }
            }
        }
        let first = read_npy(&root.join("train/image/0.npy"))?;
        let size = match first.size().as_slice() {
            [h, w, 3] => [*h, *w],
            other => {
                return Err(DataError::layout(
                    root.join("train/image/0.npy"),
                    format!("shape {other:?}, expected [height, width, 3]"),
                ))
            }
        };
        let f = config.val_fraction;
        let [train, val, _] =
            split_by_fractions(counts[0], [1.0 - f, f, 0.0], config.seed, "nyuv2.val_fraction")?;
        let test: Vec<(&str, usize)> = (0..counts[1]).map(|i| ("val", i)).collect();
        let val = if val.is_empty() { test.clone() } else { val.into_iter().map(|i| ("train", i)).collect() };
        let samples = [train.into_iter().map(|i| ("train", i)).collect(), val, test];
        let tasks = vec![
            TaskInfo { name: "segmentation".into(), kind: TaskKind::Segmentation { classes: NYUV2_CLASSES } },
            TaskInfo { name: "depth".into(), kind: TaskKind::Depth },
            TaskInfo { name: "normal".into(), kind: TaskKind::SurfaceNormals },
        ];
        Ok(Self { root: root.clone(), tasks, size, samples })
    }

    /// The path of `folder` (`image`, `label`, `depth` or `normal`) of sample `index` of
    /// `split`.
    pub fn path(&self, split: Split, index: usize, folder: &str) -> PathBuf {
        let (dir, i) = self.samples[split.index()][index];
        self.root.join(dir).join(folder).join(format!("{i}.npy"))
    }

    /// Image `[3, H, W]`, label `[H, W]` (`Int64`), depth `[1, H, W]`, normal `[3, H, W]` of
    /// one sample, on the CPU.
    pub fn sample(&self, split: Split, index: usize) -> Result<[Tensor; 4]> {
        let [h, w] = self.size;
        let path = |folder| self.path(split, index, folder);
        let channels_first = |t: Tensor| t.f_permute([2, 0, 1]);
        let image = channels_first(read(&path("image"), &[h, w, 3], Kind::Float)?)?;
        let label = read(&path("label"), &[h, w], Kind::Float)?;
        let (lo, hi) = (label.f_min()?.double_value(&[]), label.f_max()?.double_value(&[]));
        if lo < -1.0 || hi > (NYUV2_CLASSES - 1) as f64 {
            return Err(DataError::layout(
                path("label"),
                format!("labels in [{lo}, {hi}], expected −1 (none) or 0..{}", NYUV2_CLASSES - 1),
            ));
        }
        let depth = channels_first(read(&path("depth"), &[h, w, 1], Kind::Float)?)?;
        let normal = channels_first(read(&path("normal"), &[h, w, 3], Kind::Float)?)?;
        Ok([image, label.f_to_kind(Kind::Int64)?, depth, normal])
    }
}

impl MultiTaskDataset for Nyuv2 {
    fn tasks(&self) -> &[TaskInfo] {
        &self.tasks
    }

    fn input_shape(&self) -> Vec<i64> {
        vec![3, self.size[0], self.size[1]]
    }

    fn len(&self, split: Split) -> usize {
        self.samples[split.index()].len()
    }

    /// Images `[N, 3, H, W]`; targets: labels `[N, H, W]` (`Int64`, −1 unlabelled), depth
    /// `[N, 1, H, W]`, normals `[N, 3, H, W]`.
    fn batch(&self, split: Split, indices: &[usize], device: Device) -> Result<MultiTaskBatch> {
        check_indices(split, indices, self.len(split))?;
        let mut parts: [Vec<Tensor>; 4] = Default::default();
        for &i in indices {
            for (part, t) in parts.iter_mut().zip(self.sample(split, i)?) {
                part.push(t);
            }
        }
        let [image, label, depth, normal] = parts.map(|p| Tensor::f_stack(&p, 0));
        let inputs = image?.f_to_device(device)?;
        let targets =
            vec![label?.f_to_device(device)?, depth?.f_to_device(device)?, normal?.f_to_device(device)?];
        Ok(MultiTaskBatch::fully_labelled(inputs, targets))
    }
}
