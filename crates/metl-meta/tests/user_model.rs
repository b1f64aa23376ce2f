//! MAML on a model defined outside metl: a plain `tch::nn` network, as a tch user writes
//! it, adapted by `metl_models::functional::Functional` (no metl `Model` written by hand).
//!
//! Started from the same weights as metl's built-in MLP 1-40-40-1 and fed the same tasks,
//! it must give the same meta-gradient (float32 rounding apart: the built-in model batches
//! the tasks into single kernels, the adapter runs them one after another) and, after the
//! 1,000 iterations of `learning.rs`, the same adaptation quality within noise; and it must
//! pass that test's thresholds itself.

use metl_data::{
    rng::substream,
    sinusoid::{SinusoidConfig, SinusoidTasks},
};
use metl_meta::{
    evaluate,
    maml::{Maml, MamlConfig},
    MetaLearner,
};
use metl_models::{functional::Functional, mlp::MlpConfig, param_slots, Params, TaskLoss};
use tch::{nn, nn::Module, Device, Kind, Tensor};

/// The user's network: three `nn::Linear` layers with ReLU, as in Finn et al.
#[derive(Debug)]
struct SineNet {
    fc1: nn::Linear,
    fc2: nn::Linear,
    fc3: nn::Linear,
}

impl SineNet {
    fn new(p: &nn::Path<'_>) -> Self {
        let c = Default::default();
        Self {
            fc1: nn::linear(p / "fc1", 1, 40, c),
            fc2: nn::linear(p / "fc2", 40, 40, c),
            fc3: nn::linear(p / "fc3", 40, 1, c),
        }
    }
}

impl Module for SineNet {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.apply(&self.fc1).relu().apply(&self.fc2).relu().apply(&self.fc3)
    }
}

impl metl_models::functional::ParamSlots for SineNet {
    fn param_slots(&mut self) -> Vec<&mut Tensor> {
        param_slots!(self.fc1, self.fc2, self.fc3)
    }
}

fn evaluate_sinusoids(maml: &impl MetaLearner) -> (f64, f64, f64) {
    let mut test = SinusoidTasks::from_rng(SinusoidConfig::default(), substream(100, 2));
    let batches: Vec<_> = (0..2).map(|_| test.sample_batch(100, 10, 100, Device::Cpu).unwrap()).collect();
    let e = evaluate(maml, batches, &[0, 1, 10]).unwrap();
    (e[0].loss.mean, e[1].loss.mean, e[2].loss.mean)
}

fn max_relative(a: &Params, b: &Params) -> f64 {
    a.tensors()
        .iter()
        .zip(b.tensors())
        .map(|(x, y)| (x - y).abs().max().double_value(&[]) / y.abs().max().double_value(&[]).max(1e-3))
        .fold(0.0, f64::max)
}

#[test]
fn maml_meta_learns_a_users_own_tch_module_like_the_built_in_mlp() {
    tch::manual_seed(0);
    let vs_mlp = nn::VarStore::new(Device::Cpu);
    let (mlp, theta_mlp) = MlpConfig::new([1, 40, 40, 1]).init(&vs_mlp.root()).unwrap();
    let vs_user = nn::VarStore::new(Device::Cpu);
    let user = Functional::new(SineNet::new(&(vs_user.root() / "net")), &vs_user).unwrap();
    let theta_user = user.params();
    assert_eq!(theta_user.len(), theta_mlp.len());
    // The same starting point: weights and biases in the same layer order.
    tch::no_grad(|| {
        for (dst, src) in theta_user.tensors().iter().zip(theta_mlp.tensors()) {
            dst.shallow_clone().copy_(src);
        }
    });

    let config = MamlConfig::default();
    let mut builtin = Maml::new(mlp, theta_mlp, &vs_mlp, TaskLoss::Mse, config).unwrap();
    let mut theirs = Maml::new(user, theta_user, &vs_user, TaskLoss::Mse, config).unwrap();

    let family = SinusoidConfig::default();
    let mut train = SinusoidTasks::from_rng(family, substream(0, 0));
    let first = train.sample_batch(25, 10, 10, Device::Cpu).unwrap();
    let (loss_b, grad_b) = builtin.meta_gradient(&first).unwrap();
    let (loss_t, grad_t) = theirs.meta_gradient(&first).unwrap();
    assert!((loss_b - loss_t).abs() < 1e-5 * loss_b.abs().max(1.0), "{loss_b} vs {loss_t}");
    let rel = max_relative(&grad_t, &grad_b);
    assert!(rel < 1e-4, "meta-gradients differ by {rel:e} (relative)");
    assert!(grad_t.flatten().abs().sum(Kind::Float).double_value(&[]) > 0.0);

    let mut train = SinusoidTasks::from_rng(family, substream(0, 0));
    for _ in 0..1000 {
        let batch = train.sample_batch(25, 10, 10, Device::Cpu).unwrap();
        builtin.meta_train_step(&batch).unwrap();
        theirs.meta_train_step(&batch).unwrap();
    }
    let (pre_b, one_b, ten_b) = evaluate_sinusoids(&builtin);
    let (pre_t, one_t, ten_t) = evaluate_sinusoids(&theirs);
    println!("built-in MLP: pre {pre_b:.3}, 1 step {one_b:.3}, 10 steps {ten_b:.3}");
    println!("user module:  pre {pre_t:.3}, 1 step {one_t:.3}, 10 steps {ten_t:.3}");
    // It learns, by learning.rs's thresholds ...
    assert!(one_t < 0.65 * pre_t, "1 step: {one_t} vs pre-update {pre_t}");
    assert!(ten_t < 0.4 * pre_t, "10 steps: {ten_t} vs pre-update {pre_t}");
    // ... and as the built-in model does: the 95% intervals over 200 tasks are about ±8 %
    // of these means; the two runs see the same tasks from the same start, so they differ
    // by float rounding only, far less than that.
    for (name, b, t) in [("1 step", one_b, one_t), ("10 steps", ten_b, ten_t)] {
        assert!((b - t).abs() < 0.05 * b, "{name}: built-in {b} vs user module {t}");
    }
}
