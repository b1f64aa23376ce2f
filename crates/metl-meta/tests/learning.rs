//! Learning tests: short meta-training runs that must reach a stated quality.
//!
//! - MAML on sinusoids (K = 10, meta-batch 25, 1000 iterations, fixed seeds): one inner step
//!   must cut the test MSE to under 0.65 of the pre-update MSE, ten steps to under 0.4.
//!   Measured over seeds 0–5 (release build, same kernels as here): 0.44–0.51 after one
//!   step and 0.19–0.27 after ten. Without meta-training one step of α = 0.01 from the
//!   initialisation changes the MSE by a few percent, so the thresholds cannot pass by
//!   accident, and they leave a wide margin for kernel differences between machines.
//! - Prototypical networks on the real Omniglot (Vinyals split, Conv4): after 50 training
//!   episodes (20-way 1-shot, 5 queries per class), the 5-way 1-shot accuracy over 60 test
//!   episodes (4,500 queries) must exceed 60 % (chance: 20 %). Measured: 82 ± 2 % (release
//!   driver, 100 test episodes); 30 episodes already give 75 %. The 95% interval of the
//!   estimate is about ±2.5 points, so the margin of 20 points covers seeds and machines.

use metl_data::{
    rng::substream,
    sinusoid::{SinusoidConfig, SinusoidTasks},
    EpisodeConfig, EpisodeSampler, Omniglot, OmniglotConfig, OmniglotProtocol,
};
use metl_meta::{
    evaluate,
    maml::{Maml, MamlConfig},
    protonet::{ProtoNet, ProtoNetConfig},
    MetaLearner,
};
use metl_models::{conv4::Conv4Config, mlp::MlpConfig, TaskLoss};
use std::sync::Arc;
use tch::{nn, Device};

#[test]
fn maml_on_sinusoids_adapts_after_a_thousand_iterations() {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let (mlp, theta) = MlpConfig::new([1, 40, 40, 1]).init(&vs.root()).unwrap();
    let mut maml = Maml::new(mlp, theta, &vs, TaskLoss::Mse, MamlConfig::default()).unwrap();
    let family = SinusoidConfig::default();
    let mut train = SinusoidTasks::from_rng(family, substream(0, 0));
    for _ in 0..1000 {
        maml.meta_train_step(&train.sample_batch(25, 10, 10, Device::Cpu).unwrap()).unwrap();
    }
    let mut test = SinusoidTasks::from_rng(family, substream(100, 2));
    let batches: Vec<_> = (0..2).map(|_| test.sample_batch(100, 10, 100, Device::Cpu).unwrap()).collect();
    let e = evaluate(&maml, batches, &[0, 1, 10]).unwrap();
    let (pre, one, ten) = (e[0].loss.mean, e[1].loss.mean, e[2].loss.mean);
    println!("test MSE over 200 tasks: pre {pre:.3}, 1 step {one:.3}, 10 steps {ten:.3}");
    assert!(one < 0.65 * pre, "1 step: {one} vs pre-update {pre}");
    assert!(ten < 0.4 * pre, "10 steps: {ten} vs pre-update {pre}");
}

/// `$METL_OMNIGLOT_DIR`, else the repository's `../shared/data/omniglot`, if it exists.
fn omniglot() -> Option<Arc<Omniglot>> {
    let dir = metl_data::omniglot::omniglot_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/omniglot"
    ));
    if !dir.exists() {
        println!("SKIPPED: Omniglot not found at {} (set METL_OMNIGLOT_DIR)", dir.display());
        return None;
    }
    Some(Arc::new(Omniglot::load(OmniglotConfig::new(dir)).expect("loading Omniglot")))
}

/// Training episodes (20-way 1-shot, 5 queries per class).
const TRAIN_EPISODES: usize = 50;

#[test]
fn protonet_on_omniglot_is_far_above_chance_after_a_short_budget() {
    let Some(data) = omniglot() else { return };
    tch::manual_seed(0);
    let splits = data.splits(OmniglotProtocol::Vinyals, 0).unwrap();
    let train_config = EpisodeConfig { ways: 20, shots: 1, queries: 5, meta_batch: 1, within_group: false };
    let mut train = EpisodeSampler::new(data.clone(), splits.train, train_config, 1).unwrap();
    let test_config = EpisodeConfig { ways: 5, shots: 1, queries: 15, meta_batch: 20, within_group: false };
    let mut test = EpisodeSampler::new(data, splits.test, test_config, 2).unwrap();

    let vs = nn::VarStore::new(Device::Cpu);
    let (conv4, theta) = Conv4Config::new(1).init(&vs.root()).unwrap();
    let mut protonet = ProtoNet::new(conv4, theta, ProtoNetConfig::default()).unwrap();
    for _ in 0..TRAIN_EPISODES {
        protonet.meta_train_step(&train.sample_batch(Device::Cpu).unwrap()).unwrap();
    }
    let batches: Vec<_> = (0..3).map(|_| test.sample_batch(Device::Cpu).unwrap()).collect();
    let accuracy = evaluate(&protonet, batches, &[0]).unwrap()[0].accuracy.unwrap();
    println!("5-way 1-shot accuracy over 60 episodes after {TRAIN_EPISODES} 20-way episodes: {accuracy:.3}");
    assert!(accuracy.mean > 0.6, "{accuracy}");
}
