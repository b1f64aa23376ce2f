//! The multi-task step workload of the PyTorch reference `../shared/reference/mtl_step.py`:
//! a shared MLP trunk 64→256→256, `T` linear heads 256→1, batch 256, MSE per task on a
//! fixed random tanh teacher plus noise, Adam lr 1e-3. Shared by the criterion bench
//! `mtl_step` and the CPU-time example `mtl_step_cputime`.

use metl_data::MultiTaskBatch;
use metl_models::{
    mlp::{Mlp, MlpConfig},
    optim::{Adam, AdamConfig},
    HardSharing, MultiTaskModel, Params, TaskLoss,
};
use metl_mtl::{MtlStep, Setup, StrategyConfig};
use tch::{nn, Device, Kind, Tensor};

/// `count` batches of the reference's synthetic data for `tasks` tasks (seed 0).
pub fn batches(tasks: usize, count: usize) -> Vec<MultiTaskBatch> {
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

/// A trainer for the workload with strategy `name` and its Adam optimizer (over the
/// model's and the strategy's variables).
pub struct Workload {
    /// Holds the variables.
    pub vs: nn::VarStore,
    /// The training step.
    pub trainer: MtlStep<HardSharing<Mlp, Mlp>>,
    /// Adam, lr 1e-3.
    pub adam: Adam,
}

/// The workload for `tasks` tasks with strategy `name` (default settings).
pub fn workload(name: &str, tasks: usize) -> Result<Workload, Box<dyn std::error::Error>> {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = HardSharing::new(
        MlpConfig::new([64, 256, 256]).build()?,
        (0..tasks).map(|_| MlpConfig::new([256, 1]).build()).collect::<Result<_, _>>()?,
    );
    let params = model.init(&vs.root().sub("model"))?;
    let setup = Setup { num_tasks: tasks, path: vs.root().sub("mtl"), seed: 0 };
    let strategy = StrategyConfig::default_for(name)?.build(&setup)?;
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    let adam = Adam::new(&Params::from_named(variables)?, AdamConfig::with_lr(1e-3))?;
    let trainer = MtlStep::new(model, params, vec![TaskLoss::Mse; tasks], strategy)?;
    Ok(Workload { vs, trainer, adam })
}
