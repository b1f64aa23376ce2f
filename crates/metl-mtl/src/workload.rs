//! Standard multi-task step workloads, shared by `metl bench mtl-step` (and so
//! `cargo xtask compare`), the criterion bench `mtl_step` and the CPU-time example
//! `mtl_step_cputime`, so that every speed figure times the same thing:
//!
//! - [`Backbone::Mlp`], the PyTorch reference's (`benches/reference/mtl_step.py`): a
//!   shared MLP trunk 64→256→256, `T` linear heads 256→1, batch 256, MSE per task on a fixed
//!   random tanh teacher plus noise;
//! - [`Backbone::Conv4`]: the Omniglot Conv4 (64 channels, batch norm) on 28×28 images,
//!   `T` linear 5-way heads, batch 64, cross-entropy on random labels;
//!
//! both with Adam lr 1e-3.

use crate::{error::Result, MtlStep, Setup, StrategyConfig};
use metl_data::MultiTaskBatch;
use metl_models::{
    conv4::{Conv4, Conv4Config},
    head::LinearHead,
    mlp::{Mlp, MlpConfig},
    optim::{Adam, AdamConfig, Optimizer},
    HardSharing, MultiTaskModel, Params, TaskLoss,
};
use tch::{nn, Device, Kind, Tensor};

/// The shared trunk of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backbone {
    /// The reference's MLP 64→256→256 (batch 256, regression).
    Mlp,
    /// Conv4 on 28×28 images (batch 64, 5-way classification per task).
    Conv4,
}

impl std::str::FromStr for Backbone {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mlp" => Ok(Backbone::Mlp),
            "conv4" => Ok(Backbone::Conv4),
            other => Err(format!("unknown backbone `{other}`: mlp or conv4")),
        }
    }
}

/// `count` batches of `backbone`'s workload for `tasks` tasks (seed 0).
pub fn batches(backbone: Backbone, tasks: usize, count: usize) -> Vec<MultiTaskBatch> {
    match backbone {
        Backbone::Mlp => mlp_batches(tasks, count),
        Backbone::Conv4 => {
            tch::manual_seed(0);
            (0..count)
                .map(|_| {
                    let x = Tensor::rand([64, 1, 28, 28], (Kind::Float, Device::Cpu));
                    let y =
                        (0..tasks).map(|_| Tensor::randint(5, [64], (Kind::Int64, Device::Cpu))).collect();
                    MultiTaskBatch::fully_labelled(x, y)
                })
                .collect()
        }
    }
}

/// The reference's synthetic data.
fn mlp_batches(tasks: usize, count: usize) -> Vec<MultiTaskBatch> {
    tch::manual_seed(0);
    let opts = (Kind::Float, Device::Cpu);
    let teacher_in = Tensor::randn([64, 32], opts) / 8.0;
    let teacher_out = Tensor::randn([32, tasks as i64], opts) / 32f64.sqrt();
    (0..count)
        .map(|_| {
            let x = Tensor::randn([256, 64], opts);
            let y = x.matmul(&teacher_in).tanh().matmul(&teacher_out)
                + Tensor::randn([256, tasks as i64], opts) * 0.1;
            MultiTaskBatch::fully_labelled(x, (0..tasks as i64).map(|t| y.narrow(1, t, 1)).collect())
        })
        .collect()
}

/// A training step of a workload: the trainer for its model, and Adam.
pub trait Step {
    /// One step on `batch` (`validation` for bilevel strategies).
    /// Returns the mean task loss, as a check that it trains.
    fn step(&mut self, batch: &MultiTaskBatch, validation: &MultiTaskBatch) -> Result<f64>;
}

/// A trainer for a workload with strategy `name` and its Adam optimizer (over the model's
/// and the strategy's variables).
pub struct Workload<M> {
    /// Holds the variables.
    pub vs: nn::VarStore,
    /// The training step.
    pub trainer: MtlStep<M>,
    /// Adam, lr 1e-3.
    pub adam: Adam,
}

impl<M: MultiTaskModel> Step for Workload<M> {
    fn step(&mut self, batch: &MultiTaskBatch, validation: &MultiTaskBatch) -> Result<f64> {
        let report = self.trainer.step(batch, &mut self.adam as &mut dyn Optimizer, Some(validation))?;
        let present: Vec<f64> = report.losses.iter().copied().filter(|l| l.is_finite()).collect();
        Ok(present.iter().sum::<f64>() / present.len().max(1) as f64)
    }
}

/// `backbone`'s workload for `tasks` tasks with strategy `name` (default settings).
pub fn workload(backbone: Backbone, name: &str, tasks: usize) -> Result<Box<dyn Step>> {
    Ok(match backbone {
        Backbone::Mlp => {
            let heads =
                (0..tasks).map(|_| MlpConfig::new([256, 1]).build()).collect::<Result<Vec<Mlp>, _>>()?;
            Box::new(build(
                HardSharing::new(MlpConfig::new([64, 256, 256]).build()?, heads),
                name,
                TaskLoss::Mse,
            )?)
        }
        Backbone::Conv4 => {
            let trunk: Conv4 = Conv4Config::new(1).build()?;
            let features = trunk.feature_dim(28, 28)?;
            let heads = (0..tasks).map(|_| LinearHead::new(features, 5)).collect::<Result<Vec<_>, _>>()?;
            Box::new(build(HardSharing::new(trunk, heads), name, TaskLoss::CrossEntropy)?)
        }
    })
}

fn build<M: MultiTaskModel>(model: M, name: &str, loss: TaskLoss) -> Result<Workload<M>> {
    let tasks = model.num_tasks();
    let vs = nn::VarStore::new(Device::Cpu);
    let params = model.init(&vs.root().sub("model"))?;
    let setup = Setup { num_tasks: tasks, path: vs.root().sub("mtl"), seed: 0 };
    let strategy = StrategyConfig::default_for(name)?.build(&setup)?;
    let adam = Adam::new(&Params::from_var_store(&vs, "")?, AdamConfig::with_lr(1e-3))?;
    let trainer = MtlStep::new(model, params, vec![loss; tasks], strategy)?;
    Ok(Workload { vs, trainer, adam })
}
