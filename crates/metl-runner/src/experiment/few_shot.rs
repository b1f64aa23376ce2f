//! `[data.cifar_fs]`, `[data.fc100]`, `[data.mini_imagenet]`, `[data.tiered_imagenet]`,
//! `[data.cub]`: the few-shot
//! benchmarks of [`metl_data::few_shot`], one configuration for all of them, the standard class split of
//! each, its usual normalisation, and the standard training augmentation on request.
//!
//! ```toml
//! [data.cifar_fs]
//! root = "data/cifar100"   # default: $METL_CIFAR100_DIR, else data/cifar100
//! image_size = 32          # default: the benchmark's (32 for CIFAR, 84 otherwise)
//! normalize = true         # the benchmark's per-channel mean and std (default)
//! augment = true           # random crop, colour jitter and flips on training episodes
//! ```

use super::data::{DataConfig, ImageClasses, InputSpec};
use crate::error::bad_input;
use metl_data::{
    episode::Transforms,
    few_shot::{dataset_dir, Cifar100, Cifar100Protocol, Cub, FewShotConfig, MiniImagenet, TieredImagenet},
    image::{Augmentation, Normalization, ResizeFilter},
};
use serde::{Deserialize, Serialize};
use std::{path::PathBuf, sync::Arc};

/// A few-shot benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FewShotDataset {
    /// CIFAR-FS (Bertinetto et al. 2019).
    CifarFs,
    /// FC100 (Oreshkin et al. 2018).
    Fc100,
    /// miniImageNet (Vinyals et al. 2016; Ravi & Larochelle's split).
    MiniImagenet,
    /// CUB-200-2011 (Chen et al. 2019's split).
    Cub,
    /// tieredImageNet (Ren et al. 2018).
    TieredImagenet,
}

impl FewShotDataset {
    /// The `[data.<name>]` key.
    pub fn name(self) -> &'static str {
        match self {
            FewShotDataset::CifarFs => "cifar_fs",
            FewShotDataset::Fc100 => "fc100",
            FewShotDataset::MiniImagenet => "mini_imagenet",
            FewShotDataset::Cub => "cub",
            FewShotDataset::TieredImagenet => "tiered_imagenet",
        }
    }

    /// The side of the images the benchmark is used at.
    pub fn default_image_size(self) -> usize {
        match self {
            FewShotDataset::CifarFs | FewShotDataset::Fc100 => Cifar100::IMAGE_SIZE,
            FewShotDataset::MiniImagenet => MiniImagenet::IMAGE_SIZE,
            FewShotDataset::Cub => Cub::IMAGE_SIZE,
            FewShotDataset::TieredImagenet => TieredImagenet::IMAGE_SIZE,
        }
    }

    /// The folder when `root` is not set: the environment variable, else `data/<name>`.
    fn default_root(self) -> PathBuf {
        match self {
            FewShotDataset::CifarFs | FewShotDataset::Fc100 => {
                dataset_dir(Cifar100::DIR_ENV, "data/cifar100")
            }
            FewShotDataset::MiniImagenet => dataset_dir(MiniImagenet::DIR_ENV, "data/mini_imagenet"),
            FewShotDataset::Cub => dataset_dir(Cub::DIR_ENV, "data/cub"),
            FewShotDataset::TieredImagenet => dataset_dir(TieredImagenet::DIR_ENV, "data/tiered_imagenet"),
        }
    }

    /// The per-channel statistics the literature normalises the benchmark with.
    pub fn normalization(self) -> Normalization {
        match self {
            FewShotDataset::CifarFs | FewShotDataset::Fc100 => Cifar100::normalization(),
            FewShotDataset::MiniImagenet => MiniImagenet::normalization(),
            FewShotDataset::Cub => Cub::normalization(),
            FewShotDataset::TieredImagenet => TieredImagenet::normalization(),
        }
    }
}

fn yes() -> bool {
    true
}

/// The configuration of every few-shot benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FewShotData {
    /// The dataset folder; default: the benchmark's environment variable
    /// (`METL_CIFAR100_DIR`, ...), else `data/<dataset>` relative to the working directory.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// Side of the square images; default the benchmark's (32 for CIFAR, 84 otherwise).
    #[serde(default)]
    pub image_size: Option<usize>,
    /// The resizing filter (default `lanczos`), where images are resized.
    #[serde(default)]
    pub filter: ResizeFilter,
    /// Standardise with the benchmark's per-channel mean and standard deviation (default
    /// true; see docs/data.md).
    #[serde(default = "yes")]
    pub normalize: bool,
    /// The standard augmentation on training episodes and pre-training batches: random
    /// crop of the padded image, colour jitter 0.4, horizontal flips (default false).
    #[serde(default)]
    pub augment: bool,
}

impl FewShotData {
    fn image_size(&self, which: FewShotDataset) -> usize {
        self.image_size.unwrap_or(which.default_image_size())
    }

    fn root(&self, which: FewShotDataset) -> PathBuf {
        self.root.clone().unwrap_or_else(|| which.default_root())
    }
}

impl DataConfig {
    /// The few-shot benchmark this configuration names, with its settings.
    pub fn few_shot(&self) -> Option<(FewShotDataset, &FewShotData)> {
        match self {
            DataConfig::CifarFs(c) => Some((FewShotDataset::CifarFs, c)),
            DataConfig::Fc100(c) => Some((FewShotDataset::Fc100, c)),
            DataConfig::MiniImagenet(c) => Some((FewShotDataset::MiniImagenet, c)),
            DataConfig::Cub(c) => Some((FewShotDataset::Cub, c)),
            DataConfig::TieredImagenet(c) => Some((FewShotDataset::TieredImagenet, c)),
            _ => None,
        }
    }

    /// The per-channel normalisation of the model's inputs, if the data has one.
    pub fn normalization(&self) -> Option<Normalization> {
        self.few_shot().filter(|(_, c)| c.normalize).map(|(which, _)| which.normalization())
    }
}

/// Loads a benchmark and its standard split.
pub fn load(which: FewShotDataset, config: &FewShotData) -> anyhow::Result<ImageClasses> {
    let size = config.image_size(which);
    let loader = FewShotConfig { filter: config.filter, ..FewShotConfig::new(config.root(which), size) };
    let (data, splits): (Arc<dyn metl_data::ClassImages + Send + Sync>, _) = match which {
        FewShotDataset::CifarFs | FewShotDataset::Fc100 => {
            let cifar = Cifar100::load(loader).map_err(bad_input)?;
            let protocol = if which == FewShotDataset::CifarFs {
                Cifar100Protocol::CifarFs
            } else {
                Cifar100Protocol::Fc100
            };
            let splits = cifar.splits(protocol).map_err(bad_input)?;
            (Arc::new(cifar), splits)
        }
        FewShotDataset::MiniImagenet => {
            let mini = MiniImagenet::load(loader).map_err(bad_input)?;
            let splits = mini.splits().clone();
            (Arc::new(mini), splits)
        }
        FewShotDataset::Cub => {
            let cub = Cub::load(loader).map_err(bad_input)?;
            let splits = cub.splits().clone();
            (Arc::new(cub), splits)
        }
        FewShotDataset::TieredImagenet => {
            let tiered = TieredImagenet::load(loader).map_err(bad_input)?;
            let splits = tiered.splits().clone();
            (Arc::new(tiered), splits)
        }
    };
    let mut transforms = Transforms::default();
    if config.normalize {
        transforms = transforms.normalizing(which.normalization()).map_err(bad_input)?;
    }
    if config.augment {
        transforms = transforms.augmenting(Augmentation::standard(size)).map_err(bad_input)?;
    }
    Ok(ImageClasses { data, splits: Box::new(splits), within_group: false, transforms })
}

/// The model's input and the preprocessing of an image file for a benchmark.
pub fn input_spec(which: FewShotDataset, config: &FewShotData) -> InputSpec {
    let size = config.image_size(which);
    let preprocess =
        FewShotConfig { filter: config.filter, ..FewShotConfig::new(PathBuf::new(), size) }.preprocess();
    InputSpec { shape: vec![3, size as i64, size as i64], preprocess: Some(preprocess) }
}
