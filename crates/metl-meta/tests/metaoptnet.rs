//! MetaOptNet: the ridge-regression base learner against the primal closed form and its
//! gradient against finite differences (float64), the learner's meta-gradient (embedding
//! and logit scale) against finite differences, a short run that must learn a few-shot
//! task, and the errors on bad settings.

use metl_data::TaskBatch;
use metl_meta::{
    metaoptnet::{ridge::ridge_logits, BaseLearner, MetaOptNet, MetaOptNetConfig, RidgeConfig, SvmConfig},
    metric::MetricTraining,
    MetaLearner,
};
use metl_models::{
    gradcheck::{check_gradients, GradCheckConfig},
    mlp::{Activation, Mlp, MlpConfig},
    Params, TaskLoss,
};
use tch::{nn, Device, Kind, Tensor};

mod common;
use common::{directional_error, serial};

const F64: (Kind, Device) = (Kind::Double, Device::Cpu);

/// One-hot labels `[T, S, N]` of `shots` examples per class, classes in order.
fn one_hot(tasks: i64, ways: i64, shots: i64) -> Tensor {
    let labels =
        Tensor::arange(ways, (Kind::Int64, Device::Cpu)).repeat_interleave_self_int(shots, 0, None::<i64>);
    labels.one_hot(ways).to_kind(Kind::Double).unsqueeze(0).repeat([tasks, 1, 1])
}

#[test]
fn ridge_head_equals_the_primal_closed_form() {
    let _serial = serial();
    tch::manual_seed(0);
    // Embeddings narrower (D = 4) and wider (D = 15) than the support set (S = 6).
    for dim in [4, 15] {
        let (support, query) = (Tensor::randn([2, 6, dim], F64), Tensor::randn([2, 5, dim], F64));
        let labels = one_hot(2, 3, 2);
        let lambda = 0.7;
        let got = ridge_logits(&support, &labels, &query, lambda);
        // W = (XᵀX + λI)⁻¹ XᵀY, solved task by task in the primal.
        for t in 0..2 {
            let x = support.get(t);
            let gram = x.transpose(0, 1).matmul(&x) + Tensor::eye(dim, F64) * lambda;
            let w = Tensor::linalg_solve(&gram, &x.transpose(0, 1).matmul(&labels.get(t)), true);
            let expected = query.get(t).matmul(&w);
            let err = (got.get(t) - &expected).abs().max().double_value(&[]);
            assert!(err < 1e-10, "D = {dim}, task {t}: {err:e}");
        }
    }
}

#[test]
fn ridge_head_gradient_matches_finite_differences() {
    let _serial = serial();
    tch::manual_seed(1);
    let embeddings = Params::from_named(vec![
        ("support".into(), Tensor::randn([2, 6, 5], F64)),
        ("query".into(), Tensor::randn([2, 4, 5], F64)),
    ])
    .unwrap();
    let labels = one_hot(2, 3, 2);
    let query_labels = Tensor::from_slice(&[0i64, 1, 2, 1]).unsqueeze(0).repeat([2, 1]);
    let loss = |p: &Params| {
        let logits = ridge_logits(&p["support"], &labels, &p["query"], 0.3);
        TaskLoss::CrossEntropy.per_task(&(logits * 4.0), &query_labels).sum(Kind::Double)
    };
    let report =
        check_gradients(&embeddings, loss, &GradCheckConfig { directions: 6, ..Default::default() }).unwrap();
    assert!(report.is_close(1e-6, 1e-9), "{report}");
}

/// A tanh MLP embedding 6 → 8 → 5 in float64.
fn embedding(seed: i64) -> (nn::VarStore, Mlp, Params) {
    tch::manual_seed(seed);
    let mut vs = nn::VarStore::new(Device::Cpu);
    vs.set_kind(Kind::Double);
    let (mlp, params) = MlpConfig::new([6, 8, 5]).with_activation(Activation::Tanh).init(&vs.root()).unwrap();
    (vs, mlp, params)
}

/// Two 3-way episodes of 6 features, 2 shots and 2 queries per class.
fn episodes() -> TaskBatch {
    let labels = Tensor::from_slice(&[0i64, 0, 1, 1, 2, 2]).view([1, 6]).repeat([2, 1]);
    TaskBatch {
        support_x: Tensor::randn([2, 6, 6], F64),
        support_y: labels.shallow_clone(),
        query_x: Tensor::randn([2, 6, 6], F64),
        query_y: labels,
    }
}

/// The learner's training loss on `batch`: mean query cross-entropy.
fn training_loss(learner: &MetaOptNet<Mlp>, batch: &TaskBatch) -> Tensor {
    let logits = learner.logits(batch, true).unwrap();
    TaskLoss::CrossEntropy.per_task(&logits, &batch.query_y).mean(Kind::Double)
}

#[test]
fn meta_gradient_reaches_embedding_and_scale_and_matches_finite_differences() {
    let _serial = serial();
    let svm = SvmConfig { c: 0.5, ..Default::default() };
    for head in [BaseLearner::Ridge(RidgeConfig { lambda: 0.5 }), BaseLearner::Svm(svm)] {
        let (_vs, mlp, params) = embedding(2);
        let config = MetaOptNetConfig { head, scale: 3.0, ..Default::default() };
        let learner = MetaOptNet::new(mlp, params, config).unwrap();
        let batch = episodes();
        let trained = learner.meta_parameters();
        assert!(trained.get("classifier.logit_scale").is_some(), "{:?}", trained.names());
        let analytic = trained.grads(&training_loss(&learner, &batch), false).unwrap();
        let err =
            directional_error(&trained, &analytic, || training_loss(&learner, &batch).double_value(&[]));
        assert!(err < 1e-6, "{head:?}: relative error {err:e}");
        // The scale is learned: one step moves it, and it is part of the checkpoint state.
        let mut learner = learner;
        learner.meta_train_step(&batch).unwrap();
        assert!((learner.classifier().scale() - 3.0).abs() > 1e-6);
        let state = learner.state();
        assert!(state.get("optimizer.exp_avg.classifier.logit_scale").is_some());
    }
}

/// `per_class` points per class of an `ways`-way episode in 20 dimensions: the class shows
/// in the first 4 (centres drawn per episode, spread 0.2 around them), the other 16 are
/// noise of standard deviation 3 that the embedding must learn to ignore.
fn noisy_episodes(tasks: i64, ways: i64, shots: i64, queries: i64) -> TaskBatch {
    let f32 = (Kind::Float, Device::Cpu);
    let centres = Tensor::randn([tasks, ways, 4], f32) * 1.5;
    let points = |per_class: i64| {
        let signal = centres.repeat_interleave_self_int(per_class, 1, None::<i64>)
            + Tensor::randn([tasks, ways * per_class, 4], f32) * 0.2;
        let noise = Tensor::randn([tasks, ways * per_class, 16], f32) * 3.0;
        let labels = Tensor::arange(ways, (Kind::Int64, Device::Cpu)).repeat_interleave_self_int(
            per_class,
            0,
            None::<i64>,
        );
        (Tensor::cat(&[signal, noise], 2), labels.unsqueeze(0).repeat([tasks, 1]))
    };
    let ((sx, sy), (qx, qy)) = (points(shots), points(queries));
    TaskBatch { support_x: sx, support_y: sy, query_x: qx, query_y: qy }
}

/// Measured (seeds 0–3): 5-way 2-shot test accuracy 0.25–0.26 before training (chance:
/// 0.2); after 150 meta-batches of 4 episodes, ridge 0.970–0.977, SVM 0.952–0.964 (±0.01). The
/// thresholds leave wide margins on both sides.
#[test]
fn metaoptnet_learns_to_ignore_noise_dimensions() {
    let _serial = serial();
    // Small tensors: one thread avoids libtorch's threading overhead (10× on a busy machine).
    tch::set_num_threads(1);
    let heads = [BaseLearner::Ridge(RidgeConfig { lambda: 1.0 }), BaseLearner::Svm(SvmConfig::default())];
    for head in heads {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let (mlp, params) = MlpConfig::new([20, 32, 16]).init(&vs.root()).unwrap();
        let config = MetaOptNetConfig {
            head,
            training: MetricTraining { outer_lr: 1e-2, ..Default::default() },
            ..Default::default()
        };
        let mut learner = MetaOptNet::new(mlp, params, config).unwrap();
        let test: Vec<TaskBatch> = (0..5).map(|_| noisy_episodes(20, 5, 2, 10)).collect();
        let accuracy = |learner: &MetaOptNet<Mlp>| {
            metl_meta::evaluate(learner, test.iter().map(|b| b.to_device(Device::Cpu)), &[0]).unwrap()[0]
                .accuracy
                .unwrap()
        };
        let before = accuracy(&learner);
        for _ in 0..150 {
            learner.meta_train_step(&noisy_episodes(4, 5, 2, 5)).unwrap();
        }
        let after = accuracy(&learner);
        println!("{head:?}: 5-way 2-shot accuracy over 100 episodes: {before:.3} before, {after:.3} after training");
        assert!(before.mean < 0.7, "{head:?}: {before}");
        assert!(after.mean > 0.9, "{head:?}: {after}");
    }
}

#[test]
fn bad_settings_are_named() {
    let _serial = serial();
    let (_vs, mlp, params) = embedding(3);
    let config =
        MetaOptNetConfig { head: BaseLearner::Ridge(RidgeConfig { lambda: 0.0 }), ..Default::default() };
    let err = MetaOptNet::new(mlp.clone(), params.shallow_clone(), config).unwrap_err().to_string();
    assert!(err.starts_with("metaoptnet.head.lambda = 0"), "{err}");
    let config = MetaOptNetConfig { scale: -1.0, ..Default::default() };
    let err = MetaOptNet::new(mlp, params, config).unwrap_err().to_string();
    assert!(err.starts_with("metaoptnet.scale = -1"), "{err}");
    // As `[meta.metaoptnet]` in a config file.
    let parsed: metl_meta::AlgorithmConfig =
        serde_json::from_str(r#"{"metaoptnet": {"head": {"kind": "ridge", "lambda": 2.0}}}"#).unwrap();
    assert_eq!(
        parsed,
        metl_meta::AlgorithmConfig::MetaOptNet(MetaOptNetConfig {
            head: BaseLearner::Ridge(RidgeConfig { lambda: 2.0 }),
            ..Default::default()
        })
    );
    let bad = serde_json::from_str::<metl_meta::AlgorithmConfig>(
        r#"{"metaoptnet": {"head": {"kind": "ridge", "lamda": 2.0}}}"#,
    );
    assert!(bad.unwrap_err().to_string().contains("unknown field `lamda`"));
}
