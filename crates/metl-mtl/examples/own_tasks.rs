//! Plugging your own tasks and model into metl-mtl: a regression task and a classification
//! task on the same inputs, some samples labelled for one task only, a model of your own
//! (implementing `MultiTaskModel`), and any strategy from the registry by name.
//!
//! `cargo run --release -p metl-mtl --example own_tasks -- pcgrad`

use metl_data::MultiTaskBatch;
use metl_models::{
    multitask::decoder_task,
    optim::{Adam, AdamConfig},
    MultiTaskModel, Params, ParamsBuilder, TaskLoss,
};
use metl_mtl::{MtlStep, Setup, StrategyConfig};
use tch::{nn, Device, Kind, Tensor};

/// Your model: a shared trunk `z = relu(W₂ relu(W₁ x))` and one linear head per task.
/// Shared parameters are those `task_of` maps to `None`.
struct MyModel {
    outputs: Vec<i64>,
}

impl MultiTaskModel for MyModel {
    fn num_tasks(&self) -> usize {
        self.outputs.len()
    }

    fn init(&self, path: &nn::Path<'_>) -> metl_models::error::Result<Params> {
        let mut b = ParamsBuilder::new(path);
        let init = |fan_in: i64| nn::Init::Uniform {
            lo: -1.0 / (fan_in as f64).sqrt(),
            up: 1.0 / (fan_in as f64).sqrt(),
        };
        b.var("encoder.w1", &[32, 4], init(4))?.var("encoder.w2", &[32, 32], init(32))?;
        for (t, &out) in self.outputs.iter().enumerate() {
            b.var(&format!("decoders.{t}.weight"), &[out, 32], init(32))?;
            b.var(&format!("decoders.{t}.bias"), &[out], init(32))?;
        }
        b.build()
    }

    fn task_of(&self, name: &str) -> Option<usize> {
        decoder_task(name) // `decoders.{t}.…` belongs to task t
    }

    fn encode(&self, p: &Params, x: &Tensor, _train: bool) -> Tensor {
        x.matmul(&p["encoder.w1"].tr()).relu().matmul(&p["encoder.w2"].tr()).relu()
    }

    fn decode(&self, p: &Params, _x: &Tensor, z: &Tensor, _train: bool) -> Vec<Tensor> {
        (0..self.num_tasks())
            .map(|t| {
                z.linear(
                    &p[format!("decoders.{t}.weight").as_str()],
                    Some(&p[format!("decoders.{t}.bias").as_str()]),
                )
            })
            .collect()
    }
}

/// Your data: task 0 regresses `sin(x₀) + x₁`, task 1 classifies the sign pattern of
/// `(x₂, x₃)` into 4 classes; the first half of the batch has no label for task 1.
fn batch(n: i64) -> MultiTaskBatch {
    let x = Tensor::randn([n, 4], (Kind::Float, Device::Cpu));
    let y0 = (x.select(1, 0).sin() + x.select(1, 1)).unsqueeze(1);
    let y1 = x.select(1, 2).gt(0.0).to_kind(Kind::Int64) * 2 + x.select(1, 3).gt(0.0).to_kind(Kind::Int64);
    let batch = MultiTaskBatch::fully_labelled(x, vec![y0, y1]);
    let _ = batch.mask.narrow(0, 0, n / 2).select(1, 1).fill_(0);
    batch
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args().nth(1).unwrap_or_else(|| "pcgrad".into());
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = MyModel { outputs: vec![1, 4] };
    let params = model.init(&vs.root().sub("model"))?;
    // Any registered strategy, by name (or a `StrategyConfig` read from a config file).
    let strategy = StrategyConfig::default_for(&name)?.build(&Setup {
        num_tasks: 2,
        path: vs.root().sub("mtl"),
        seed: 0,
    })?;
    // The optimizer covers every variable of the VarStore: the model's and the strategy's own.
    let mut adam = Adam::new(&Params::from_var_store(&vs, "")?, AdamConfig::with_lr(3e-3))?;
    let mut trainer = MtlStep::new(model, params, vec![TaskLoss::Mse, TaskLoss::CrossEntropy], strategy)?;
    let (test, validation) = (batch(1000), batch(256));
    for step in 1..=1500 {
        let report = trainer.step(&batch(128), &mut adam, Some(&validation))?;
        if step % 300 == 0 {
            let (losses, accuracy) = trainer.evaluate(&test)?;
            println!(
                "step {step}: weights {:.3?}, test MSE {:.4}, test accuracy {:.3}",
                report.weights,
                losses[0],
                accuracy[1].unwrap_or(f64::NAN)
            );
        }
    }
    Ok(())
}
