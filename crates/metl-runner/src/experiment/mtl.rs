//! `[mtl]`: a multi-task experiment — the architecture over the configured backbone, the
//! weighting strategy and the optimizer.
//!
//! ```toml
//! [mtl]
//! architecture = "hard_sharing"          # or { mmoe = { num_experts = 4 } }, ...
//! strategy = { name = "pcgrad" }         # any name of `metl list`, with its fields
//! lr = 0.001
//! ```

use crate::{
    error::bad_input,
    experiment::data::{name_of, DataConfig},
    zoo::{feature_dim, Backbone},
};
use metl_data::multitask::{TaskInfo, TaskKind};
use metl_models::{
    dense_head::DenseHead,
    head::LinearHead,
    multitask::{
        Cgc, CgcConfig, CrossStitch, CrossStitchConfig, DSelectK, DSelectKConfig, HardSharing, Mmoe,
        MmoeConfig, Mtan, MtanConfig, Ple, PleConfig,
    },
    MultiTaskModel, Params, StagedModel, TaskLoss,
};
use metl_mtl::StrategyConfig;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Tensor};

/// A multi-task architecture as configured in `mtl.architecture`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ArchitectureConfig {
    /// One shared backbone, one linear head per task (Caruana 1997).
    HardSharing,
    /// Multi-gate mixture of experts (Ma et al. 2018).
    Mmoe(MmoeConfig),
    /// Customized gate control (Tang et al. 2020).
    Cgc(CgcConfig),
    /// Progressive layered extraction (Tang et al. 2020).
    Ple(PleConfig),
    /// Cross-stitch networks (Misra et al. 2016).
    CrossStitch(CrossStitchConfig),
    /// Multi-task attention network (Liu et al. 2019).
    Mtan(MtanConfig),
    /// DSelect-k gates (Hazimeh et al. 2021).
    DselectK(DSelectKConfig),
}

/// Names and one-line descriptions of the architectures, for `metl list`.
pub const ARCHITECTURES: &[(&str, &str)] = &[
    ("hard_sharing", "one shared backbone, a linear head per task (Caruana 1997)"),
    ("mmoe", "shared experts mixed by a softmax gate per task (Ma et al. 2018)"),
    ("cgc", "shared and task experts, gated per task (Tang et al. 2020)"),
    ("ple", "stacked CGC levels on the backbone's stages (Tang et al. 2020)"),
    ("cross_stitch", "a column per task, linear stitches between stages (Misra et al. 2016)"),
    ("mtan", "shared backbone with a soft attention mask per task and stage (Liu et al. 2019)"),
    ("dselect_k", "mixture of experts with differentiable top-k selection (Hazimeh et al. 2021)"),
];

fn default_lr() -> f64 {
    1e-3
}

/// `[mtl]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtlConfig {
    /// The architecture (default hard sharing).
    #[serde(default = "default_architecture")]
    pub architecture: ArchitectureConfig,
    /// The weighting strategy: `{ name = "...", ... }` (default equal weighting).
    #[serde(default = "default_strategy")]
    pub strategy: StrategyConfig,
    /// Adam's learning rate (default 1e-3).
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Adam's L2 weight decay (default 0).
    #[serde(default)]
    pub weight_decay: f64,
}

fn default_architecture() -> ArchitectureConfig {
    ArchitectureConfig::HardSharing
}

fn default_strategy() -> StrategyConfig {
    toml::from_str("name = \"ew\"").expect("equal weighting parses")
}

impl MtlConfig {
    /// Checks the fields and that the data is a multi-task dataset.
    pub fn validate(&self, data: &DataConfig) -> anyhow::Result<()> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(bad_input(format!("mtl.lr = {}: must be > 0", self.lr)));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(bad_input(format!("mtl.weight_decay = {}: must be >= 0", self.weight_decay)));
        }
        match data {
            DataConfig::Omniglot50(_)
            | DataConfig::SyntheticRegression(_)
            | DataConfig::Csv(_)
            | DataConfig::MultiMnist(_)
            | DataConfig::Celeba(_)
            | DataConfig::Nyuv2(_) => Ok(()),
            other => Err(bad_input(format!(
                "data.{}: multi-task learning needs a multi-task dataset (see `metl list`)",
                name_of(other)
            ))),
        }
    }
}

/// The loss of a task: cross-entropy for classification, MSE for regression, binary
/// cross-entropy for yes/no attributes, and MTAN's losses for dense tasks (pixel-wise
/// cross-entropy ignoring −1, L1 depth error and cosine normal loss over valid pixels).
pub fn task_loss(task: &TaskInfo) -> TaskLoss {
    match task.kind {
        TaskKind::Classification { .. } => TaskLoss::CrossEntropy,
        TaskKind::Regression { .. } => TaskLoss::Mse,
        TaskKind::Binary => TaskLoss::BinaryCrossEntropy,
        TaskKind::Segmentation { .. } => TaskLoss::SegmentationCrossEntropy,
        TaskKind::Depth => TaskLoss::DepthL1,
        TaskKind::SurfaceNormals => TaskLoss::NormalCosine,
    }
}

/// A multi-task model of any architecture (the configuration decides which at run time).
pub struct AnyMultiTask(Box<dyn MultiTaskModel + Send>);

impl std::fmt::Debug for AnyMultiTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AnyMultiTask({} tasks)", self.0.num_tasks())
    }
}

impl MultiTaskModel for AnyMultiTask {
    fn num_tasks(&self) -> usize {
        self.0.num_tasks()
    }

    fn init(&self, path: &nn::Path<'_>) -> metl_models::error::Result<Params> {
        self.0.init(path)
    }

    fn task_of(&self, name: &str) -> Option<usize> {
        self.0.task_of(name)
    }

    fn has_shared_representation(&self) -> bool {
        self.0.has_shared_representation()
    }

    fn encode(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        self.0.encode(params, x, train)
    }

    fn decode(&self, params: &Params, x: &Tensor, z: &Tensor, train: bool) -> Vec<Tensor> {
        self.0.decode(params, x, z, train)
    }

    fn forward(&self, params: &Params, x: &Tensor, train: bool) -> Vec<Tensor> {
        self.0.forward(params, x, train)
    }

    fn auxiliary_loss(&self, params: &Params, x: &Tensor) -> Option<Tensor> {
        self.0.auxiliary_loss(params, x)
    }

    fn buffers(&self) -> Params {
        self.0.buffers()
    }

    fn load_buffers(&self, buffers: &Params) -> metl_models::error::Result<()> {
        self.0.load_buffers(buffers)
    }
}

/// Builds the architecture over `backbone` with one linear head per task, for inputs of
/// per-sample shape `input_shape`.
pub fn build_model(
    architecture: &ArchitectureConfig,
    backbone: Backbone,
    tasks: &[TaskInfo],
    input_shape: &[i64],
    device: Device,
) -> anyhow::Result<AnyMultiTask> {
    // Checks that the backbone takes the dataset's inputs before anything runs on them.
    let output = backbone
        .output_shape(input_shape)
        .map_err(|e| anyhow::anyhow!("model: {e} (the dataset's inputs are {input_shape:?})"))?;
    if tasks.iter().any(|t| t.kind.is_dense()) {
        return dense_model(architecture, backbone, tasks, input_shape, &output);
    }
    let features = match architecture {
        ArchitectureConfig::CrossStitch(_) | ArchitectureConfig::Mtan(_) | ArchitectureConfig::Ple(_) => {
            output.iter().product()
        }
        _ => feature_dim(&backbone, input_shape, device)?,
    };
    let heads = tasks
        .iter()
        .map(|t| LinearHead::new(features, t.kind.output_dim() as i64))
        .collect::<metl_models::error::Result<Vec<_>>>()?;
    let model: Box<dyn MultiTaskModel + Send> = match architecture {
        ArchitectureConfig::HardSharing => Box::new(HardSharing::new(backbone, heads)),
        ArchitectureConfig::Mmoe(c) => Box::new(Mmoe::new(&backbone, heads, input_shape, *c)?),
        ArchitectureConfig::Cgc(c) => Box::new(Cgc::new(&backbone, heads, input_shape, *c)?),
        ArchitectureConfig::Ple(c) => Box::new(Ple::new(&backbone, heads, input_shape, *c)?),
        ArchitectureConfig::CrossStitch(c) => Box::new(CrossStitch::new(&backbone, heads, *c)?),
        ArchitectureConfig::Mtan(c) => Box::new(Mtan::new(backbone, heads, input_shape, *c)?),
        ArchitectureConfig::DselectK(c) => Box::new(DSelectK::new(&backbone, heads, input_shape, *c)?),
    };
    Ok(AnyMultiTask(model))
}

/// Hard sharing with a per-pixel head ([`DenseHead`]) per task on the backbone's feature map,
/// for dense tasks (NYUv2): MTAN's "split" network when the backbone is SegNet.
fn dense_model(
    architecture: &ArchitectureConfig,
    backbone: Backbone,
    tasks: &[TaskInfo],
    input_shape: &[i64],
    output: &[i64],
) -> anyhow::Result<AnyMultiTask> {
    if *architecture != ArchitectureConfig::HardSharing {
        anyhow::bail!(
            "mtl.architecture = {architecture:?}: dense tasks (segmentation, depth, normals) run with \
             hard_sharing (a per-pixel head per task on the shared feature map)"
        );
    }
    if let Some(t) = tasks.iter().find(|t| !t.kind.is_dense()) {
        anyhow::bail!("task {}: a per-image task among per-pixel tasks is not supported", t.name);
    }
    let channels = match (output, input_shape) {
        ([c, h, w], [_, ih, iw]) if (h, w) == (ih, iw) => *c,
        _ => anyhow::bail!(
            "model: the backbone gives {output:?} for inputs {input_shape:?}; dense tasks need a feature map \
             at the input's resolution ([model.segnet])"
        ),
    };
    let heads = tasks
        .iter()
        .map(|t| DenseHead::new(channels, t.kind.output_dim() as i64))
        .collect::<metl_models::error::Result<Vec<_>>>()?;
    Ok(AnyMultiTask(Box::new(HardSharing::new(backbone, heads))))
}
