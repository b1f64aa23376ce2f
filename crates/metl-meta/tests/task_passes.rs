//! `tasks_per_pass`: a task-batched meta-batch run in passes of a few tasks, each
//! back-propagated before the next, gives the same meta-loss, meta-gradient and evaluation
//! as one pass over all tasks (uneven last passes included), with and without checkpointing,
//! on a conv net with per-task batch statistics (as MAML's Omniglot network).

use metl_data::TaskBatch;
use metl_meta::{
    maml::{Maml, MamlConfig},
    MetaLearner,
};
use metl_models::{BatchNormConfig, Params, TaskLoss};
use tch::{Kind, Tensor};

mod common;
use common::{episodes, tiny_conv};

/// Six episodes: two draws of [`episodes`] side by side.
fn six_tasks() -> TaskBatch {
    let (a, b) = (episodes(3), episodes(4));
    let cat = |x: &Tensor, y: &Tensor| Tensor::cat(&[x, y], 0);
    TaskBatch {
        support_x: cat(&a.support_x, &b.support_x),
        support_y: cat(&a.support_y, &b.support_y),
        query_x: cat(&a.query_x, &b.query_x),
        query_y: cat(&a.query_y, &b.query_y),
    }
}

fn learner(tasks_per_pass: usize, checkpointing: bool, steps: usize) -> Maml<common::Net> {
    let (vs, net, params) = tiny_conv(0, BatchNormConfig::batch());
    let config =
        MamlConfig { inner_lr: 0.3, inner_steps: steps, tasks_per_pass, checkpointing, ..Default::default() };
    Maml::new(net, params, &vs, TaskLoss::CrossEntropy, config).unwrap()
}

fn max_relative(a: &Params, b: &Params) -> f64 {
    let (a, b) = (a.flatten().to_kind(Kind::Double), b.flatten().to_kind(Kind::Double));
    (a - &b).abs().max().double_value(&[]) / b.abs().max().double_value(&[])
}

#[test]
fn passes_of_tasks_give_the_meta_gradient_of_one_pass() {
    let _serial = common::serial();
    let batch = six_tasks();
    for (steps, checkpointing) in [(1, false), (2, true)] {
        let (loss, whole) = learner(0, checkpointing, steps).meta_gradient(&batch).unwrap();
        assert!(whole.flatten().abs().max().double_value(&[]) > 1e-6, "a zero meta-gradient tests nothing");
        for pass in [1, 4, 9] {
            let (l, g) = learner(pass, checkpointing, steps).meta_gradient(&batch).unwrap();
            assert!((l - loss).abs() < 1e-12 * loss.abs(), "pass {pass}: meta-loss {l} vs {loss}");
            let err = max_relative(&g, &whole);
            assert!(err < 1e-10, "steps {steps}, checkpointing {checkpointing}, pass {pass}: {err:e}");
        }
    }
}

#[test]
fn passes_of_tasks_evaluate_like_one_pass() {
    let _serial = common::serial();
    let batch = six_tasks();
    let whole = learner(0, false, 1).adapt_and_evaluate(&batch, 3).unwrap();
    let passes = learner(4, false, 1).adapt_and_evaluate(&batch, 3).unwrap();
    assert_eq!(whole.loss.size(), [6]);
    assert!(passes.loss.allclose(&whole.loss, 1e-10, 1e-12, false));
    assert!(passes.accuracy.unwrap().equal(&whole.accuracy.unwrap()));
}

#[test]
fn tasks_per_pass_is_set_through_the_learner_interface() {
    let _serial = common::serial();
    let batch = six_tasks();
    let (_, whole) = learner(0, false, 1).meta_gradient(&batch).unwrap();
    let mut changed = learner(0, false, 1);
    let dynamic: &mut dyn MetaLearner = &mut changed;
    assert_eq!(dynamic.tasks_per_pass(), Some(0));
    dynamic.set_tasks_per_pass(4).unwrap();
    assert_eq!(dynamic.tasks_per_pass(), Some(4));
    let (_, g) = changed.meta_gradient(&batch).unwrap();
    assert!(max_relative(&g, &whole) < 1e-10);

    // Tasks adapted one by one have no passes to size.
    let (vs, net, params) = tiny_conv(0, BatchNormConfig::batch());
    let config = MamlConfig { task_batched: false, ..Default::default() };
    let mut single = Maml::new(net, params, &vs, TaskLoss::CrossEntropy, config).unwrap();
    assert_eq!(MetaLearner::tasks_per_pass(&single), None);
    assert!(single.set_tasks_per_pass(2).unwrap_err().to_string().contains("task_batched"));
}
