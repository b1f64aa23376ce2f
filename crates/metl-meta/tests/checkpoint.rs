//! Checkpoints: a learner restored from `save` continues exactly as the original does.

use metl_data::sinusoid::{SinusoidConfig, SinusoidTasks};
use metl_meta::{
    meta_sgd::{MetaSgd, MetaSgdConfig},
    MetaLearner,
};
use metl_models::{mlp::MlpConfig, TaskLoss};
use tch::{nn, Device};

fn learner(seed: i64) -> MetaSgd<metl_models::mlp::Mlp> {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let (mlp, params) = MlpConfig::new([1, 16, 1]).init(&vs.root()).unwrap();
    MetaSgd::new(mlp, params, TaskLoss::Mse, MetaSgdConfig::default()).unwrap()
}

#[test]
fn a_restored_learner_continues_bit_for_bit() {
    let mut tasks = SinusoidTasks::new(SinusoidConfig::default(), 0);
    let mut original = learner(0);
    for _ in 0..3 {
        original.meta_train_step(&tasks.sample_batch(4, 5, 5, Device::Cpu).unwrap()).unwrap();
    }
    let path = std::env::temp_dir().join(format!("metl-meta-checkpoint-{}.safetensors", std::process::id()));
    original.save(&path).unwrap();
    let state = original.state();
    assert!(state.get("inner_lr.layers.0.weight").is_some());
    assert!(state.get("optimizer.exp_avg.inner_lr.layers.0.weight").is_some());
    assert_eq!(state["outer.steps"].int64_value(&[0]), 3);

    let mut restored = learner(1);
    restored.load(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(restored.steps_taken(), 3);
    assert!(restored.meta_parameters().flatten().equal(&original.meta_parameters().flatten()));

    let batch = tasks.sample_batch(4, 5, 5, Device::Cpu).unwrap();
    let (a, b) = (original.meta_train_step(&batch).unwrap(), restored.meta_train_step(&batch).unwrap());
    assert_eq!(a, b);
    assert!(restored.meta_parameters().flatten().equal(&original.meta_parameters().flatten()));
}

#[test]
fn a_missing_or_mismatched_checkpoint_is_an_error_naming_it() {
    let mut l = learner(0);
    let missing = std::path::Path::new("/nonexistent/metl.safetensors");
    let err = l.load(missing).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/metl.safetensors"), "{err}");

    // A checkpoint of a different network: shapes do not match.
    let vs = nn::VarStore::new(Device::Cpu);
    let (mlp, params) = MlpConfig::new([1, 8, 1]).init(&vs.root()).unwrap();
    let other = MetaSgd::new(mlp, params, TaskLoss::Mse, MetaSgdConfig::default()).unwrap();
    let path = std::env::temp_dir().join(format!("metl-meta-other-{}.safetensors", std::process::id()));
    other.save(&path).unwrap();
    let err = l.load(&path).unwrap_err().to_string();
    std::fs::remove_file(&path).ok();
    assert!(err.contains("layers.0.weight") && err.contains(&*path.to_string_lossy()), "{err}");
}
