//! Prototypical and matching networks against their definitions, computed element by
//! element in float64 on a linear embedding, and the errors on malformed episodes.

use metl_data::TaskBatch;
use metl_meta::{
    matching::{MatchingNet, MatchingNetConfig},
    metric::MetricTraining,
    protonet::{Distance, ProtoNet, ProtoNetConfig},
    MetaLearner,
};
use metl_models::{mlp::MlpConfig, Model, Params};
use tch::{nn, Device, Kind, Tensor};

/// The tests run on parallel threads and share libtorch's global generator: each holds this
/// lock for its whole body, so that its seeded data is its own.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A linear embedding 3 → 4 (float64) and a 2-episode batch: 3-way, 2 shots, 2 queries.
fn setup() -> (nn::VarStore, metl_models::mlp::Mlp, Params, TaskBatch) {
    tch::manual_seed(0);
    let mut vs = nn::VarStore::new(Device::Cpu);
    vs.set_kind(Kind::Double);
    let (mlp, params) = MlpConfig::new([3, 4]).init(&vs.root()).unwrap();
    let opts = (Kind::Double, Device::Cpu);
    let labels = Tensor::from_slice(&[0i64, 0, 1, 1, 2, 2]).view([1, 6]).repeat([2, 1]);
    let batch = TaskBatch {
        support_x: Tensor::randn([2, 6, 3], opts),
        support_y: labels.shallow_clone(),
        query_x: Tensor::randn([2, 6, 3], opts),
        query_y: labels,
    };
    (vs, mlp, params, batch)
}

fn embed(mlp: &metl_models::mlp::Mlp, params: &Params, x: &Tensor) -> Tensor {
    mlp.forward(params, x, false)
}

#[test]
fn protonet_logits_are_negative_squared_distances_to_class_means() {
    let _serial = serial();
    let (_vs, mlp, params, batch) = setup();
    let protonet = ProtoNet::new(mlp.clone(), params.shallow_clone(), ProtoNetConfig::default()).unwrap();
    let logits = protonet.adapt_and_predict(&batch, 0).unwrap();
    assert_eq!(logits.size(), [2, 6, 3]);
    for t in 0..2 {
        let zs = embed(&mlp, &params, &batch.support_x.get(t));
        let zq = embed(&mlp, &params, &batch.query_x.get(t));
        for c in 0..3 {
            // Support rows 2c and 2c + 1 are class c.
            let prototype = (zs.get(2 * c) + zs.get(2 * c + 1)) / 2.0;
            for q in 0..6 {
                let expected = -(zq.get(q) - &prototype).square().sum(Kind::Double).double_value(&[]);
                let got = logits.double_value(&[t, q, c]);
                assert!(
                    (got - expected).abs() < 1e-10,
                    "episode {t} query {q} class {c}: {got} vs {expected}"
                );
            }
        }
    }
    // Cosine variant: scale · cos(z, p).
    let config = ProtoNetConfig { distance: Distance::Cosine { scale: 3.0 }, ..Default::default() };
    let cosine = ProtoNet::new(mlp.clone(), params.shallow_clone(), config).unwrap();
    let logits = cosine.adapt_and_predict(&batch, 0).unwrap();
    let zs = embed(&mlp, &params, &batch.support_x.get(1));
    let zq = embed(&mlp, &params, &batch.query_x.get(1));
    let prototype = (zs.get(4) + zs.get(5)) / 2.0;
    let q = zq.get(3);
    let cos = (&q * &prototype).sum(Kind::Double) / (q.norm() * prototype.norm());
    assert!((logits.double_value(&[1, 3, 2]) - 3.0 * cos.double_value(&[])).abs() < 1e-10);
}

#[test]
fn matching_net_predicts_attention_weighted_labels() {
    let _serial = serial();
    let (_vs, mlp, params, batch) = setup();
    let config = MatchingNetConfig { scale: 2.0, ..Default::default() };
    let matching = MatchingNet::new(mlp.clone(), params.shallow_clone(), config).unwrap();
    let log_p = matching.adapt_and_predict(&batch, 0).unwrap();
    let zs = embed(&mlp, &params, &batch.support_x.get(0));
    let zq = embed(&mlp, &params, &batch.query_x.get(0));
    for q in 0..6 {
        let cosines: Vec<f64> = (0..6)
            .map(|i| {
                let (a, b) = (zq.get(q), zs.get(i));
                ((&a * &b).sum(Kind::Double) / (a.norm() * b.norm())).double_value(&[])
            })
            .collect();
        let weights: Vec<f64> = cosines.iter().map(|c| (2.0 * c).exp()).collect();
        let total: f64 = weights.iter().sum();
        for c in 0..3 {
            let p = (weights[2 * c as usize] + weights[2 * c as usize + 1]) / total;
            let got = log_p.double_value(&[0, q, c]).exp();
            assert!((got - p).abs() < 1e-10, "query {q} class {c}: {got} vs {p}");
        }
    }
}

#[test]
fn malformed_episodes_are_errors() {
    let _serial = serial();
    let (_vs, mlp, params, batch) = setup();
    let protonet = ProtoNet::new(mlp, params, ProtoNetConfig::default()).unwrap();
    // Class 1 has no support example.
    let missing = TaskBatch {
        support_y: Tensor::from_slice(&[0i64, 0, 2, 2, 2, 2]).view([1, 6]).repeat([2, 1]),
        ..batch.to_device(Device::Cpu)
    };
    let err = protonet.adapt_and_evaluate(&missing, 0).unwrap_err().to_string();
    assert!(err.contains("every class"), "{err}");
    let negative = TaskBatch { support_y: -batch.support_y.ones_like(), ..batch.to_device(Device::Cpu) };
    let err = protonet.adapt_and_evaluate(&negative, 0).unwrap_err().to_string();
    assert!(err.contains("negative class index"), "{err}");
    let bad = ProtoNetConfig {
        training: MetricTraining { outer_lr: -1.0, ..Default::default() },
        ..Default::default()
    };
    let (_vs, mlp, params, _) = setup();
    assert!(ProtoNet::new(mlp, params, bad)
        .unwrap_err()
        .to_string()
        .starts_with("protonet.training.outer_lr = -1"));
}

#[test]
fn a_protonet_step_lowers_the_loss_of_its_episode() {
    let _serial = serial();
    let (_vs, mlp, params, batch) = setup();
    // Queries near their class's support examples, so that the episode can be learned.
    let batch = TaskBatch { query_x: &batch.support_x + batch.support_x.randn_like() * 0.1, ..batch };
    let config = ProtoNetConfig {
        training: MetricTraining { outer_lr: 1e-2, ..Default::default() },
        ..Default::default()
    };
    let mut protonet = ProtoNet::new(mlp, params, config).unwrap();
    let before = protonet.meta_train_step(&batch).unwrap().loss;
    for _ in 0..20 {
        protonet.meta_train_step(&batch).unwrap();
    }
    let after = protonet.meta_train_step(&batch).unwrap().loss;
    assert!(after < 0.8 * before, "{before} -> {after}");
    assert_eq!(protonet.steps_taken(), 22);
}
