//! MultiMNIST, Multi-Fashion and Multi-Fashion+MNIST: two overlapping 28×28 images on one
//! canvas, two classification tasks (the left item and the right item), as built by Sener
//! & Koltun (2018), "Multi-Task Learning as Multi-Objective Optimization" (NeurIPS), and
//! used with Fashion-MNIST by Lin et al. (2019), "Pareto Multi-Task Learning" (NeurIPS).
//!
//! The construction follows Sener & Koltun's loader (`multi_mnist_loader.py`): for every
//! image of the left source's split, a partner is drawn uniformly from the right source's
//! split; on a 36×36 canvas the left image is placed at the top-left (`[0, 28)²`), the
//! right one at `[6, 34)²`, overlapping pixels take the maximum of the two; the canvas is
//! contrast-stretched to 0–255 as `scipy.misc.imresize` does (`bytescale`: `v ↦
//! round(255 v / max)`) and resized to 28×28 with Pillow's nearest-neighbour rule. The
//! partners are drawn from a ChaCha8 stream of the seed, so the same seed builds the same
//! dataset anywhere (Sener & Koltun's came from NumPy's global random state).
//!
//! Left and right sources: MNIST and MNIST (MultiMNIST), Fashion-MNIST and Fashion-MNIST
//! (Multi-Fashion), MNIST and Fashion-MNIST (Multi-Fashion+MNIST). Lin et al. kept the
//! 36×36 canvas (`image_size = 36`) and had 120,000 / 20,000 images; how they drew their
//! pairs is not published, `pairs_per_image = 2` gives datasets of those sizes.

use super::{
    check_indices, idx, images_to_float, split_by_fractions, MultiTaskBatch, MultiTaskDataset, TaskInfo,
    TaskKind,
};
use crate::{
    error::{DataError, Result},
    image::{ResizeFilter, Resizer},
    rng::substream,
    Split,
};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// The side of the canvas and the offset of the right image on it (Sener & Koltun).
const CANVAS: usize = 36;
const OFFSET: usize = 6;
const SIDE: usize = 28;

/// Where the left or the right image of a pair comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DigitSource {
    /// MNIST's handwritten digits.
    Mnist,
    /// Fashion-MNIST's clothing items.
    Fashion,
}

impl DigitSource {
    fn name(self) -> &'static str {
        match self {
            DigitSource::Mnist => "MNIST (yann.lecun.com/exdb/mnist)",
            DigitSource::Fashion => "Fashion-MNIST (github.com/zalandoresearch/fashion-mnist)",
        }
    }
}

fn default_mnist() -> PathBuf {
    PathBuf::from("data/mnist")
}

fn default_fashion() -> PathBuf {
    PathBuf::from("data/fashion-mnist")
}

fn default_image_size() -> usize {
    SIDE
}

fn one() -> usize {
    1
}

/// How to build the dataset (`[data.multi_mnist]` in configs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiMnistConfig {
    /// The folder with MNIST's four idx files (plain or `.gz`); default `data/mnist`.
    #[serde(default = "default_mnist")]
    pub mnist_dir: PathBuf,
    /// The folder with Fashion-MNIST's four idx files; default `data/fashion-mnist`.
    #[serde(default = "default_fashion")]
    pub fashion_dir: PathBuf,
    /// The source of the top-left image (task `left`); default MNIST.
    #[serde(default = "DigitSource::mnist")]
    pub left: DigitSource,
    /// The source of the bottom-right image (task `right`); default MNIST.
    #[serde(default = "DigitSource::mnist")]
    pub right: DigitSource,
    /// Side of the images: 28 (default, Sener & Koltun) resizes the 36×36 canvas, 36
    /// keeps it (Lin et al.).
    #[serde(default = "default_image_size")]
    pub image_size: usize,
    /// Partners drawn per left image; default 1.
    #[serde(default = "one")]
    pub pairs_per_image: usize,
    /// The fraction of the training pairs held out for validation; default 0: the test
    /// split doubles as the validation split, as in both papers.
    #[serde(default)]
    pub val_fraction: f64,
    /// Seed of the partners and of the validation split; default 0.
    #[serde(default)]
    pub seed: u64,
}

impl DigitSource {
    fn mnist() -> Self {
        DigitSource::Mnist
    }
}

impl Default for MultiMnistConfig {
    fn default() -> Self {
        Self {
            mnist_dir: default_mnist(),
            fashion_dir: default_fashion(),
            left: DigitSource::Mnist,
            right: DigitSource::Mnist,
            image_size: SIDE,
            pairs_per_image: 1,
            val_fraction: 0.0,
            seed: 0,
        }
    }
}

impl MultiMnistConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if !(1..=256).contains(&self.image_size) {
            return Err(DataError::invalid("multi_mnist.image_size", self.image_size, "must be in 1..=256"));
        }
        if !(1..=100).contains(&self.pairs_per_image) {
            return Err(DataError::invalid(
                "multi_mnist.pairs_per_image",
                self.pairs_per_image,
                "must be in 1..=100",
            ));
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return Err(DataError::invalid(
                "multi_mnist.val_fraction",
                self.val_fraction,
                "must be in [0, 1)",
            ));
        }
        Ok(())
    }

    fn dir(&self, source: DigitSource) -> &Path {
        match source {
            DigitSource::Mnist => &self.mnist_dir,
            DigitSource::Fashion => &self.fashion_dir,
        }
    }
}

/// Composed images and their two labels.
#[derive(Debug, Clone, Default)]
struct Pairs {
    pixels: Vec<u8>,
    left: Vec<i64>,
    right: Vec<i64>,
}

/// MultiMNIST and its Fashion variants as a [`MultiTaskDataset`] (see the module docs).
#[derive(Debug, Clone)]
pub struct MultiMnist {
    config: MultiMnistConfig,
    tasks: Vec<TaskInfo>,
    train: Pairs,
    test: Pairs,
    /// Indices into `train` of the training and the validation split.
    train_rows: Vec<usize>,
    val_rows: Vec<usize>,
}

/// The composed, contrast-stretched and resized image of `left` and `right` (28×28 each).
pub fn compose(left: &[u8], right: &[u8], resizer: Option<&Resizer>) -> Vec<u8> {
    let mut canvas = vec![0u8; CANVAS * CANVAS];
    for y in 0..SIDE {
        canvas[y * CANVAS..y * CANVAS + SIDE].copy_from_slice(&left[y * SIDE..(y + 1) * SIDE]);
    }
    for y in 0..SIDE {
        for x in 0..SIDE {
            let c = &mut canvas[(y + OFFSET) * CANVAS + x + OFFSET];
            *c = (*c).max(right[y * SIDE + x]);
        }
    }
    // scipy's bytescale of a float image whose minimum is 0 (the canvas corners).
    let max = *canvas.iter().max().expect("non-empty canvas");
    if max > 0 && max < 255 {
        let scale = 255.0 / max as f64;
        canvas.iter_mut().for_each(|v| *v = (*v as f64 * scale + 0.5).min(255.0) as u8);
    }
    match resizer {
        Some(r) => r.resize(&canvas, 1),
        None => canvas,
    }
}

impl MultiMnist {
    /// Reads the idx files of the configured sources and composes the pairs.
    pub fn load(config: MultiMnistConfig) -> Result<Self> {
        config.validate()?;
        let read = |source: DigitSource, train: bool| -> Result<idx::IdxSplit> {
            let split = idx::read_split(config.dir(source), train, source.name())?;
            if (split.images.rows, split.images.cols) != (SIDE, SIDE) {
                return Err(DataError::layout(
                    config.dir(source),
                    format!("images of {}×{}, expected 28×28", split.images.rows, split.images.cols),
                ));
            }
            Ok(split)
        };
        let resizer = (config.image_size != CANVAS).then(|| {
            Resizer::new(CANVAS, CANVAS, config.image_size, config.image_size, ResizeFilter::Nearest)
        });
        let mut splits = [Pairs::default(), Pairs::default()];
        for (s, pairs) in splits.iter_mut().enumerate() {
            let train = s == 0;
            let left = read(config.left, train)?;
            let other;
            let right = if config.right == config.left {
                &left
            } else {
                other = read(config.right, train)?;
                &other
            };
            let mut rng = substream(config.seed, s as u64);
            for i in 0..left.images.len() {
                for _ in 0..config.pairs_per_image {
                    let j = rng.gen_range(0..right.images.len());
                    pairs.pixels.extend(compose(
                        left.images.image(i),
                        right.images.image(j),
                        resizer.as_ref(),
                    ));
                    pairs.left.push(left.labels[i] as i64);
                    pairs.right.push(right.labels[j] as i64);
                }
            }
        }
        let [train, test] = splits;
        let n = train.left.len();
        let f = config.val_fraction;
        let [train_rows, val_rows, _] =
            split_by_fractions(n, [1.0 - f, f, 0.0], config.seed, "multi_mnist.val_fraction")?;
        let task =
            |name: &str| TaskInfo { name: name.into(), kind: TaskKind::Classification { classes: 10 } };
        Ok(Self { config, tasks: vec![task("left"), task("right")], train, test, train_rows, val_rows })
    }

    fn pairs_and_row(&self, split: Split, index: usize) -> (&Pairs, usize) {
        match split {
            Split::Train => (&self.train, self.train_rows[index]),
            Split::Val if self.val_rows.is_empty() => (&self.test, index),
            Split::Val => (&self.train, self.val_rows[index]),
            Split::Test => (&self.test, index),
        }
    }

    /// The image (`image_size²` bytes) and the two labels of sample `index` of `split`.
    pub fn sample(&self, split: Split, index: usize) -> (&[u8], i64, i64) {
        let (pairs, row) = self.pairs_and_row(split, index);
        let len = self.config.image_size * self.config.image_size;
        (&pairs.pixels[row * len..(row + 1) * len], pairs.left[row], pairs.right[row])
    }
}

impl MultiTaskDataset for MultiMnist {
    fn tasks(&self) -> &[TaskInfo] {
        &self.tasks
    }

    fn input_shape(&self) -> Vec<i64> {
        let s = self.config.image_size as i64;
        vec![1, s, s]
    }

    fn len(&self, split: Split) -> usize {
        match split {
            Split::Train => self.train_rows.len(),
            Split::Val if self.val_rows.is_empty() => self.test.left.len(),
            Split::Val => self.val_rows.len(),
            Split::Test => self.test.left.len(),
        }
    }

    /// Images `[N, 1, S, S]` in `[0, 1]`, labels `[N]` of the left and the right item.
    fn batch(&self, split: Split, indices: &[usize], device: Device) -> Result<MultiTaskBatch> {
        check_indices(split, indices, self.len(split))?;
        let s = self.config.image_size;
        let mut pixels = Vec::with_capacity(indices.len() * s * s);
        let (mut left, mut right) = (Vec::with_capacity(indices.len()), Vec::with_capacity(indices.len()));
        for &i in indices {
            let (image, l, r) = self.sample(split, i);
            pixels.extend_from_slice(image);
            left.push(l);
            right.push(r);
        }
        let inputs = images_to_float(&pixels, &[indices.len() as i64, 1, s as i64, s as i64], device)?;
        let targets = vec![
            Tensor::f_from_slice(&left)?.f_to_device(device)?,
            Tensor::f_from_slice(&right)?.f_to_device(device)?,
        ];
        Ok(MultiTaskBatch::fully_labelled(inputs, targets))
    }
}
