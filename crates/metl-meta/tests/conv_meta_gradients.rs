//! The MAML family on a (tiny) convolutional network with batch norm, in float64: the
//! meta-gradient through batch-statistics batch norm against finite differences (along
//! random directions), ANIL's
//! head-only inner loop likewise, and MAML++ with per-step batch norm giving the same
//! meta-gradient and evaluation task-batched (grouped convolutions) and task by task.

use metl_data::TaskBatch;
use metl_meta::{
    anil::{Anil, AnilConfig},
    maml::{Maml, MamlConfig},
    maml_family::MamlFamily,
    maml_plus_plus::{MamlPlusPlus, MamlPlusPlusConfig},
    MetaLearner,
};
use metl_models::{BatchNormConfig, Model, Params, TaskLoss};
use tch::Kind;

mod common;
use common::{episodes, tiny_conv};

/// The largest relative error of the analytic directional derivative `∇L · v` against the
/// central difference `(L(θ + hv) − L(θ − hv)) / 2h`, over 6 random directions `v` of all
/// parameters at once (a full finite-difference sweep of a conv net is too slow in debug).
fn fd_error<M: Model>(family: &MamlFamily<M>, params: &Params, batch: &TaskBatch) -> f64 {
    let (_, analytic) = family.meta_gradient(batch).unwrap();
    let analytic = analytic.filter(|n| params.get(n).is_some());
    let loss = || family.meta_loss(batch).unwrap().0.double_value(&[]);
    let h = 1e-6;
    let mut worst: f64 = 0.0;
    for _ in 0..6 {
        let v = params.map(|_, t| t.randn_like());
        let shift = |scale: f64| {
            for (p, d) in params.tensors().iter().zip(v.tensors()) {
                let _ = tch::no_grad(|| p.shallow_clone().f_add_(&(d * scale)).unwrap());
            }
        };
        shift(h);
        let plus = loss();
        shift(-2.0 * h);
        let minus = loss();
        shift(h);
        let numeric = (plus - minus) / (2.0 * h);
        let exact = (analytic.flatten() * v.flatten()).sum(Kind::Double).double_value(&[]);
        worst = worst.max((exact - numeric).abs() / (1e-8 + numeric.abs()));
    }
    worst
}

#[test]
fn maml_meta_gradient_through_batch_norm_matches_finite_differences() {
    let _serial = common::serial();
    let (vs, model, params) = tiny_conv(0, BatchNormConfig::batch());
    let config = MamlConfig { inner_lr: 0.4, inner_steps: 2, ..Default::default() };
    let maml = Maml::new(model, params.shallow_clone(), &vs, TaskLoss::CrossEntropy, config).unwrap();
    let err = fd_error(&maml, &params, &episodes(1));
    assert!(err < 1e-6, "relative error {err:e}");
    // The check tells second order from first order.
    let (vs, model, params) = tiny_conv(0, BatchNormConfig::batch());
    let config = MamlConfig { first_order: true, ..config };
    let fomaml = Maml::new(model, params.shallow_clone(), &vs, TaskLoss::CrossEntropy, config).unwrap();
    let err = fd_error(&fomaml, &params, &episodes(1));
    assert!(err > 1e-3, "first order: relative error {err:e}");
}

#[test]
fn anil_adapts_the_head_only_and_its_meta_gradient_matches_finite_differences() {
    let _serial = common::serial();
    let (_vs, model, params) = tiny_conv(2, BatchNormConfig::batch());
    let config = AnilConfig { inner_lr: 0.5, inner_steps: 2, ..Default::default() };
    let anil = Anil::new(model, params.shallow_clone(), TaskLoss::CrossEntropy, config).unwrap();
    let batch = episodes(3);
    let err = fd_error(&anil, &params, &batch);
    assert!(err < 1e-6, "relative error {err:e}");
    // The body's meta-gradient flows through the features only: non-zero, and the head
    // adapts (predictions change with the number of steps).
    let (_, grads) = anil.meta_gradient(&batch).unwrap();
    assert!(grads["backbone.blocks.0.conv.weight"].abs().max().double_value(&[]) > 1e-6);
    let (a, b) = (anil.adapt_and_predict(&batch, 0).unwrap(), anil.adapt_and_predict(&batch, 3).unwrap());
    assert!(!a.allclose(&b, 1e-6, 1e-6, false));
}

#[test]
fn maml_plus_plus_with_per_step_batch_norm_agrees_task_batched_and_per_task() {
    let _serial = common::serial();
    let bn = BatchNormConfig { per_step_affine: true, ..BatchNormConfig::per_step(2) };
    let batch = episodes(4);
    let mut results = vec![];
    for task_batched in [true, false] {
        let (_vs, model, params) = tiny_conv(5, bn);
        let config = MamlPlusPlusConfig {
            inner_steps: 2,
            iterations_per_epoch: 1,
            first_order_epochs: 0,
            task_batched,
            ..Default::default()
        };
        let mpp = MamlPlusPlus::new(model, params, TaskLoss::CrossEntropy, config).unwrap();
        // The batch-norm weights are [steps, C] and stay out of the inner loop.
        assert!(mpp.learned_lrs().unwrap().get("backbone.blocks.0.bn.weight").is_none());
        let (loss, grads) = mpp.meta_gradient(&batch).unwrap();
        let after = mpp.adapt_and_evaluate(&batch, 2).unwrap().loss;
        results.push((loss, grads, after));
    }
    let ((l0, g0, e0), (l1, g1, e1)) = (&results[0], &results[1]);
    assert!((l0 - l1).abs() < 1e-12, "{l0} vs {l1}");
    let diff = (g0.flatten() - g1.flatten()).abs().max().double_value(&[]);
    assert!(diff < 1e-10 * (1.0 + g0.flatten().abs().max().double_value(&[])), "max difference {diff:e}");
    assert!(g0.sub("inner_lr").flatten().abs().max().double_value(&[]) > 1e-8);
    assert!(e0.allclose(e1, 1e-12, 1e-12, false));
}
