//! The few-shot image classification benchmarks, read from their usual distributions,
//! with their standard class splits:
//!
//! | dataset | source | classes train / val / test | images |
//! | --- | --- | --- | --- |
//! | [`MiniImagenet`] | the `mini-imagenet-cache-*.pkl` pickles, or `{train,val,test}/<wnid>/` folders | 64 / 16 / 20 (Ravi & Larochelle 2017) | 84×84 |
//! | [`TieredImagenet`] | Ren et al.'s `*_images_png.pkl` + `*_labels.pkl` | 351 / 97 / 160 (20 / 6 / 8 categories) | 84×84 |
//! | [`Cifar100`], CIFAR-FS protocol | CIFAR-100's python pickles | 64 / 16 / 20 (Bertinetto et al. 2019) | 32×32 |
//! | [`Cifar100`], FC100 protocol | CIFAR-100's python pickles | 60 / 20 / 20 (12 / 4 / 4 superclasses, Oreshkin et al. 2018) | 32×32 |
//! | [`Cub`] | the `CUB_200_2011` folder | 100 / 50 / 50 (Chen et al. 2019) | resized to 84×84 |
//!
//! Each is a [`ClassImages`](crate::ClassImages) source with [`ClassSplits`], so the
//! [`EpisodeSampler`](crate::EpisodeSampler) draws episodes from it as from Omniglot; each
//! names its usual [`Normalization`](crate::image::Normalization) and
//! [`Augmentation`](crate::image::Augmentation), which the sampler applies when asked. The
//! split class lists that are public ship with the crate (`src/few_shot/splits/`). A
//! missing file is a [`DataError::MissingDataset`] naming the expected layout, where to
//! download the data and how to point metl at it.
//!
//! [`fixtures`] writes tiny datasets in exactly these
//! layouts (same file names, pickle and text formats), for tests and for trying a
//! configuration without the real data.

mod cifar;
mod cub;
pub mod fixtures;
mod mini_imagenet;
mod tiered_imagenet;

pub use cifar::{Cifar100, Cifar100Protocol};
pub use cub::Cub;
pub use mini_imagenet::MiniImagenet;
pub use tiered_imagenet::TieredImagenet;

use crate::{
    error::{DataError, Result},
    image::{DecodedImage, ImageStore, Preprocess, ResizeFilter, StoredClass},
    ClassSplits, Split,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How to load a few-shot benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FewShotConfig {
    /// The dataset folder (each dataset's docs say what it holds).
    pub root: PathBuf,
    /// Side of the square images: the benchmark's (`IMAGE_SIZE` of each dataset), or
    /// another size to resize to.
    pub image_size: usize,
    /// The resizing filter, where images are resized (default Lanczos).
    #[serde(default)]
    pub filter: ResizeFilter,
}

impl FewShotConfig {
    /// The data at `root`, images of side `image_size`, Lanczos resizing.
    pub fn new(root: impl Into<PathBuf>, image_size: usize) -> Self {
        Self { root: root.into(), image_size, filter: ResizeFilter::Lanczos }
    }

    /// How an image file becomes an input like the dataset's: RGB, resized (stretched).
    pub fn preprocess(&self) -> Preprocess {
        Preprocess::new([self.image_size; 2], 3, self.filter, false)
    }

    /// Checks the image size (1..=1024).
    pub fn validate(&self) -> Result<()> {
        if !(1..=1024).contains(&self.image_size) {
            return Err(DataError::invalid("image_size", self.image_size, "must be in 1..=1024"));
        }
        Ok(())
    }
}

/// Where a dataset comes from and how metl finds it: what a missing-file error says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source {
    /// The dataset's name, e.g. `miniImageNet`.
    pub name: &'static str,
    /// The expected layout of the dataset folder.
    pub layout: &'static str,
    /// Where to download it.
    pub download: &'static str,
    /// How to point metl at the folder: configuration field and environment variable.
    pub setting: &'static str,
}

impl Source {
    /// The error for the missing `path`.
    pub fn missing(&self, path: &Path) -> DataError {
        DataError::MissingDataset {
            dataset: self.name.into(),
            path: path.to_owned(),
            layout: self.layout.into(),
            download: self.download.into(),
            setting: self.setting.into(),
        }
    }

    /// `path` if it exists, else the missing-dataset error.
    pub fn require(&self, path: PathBuf) -> Result<PathBuf> {
        if path.exists() {
            Ok(path)
        } else {
            Err(self.missing(&path))
        }
    }

    /// Reads the whole file at `path` (missing: the missing-dataset error).
    pub fn read(&self, path: &Path) -> Result<Vec<u8>> {
        std::fs::read(self.require(path.to_owned())?).map_err(|e| DataError::io(path, e))
    }
}

/// The folder of a dataset: `$env` when set and not empty, else `default`.
pub fn dataset_dir(env: &str, default: impl Into<PathBuf>) -> PathBuf {
    std::env::var_os(env).filter(|v| !v.is_empty()).map_or_else(|| default.into(), PathBuf::from)
}

/// The non-empty lines of a shipped class list, trimmed.
pub(crate) fn lines(text: &'static str) -> impl Iterator<Item = &'static str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty())
}

/// A `pickle` error for `path`.
pub(crate) fn pickle_error(path: &Path, reason: impl ToString) -> DataError {
    DataError::Pickle { path: path.to_owned(), reason: reason.to_string() }
}

/// Preprocesses `count` interleaved `height × width × 3` images, back to back in
/// `pixels`, in parallel: planar `[C, H', W']` bytes of each, concatenated.
pub(crate) fn preprocess_interleaved(
    pixels: &[u8],
    height: usize,
    width: usize,
    preprocess: &Preprocess,
) -> Vec<u8> {
    let image_len = height * width * 3;
    let images: Vec<Vec<u8>> = pixels
        .par_chunks_exact(image_len)
        .map(|p| preprocess.apply_decoded(DecodedImage { width, height, channels: 3, pixels: p.to_vec() }))
        .collect();
    images.concat()
}

/// Pools named `<dataset>/<split>` of the classes `0..n` whose split `split_of` gives.
pub(crate) fn splits_by(dataset: &str, n: usize, split_of: impl Fn(usize) -> Option<Split>) -> ClassSplits {
    let pool = |split: Split| {
        crate::ClassPool::unrotated(
            format!("{dataset}/{split}"),
            (0..n).filter(|&c| split_of(c) == Some(split)),
        )
    };
    ClassSplits { train: pool(Split::Train), val: pool(Split::Val), test: pool(Split::Test) }
}

/// A dataset's classes, appended split by split, becoming one [`ImageStore`] and its
/// [`ClassSplits`].
pub(crate) struct StoreBuilder {
    shape: [usize; 3],
    pixels: Vec<u8>,
    classes: Vec<StoredClass>,
    groups: Vec<String>,
    splits: Vec<Split>,
}

impl StoreBuilder {
    /// An empty dataset of images shaped `shape`.
    pub fn new(shape: [usize; 3]) -> Self {
        Self { shape, pixels: Vec::new(), classes: Vec::new(), groups: Vec::new(), splits: Vec::new() }
    }

    /// Appends class `name` of `group` in `split`, its images back to back in `pixels`.
    pub fn push_class(&mut self, name: String, group: &str, split: Split, pixels: &[u8]) {
        let image_len: usize = self.shape.iter().product();
        debug_assert_eq!(pixels.len() % image_len, 0);
        let group = match self.groups.iter().position(|g| g == group) {
            Some(g) => g,
            None => {
                self.groups.push(group.to_owned());
                self.groups.len() - 1
            }
        };
        let first = self.pixels.len() / image_len;
        self.classes.push(StoredClass { name, group, first, len: pixels.len() / image_len });
        self.pixels.extend_from_slice(pixels);
        self.splits.push(split);
    }

    /// Appends every class of `store` (its groups kept) in `split`.
    pub fn push_store(&mut self, store: &ImageStore, split: Split) {
        let image_len = store.image_len();
        for class in store.classes() {
            let pixels = &store.pixels()[class.first * image_len..(class.first + class.len) * image_len];
            self.push_class(class.name.clone(), &store.groups()[class.group], split, pixels);
        }
    }

    /// The store and the pools `<dataset>/<split>` of its classes.
    pub fn finish(self, dataset: &str) -> Result<(ImageStore, ClassSplits)> {
        let n = self.classes.len();
        let splits = splits_by(dataset, n, |c| Some(self.splits[c]));
        let groups = if self.groups.is_empty() { vec![String::new()] } else { self.groups };
        Ok((ImageStore::new(self.shape, self.pixels, self.classes, groups)?, splits))
    }
}
