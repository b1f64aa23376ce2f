//! The experiment configuration file: one TOML file describes a whole run.
//!
//! ```toml
//! name = "protonet-omniglot-5w1s"   # the run folder: runs/<name>
//! seed = 0
//! device = "auto"                    # cpu, cuda, cuda:N, auto
//!
//! [train]
//! iterations = 20000
//!
//! [data.omniglot]                    # or sinusoid, image_folder, omniglot50, synthetic_regression
//! protocol = "vinyals"
//!
//! [model.conv4]                      # or mlp, resnet12
//!
//! [meta.protonet]                    # a meta-learning algorithm, or an [mtl] section
//!
//! [episodes]                         # training episodes (meta-learning)
//! ways = 60
//! shots = 5
//! queries = 5
//! meta_batch = 1
//!
//! [test]                             # test episodes (meta-learning)
//! ways = 5
//! shots = 1
//! ```
//!
//! Every section rejects unknown fields; values are checked before anything is created,
//! and every error names the field, the value and what is allowed.

pub mod data;
pub mod few_shot;
pub mod meta;
pub mod mtl;
pub mod task_weighting;

use crate::{error::bad_input, zoo::BackboneConfig};
use data::DataConfig;
use meta::AlgorithmConfig;
use metl_data::EpisodeConfig;
use mtl::MtlConfig;
use serde::{Deserialize, Serialize};

fn default_device() -> String {
    "auto".into()
}

/// The root of an experiment file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// The run's name: its folder is `<out>/<name>` (`runs/` by default).
    pub name: String,
    /// Seed of the model initialisation and of every data stream (default 0).
    #[serde(default)]
    pub seed: u64,
    /// `cpu`, `cuda`, `cuda:N` or `auto` (default).
    #[serde(default = "default_device")]
    pub device: String,
    /// libtorch's intra-op threads; default: libtorch's choice (the number of cores).
    #[serde(default)]
    pub threads: Option<usize>,
    /// The training loop.
    pub train: TrainConfig,
    /// Where the tasks come from.
    pub data: DataConfig,
    /// The backbone.
    pub model: BackboneConfig,
    /// A meta-learning algorithm (exclusive with `mtl`).
    #[serde(default)]
    pub meta: Option<AlgorithmConfig>,
    /// Training episodes (meta-learning).
    #[serde(default)]
    pub episodes: Option<EpisodeConfig>,
    /// Test (and validation) episodes (meta-learning).
    #[serde(default)]
    pub test: Option<TestConfig>,
    /// Multi-task learning (exclusive with `meta`).
    #[serde(default)]
    pub mtl: Option<MtlConfig>,
    /// `[task_weighting]`: an MTL strategy (`name = "pcgrad"`, ...) combining the per-task
    /// meta-gradients of each meta-batch instead of their mean (MAML family only; see
    /// [`task_weighting`]).
    #[serde(default)]
    pub task_weighting: Option<metl_mtl::StrategyConfig>,
}

fn default_log_every() -> u64 {
    100
}

fn default_checkpoint_every() -> u64 {
    1000
}

/// `[train]`: the length of training and how often to log, validate and checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Training iterations (meta-batches, or MTL mini-batches).
    pub iterations: u64,
    /// Iterations between metric records (default 100).
    #[serde(default = "default_log_every")]
    pub log_every: u64,
    /// Iterations between validations; 0 (default) validates only at the end.
    #[serde(default)]
    pub val_every: u64,
    /// Iterations between checkpoints (default 1000; a multiple of `log_every`).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// Early stopping: training ends once this many validations in a row (every
    /// `val_every` iterations) have not improved on the best one; the final test uses the
    /// best validated weights. Absent (default): all `iterations` run.
    #[serde(default)]
    pub patience: Option<u64>,
    /// The resident memory a MAML-family meta-training step may reach (e.g. `"2GB"`, or
    /// `"none"` for one pass): sizes `tasks_per_pass` from the first step when it is not
    /// set by hand (default 1 GB; CPU only; see [`crate::memory`]).
    #[serde(default)]
    pub memory_budget: crate::memory::MemoryBudget,
    /// Mini-batch size of pre-training (the baselines) and of multi-task training
    /// (default 16, Chen et al.'s).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

fn default_batch_size() -> usize {
    16
}

fn default_test_queries() -> usize {
    15
}

fn default_test_episodes() -> usize {
    600
}

fn default_val_episodes() -> usize {
    100
}

fn default_eval_batch() -> usize {
    25
}

/// `[test]`: the episodes of validation and of the final test, as papers report them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestConfig {
    /// Classes per test episode (default: the training episodes').
    #[serde(default)]
    pub ways: Option<usize>,
    /// Support examples per class (default: the training episodes').
    #[serde(default)]
    pub shots: Option<usize>,
    /// Query examples per class (default 15).
    #[serde(default = "default_test_queries")]
    pub queries: usize,
    /// Test episodes (default 600).
    #[serde(default = "default_test_episodes")]
    pub episodes: usize,
    /// Validation episodes (default 100).
    #[serde(default = "default_val_episodes")]
    pub val_episodes: usize,
    /// Episodes evaluated at once (default 25).
    #[serde(default = "default_eval_batch")]
    pub batch: usize,
    /// Adaptation steps to report (gradient-based learners; default: the training steps).
    #[serde(default)]
    pub steps: Vec<usize>,
}

impl Default for TestConfig {
    fn default() -> Self {
        Self {
            ways: None,
            shots: None,
            queries: default_test_queries(),
            episodes: default_test_episodes(),
            val_episodes: default_val_episodes(),
            batch: default_eval_batch(),
            steps: Vec::new(),
        }
    }
}

/// The two kinds of experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Meta-learning: `[meta.<algorithm>]`, `[episodes]`, `[test]`.
    Meta,
    /// Multi-task learning: `[mtl]`.
    Mtl,
}

fn positive(field: &str, value: u64) -> anyhow::Result<()> {
    if value == 0 {
        Err(bad_input(format!("{field} = 0: must be >= 1")))
    } else {
        Ok(())
    }
}

impl Experiment {
    /// Which kind of experiment this is.
    pub fn kind(&self) -> Kind {
        if self.mtl.is_some() {
            Kind::Mtl
        } else {
            Kind::Meta
        }
    }

    /// The training episodes, with the sinusoid defaults filled in (1 way, K = 10).
    pub fn train_episodes(&self) -> EpisodeConfig {
        self.episodes.unwrap_or_else(|| match self.data {
            DataConfig::Sinusoid(_) => {
                EpisodeConfig { ways: 1, shots: 10, queries: 10, meta_batch: 25, within_group: false }
            }
            _ => EpisodeConfig::default(),
        })
    }

    /// The test episodes (`[test]` over the training episodes' defaults).
    pub fn test_episodes(&self) -> EpisodeConfig {
        let train = self.train_episodes();
        let test = self.test.clone().unwrap_or_default();
        let queries = match self.data {
            DataConfig::Sinusoid(_) if self.test.is_none() => 100,
            _ => test.queries,
        };
        EpisodeConfig {
            ways: test.ways.unwrap_or(train.ways),
            shots: test.shots.unwrap_or(train.shots),
            queries,
            meta_batch: test.batch,
            within_group: train.within_group,
        }
    }

    /// The adaptation steps reported at test time.
    pub fn test_steps(&self) -> Vec<usize> {
        let configured = self.test.as_ref().map(|t| t.steps.clone()).unwrap_or_default();
        match &self.meta {
            Some(a) if a.takes_steps() && configured.is_empty() => vec![a.train_steps()],
            Some(a) if a.takes_steps() => configured,
            _ => vec![0],
        }
    }

    /// Checks the whole file for consistency; the errors name the fields.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.name.trim().is_empty() || self.name.contains(['/', '\\']) {
            return Err(bad_input(format!(
                "name = {:?}: a non-empty folder name without slashes",
                self.name
            )));
        }
        let t = &self.train;
        positive("train.iterations", t.iterations)?;
        positive("train.log_every", t.log_every)?;
        positive("train.checkpoint_every", t.checkpoint_every)?;
        positive("train.batch_size", t.batch_size as u64)?;
        if t.checkpoint_every % t.log_every != 0 {
            return Err(bad_input(format!(
                "train.checkpoint_every = {}: must be a multiple of train.log_every ({}), so that a resumed run logs the same records",
                t.checkpoint_every, t.log_every
            )));
        }
        if t.val_every % t.log_every != 0 {
            return Err(bad_input(format!(
                "train.val_every = {}: must be a multiple of train.log_every ({}) (validation results are logged)",
                t.val_every, t.log_every
            )));
        }
        if let Some(patience) = t.patience {
            positive("train.patience", patience)?;
            if t.val_every == 0 {
                return Err(bad_input(format!(
                    "train.patience = {patience}: early stopping counts validations; set train.val_every too"
                )));
            }
        }
        if let Some(threads) = self.threads {
            positive("threads", threads as u64)?;
        }
        crate::device::parse_device(&self.device)?;
        match (&self.meta, &self.mtl) {
            (Some(_), Some(_)) => Err(bad_input("[meta] and [mtl]: an experiment is one or the other")),
            (None, None) => {
                Err(bad_input("no [meta.<algorithm>] or [mtl] section: say what to train (see `metl list`)"))
            }
            (Some(algorithm), None) => self.validate_meta(algorithm),
            (None, Some(_)) if self.task_weighting.is_some() => Err(bad_input(
                "[task_weighting] weights the tasks of a meta-batch: it needs [meta.<algorithm>]; an [mtl] \
                 experiment names its strategy in [mtl] strategy",
            )),
            (None, Some(mtl)) => mtl.validate(&self.data),
        }
    }

    fn validate_meta(&self, algorithm: &AlgorithmConfig) -> anyhow::Result<()> {
        if let Some(reason) = self.task_weighting.as_ref().and_then(task_weighting::refusal) {
            return Err(bad_input(reason));
        }
        let train = self.train_episodes();
        train.validate().map_err(|e| bad_input(format!("episodes: {e}")))?;
        let test = self.test_episodes();
        test.validate().map_err(|e| bad_input(format!("test: {e}")))?;
        let test_config = self.test.clone().unwrap_or_default();
        positive("test.episodes", test_config.episodes as u64)?;
        match &self.data {
            DataConfig::Sinusoid(c) => {
                c.validate().map_err(bad_input)?;
                if train.ways != 1 || test.ways != 1 {
                    return Err(bad_input(format!(
                        "episodes.ways = {}: sinusoid tasks are regression, ways must be 1 (shots = K points)",
                        train.ways
                    )));
                }
            }
            DataConfig::Omniglot(_)
            | DataConfig::ImageFolder(_)
            | DataConfig::CifarFs(_)
            | DataConfig::Fc100(_)
            | DataConfig::MiniImagenet(_)
            | DataConfig::Cub(_)
            | DataConfig::TieredImagenet(_) => {
                if algorithm.takes_steps() && test.ways != train.ways {
                    return Err(bad_input(format!(
                        "test.ways = {}: meta.{} has an N-way head, so test episodes need the training ways ({})",
                        test.ways,
                        algorithm.name(),
                        train.ways
                    )));
                }
            }
            other => {
                return Err(bad_input(format!(
                    "data.{}: a multi-task dataset; meta-learning needs sinusoid, omniglot, image_folder or \
                     a few-shot benchmark (`metl list`)",
                    data::name_of(other)
                )))
            }
        }
        Ok(())
    }
}
