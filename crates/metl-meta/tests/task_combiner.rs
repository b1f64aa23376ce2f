//! Task combiners in the MAML family ([`metl_meta::task_combiner`]): the rows of `J` are
//! the meta-gradients of one-task batches (one task-batched pass, one pass per task,
//! checkpointed, first order, learned rates, MAML++ with per-step batch norm and the
//! multi-step loss); the mean combiner takes exactly the plain step; a fixed weighting takes
//! `Σ_t w_t g_t`; a stateful combiner's state is checkpointed (resumed = uninterrupted); and
//! learners without per-task meta-gradients refuse a combiner.

use metl_data::{
    sinusoid::{SinusoidConfig, SinusoidTasks},
    TaskBatch,
};
use metl_meta::{
    maml_family::{FamilySettings, LrRule, MamlFamily},
    maml_plus_plus::{MamlPlusPlus, MamlPlusPlusConfig},
    protonet::{ProtoNet, ProtoNetConfig},
    reptile::{Reptile, ReptileConfig},
    task_combiner::{MeanOfTasks, TaskGradientCombiner, TaskGradients},
    MetaLearner,
};
use metl_models::{
    mlp::{Activation, Mlp, MlpConfig},
    BatchNormConfig, Model, Params, TaskLoss,
};
use tch::{nn, Device, Kind, Tensor};

mod common;
use common::{episodes, serial, tiny_conv, NormalisedMean};

/// A float64 tanh MLP 1-8-8-1 from `seed`.
fn mlp(seed: i64) -> (Mlp, Params) {
    tch::manual_seed(seed);
    let mut vs = nn::VarStore::new(Device::Cpu);
    vs.set_kind(Kind::Double);
    MlpConfig::new([1, 8, 8, 1]).with_activation(Activation::Tanh).init(&vs.root()).unwrap()
}

/// Four float64 sinusoid tasks, 5 support and 5 query points.
fn sinusoids(seed: u64) -> TaskBatch {
    let b = SinusoidTasks::new(SinusoidConfig::default(), seed).sample_batch(4, 5, 5, Device::Cpu).unwrap();
    TaskBatch {
        support_x: b.support_x.to_kind(Kind::Double),
        support_y: b.support_y.to_kind(Kind::Double),
        query_x: b.query_x.to_kind(Kind::Double),
        query_y: b.query_y.to_kind(Kind::Double),
    }
}

fn family(settings: FamilySettings) -> MamlFamily<Mlp> {
    let (m, theta) = mlp(3);
    MamlFamily::new(m, theta, TaskLoss::Mse, settings).unwrap()
}

/// Max |a − b| / max |b|.
fn relative(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[])
}

/// Row `t` of `J` against the meta-gradient of the one-task batch `t`.
fn check_rows<M: Model>(family: &MamlFamily<M>, batch: &TaskBatch, what: &str) {
    let (jacobian, losses) = family.task_meta_gradients(batch).unwrap();
    let n = batch.num_tasks();
    assert_eq!(jacobian.size(), [n as i64, family.meta_parameters().numel() as i64], "{what}");
    for (t, expected_loss) in losses.iter().enumerate() {
        let (loss, grads) = family.meta_gradient(&batch.tasks(t, 1)).unwrap();
        let error = relative(&jacobian.get(t as i64), &grads.flatten());
        assert!(error < 1e-10, "{what}: row {t} differs by {error:e}");
        assert!((expected_loss - loss).abs() < 1e-12 * loss.abs().max(1.0), "{what}: loss {t}");
    }
}

#[test]
fn rows_are_the_meta_gradients_of_one_task_batches() {
    let _guard = serial();
    let batch = sinusoids(0);
    let basic = |first_order| FamilySettings::basic(2, LrRule::Fixed(0.1), first_order, 1e-3);
    check_rows(&family(basic(false)), &batch, "one task-batched pass");
    check_rows(&family(basic(true)), &batch, "first order");
    check_rows(&family(FamilySettings { tasks_per_pass: 3, ..basic(false) }), &batch, "passes of 3 and 1");
    check_rows(&family(FamilySettings { task_batched: false, ..basic(false) }), &batch, "task by task");
    check_rows(&family(FamilySettings { checkpointing: true, ..basic(false) }), &batch, "checkpointed");
    let meta_sgd = FamilySettings::basic(2, LrRule::PerParameter { low: 0.05, high: 0.1 }, false, 1e-3);
    check_rows(&family(meta_sgd), &batch, "learned per-parameter rates");
    // MAML++: per-step batch norm, learned per-step rates, multi-step loss, second order.
    let (_vs, net, params) = tiny_conv(5, BatchNormConfig::default());
    let config =
        MamlPlusPlusConfig { inner_steps: 2, first_order_epochs: 0, ..MamlPlusPlusConfig::default() };
    let plus = MamlPlusPlus::new(net, params, TaskLoss::CrossEntropy, config).unwrap();
    check_rows(&plus, &episodes(1), "MAML++");
}

/// `Σ_t w_t g_t` with fixed weights.
struct Fixed(Vec<f64>);

impl TaskGradientCombiner for Fixed {
    fn name(&self) -> &str {
        "fixed"
    }

    fn combine(&mut self, input: &TaskGradients<'_>) -> metl_meta::error::Result<Tensor> {
        let w = Tensor::from_slice(&self.0).to_kind(input.jacobian.kind());
        Ok(w.matmul(input.jacobian))
    }
}

#[test]
fn the_mean_combiner_takes_the_plain_step_and_fixed_weights_their_weighted_sum() {
    let _guard = serial();
    let settings = FamilySettings::basic(1, LrRule::Fixed(0.1), false, 1e-2);
    let (mut plain, mut mean) = (family(settings.clone()), family(settings.clone()));
    mean.set_task_combiner(Box::new(MeanOfTasks));
    for step in 0..3 {
        let batch = sinusoids(step);
        let (a, b) = (plain.meta_train_step(&batch).unwrap(), mean.meta_train_step(&batch).unwrap());
        assert!((a.loss - b.loss).abs() < 1e-14, "step {step}: {} vs {}", a.loss, b.loss);
    }
    let error = relative(&mean.state().flatten(), &plain.state().flatten());
    assert!(error < 1e-13, "mean combiner vs plain step: {error:e}");

    let weights = vec![0.5, -1.0, 2.0, 0.25];
    let (mut fixed, reference) = (family(settings.clone()), family(settings));
    fixed.set_task_combiner(Box::new(Fixed(weights.clone())));
    let batch = sinusoids(9);
    let (_, direction) = fixed.meta_gradient(&batch).unwrap();
    let expected = (0..4)
        .map(|t| reference.meta_gradient(&batch.tasks(t, 1)).unwrap().1.flatten() * weights[t])
        .reduce(|a, b| a + b)
        .unwrap();
    let error = relative(&direction.flatten(), &expected);
    assert!(error < 1e-10, "fixed weights: {error:e}");
    // The rows differ, so a weighting that is not the mean gives another direction.
    let (_, mean_direction) = reference.meta_gradient(&batch).unwrap();
    assert!(relative(&direction.flatten(), &mean_direction.flatten()) > 1e-3);
}

#[test]
fn a_combiners_state_is_checkpointed_and_resumed_runs_continue_exactly() {
    let _guard = serial();
    let settings = FamilySettings::basic(1, LrRule::Fixed(0.1), false, 1e-2);
    let make = || {
        let mut f = family(settings.clone());
        f.set_task_combiner(Box::new(NormalisedMean { steps: 0, expect_tasks: None }));
        f
    };
    let mut uninterrupted = make();
    for step in 0..4 {
        uninterrupted.meta_train_step(&sinusoids(step)).unwrap();
    }
    let mut first = make();
    for step in 0..2 {
        first.meta_train_step(&sinusoids(step)).unwrap();
    }
    let saved = first.state();
    assert_eq!(saved.f_get("task_combiner.steps").unwrap().int64_value(&[0]), 2);
    let mut resumed = make();
    resumed.load_state(&saved).unwrap();
    for step in 2..4 {
        resumed.meta_train_step(&sinusoids(step)).unwrap();
    }
    assert_eq!(resumed.state().names(), uninterrupted.state().names());
    let error = relative(&resumed.state().flatten(), &uninterrupted.state().flatten());
    assert_eq!(error, 0.0, "resumed vs uninterrupted");
    // meta_gradient leaves the combiner's state as it was.
    resumed.meta_gradient(&sinusoids(7)).unwrap();
    assert_eq!(resumed.state().f_get("task_combiner.steps").unwrap().int64_value(&[0]), 4);
    // A learner without a combiner refuses a state that holds one's.
    let err = family(settings.clone()).load_state(&saved).unwrap_err().to_string();
    assert!(err.contains("task_combiner.steps") && err.contains("no task combiner"), "{err}");
}

#[test]
fn learners_without_per_task_meta_gradients_refuse_a_combiner() {
    let _guard = serial();
    let (m, theta) = mlp(1);
    let mut reptile = Reptile::new(m, theta, TaskLoss::Mse, ReptileConfig::default()).unwrap();
    let err = reptile.set_task_combiner(Box::new(MeanOfTasks)).unwrap_err().to_string();
    assert!(err.contains("only the MAML family"), "{err}");
    let (m, theta) = mlp(1);
    let mut protonet = ProtoNet::new(m, theta, ProtoNetConfig::default()).unwrap();
    assert!(protonet.set_task_combiner(Box::new(MeanOfTasks)).is_err());
}
