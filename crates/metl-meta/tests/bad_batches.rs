//! Every rule of the batch check, through every kind of learner: a malformed `TaskBatch` is
//! a `MetaError::InvalidBatch` naming the field and the shapes — from `meta_train_step`,
//! `adapt_and_evaluate`, `adapt_and_predict` and `meta_backward` alike — never a panic inside
//! libtorch, and no step is taken.

use metl_data::TaskBatch;
use metl_meta::{
    baseline::{Baseline, BaselineConfig},
    maml::{Maml, MamlConfig},
    maml_family::{FamilySettings, LrRule, MamlFamily},
    matching::{MatchingNet, MatchingNetConfig},
    meta_sgd::{MetaSgd, MetaSgdConfig},
    protonet::{ProtoNet, ProtoNetConfig},
    reptile::{Reptile, ReptileConfig},
    validate::{validate_batch, Targets},
    MetaError, MetaLearner,
};
use metl_models::{loss::Classification, mlp::MlpConfig, TaskLoss};
use tch::{nn, Device, Kind, Reduction, Tensor};

const F64: (Kind, Device) = (Kind::Double, Device::Cpu);

/// Learners under test with a name, built on float64 parameters.
type Learners = Vec<(&'static str, Box<dyn MetaLearner>)>;

/// Regression learners on an MLP 1-8-1.
fn regression_learners() -> Learners {
    let mlp = || {
        let mut vs = nn::VarStore::new(Device::Cpu);
        vs.set_kind(Kind::Double);
        let (mlp, theta) = MlpConfig::new([1, 8, 1]).init(&vs.root()).unwrap();
        (vs, mlp, theta)
    };
    let mse = |p: &Tensor, y: &Tensor| p.mse_loss(y, Reduction::Mean);
    let (vs, m, t) = mlp();
    let maml = Maml::new(m, t, &vs, TaskLoss::Mse, MamlConfig::default()).unwrap();
    let (_vs, m, t) = mlp();
    let meta_sgd = MetaSgd::new(m, t, TaskLoss::Mse, MetaSgdConfig::default()).unwrap();
    let (_vs, m, t) = mlp();
    let reptile = Reptile::new(m, t, TaskLoss::Mse, ReptileConfig::default()).unwrap();
    let (_vs, m, t) = mlp();
    let settings = FamilySettings::basic(1, LrRule::Fixed(0.01), false, 1e-3);
    let family = MamlFamily::new(m, t, mse, settings).unwrap();
    vec![
        ("maml", Box::new(maml)),
        ("meta_sgd", Box::new(meta_sgd)),
        ("reptile", Box::new(reptile)),
        ("family with a closure loss", Box::new(family)),
    ]
}

/// Classification learners: 3-way gradient learners on a linear classifier 4 → 3, metric
/// learners and the baseline on a linear embedding 4 → 4.
fn classification_learners() -> Learners {
    let mlp = |out: i64| {
        let mut vs = nn::VarStore::new(Device::Cpu);
        vs.set_kind(Kind::Double);
        let (mlp, theta) = MlpConfig::new([4, out]).init(&vs.root()).unwrap();
        (vs, mlp, theta)
    };
    let (vs, m, t) = mlp(3);
    let maml = Maml::new(m, t, &vs, TaskLoss::CrossEntropy, MamlConfig::default()).unwrap();
    let (vs, m, t) = mlp(3);
    let smoothed = Classification(|logits: &Tensor, y: &Tensor| {
        logits.cross_entropy_loss::<Tensor>(y, None, Reduction::Mean, -100, 0.1)
    });
    let closure = Maml::new(m, t, &vs, smoothed, MamlConfig::default()).unwrap();
    let (_vs, m, t) = mlp(4);
    let protonet = ProtoNet::new(m, t, ProtoNetConfig::default()).unwrap();
    let (_vs, m, t) = mlp(4);
    let matching = MatchingNet::new(m, t, MatchingNetConfig::default()).unwrap();
    let (_vs, m, t) = mlp(4);
    let baseline = Baseline::new(m, t, 4, 3, BaselineConfig::default()).unwrap();
    vec![
        ("maml, cross-entropy", Box::new(maml)),
        ("maml, classification closure", Box::new(closure)),
        ("protonet", Box::new(protonet)),
        ("matching", Box::new(matching)),
        ("baseline", Box::new(baseline)),
    ]
}

/// Two regression tasks, 5 support and 4 query examples of one feature.
fn regression() -> TaskBatch {
    TaskBatch {
        support_x: Tensor::randn([2, 5, 1], F64),
        support_y: Tensor::randn([2, 5, 1], F64),
        query_x: Tensor::randn([2, 4, 1], F64),
        query_y: Tensor::randn([2, 4, 1], F64),
    }
}

/// Two 3-way episodes of 4 features, 2 shots and 1 query per class.
fn episodes() -> TaskBatch {
    let labels = |per_class: i64| {
        Tensor::arange(3, (Kind::Int64, Device::Cpu))
            .repeat_interleave_self_int(per_class, 0, None)
            .view([1, -1])
            .repeat([2, 1])
    };
    TaskBatch {
        support_x: Tensor::randn([2, 6, 4], F64),
        support_y: labels(2),
        query_x: Tensor::randn([2, 3, 4], F64),
        query_y: labels(1),
    }
}

/// Every learner rejects `batch` through every entry point with an `InvalidBatch` whose
/// message contains `expected`, and takes no step.
fn assert_rejected(mut learners: Learners, batch: &TaskBatch, expected: &str) {
    for (name, learner) in &mut learners {
        let errors = [
            learner.meta_train_step(batch).map(|_| ()),
            learner.adapt_and_evaluate(batch, 1).map(|_| ()),
            learner.adapt_and_predict(batch, 1).map(|_| ()),
        ];
        for (entry, result) in
            ["meta_train_step", "adapt_and_evaluate", "adapt_and_predict"].iter().zip(errors)
        {
            match result {
                Err(MetaError::InvalidBatch(message)) => {
                    assert!(message.contains(expected), "{name}, {entry}: `{message}` lacks `{expected}`")
                }
                Err(other) => panic!("{name}, {entry}: not InvalidBatch: {other}"),
                Ok(()) => panic!("{name}, {entry}: accepted a batch that should fail with `{expected}`"),
            }
        }
        assert_eq!(learner.steps_taken(), 0, "{name}");
    }
}

#[test]
fn well_formed_batches_pass() {
    for (name, mut learner) in regression_learners() {
        learner.meta_train_step(&regression()).unwrap_or_else(|e| panic!("{name}: {e}"));
        learner.adapt_and_evaluate(&regression(), 1).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (name, mut learner) in classification_learners() {
        learner.meta_train_step(&episodes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        learner.adapt_and_evaluate(&episodes(), 1).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn every_tensor_must_be_defined() {
    for field in ["support_x", "support_y", "query_x", "query_y"] {
        let undefine = |mut b: TaskBatch| {
            match field {
                "support_x" => b.support_x = Tensor::new(),
                "support_y" => b.support_y = Tensor::new(),
                "query_x" => b.query_x = Tensor::new(),
                _ => b.query_y = Tensor::new(),
            }
            b
        };
        let expected = format!("{field} is an undefined tensor");
        assert_rejected(regression_learners(), &undefine(regression()), &expected);
        assert_rejected(classification_learners(), &undefine(episodes()), &expected);
    }
}

#[test]
fn tasks_and_set_sizes_must_be_at_least_one() {
    let b = TaskBatch {
        support_x: Tensor::zeros([0, 5, 1], F64),
        support_y: Tensor::zeros([0, 5, 1], F64),
        query_x: Tensor::zeros([0, 4, 1], F64),
        query_y: Tensor::zeros([0, 4, 1], F64),
    };
    assert_rejected(
        regression_learners(),
        &b,
        "support_x has shape [0, 5, 1]; expected [B, S, ...] with B, S >= 1",
    );
    let b = TaskBatch {
        support_x: Tensor::zeros([2, 0, 1], F64),
        support_y: Tensor::zeros([2, 0, 1], F64),
        ..regression()
    };
    assert_rejected(regression_learners(), &b, "support_x has shape [2, 0, 1]");
    let b = TaskBatch {
        query_x: Tensor::zeros([2, 0, 4], F64),
        query_y: Tensor::zeros([2, 0], (Kind::Int64, Device::Cpu)),
        ..episodes()
    };
    assert_rejected(
        classification_learners(),
        &b,
        "query_x has shape [2, 0, 4]; expected [B, Q, ...] with B, Q >= 1",
    );
    // A rank-1 input has no set dimension.
    let b = TaskBatch { query_x: Tensor::zeros([2], F64), ..regression() };
    assert_rejected(regression_learners(), &b, "query_x has shape [2]");
}

#[test]
fn support_and_query_must_have_the_same_tasks_and_example_shape() {
    let good = regression();
    let b = TaskBatch {
        query_x: good.query_x.narrow(0, 0, 1),
        query_y: good.query_y.narrow(0, 0, 1),
        ..regression()
    };
    assert_rejected(
        regression_learners(),
        &b,
        "support_x has 2 tasks ([2, 5, 1]) but query_x has 1 ([1, 4, 1])",
    );
    let b = TaskBatch { query_x: Tensor::zeros([2, 4, 2], F64), ..regression() };
    assert_rejected(regression_learners(), &b, "support_x examples are [1] but query_x examples are [2]");
    let b = TaskBatch { query_x: Tensor::zeros([2, 3, 5], F64), ..episodes() };
    assert_rejected(classification_learners(), &b, "support_x examples are [4] but query_x examples are [5]");
}

#[test]
fn targets_must_match_their_inputs_tasks_and_examples() {
    let good = regression();
    let b = TaskBatch { query_y: good.query_y.narrow(1, 0, 3), ..regression() };
    assert_rejected(
        regression_learners(),
        &b,
        "query_y has shape [2, 3, 1]; expected [2, 4, ...] like its inputs",
    );
    let b = TaskBatch { support_y: good.support_y.narrow(0, 0, 1), ..regression() };
    assert_rejected(regression_learners(), &b, "support_y has shape [1, 5, 1]; expected [2, 5, ...]");
    let b = TaskBatch { support_y: episodes().support_y.narrow(1, 0, 5), ..episodes() };
    assert_rejected(classification_learners(), &b, "support_y has shape [2, 5]; expected [2, 6, ...]");
}

#[test]
fn inputs_must_be_floating_point_of_the_parameters_kind() {
    let b = TaskBatch { support_x: Tensor::zeros([2, 5, 1], (Kind::Int64, Device::Cpu)), ..regression() };
    assert_rejected(regression_learners(), &b, "support_x is Int64; inputs must be floating point");
    let b = TaskBatch { query_x: episodes().query_x.to_kind(Kind::Float), ..episodes() };
    assert_rejected(classification_learners(), &b, "query_x is Float but the parameters are Double");
}

#[test]
fn regression_targets_must_be_real_of_the_inputs_kind() {
    let b = TaskBatch { support_y: Tensor::zeros([2, 5, 1], (Kind::Int64, Device::Cpu)), ..regression() };
    // The closure loss takes any targets: only the learners with a built-in MSE object.
    let learners: Learners =
        regression_learners().into_iter().filter(|(n, _)| !n.contains("closure")).collect();
    assert_rejected(learners, &b, "support_y is Int64; regression targets must be floating point");
    let b = TaskBatch { query_y: regression().query_y.to_kind(Kind::Float), ..regression() };
    let learners: Learners =
        regression_learners().into_iter().filter(|(n, _)| !n.contains("closure")).collect();
    assert_rejected(
        learners,
        &b,
        "query_y is Float; regression targets must be floating point, of the inputs' kind Double",
    );
}

#[test]
fn class_targets_must_be_int64_indices_in_range() {
    let b = TaskBatch { query_y: episodes().query_y.to_kind(Kind::Double), ..episodes() };
    assert_rejected(
        classification_learners(),
        &b,
        "query_y is Double [2, 3]; class targets must be Int64 [2, 3]",
    );
    let b = TaskBatch { support_y: episodes().support_y.unsqueeze(-1), ..episodes() };
    assert_rejected(
        classification_learners(),
        &b,
        "support_y is Int64 [2, 6, 1]; class targets must be Int64 [2, 6]",
    );
    let b = TaskBatch { support_y: episodes().support_y - 1, ..episodes() };
    assert_rejected(classification_learners(), &b, "negative class index -1");
    // A query class that no support example shows.
    let b = TaskBatch {
        query_y: episodes().query_y.clamp_max(1) + 1,
        support_y: episodes().support_y.clamp_max(1),
        ..episodes()
    };
    assert_rejected(
        classification_learners(),
        &b,
        "query_y has class 2, but the support classes go up to 1 only",
    );
    // Classes beyond the model's logits: a 4-way episode for a 3-way classifier (the
    // gradient learners; a metric learner takes any number of ways).
    let four_way = |per_class: i64| {
        Tensor::arange(4, (Kind::Int64, Device::Cpu))
            .repeat_interleave_self_int(per_class, 0, None)
            .view([1, -1])
            .repeat([2, 1])
    };
    let b = TaskBatch {
        support_x: Tensor::randn([2, 8, 4], F64),
        support_y: four_way(2),
        query_x: Tensor::randn([2, 4, 4], F64),
        query_y: four_way(1),
    };
    let learners: Learners =
        classification_learners().into_iter().filter(|(n, _)| n.starts_with("maml")).collect();
    assert_rejected(learners, &b, "support_y has class indices 0..=3, but the model scores 3 classes (0..3)");
}

#[test]
fn meta_backward_checks_too() {
    let mut vs = nn::VarStore::new(Device::Cpu);
    vs.set_kind(Kind::Double);
    let (mlp, theta) = MlpConfig::new([1, 8, 1]).init(&vs.root()).unwrap();
    let maml = Maml::new(mlp, theta.shallow_clone(), &vs, TaskLoss::Mse, MamlConfig::default()).unwrap();
    let b = TaskBatch { query_y: regression().query_y.narrow(1, 0, 3), ..regression() };
    let err = maml.meta_backward(&b).unwrap_err();
    assert!(matches!(err, MetaError::InvalidBatch(_)), "{err}");
    assert!(maml.meta_gradient(&b).is_err());
    // No gradient was left behind.
    assert!(theta.tensors().iter().all(|t| !t.grad().defined()));
}

/// The device rules need a second device: with CUDA, a batch on the GPU for parameters on
/// the CPU, and a batch split across devices, are errors naming the devices.
#[test]
fn every_tensor_must_be_on_the_parameters_device() {
    if !tch::Cuda::is_available() {
        eprintln!("skipped: needs CUDA for a second device");
        return;
    }
    let gpu = Device::Cuda(0);
    let on_gpu = regression().to_device(gpu);
    assert_rejected(
        regression_learners(),
        &on_gpu,
        "support_x is on Cuda(0), expected Cpu (the parameters' device)",
    );
    let split = TaskBatch { query_y: regression().query_y.to_device(gpu), ..regression() };
    assert_rejected(regression_learners(), &split, "query_y is on Cuda(0), expected Cpu");
    let err = validate_batch(
        &TaskBatch { query_x: episodes().query_x.to_device(gpu), ..episodes() },
        Targets::Classes,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("query_x is on Cuda(0), expected Cpu (the device of support_x)"), "{err}");
}
