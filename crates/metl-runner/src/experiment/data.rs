//! `[data.<name>]`: where an experiment's tasks come from, and the episode streams built
//! from it.
//!
//! Every stream is addressed by position (meta-batch `i` depends only on the seed and `i`),
//! so a resumed run continues with exactly the batches an uninterrupted one would see.

use super::few_shot::{self, FewShotData};
use crate::error::bad_input;
use anyhow::Context;
use metl_data::{
    episode::{PoolBatchSampler, Prefetcher, Transforms},
    image::{ClassImages, Preprocess, ResizeFilter},
    image_folder::{ImageFolder, ImageFolderConfig},
    multitask::{
        Celeba, CelebaConfig, CsvConfig, CsvDataset, MultiMnist, MultiMnistConfig, Nyuv2, Nyuv2Config,
        Omniglot50, Omniglot50Config, SyntheticRegression, SyntheticRegressionConfig,
    },
    omniglot::{omniglot_dir, OmniglotSplits},
    rng::substream,
    sinusoid::{SinusoidBatches, SinusoidConfig},
    ClassPool, EpisodeConfig, EpisodeSampler, MultiTaskDataset, Omniglot, OmniglotConfig, OmniglotProtocol,
    Split, TaskBatch,
};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};
use tch::{Device, Tensor};

/// A data source as configured in `[data.<name>]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DataConfig {
    /// Sinusoid regression tasks (Finn et al. 2017), for meta-learning.
    Sinusoid(SinusoidConfig),
    /// Omniglot few-shot episodes under a published class split, for meta-learning.
    Omniglot(OmniglotData),
    /// Few-shot episodes from your own folder of class folders, for meta-learning.
    ImageFolder(ImageFolderData),
    /// Omniglot-50: each alphabet one classification task, for multi-task learning.
    Omniglot50(Omniglot50Data),
    /// The synthetic regression of GradNorm (Chen et al. 2018), for multi-task learning.
    SyntheticRegression(SyntheticRegressionConfig),
    /// CIFAR-FS: CIFAR-100's classes split 64 / 16 / 20 (Bertinetto et al. 2019), for
    /// meta-learning.
    CifarFs(FewShotData),
    /// FC100: CIFAR-100's superclasses split 12 / 4 / 4 (Oreshkin et al. 2018), for
    /// meta-learning.
    Fc100(FewShotData),
    /// CUB-200-2011: 200 bird species split 100 / 50 / 50 (Chen et al. 2019), for
    /// meta-learning.
    Cub(FewShotData),
    /// tieredImageNet: 608 ImageNet classes split by category 351 / 97 / 160 (Ren et al.
    /// 2018), for meta-learning.
    TieredImagenet(FewShotData),
    /// miniImageNet: 100 ImageNet classes split 64 / 16 / 20 (Ravi & Larochelle 2017),
    /// for meta-learning.
    MiniImagenet(FewShotData),
    /// Your own tabular or image data from a CSV file, one column per task, for multi-task
    /// learning.
    Csv(CsvConfig),
    /// MultiMNIST, Multi-Fashion and Multi-Fashion+MNIST (Sener & Koltun 2018; Lin et al.
    /// 2019): the left and the right item of two overlapping images, for multi-task learning.
    MultiMnist(MultiMnistConfig),
    /// CelebA's 40 binary face attributes (Liu et al. 2015), for multi-task learning.
    Celeba(CelebaConfig),
    /// NYUv2's segmentation, depth and surface normals in MTAN's preprocessed form (Liu et
    /// al. 2019), for multi-task learning.
    Nyuv2(Nyuv2Config),
}

/// Names and one-line descriptions of the data sources, for `metl list`.
pub const DATASETS: &[(&str, &str, &str)] = &[
    ("sinusoid", "meta", "sinusoid regression, A ~ U[0.1, 5], φ ~ U[0, π], x ~ U[-5, 5] (Finn et al. 2017)"),
    ("omniglot", "meta", "Omniglot episodes under the lake / maml / vinyals class split (Lake et al. 2015)"),
    ("image_folder", "meta", "episodes from your own folder of class folders of PNG/JPEG images"),
    (
        "cifar_fs",
        "meta",
        "CIFAR-FS: CIFAR-100 classes split 64/16/20, 32×32 (Bertinetto et al. 2019)",
    ),
    (
        "fc100",
        "meta",
        "FC100: CIFAR-100 superclasses split 12/4/4, 60/20/20 classes (Oreshkin et al. 2018)",
    ),
    (
        "mini_imagenet",
        "meta",
        "miniImageNet: 100 ImageNet classes, 84×84, split 64/16/20 (Ravi & Larochelle 2017)",
    ),
    (
        "tiered_imagenet",
        "meta",
        "tieredImageNet: 608 classes, 84×84, split by category 351/97/160 (Ren et al. 2018)",
    ),
    (
        "cub",
        "meta",
        "CUB-200-2011: 200 bird species split 100/50/50, resized to 84×84 (Chen et al. 2019)",
    ),
    (
        "omniglot50",
        "mtl",
        "Omniglot-50: one task per alphabet, drawings split 10/4/6 (Meyerson & Miikkulainen 2018)",
    ),
    (
        "synthetic_regression",
        "mtl",
        "GradNorm's synthetic regression, tasks of very different scales (Chen et al. 2018)",
    ),
    (
        "csv",
        "mtl",
        "your own CSV file: numeric or image-path inputs, one column per task (regression, classes, binary)",
    ),
    (
        "multi_mnist",
        "mtl",
        "MultiMNIST / Multi-Fashion(+MNIST): classify both overlapping items (Sener & Koltun 2018; Lin et al. 2019)",
    ),
    ("celeba", "mtl", "CelebA: 40 binary face attributes, official partition, 64×64 (Liu et al. 2015)"),
    (
        "nyuv2",
        "mtl",
        "NYUv2: 13-class segmentation, depth, surface normals at 288×384, MTAN's .npy files (Liu et al. 2019)",
    ),
];

fn default_image_size() -> usize {
    28
}

/// `[data.omniglot]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OmniglotData {
    /// The folder with `images_background.zip` and `images_evaluation.zip` (or their
    /// extracted folders). Default: `$METL_OMNIGLOT_DIR`, else `data/omniglot`, relative to
    /// the working directory.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// The class split: `lake`, `maml` or `vinyals` (see docs/data.md).
    pub protocol: OmniglotProtocol,
    /// Image side after resizing (default 28).
    #[serde(default = "default_image_size")]
    pub image_size: usize,
    /// The resizing filter (default `lanczos`).
    #[serde(default)]
    pub filter: ResizeFilter,
    /// All N classes of an episode from one alphabet (Lake et al.'s harder setting).
    #[serde(default)]
    pub within_alphabet: bool,
}

/// `[data.image_folder]`: your own images; classes are split at random (with the seed)
/// into train, validation and test classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageFolderData {
    /// The folder of class folders.
    pub root: PathBuf,
    /// `[height, width]` after resizing (default `[84, 84]`).
    #[serde(default = "default_folder_size")]
    pub image_size: [usize; 2],
    /// 1 (gray) or 3 (RGB) channels (default 3).
    #[serde(default = "default_channels")]
    pub channels: usize,
    /// Store `255 − v`, for dark strokes on light paper (default false).
    #[serde(default)]
    pub invert: bool,
    /// Fractions of the classes for train, validation and test (default `[0.7, 0.1, 0.2]`).
    #[serde(default = "default_fractions")]
    pub split: [f64; 3],
}

impl ImageFolderData {
    /// The loader configuration.
    pub fn folder_config(&self) -> ImageFolderConfig {
        ImageFolderConfig {
            image_size: self.image_size,
            channels: self.channels,
            invert: self.invert,
            ..ImageFolderConfig::new(&self.root)
        }
    }
}

fn default_folder_size() -> [usize; 2] {
    [84, 84]
}

fn default_channels() -> usize {
    3
}

fn default_fractions() -> [f64; 3] {
    [0.7, 0.1, 0.2]
}

/// `[data.omniglot50]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Omniglot50Data {
    /// As in [`OmniglotData::root`].
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// Image side after resizing (default 28; the papers used 105).
    #[serde(default = "default_image_size")]
    pub image_size: usize,
    /// The resizing filter (default `lanczos`).
    #[serde(default)]
    pub filter: ResizeFilter,
    /// Drawings per character in train, validation and test (default `[10, 4, 6]`).
    #[serde(default = "default_drawings")]
    pub drawings: [usize; 3],
    /// The alphabets kept as tasks, by index (0–29 background, 30–49 evaluation, in
    /// alphabetical order within each); default all 50. One alphabet is a single-task run
    /// on exactly the samples it has in the multi-task dataset.
    #[serde(default)]
    pub alphabets: Option<Vec<usize>>,
}

fn default_drawings() -> [usize; 3] {
    [10, 4, 6]
}

/// The Omniglot folder: the configured one, else `$METL_OMNIGLOT_DIR`, else `data/omniglot`
/// (relative to the working directory).
pub fn resolve_omniglot_root(configured: Option<&Path>) -> PathBuf {
    match configured {
        Some(root) => root.to_owned(),
        None => omniglot_dir("data/omniglot"),
    }
}

fn load_omniglot(
    root: Option<&Path>,
    image_size: usize,
    filter: ResizeFilter,
) -> anyhow::Result<Arc<Omniglot>> {
    let root = resolve_omniglot_root(root);
    if !root.exists() {
        return Err(bad_input(format!(
            "data.omniglot.root: {} does not exist (download images_background.zip and images_evaluation.zip \
             from github.com/brendenlake/omniglot, or set METL_OMNIGLOT_DIR)",
            root.display()
        )));
    }
    let config = OmniglotConfig { image_size, filter, ..OmniglotConfig::new(root) };
    Ok(Arc::new(Omniglot::load(config).map_err(bad_input)?))
}

/// The image classes of an episode experiment and their train/validation/test pools.
#[derive(Clone)]
pub struct ImageClasses {
    /// The images.
    pub data: Arc<dyn ClassImages + Send + Sync>,
    /// The class pools of the three splits (boxed: keeps the experiment's setup small).
    pub splits: Box<OmniglotSplits>,
    /// Sample all classes of an episode from one group.
    pub within_group: bool,
    /// The normalisation of every batch, and the augmentation of training episodes and
    /// pre-training batches.
    pub transforms: Transforms,
}

impl std::fmt::Debug for ImageClasses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageClasses").field("splits", &self.splits).finish()
    }
}

impl ImageClasses {
    /// `[C, H, W]` of every image.
    pub fn input_shape(&self) -> Vec<i64> {
        self.data.image_shape().iter().map(|&d| d as i64).collect()
    }
}

/// Loads the classes of an Omniglot or image-folder experiment.
pub fn load_image_classes(config: &DataConfig, seed: u64) -> anyhow::Result<ImageClasses> {
    if let Some((which, c)) = config.few_shot() {
        return few_shot::load(which, c);
    }
    match config {
        DataConfig::Omniglot(c) => {
            let omniglot = load_omniglot(c.root.as_deref(), c.image_size, c.filter)?;
            let splits = omniglot.splits(c.protocol, seed).map_err(bad_input)?;
            Ok(ImageClasses {
                data: omniglot,
                splits: Box::new(splits),
                within_group: c.within_alphabet,
                transforms: Transforms::default(),
            })
        }
        DataConfig::ImageFolder(c) => {
            let folder = ImageFolder::load(c.folder_config()).map_err(bad_input)?;
            let splits = split_classes(folder.num_classes(), c.split, seed)?;
            Ok(ImageClasses {
                data: Arc::new(folder),
                splits: Box::new(splits),
                within_group: false,
                transforms: Transforms::default(),
            })
        }
        other => Err(bad_input(format!("data.{}: not an image-classification source", name_of(other)))),
    }
}

/// Splits `n` classes at random (with `seed`) into pools by `fractions`.
fn split_classes(n: usize, fractions: [f64; 3], seed: u64) -> anyhow::Result<OmniglotSplits> {
    let total: f64 = fractions.iter().sum();
    if fractions.iter().any(|f| !(f.is_finite() && *f >= 0.0)) || (total - 1.0).abs() > 1e-9 {
        return Err(bad_input(format!(
            "data.image_folder.split = {fractions:?}: three non-negative fractions summing to 1"
        )));
    }
    let mut classes: Vec<usize> = (0..n).collect();
    classes.shuffle(&mut substream(seed, 0x5350_4c49));
    let n_train = (fractions[0] * n as f64).round() as usize;
    let n_val = ((fractions[1] * n as f64).round() as usize).min(n - n_train);
    Ok(OmniglotSplits {
        train: ClassPool::unrotated("train", classes[..n_train].iter().copied()),
        val: ClassPool::unrotated("val", classes[n_train..n_train + n_val].iter().copied()),
        test: ClassPool::unrotated("test", classes[n_train + n_val..].iter().copied()),
    })
}

/// The inputs of an experiment's model, known from the configuration alone.
#[derive(Debug, Clone)]
pub struct InputSpec {
    /// One input's shape, without the batch dimension (`[1]`, `[1, 28, 28]`, ...).
    pub shape: Vec<i64>,
    /// How an image file becomes such an input (image data only).
    pub preprocess: Option<Preprocess>,
}

impl DataConfig {
    /// The model's input shape and the preprocessing of image files, as the data loader
    /// applies them.
    pub fn input_spec(&self) -> InputSpec {
        match self {
            DataConfig::Sinusoid(_) => InputSpec { shape: vec![1], preprocess: None },
            DataConfig::SyntheticRegression(c) => {
                InputSpec { shape: vec![c.input_dim as i64], preprocess: None }
            }
            // The number of feature columns is known once the file is read.
            DataConfig::Csv(_) => InputSpec { shape: Vec::new(), preprocess: None },
            DataConfig::MultiMnist(c) => {
                InputSpec { shape: vec![1, c.image_size as i64, c.image_size as i64], preprocess: None }
            }
            // The image size is that of the files.
            DataConfig::Nyuv2(_) => InputSpec { shape: Vec::new(), preprocess: None },
            DataConfig::Celeba(c) => {
                let [h, w] = c.image_size;
                InputSpec {
                    shape: vec![3, h as i64, w as i64],
                    preprocess: Some(Preprocess::new(c.image_size, 3, c.filter, false)),
                }
            }
            DataConfig::Omniglot(OmniglotData { image_size, filter, .. })
            | DataConfig::Omniglot50(Omniglot50Data { image_size, filter, .. }) => {
                let config =
                    OmniglotConfig { image_size: *image_size, filter: *filter, ..OmniglotConfig::default() };
                InputSpec {
                    shape: vec![1, *image_size as i64, *image_size as i64],
                    preprocess: Some(config.preprocess()),
                }
            }
            d @ (DataConfig::CifarFs(_)
            | DataConfig::Fc100(_)
            | DataConfig::MiniImagenet(_)
            | DataConfig::Cub(_)
            | DataConfig::TieredImagenet(_)) => {
                let (which, c) = d.few_shot().expect("a few-shot benchmark");
                few_shot::input_spec(which, c)
            }
            DataConfig::ImageFolder(c) => {
                let [h, w] = c.image_size;
                InputSpec {
                    shape: vec![c.channels as i64, h as i64, w as i64],
                    preprocess: Some(c.folder_config().preprocess()),
                }
            }
        }
    }

    /// Whether the experiment has validation tasks: fresh sinusoids always, image data when
    /// its validation split has classes.
    pub fn has_validation(&self, classes: &Option<ImageClasses>) -> bool {
        match (self, classes) {
            (DataConfig::Sinusoid(_), _) => true,
            (_, Some(c)) => !c.splits.val.is_empty(),
            _ => false,
        }
    }
}

/// The `[data.<name>]` key of a configuration.
pub fn name_of(config: &DataConfig) -> &'static str {
    match config {
        DataConfig::Sinusoid(_) => "sinusoid",
        DataConfig::Omniglot(_) => "omniglot",
        DataConfig::ImageFolder(_) => "image_folder",
        d @ (DataConfig::CifarFs(_)
        | DataConfig::Fc100(_)
        | DataConfig::MiniImagenet(_)
        | DataConfig::Cub(_)
        | DataConfig::TieredImagenet(_)) => d.few_shot().expect("a few-shot benchmark").0.name(),
        DataConfig::Omniglot50(_) => "omniglot50",
        DataConfig::SyntheticRegression(_) => "synthetic_regression",
        DataConfig::Csv(_) => "csv",
        DataConfig::MultiMnist(_) => "multi_mnist",
        DataConfig::Celeba(_) => "celeba",
        DataConfig::Nyuv2(_) => "nyuv2",
    }
}

/// Loads the multi-task dataset of an MTL experiment.
pub fn load_multitask(config: &DataConfig) -> anyhow::Result<Arc<dyn MultiTaskDataset>> {
    match config {
        DataConfig::Omniglot50(c) => {
            let omniglot = load_omniglot(c.root.as_deref(), c.image_size, c.filter)?;
            let config = Omniglot50Config {
                drawings: c.drawings,
                alphabets: c.alphabets.clone(),
                ..Default::default()
            };
            Ok(Arc::new(Omniglot50::new(omniglot, config).map_err(bad_input)?))
        }
        DataConfig::SyntheticRegression(c) => {
            Ok(Arc::new(SyntheticRegression::new(c.clone()).map_err(bad_input)?))
        }
        DataConfig::Csv(c) => Ok(Arc::new(CsvDataset::load(c).map_err(bad_input)?)),
        DataConfig::MultiMnist(c) => Ok(Arc::new(MultiMnist::load(c.clone()).map_err(bad_input)?)),
        DataConfig::Celeba(c) => Ok(Arc::new(Celeba::load(c).map_err(bad_input)?)),
        DataConfig::Nyuv2(c) => Ok(Arc::new(Nyuv2::load(c).map_err(bad_input)?)),
        other => {
            Err(bad_input(format!("data.{}: not a multi-task dataset (see `metl list`)", name_of(other))))
        }
    }
}

/// An endless, position-addressed stream of meta-batches.
pub trait EpisodeStream: Send {
    /// The next meta-batch.
    fn next_batch(&mut self) -> anyhow::Result<TaskBatch>;
}

/// One data-parallel rank's share of every batch: equal parts, in rank order, so that the
/// ranks together see exactly the batches of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This process's rank.
    pub rank: usize,
    /// The number of processes.
    pub world: usize,
}

impl Shard {
    /// The whole batch (one process).
    pub const WHOLE: Shard = Shard { rank: 0, world: 1 };

    /// Checks that `size` (named `field`) splits into equal shares.
    pub fn check(&self, field: &str, size: usize) -> anyhow::Result<()> {
        if size % self.world != 0 {
            return Err(bad_input(format!(
                "{field} = {size}: must be a multiple of the number of data-parallel processes ({})",
                self.world
            )));
        }
        Ok(())
    }
}

/// Which dimension of a [`TaskBatch`] a shard splits.
#[derive(Debug, Clone, Copy)]
enum ShardAlong {
    /// The tasks `[B, ...]`.
    Tasks,
    /// The rows of a pre-training batch `[1, N, ...]` (support only).
    Rows,
}

/// A stream whose batches are generated whole and cut to this rank's share (for sources
/// that cannot draw a share alone: sinusoid batches and pre-training batches come from one
/// sequential random stream each; both are cheap next to a training step).
struct ShardOf {
    inner: Box<dyn EpisodeStream>,
    shard: Shard,
    along: ShardAlong,
}

impl EpisodeStream for ShardOf {
    fn next_batch(&mut self) -> anyhow::Result<TaskBatch> {
        let batch = self.inner.next_batch()?;
        let Shard { rank, world } = self.shard;
        Ok(match self.along {
            ShardAlong::Tasks => {
                let share = batch.num_tasks() / world;
                batch.tasks(rank * share, share)
            }
            ShardAlong::Rows => {
                let share = batch.support_x.size()[1] / world as i64;
                let cut = |t: &Tensor| t.narrow(1, rank as i64 * share, share);
                TaskBatch {
                    support_x: cut(&batch.support_x),
                    support_y: cut(&batch.support_y),
                    query_x: batch.query_x,
                    query_y: batch.query_y,
                }
            }
        })
    }
}

/// `stream` cut to `shard` along the tasks (`rows = false`) or the pre-training rows.
pub fn shard_of(stream: Box<dyn EpisodeStream>, shard: Shard, rows: bool) -> Box<dyn EpisodeStream> {
    if shard.world == 1 {
        return stream;
    }
    let along = if rows { ShardAlong::Rows } else { ShardAlong::Tasks };
    Box::new(ShardOf { inner: stream, shard, along })
}

/// Sinusoid meta-batches: batch `i` is drawn from ChaCha8 stream `i` of the seed,
/// prepared ahead on a background thread.
pub struct SinusoidStream {
    batches: Prefetcher,
}

impl SinusoidStream {
    /// Batches of `episodes.meta_batch` tasks with `shots` support and `queries` query
    /// points each, starting at batch `start`.
    pub fn new(
        config: SinusoidConfig,
        episodes: EpisodeConfig,
        seed: u64,
        start: u64,
        device: Device,
    ) -> anyhow::Result<Self> {
        let mut batches =
            SinusoidBatches::new(config, seed, episodes.meta_batch, episodes.shots, episodes.queries)
                .map_err(bad_input)?;
        batches.seek(start);
        Ok(Self { batches: batches.prefetch(SinusoidBatches::PREFETCH_DEPTH, device) })
    }
}

impl EpisodeStream for SinusoidStream {
    fn next_batch(&mut self) -> anyhow::Result<TaskBatch> {
        Ok(self.batches.next_batch()?)
    }
}

/// Labelled mini-batches over all training classes (global labels), for pre-training.
pub struct PretrainStream {
    sampler: PoolBatchSampler<dyn ClassImages + Send + Sync>,
    device: Device,
}

impl PretrainStream {
    /// Batches of `batch_size` images of the training pool, starting at batch `start`.
    pub fn new(
        classes: &ImageClasses,
        batch_size: usize,
        seed: u64,
        start: u64,
        device: Device,
    ) -> anyhow::Result<Self> {
        let mut sampler =
            PoolBatchSampler::new(Arc::clone(&classes.data), classes.splits.train.clone(), batch_size, seed)
                .map_err(bad_input)?
                .with_transforms(classes.transforms);
        sampler.seek(start);
        Ok(Self { sampler, device })
    }
}

impl EpisodeStream for PretrainStream {
    fn next_batch(&mut self) -> anyhow::Result<TaskBatch> {
        Ok(self.sampler.sample_batch(self.device)?)
    }
}

/// Image episodes prepared by a background thread.
pub struct ImageStream {
    prefetcher: Prefetcher,
}

impl ImageStream {
    /// Episodes of `config` from `pool`, starting at meta-batch `start`; `shard`'s share
    /// of each meta-batch ([`EpisodeSampler::shard`]).
    pub fn new(
        classes: &ImageClasses,
        split: Split,
        config: EpisodeConfig,
        seed: u64,
        start: u64,
        shard: Shard,
        device: Device,
    ) -> anyhow::Result<Self> {
        let config = EpisodeConfig { within_group: classes.within_group, ..config };
        let pool = classes.splits.get(split).clone();
        if pool.is_empty() {
            return Err(bad_input(format!("the {split} split of this dataset has no classes")));
        }
        let mut sampler = EpisodeSampler::new(Arc::clone(&classes.data), pool, config, seed)
            .map_err(bad_input)
            .with_context(|| format!("{split} episodes"))?;
        // Augmented training episodes only: validation and test images are seen as they are.
        let transforms = match split {
            Split::Train => classes.transforms,
            _ => classes.transforms.without_augmentation(),
        };
        sampler = sampler.with_transforms(transforms);
        if shard.world > 1 {
            shard.check("episodes.meta_batch", config.meta_batch)?;
            sampler = sampler.shard(shard.rank, shard.world).map_err(bad_input)?;
        }
        sampler.seek_batch(start);
        Ok(Self { prefetcher: sampler.prefetch(2, device) })
    }
}

impl EpisodeStream for ImageStream {
    fn next_batch(&mut self) -> anyhow::Result<TaskBatch> {
        Ok(self.prefetcher.next_batch()?)
    }
}
