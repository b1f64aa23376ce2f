//! Every registered strategy trains a small hard-sharing network through `MtlStep`: finite
//! weights, a gradient on every shared parameter, a lower loss after a few steps, and the
//! same run twice under the same seeds.

use metl_data::MultiTaskBatch;
use metl_models::{
    mlp::MlpConfig,
    optim::{Adam, AdamConfig},
    HardSharing, MultiTaskModel, Params, TaskLoss,
};
use metl_mtl::{registry::STRATEGIES, MtlStep, Setup, StrategyConfig};
use tch::{nn, Device, Kind, Tensor};

const TASKS: usize = 3;

/// A fixed regression batch: task `t` predicts a different linear function (scaled by
/// 10^t, so that the tasks' losses differ in scale) of the same inputs.
fn batch(seed: i64, n: i64) -> MultiTaskBatch {
    tch::manual_seed(seed);
    let x = Tensor::randn([n, 8], (Kind::Float, Device::Cpu));
    let targets = (0..TASKS)
        .map(|t| {
            let w = Tensor::randn([8, 1], (Kind::Float, Device::Cpu));
            (x.matmul(&w).tanh() + 1.5) * 10f64.powi(t as i32 - 1)
        })
        .collect();
    MultiTaskBatch::fully_labelled(x, targets)
}

/// Trains `name` for `steps` steps; returns the reported weights of every step, the mean
/// loss before and after, and the final parameters.
fn train(name: &str, steps: usize) -> (Vec<Vec<f64>>, f64, f64, Vec<f32>) {
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    let encoder = MlpConfig::new([8, 16, 16]).build().unwrap();
    let heads = (0..TASKS).map(|_| MlpConfig::new([16, 1]).build().unwrap()).collect();
    let model = HardSharing::new(encoder, heads);
    let params = model.init(&vs.root().sub("model")).unwrap();
    let strategy = StrategyConfig::default_for(name)
        .unwrap()
        .build(&Setup { num_tasks: TASKS, path: vs.root().sub("mtl"), seed: 3 })
        .unwrap();
    let mut adam = Adam::new(&Params::from_var_store(&vs, "").unwrap(), AdamConfig::with_lr(1e-2)).unwrap();
    let mut trainer = MtlStep::new(model, params, vec![TaskLoss::Mse; TASKS], strategy).unwrap();
    let (train, val) = (batch(1, 48), batch(2, 48));
    let mean = |t: &MtlStep<_>| t.evaluate(&train).unwrap().0.iter().sum::<f64>() / TASKS as f64;
    let before = mean(&trainer);
    let mut weights = Vec::new();
    for step in 0..steps {
        let report = trainer.step(&train, &mut adam, Some(&val)).unwrap();
        assert_eq!(report.weights.len(), TASKS, "{name}");
        assert!(report.weights.iter().all(|w| w.is_finite()), "{name}: {:?}", report.weights);
        // The gradient of every shared parameter is set and finite.
        for (p, t) in trainer.params().iter().filter(|(p, _)| p.starts_with("encoder")) {
            let g = t.grad();
            assert!(g.defined(), "{name}: no gradient for {p}");
            assert!(bool::try_from(g.isfinite().all()).unwrap(), "{name}: {p}");
            if step == 0 {
                assert!(g.abs().sum(Kind::Double).double_value(&[]) > 0.0, "{name}: zero gradient for {p}");
            }
        }
        weights.push(report.weights);
        if step % 3 == 2 {
            trainer.end_epoch();
        }
    }
    let after = mean(&trainer);
    let flat = Vec::<f32>::try_from(trainer.params().flatten().detach()).unwrap();
    (weights, before, after, flat)
}

#[test]
fn every_strategy_trains_and_is_reproducible() {
    for info in STRATEGIES {
        let (weights, before, after, params) = train(info.name, 20);
        assert!(after < before, "{}: mean loss {before} -> {after}", info.name);
        let (weights2, _, _, params2) = train(info.name, 20);
        assert_eq!(weights, weights2, "{} is not reproducible", info.name);
        assert_eq!(params, params2, "{} is not reproducible", info.name);
    }
}
