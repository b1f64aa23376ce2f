//! Gradient checkpointing of the inner loop (`checkpointing = true`) gives the same
//! second-order meta-gradient as back-propagating through the stored inner loop: MAML on
//! sinusoid MLPs (1, 3 and 5 steps, float64 and float32, task-batched and task by task),
//! Meta-SGD's learned rates, MAML++ (multi-step loss, per-step rates, per-step batch norm
//! whose running statistics must end up the same), ANIL's frozen body and support
//! mini-batches; and the combinations it does not support are refused by name.

use metl_data::{
    sinusoid::{SinusoidConfig, SinusoidTasks},
    TaskBatch,
};
use metl_meta::{
    anil::{Anil, AnilConfig},
    inner::InnerOptimizer,
    maml::{Maml, MamlConfig},
    maml_family::{FamilySettings, LrRule, MamlFamily},
    maml_plus_plus::{MamlPlusPlus, MamlPlusPlusConfig},
    meta_sgd::{MetaSgd, MetaSgdConfig},
    MetaLearner,
};
use metl_models::{
    mlp::{Activation, Mlp, MlpConfig},
    BatchNormConfig, Model, Params, TaskLoss,
};
use tch::{nn, Device, Kind};

mod common;
use common::{episodes, tiny_conv};

/// An MLP of the given widths (tanh) in `kind`, and its VarStore.
fn mlp(widths: &[i64], kind: Kind, seed: i64) -> (nn::VarStore, Mlp, Params) {
    tch::manual_seed(seed);
    let mut vs = nn::VarStore::new(Device::Cpu);
    vs.set_kind(kind);
    let (mlp, params) =
        MlpConfig::new(widths.to_vec()).with_activation(Activation::Tanh).init(&vs.root()).unwrap();
    (vs, mlp, params)
}

/// Four sinusoid tasks with 10 support and 10 query points, in `kind`.
fn sinusoids(kind: Kind, seed: u64) -> TaskBatch {
    let b = SinusoidTasks::new(SinusoidConfig::default(), seed).sample_batch(4, 10, 10, Device::Cpu).unwrap();
    TaskBatch {
        support_x: b.support_x.to_kind(kind),
        support_y: b.support_y.to_kind(kind),
        query_x: b.query_x.to_kind(kind),
        query_y: b.query_y.to_kind(kind),
    }
}

/// Max |a − b| / max |b| over all tensors (both must have the same names).
fn relative_error(a: &Params, b: &Params) -> f64 {
    a.check_same_names(b).unwrap();
    let (a, b) = (a.flatten().to_kind(Kind::Double), b.flatten().to_kind(Kind::Double));
    (a - &b).abs().max().double_value(&[]) / b.abs().max().double_value(&[])
}

/// The meta-gradients (and meta-losses) of `make(false)` and `make(true)` on `batch`, from
/// the same torch seed (for learners that draw random numbers).
fn both<L, M: Model>(batch: &TaskBatch, make: impl Fn(bool) -> L) -> [(f64, Params); 2]
where
    L: std::ops::Deref<Target = MamlFamily<M>>,
{
    [false, true].map(|checkpointing| {
        let learner = make(checkpointing);
        assert_eq!(learner.settings().checkpointing, checkpointing);
        tch::manual_seed(99);
        learner.meta_gradient(batch).unwrap()
    })
}

/// Asserts that the checkpointed meta-loss and meta-gradient equal the plain ones to
/// `tolerance`, relative.
fn assert_same([(loss, plain), (loss_ckpt, ckpt)]: [&(f64, Params); 2], tolerance: f64, what: &str) {
    assert!((loss - loss_ckpt).abs() <= tolerance * loss.abs(), "{what}: meta-loss {loss} vs {loss_ckpt}");
    let err = relative_error(ckpt, plain);
    assert!(err < tolerance, "{what}: relative error {err:e}");
    assert!(
        plain.flatten().abs().max().double_value(&[]) > 1e-6,
        "{what}: a zero meta-gradient tests nothing"
    );
}

#[test]
fn maml_checkpointed_meta_gradient_equals_the_stored_one_for_1_3_5_steps() {
    let _serial = common::serial();
    let batch = sinusoids(Kind::Double, 1);
    for steps in [1, 3, 5] {
        for task_batched in [true, false] {
            let results = both(&batch, |checkpointing| {
                let (vs, net, params) = mlp(&[1, 16, 16, 1], Kind::Double, 0);
                let config = MamlConfig {
                    inner_lr: 0.05,
                    inner_steps: steps,
                    task_batched,
                    checkpointing,
                    ..Default::default()
                };
                Maml::new(net, params, &vs, TaskLoss::Mse, config).unwrap()
            });
            assert_same(
                [&results[0], &results[1]],
                1e-10,
                &format!("{steps} steps, task_batched = {task_batched}"),
            );
        }
    }
}

#[test]
fn maml_checkpointed_meta_gradient_in_float32() {
    let _serial = common::serial();
    let batch = sinusoids(Kind::Float, 2);
    for steps in [1, 3, 5] {
        let results = both(&batch, |checkpointing| {
            let (vs, net, params) = mlp(&[1, 40, 40, 1], Kind::Float, 3);
            let config =
                MamlConfig { inner_lr: 0.01, inner_steps: steps, checkpointing, ..Default::default() };
            Maml::new(net, params, &vs, TaskLoss::Mse, config).unwrap()
        });
        assert_same([&results[0], &results[1]], 1e-5, &format!("{steps} steps, float32"));
    }
}

#[test]
fn meta_sgd_checkpointed_gradients_include_the_rates() {
    let _serial = common::serial();
    let batch = sinusoids(Kind::Double, 4);
    for steps in [1, 3] {
        let results = both(&batch, |checkpointing| {
            let (_vs, net, params) = mlp(&[1, 16, 16, 1], Kind::Double, 5);
            let config = MetaSgdConfig {
                inner_steps: steps,
                init_lr: [0.02, 0.1],
                checkpointing,
                ..Default::default()
            };
            MetaSgd::new(net, params, TaskLoss::Mse, config).unwrap()
        });
        assert_same([&results[0], &results[1]], 1e-10, &format!("Meta-SGD, {steps} steps"));
        assert!(results[1].1.sub("inner_lr").flatten().abs().max().double_value(&[]) > 1e-6);
    }
}

#[test]
fn maml_plus_plus_checkpointed_with_multi_step_loss_and_per_step_rates() {
    let _serial = common::serial();
    let batch = sinusoids(Kind::Double, 6);
    let results = both(&batch, |checkpointing| {
        let (_vs, net, params) = mlp(&[1, 16, 16, 1], Kind::Double, 7);
        let config = MamlPlusPlusConfig {
            inner_steps: 3,
            init_inner_lr: 0.05,
            // Epoch 1 of 4 of the multi-step loss, second order from the start.
            iterations_per_epoch: 1,
            multi_step_loss_epochs: 4,
            first_order_epochs: 0,
            per_step_batch_norm: false,
            not_adapted: vec!["layers.1.bias".into()],
            checkpointing,
            ..Default::default()
        };
        MamlPlusPlus::new(net, params, TaskLoss::Mse, config).unwrap()
    });
    assert_same([&results[0], &results[1]], 1e-10, "MAML++");
    assert!(results[1].1.sub("inner_lr").flatten().abs().max().double_value(&[]) > 1e-6);
}

#[test]
fn maml_plus_plus_per_step_batch_norm_trains_identically_with_checkpointing() {
    let _serial = common::serial();
    let bn = BatchNormConfig { per_step_affine: true, ..BatchNormConfig::per_step(3) };
    let batch = episodes(8);
    let trained = [false, true].map(|checkpointing| {
        let (_vs, model, params) = tiny_conv(9, bn);
        let config = MamlPlusPlusConfig {
            inner_steps: 3,
            iterations_per_epoch: 1,
            first_order_epochs: 0,
            checkpointing,
            ..Default::default()
        };
        let mut mpp = MamlPlusPlus::new(model, params, TaskLoss::CrossEntropy, config).unwrap();
        let gradient = mpp.meta_gradient(&batch).unwrap();
        let losses: Vec<f64> = (0..2).map(|_| mpp.meta_train_step(&batch).unwrap().loss).collect();
        (gradient, losses, mpp.state())
    });
    let [(plain_grad, plain_losses, plain_state), (ckpt_grad, ckpt_losses, ckpt_state)] = &trained;
    assert_same([plain_grad, ckpt_grad], 1e-10, "MAML++ conv");
    for (a, b) in plain_losses.iter().zip(ckpt_losses) {
        assert!((a - b).abs() < 1e-10 * a.abs(), "{plain_losses:?} vs {ckpt_losses:?}");
    }
    // Parameters, learned rates, Adam moments and the per-step running statistics alike.
    assert!(plain_state.names().iter().any(|n| n.contains("running_mean")));
    assert!(relative_error(ckpt_state, plain_state) < 1e-10);
}

#[test]
fn anil_checkpointed_meta_gradient_reaches_the_frozen_body() {
    let _serial = common::serial();
    let batch = episodes(10);
    let results = both(&batch, |checkpointing| {
        let (_vs, model, params) = tiny_conv(11, BatchNormConfig::batch());
        let config = AnilConfig { inner_lr: 0.5, inner_steps: 3, checkpointing, ..Default::default() };
        Anil::new(model, params, TaskLoss::CrossEntropy, config).unwrap()
    });
    assert_same([&results[0], &results[1]], 1e-10, "ANIL");
    assert!(results[1].1["backbone.blocks.0.conv.weight"].abs().max().double_value(&[]) > 1e-8);
}

#[test]
fn support_mini_batches_are_replayed_exactly() {
    let _serial = common::serial();
    let batch = sinusoids(Kind::Double, 12);
    let results = both(&batch, |checkpointing| {
        let (_vs, net, params) = mlp(&[1, 16, 16, 1], Kind::Double, 13);
        let settings = FamilySettings {
            inner_batch: Some(3),
            checkpointing,
            ..FamilySettings::basic(4, LrRule::Fixed(0.05), false, 1e-3)
        };
        Box::new(MamlFamily::new(net, params, TaskLoss::Mse, settings).unwrap())
    });
    assert_same([&results[0], &results[1]], 1e-10, "support mini-batches");
}

#[test]
fn unsupported_combinations_are_refused_by_name() {
    let _serial = common::serial();
    let (vs, net, params) = mlp(&[1, 8, 1], Kind::Double, 14);
    let config = MamlConfig { first_order: true, checkpointing: true, ..Default::default() };
    let err =
        Maml::new(net.clone(), params.shallow_clone(), &vs, TaskLoss::Mse, config).unwrap_err().to_string();
    assert!(err.starts_with("meta.checkpointing = true") && err.contains("first_order"), "{err}");
    let config = MetaSgdConfig { first_order: true, checkpointing: true, ..Default::default() };
    let err =
        MetaSgd::new(net.clone(), params.shallow_clone(), TaskLoss::Mse, config).unwrap_err().to_string();
    assert!(err.starts_with("meta_sgd.checkpointing = true"), "{err}");
    let config = AnilConfig {
        head: vec!["layers.1".into()],
        first_order: true,
        checkpointing: true,
        ..Default::default()
    };
    let err = Anil::new(net.clone(), params.shallow_clone(), TaskLoss::Mse, config).unwrap_err().to_string();
    assert!(err.starts_with("anil.checkpointing = true"), "{err}");
    // A stateful inner optimizer cannot be replayed one step at a time.
    let settings = FamilySettings {
        inner_optimizer: InnerOptimizer::Adam { beta1: 0.0, beta2: 0.999, eps: 1e-8 },
        checkpointing: true,
        ..FamilySettings::basic(2, LrRule::Fixed(0.1), false, 1e-3)
    };
    let err = MamlFamily::new(net, params, TaskLoss::Mse, settings).unwrap_err().to_string();
    assert!(err.starts_with("checkpointing = true") && err.contains("Adam"), "{err}");
}

#[test]
fn configs_without_the_field_still_parse() {
    let _serial = common::serial();
    let config: MamlConfig = serde_json::from_str(r#"{"inner_steps": 5}"#).unwrap();
    assert!(!config.checkpointing && config.inner_steps == 5);
    let config: MamlPlusPlusConfig = serde_json::from_str(r#"{"checkpointing": true}"#).unwrap();
    assert!(config.checkpointing);
}
