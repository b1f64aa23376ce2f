//! Every registered strategy resumes exactly: a run checkpointed and restored into freshly
//! built objects (several times, at different phases of the epoch-based strategies)
//! reports the same weights and losses at every step and ends with bit-identical
//! parameters and strategy state as the same run without interruption.

use metl_data::{rng::substream, MultiTaskBatch};
use metl_models::{
    gradcheck::Waves,
    mlp::{Mlp, MlpConfig},
    optim::{Adam, AdamConfig, Optimizer},
    HardSharing, MultiTaskModel, Params, TaskLoss,
};
use metl_mtl::{
    registry::STRATEGIES, MtlError, MtlStep, MtlStepState, Setup, StrategyConfig, StrategyState,
    StrategyStateHost,
};
use rand::Rng as _;
use rand_distr::StandardNormal;
use std::collections::BTreeMap;
use tch::{nn, Device, Tensor};

const TASKS: usize = 3;
const INPUTS: usize = 8;
const BATCH: usize = 24;
const STEPS: u64 = 14;
/// Checkpoint and resume after these steps: within DWA's second epoch, within STCH's
/// warm-up epoch (loss sums being collected), and after STCH fixed its nadir point.
const RESUME_AFTER: [u64; 3] = [3, 9, 12];
/// The epoch ends after every this many steps.
const EPOCH: u64 = 2;
/// Step with task 2 labelled on every other sample only, and step without task 2.
const PARTIAL_STEP: u64 = 5;
const ABSENT_STEP: u64 = 10;

/// Normal samples from the metl-data generator of `(seed, stream)`.
fn normals(seed: u64, stream: u64, n: usize) -> Vec<f32> {
    let mut rng = substream(seed, stream);
    (0..n).map(|_| rng.sample::<f32, _>(StandardNormal)).collect()
}

/// The seeded batch of `step` (a stream of batches, as a data loader gives): task `t`
/// regresses a fixed random function of the inputs, scaled by 10^(t−1) so that the
/// losses differ in scale.
fn batch(step: u64) -> MultiTaskBatch {
    let x = Tensor::from_slice(&normals(1, step, BATCH * INPUTS)).view([BATCH as i64, INPUTS as i64]);
    let targets = (0..TASKS)
        .map(|t| {
            let w = Tensor::from_slice(&normals(2, t as u64, INPUTS)).view([INPUTS as i64, 1]);
            (x.matmul(&w).tanh() + 1.5) * 10f64.powi(t as i32 - 1)
        })
        .collect();
    let batch = MultiTaskBatch::fully_labelled(x, targets);
    let labelled_2: Option<Vec<bool>> = match step {
        PARTIAL_STEP => Some((0..BATCH).map(|n| n % 2 == 0).collect()),
        ABSENT_STEP => Some(vec![false; BATCH]),
        _ => None,
    };
    if let Some(labelled) = labelled_2 {
        let column = Tensor::from_slice(&labelled);
        batch.mask.select(1, 2).copy_(&column);
    }
    batch
}

/// A training run: the variables (model and strategy), the trainer, the optimizer.
struct Run {
    vs: nn::VarStore,
    trainer: MtlStep<HardSharing<Mlp, Mlp>>,
    adam: Adam,
}

/// A fresh run of strategy `name` whose model starts at deterministic values set by
/// `phase` (not the global generator, which tests running in parallel share).
fn build(name: &str, phase: f64) -> Run {
    let vs = nn::VarStore::new(Device::Cpu);
    let encoder = MlpConfig::new([INPUTS as i64, 16, 16]).build().unwrap();
    let heads = (0..TASKS).map(|_| MlpConfig::new([16, 1]).build().unwrap()).collect();
    let model = HardSharing::new(encoder, heads);
    let params = model.init(&vs.root().sub("model")).unwrap();
    Waves { frequency: 0.7, phase, scale: 0.4 }.fill(params.tensors()).unwrap();
    let strategy = StrategyConfig::default_for(name)
        .unwrap()
        .build(&Setup { num_tasks: TASKS, path: vs.root().sub("mtl"), seed: 3 })
        .unwrap();
    let adam = Adam::new(&variables(&vs), AdamConfig::with_lr(1e-2)).unwrap();
    let trainer = MtlStep::new(model, params, vec![TaskLoss::Mse; TASKS], strategy).unwrap();
    Run { vs, trainer, adam }
}

/// Every variable of `vs` (the model's and the strategy's learned ones), sorted by name.
fn variables(vs: &nn::VarStore) -> Params {
    Params::from_var_store(vs, "").unwrap()
}

/// The host part as JSON (exact, NaN included) and the tensors of a strategy state.
fn parts(state: &StrategyState) -> (String, BTreeMap<String, Tensor>) {
    let json = serde_json::to_string(&state.host()).unwrap();
    (json, state.tensors.iter().map(|(k, t)| (k.clone(), t.copy())).collect())
}

fn assert_same_state(name: &str, a: &StrategyState, b: &StrategyState, what: &str) {
    let ((host_a, tensors_a), (host_b, tensors_b)) = (parts(a), parts(b));
    assert_eq!(host_a, host_b, "{name}: {what}");
    assert_eq!(tensors_a.keys().collect::<Vec<_>>(), tensors_b.keys().collect::<Vec<_>>(), "{name}: {what}");
    for (k, t) in &tensors_a {
        let u = &tensors_b[k];
        assert!(t.kind() == u.kind() && t.device() == u.device() && t.equal(u), "{name}: {what}, tensor {k}");
    }
}

/// Checkpoints `run` the way the runner does (parameters, optimizer state, the trainer's
/// state with its host part through JSON and its tensors through a copy), drops it, and
/// restores everything into a freshly built run that starts elsewhere.
fn resume(name: &str, run: Run, phase: f64) -> Run {
    let params = variables(&run.vs).deep_copy();
    let optimizer = run.adam.state().deep_copy();
    let optimizer_steps = run.adam.steps();
    let checkpoint = run.trainer.checkpoint();
    assert_eq!(checkpoint.steps, run.trainer.steps(), "{name}");
    let (json, tensors) = parts(&checkpoint.strategy);
    drop(run);

    let mut fresh = build(name, phase);
    tch::no_grad(|| variables(&fresh.vs).copy_from(&params)).unwrap();
    fresh.adam.load_state(&optimizer, optimizer_steps).unwrap();
    let host: StrategyStateHost = serde_json::from_str(&json).unwrap();
    let state = MtlStepState { steps: checkpoint.steps, strategy: StrategyState::from_parts(host, tensors) };
    fresh.trainer.restore(&state).unwrap();
    assert_eq!(fresh.trainer.steps(), checkpoint.steps, "{name}");
    assert_same_state(name, &fresh.trainer.strategy().state(), &checkpoint.strategy, "state after restore");
    fresh
}

/// What a run reports: per step the weights and losses (as bits, NaN included).
type Trace = Vec<(Vec<u64>, Vec<u64>)>;

/// Trains `name` for [`STEPS`] steps, resuming after the steps in `resume_after`.
fn train(name: &str, resume_after: &[u64]) -> (Trace, Run) {
    let mut run = build(name, 0.0);
    let validation = batch(1000);
    let mut trace = Trace::new();
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for step in 1..=STEPS {
        let report = run
            .trainer
            .step(&batch(step), &mut run.adam, Some(&validation))
            .unwrap_or_else(|e| panic!("{name}, step {step}: {e}"));
        trace.push((bits(&report.weights), bits(&report.losses)));
        if step % EPOCH == 0 {
            run.trainer.end_epoch();
        }
        if resume_after.contains(&step) {
            run = resume(name, run, step as f64);
        }
    }
    (trace, run)
}

#[test]
fn every_strategy_resumes_bit_identically() {
    for info in STRATEGIES {
        let name = info.name;
        let (trace, straight) = train(name, &[]);
        let (resumed_trace, resumed) = train(name, &RESUME_AFTER);
        for (step, (a, b)) in trace.iter().zip(&resumed_trace).enumerate() {
            assert_eq!(a, b, "{name}: step {} reports differ after resuming", step + 1);
        }
        let (p, q) = (variables(&straight.vs), variables(&resumed.vs));
        for ((n, a), b) in p.iter().zip(q.tensors()) {
            assert!(a.equal(b), "{name}: parameter {n} differs after resuming");
        }
        assert_eq!(straight.adam.steps(), resumed.adam.steps(), "{name}");
        assert_eq!(straight.trainer.steps(), resumed.trainer.steps(), "{name}");
        assert_same_state(
            name,
            &straight.trainer.strategy().state(),
            &resumed.trainer.strategy().state(),
            "final state",
        );
    }
}

#[test]
fn a_state_of_another_strategy_or_size_is_an_error_naming_the_entry() {
    let mut dwa = build("dwa", 0.0);
    dwa.trainer.step(&batch(1), &mut dwa.adam, None).unwrap();
    dwa.trainer.end_epoch();
    let state = dwa.trainer.checkpoint();
    // Into a stateless strategy: every entry is unexpected.
    let mut ew = build("ew", 0.0);
    match ew.trainer.restore(&state) {
        Err(MtlError::State { strategy: "ew", entry, .. }) => assert!(entry.contains('/'), "{entry}"),
        other => panic!("{other:?}"),
    }
    // Into another stateful strategy: its first own entry is missing.
    let mut pcgrad = build("pcgrad", 0.0);
    let err = pcgrad.trainer.restore(&state).unwrap_err();
    assert_eq!(err.to_string(), "state of strategy `pcgrad`: entry `words/rng` is missing");
    assert_eq!(pcgrad.trainer.steps(), 0, "a failed restore changes nothing");
    // A history whose length is not a multiple of the task count.
    let mut broken = dwa.trainer.checkpoint();
    broken.strategy.values.get_mut("history").unwrap().pop();
    let err = dwa.trainer.restore(&broken).unwrap_err();
    assert!(
        err.to_string().contains("`dwa`: entry `values/history` has 2 entries, not a multiple of 3"),
        "{err}"
    );
}
