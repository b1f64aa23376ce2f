//! The fine-tuning baselines: pre-training learns the training classes, head fitting learns
//! new classes from their support sets, and bad labels are errors.

use metl_data::TaskBatch;
use metl_meta::{
    baseline::{Baseline, BaselineConfig, BaselineHead},
    MetaLearner,
};
use metl_models::mlp::{Activation, MlpConfig};
use tch::{nn, Device, Kind, Tensor};

/// `per_class` points around each of `centres` `[C, 2]`, labelled by centre, with the
/// given label offset, as `[1, C·per_class, 2]` inputs and `[1, C·per_class]` labels.
fn clusters(centres: &Tensor, per_class: i64, offset: i64) -> (Tensor, Tensor) {
    let classes = centres.size()[0];
    let x = centres.repeat_interleave_self_int(per_class, 0, None::<i64>)
        + Tensor::randn([classes * per_class, 2], (Kind::Float, Device::Cpu)) * 0.3;
    let y = Tensor::arange(classes, (Kind::Int64, Device::Cpu)).repeat_interleave_self_int(
        per_class,
        0,
        None::<i64>,
    ) + offset;
    (x.unsqueeze(0), y.unsqueeze(0))
}

#[test]
fn pretraining_then_head_fitting_classifies_new_classes() {
    for head in [BaselineHead::Linear, BaselineHead::Cosine { scale: Some(5.0) }] {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let (mlp, params) =
            MlpConfig::new([2, 32, 16]).with_activation(Activation::Tanh).init(&vs.root()).unwrap();
        let config = BaselineConfig { head, outer_lr: 1e-2, ..Default::default() };
        let mut baseline = Baseline::new(mlp, params, 16, 4, config).unwrap();
        // Four training classes on a circle of radius 3.
        let angles = Tensor::arange(4, (Kind::Float, Device::Cpu)) * std::f64::consts::FRAC_PI_2;
        let train_centres = Tensor::stack(&[angles.cos() * 3.0, angles.sin() * 3.0], 1);
        let mut accuracy = 0.0;
        for _ in 0..150 {
            let (x, y) = clusters(&train_centres, 8, 0);
            let batch = TaskBatch {
                support_x: x.shallow_clone(),
                support_y: y.shallow_clone(),
                query_x: x,
                query_y: y,
            };
            accuracy = baseline.meta_train_step(&batch).unwrap().accuracy.unwrap();
        }
        assert!(accuracy > 0.9, "{head:?}: pre-training accuracy {accuracy}");

        // Three new classes between the training ones: 5 shots, 10 queries, 2 episodes.
        let angles = (Tensor::arange(3, (Kind::Float, Device::Cpu)) + 0.5) * std::f64::consts::FRAC_PI_2;
        let centres = Tensor::stack(&[angles.cos() * 3.0, angles.sin() * 3.0], 1);
        let episode = |_| {
            let (sx, sy) = clusters(&centres, 5, 0);
            let (qx, qy) = clusters(&centres, 10, 0);
            (sx, sy, qx, qy)
        };
        let (a, b) = (episode(0), episode(1));
        let batch = TaskBatch {
            support_x: Tensor::cat(&[a.0, b.0], 0),
            support_y: Tensor::cat(&[a.1, b.1], 0),
            query_x: Tensor::cat(&[a.2, b.2], 0),
            query_y: Tensor::cat(&[a.3, b.3], 0),
        };
        let outcome = baseline.adapt_and_evaluate(&batch, 100).unwrap();
        let accuracy = outcome.accuracy.unwrap().mean(Kind::Float).double_value(&[]);
        assert!(accuracy > 0.8, "{head:?}: 3-way 5-shot accuracy {accuracy}");
        // Without head fitting the fresh head is at chance level or near it.
        let untrained = baseline.adapt_and_evaluate(&batch, 0).unwrap();
        assert!(untrained.accuracy.unwrap().mean(Kind::Float).double_value(&[]) < accuracy);
    }
}

#[test]
fn labels_outside_the_training_classes_are_errors() {
    let vs = nn::VarStore::new(Device::Cpu);
    let (mlp, params) = MlpConfig::new([2, 4]).init(&vs.root()).unwrap();
    let mut baseline = Baseline::new(mlp, params, 4, 3, BaselineConfig::default()).unwrap();
    let x = Tensor::zeros([1, 2, 2], (Kind::Float, Device::Cpu));
    let y = Tensor::from_slice(&[0i64, 3]).view([1, 2]);
    let batch =
        TaskBatch { support_x: x.shallow_clone(), support_y: y.shallow_clone(), query_x: x, query_y: y };
    let err = baseline.meta_train_step(&batch).unwrap_err().to_string();
    assert!(err.contains("global class labels in 0..3"), "{err}");
    let vs = nn::VarStore::new(Device::Cpu);
    let (mlp, params) = MlpConfig::new([2, 4]).init(&vs.root()).unwrap();
    let err = Baseline::new(mlp, params, 4, 1, BaselineConfig::default()).unwrap_err().to_string();
    assert!(err.starts_with("baseline.classes = 1"), "{err}");
}
