//! PCGrad and UPGrad on your own two-task model and data, stepped by a `tch::nn::Optimizer`
//! (here `nn::Sgd`; any tch optimizer over the same `VarStore` works).
//!
//! The model: a shared trunk and one head per task, written with `tch::nn`. The data: two
//! regression tasks on the same inputs, `y₁ = z·c₁` and `y₂ = z·c₂` for a shared latent
//! `z = tanh(B x)`, with `c₁` and `c₂` partly opposed so that the task gradients conflict.
//! For each strategy: 300 steps of SGD with momentum on mini-batches of 64; prints the test MSE of each task
//! before and after, and exits with status 1 unless training cut every task's test MSE to
//! under a fifth of its initial value.
//!
//! `cargo run --bin mtl`

use anyhow::{bail, Result};
use metl_models::Params;
use metl_mtl::{
    backward::{MtlBackward, TaskLosses},
    strategies::{
        pcgrad::{PcGrad, PcGradConfig},
        upgrad::{DualConeConfig, UpGrad},
    },
    Setup, Strategy,
};
use tch::{
    nn::{self, Module, OptimizerConfig},
    Device, Kind, Reduction, Tensor,
};

/// Your model: a shared two-layer trunk down to a 4-d code (as narrow as the data's
/// latent, so the tasks compete for it) and a linear head per task.
#[derive(Debug)]
struct TwoTaskNet {
    trunk: nn::Sequential,
    heads: Vec<nn::Linear>,
}

impl TwoTaskNet {
    fn new(root: &nn::Path<'_>) -> Self {
        let trunk = nn::seq()
            .add(nn::linear(root / "trunk" / "0", 8, 32, Default::default()))
            .add_fn(|x| x.relu())
            .add(nn::linear(root / "trunk" / "1", 32, 4, Default::default()));
        let heads = (0..2).map(|t| nn::linear(root / "heads" / t, 4, 1, Default::default())).collect();
        Self { trunk, heads }
    }

    /// One prediction per task.
    fn forward(&self, x: &Tensor) -> Vec<Tensor> {
        let z = self.trunk.forward(x);
        self.heads.iter().map(|h| z.apply(h)).collect()
    }
}

/// Your data: inputs `[N, 8]` and one `[N, 1]` target per task.
struct Tasks {
    b: Tensor,
    c: [Tensor; 2],
}

impl Tasks {
    fn new(device: Device) -> Self {
        let opts = (Kind::Float, device);
        let b = Tensor::randn([8, 4], opts);
        let c1 = Tensor::from_slice(&[1.0f32, 1.0, 0.5, 0.0]).to_device(device).view([4, 1]);
        let c2 = Tensor::from_slice(&[-1.0f32, -1.0, 0.5, 1.0]).to_device(device).view([4, 1]);
        Self { b, c: [c1, c2] }
    }

    fn sample(&self, n: i64) -> (Tensor, [Tensor; 2]) {
        let x = Tensor::randn([n, 8], (Kind::Float, self.b.device()));
        let z = x.matmul(&self.b).tanh();
        (x, [z.matmul(&self.c[0]), z.matmul(&self.c[1])])
    }
}

fn test_mse(net: &TwoTaskNet, x: &Tensor, y: &[Tensor; 2]) -> Vec<f64> {
    tch::no_grad(|| {
        net.forward(x).iter().zip(y).map(|(p, t)| p.mse_loss(t, Reduction::Mean).double_value(&[])).collect()
    })
}

fn train(name: &str, make: impl Fn(&nn::Path<'_>) -> Result<Box<dyn Strategy>>) -> Result<bool> {
    tch::manual_seed(0);
    let device = Device::cuda_if_available();
    let tasks = Tasks::new(device);
    let (test_x, test_y) = tasks.sample(2000);
    let vs = nn::VarStore::new(device);
    let net = TwoTaskNet::new(&vs.root());
    let mut strategy = make(&(vs.root() / "strategy"))?;
    // The shared parameters and each task's own, straight from the VarStore.
    let shared = Params::from_var_store(&vs, "trunk")?;
    let specific = [Params::from_var_store(&vs, "heads.0")?, Params::from_var_store(&vs, "heads.1")?];
    let mut opt = nn::Sgd { momentum: 0.9, ..Default::default() }.build(&vs, 0.02)?;
    let mut conflicts = 0;

    let before = test_mse(&net, &test_x, &test_y);
    for step in 1..=300 {
        let (x, y) = tasks.sample(64);
        let losses: Vec<Tensor> =
            net.forward(&x).iter().zip(&y).map(|(p, t)| p.mse_loss(t, Reduction::Mean)).collect();
        opt.zero_grad();
        // The strategy combines the task gradients into `.grad`; your optimizer steps.
        let report = MtlBackward::new(&shared, &specific).run(
            strategy.as_mut(),
            &[TaskLosses::all(losses)],
            step,
            None,
        )?;
        // Steps where the strategy did more than weight the tasks equally (PCGrad: 1 and 1,
        // UPGrad: ½ and ½), i.e. where the task gradients conflicted.
        if report.weights.iter().any(|w| (w - report.weights[0]).abs() > 1e-9) {
            conflicts += 1;
        }
        opt.step();
    }
    let after = test_mse(&net, &test_x, &test_y);
    println!(
        "{name}: test MSE task 1 {:.4} -> {:.4}, task 2 {:.4} -> {:.4} ({conflicts} of 300 steps with unequal weights)",
        before[0], after[0], before[1], after[1]
    );
    Ok(after.iter().zip(&before).all(|(a, b)| *a < 0.2 * b))
}

fn main() -> Result<()> {
    let pcgrad = train("pcgrad", |path| {
        let setup = Setup { num_tasks: 2, path: path.clone(), seed: 0 };
        Ok(Box::new(PcGrad::new(&PcGradConfig::default(), &setup)?))
    })?;
    let upgrad = train("upgrad", |_| Ok(Box::new(UpGrad::new(&DualConeConfig::default())?)))?;
    if !(pcgrad && upgrad) {
        bail!("a strategy did not learn both tasks (test MSE must fall below 0.2 x its initial value)");
    }
    println!("mtl: both strategies learned both tasks (test MSE < 0.2 x initial)");
    Ok(())
}
