//! Tests of `[task_weighting]`: the closed-form PCGrad direction on two conflicting tasks
//! (given rows, and through MAML's own meta-gradients), equal weighting = the plain MAML
//! step, which strategies are accepted (and that their state refers to no task), the config
//! errors, checkpoint/resume of stateful strategies, and a short learning run.

use super::*;
use crate::experiment::Experiment;
use metl_data::{
    rng::substream,
    sinusoid::{SinusoidConfig, SinusoidTasks},
    TaskBatch,
};
use metl_meta::{
    maml::{Maml, MamlConfig},
    MetaLearner,
};
use metl_models::{mlp::MlpConfig, TaskLoss};
use metl_mtl::STRATEGIES;

/// The strategies that may weight a meta-batch (the module documentation's list).
const ACCEPTED: &[&str] = &[
    "ew",
    "rlw",
    "gls",
    "scale_invariant",
    "mgda",
    "pcgrad",
    "imtl_g",
    "cagrad",
    "nash_mtl",
    "aligned_mtl",
    "fairgrad",
    "upgrad",
    "dualproj",
    "config",
];

fn combiner(name: &str) -> StrategyCombiner {
    StrategyCombiner::new(StrategyConfig::default_for(name).unwrap(), 0, Device::Cpu).unwrap()
}

/// A float64 MAML (one inner step) on an MLP 1-16-1, the same on every call: its
/// parameters are set from a formula, not drawn from libtorch's global generator, which
/// tests running in parallel threads draw from and reseed between one call and the next
/// (the PCGrad test once compared two differently initialised models: error 0.36).
fn maml() -> Maml<metl_models::mlp::Mlp> {
    let mut vs = nn::VarStore::new(Device::Cpu);
    vs.set_kind(Kind::Double);
    let (mlp, theta) = MlpConfig::new([1, 16, 1]).init(&vs.root()).unwrap();
    let mut variables: Vec<_> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (i, (_, mut v)) in variables.into_iter().enumerate() {
            let n = v.numel() as i64;
            let values = ((Tensor::arange(n, (Kind::Double, Device::Cpu)) * 0.7 + i as f64).sin() * 0.5)
                .view(v.size().as_slice());
            v.copy_(&values);
        }
    });
    let config = MamlConfig { inner_lr: 0.05, ..MamlConfig::default() };
    Maml::new(mlp, theta, &vs, TaskLoss::Mse, config).unwrap()
}

/// PCGrad's update over two rows, `(g₁ − (g₁·g₂/‖g₂‖²) g₂) + (g₂ − (g₁·g₂/‖g₁‖²) g₁)` when
/// `g₁·g₂ < 0`, over `T = 2`.
fn pcgrad_closed_form(g1: &Tensor, g2: &Tensor) -> Tensor {
    let dot = g1.dot(g2).double_value(&[]);
    assert!(dot < 0.0, "the rows must conflict for the test to mean something ({dot})");
    let (n1, n2) = (g1.dot(g1).double_value(&[]), g2.dot(g2).double_value(&[]));
    ((g1 - g2 * (dot / n2)) + (g2 - g1 * (dot / n1))) / 2.0
}

#[test]
fn pcgrad_of_two_conflicting_rows_is_the_closed_form() {
    let jacobian = Tensor::from_slice2(&[[1.0, 0.0], [-1.0, 2.0]]);
    let d = combiner("pcgrad")
        .combine(&TaskGradients { step: 1, losses: &[0.3, 0.4], jacobian: &jacobian })
        .unwrap();
    // (0.8, 0.4) + (0, 2), halved.
    assert_eq!(Vec::<f64>::try_from(d).unwrap(), vec![0.4, 1.2]);
}

#[test]
fn maml_with_pcgrad_steps_along_pcgrad_of_its_per_task_meta_gradients() {
    // Two tasks on the same inputs with opposite targets: conflicting meta-gradients.
    let x = Tensor::linspace(-2.5, 2.0, 6, (Kind::Double, Device::Cpu)).view([1, 6, 1]).repeat([2, 1, 1]);
    let sign = Tensor::from_slice(&[3.0, -3.0]).view([2, 1, 1]);
    let y = x.sin() * sign;
    let batch =
        TaskBatch { support_x: x.shallow_clone(), support_y: y.shallow_clone(), query_x: x, query_y: y };
    let plain = maml();
    let (jacobian, _) = plain.task_meta_gradients(&batch).unwrap();
    let expected = pcgrad_closed_form(&jacobian.get(0), &jacobian.get(1));
    let mut weighted = maml();
    weighted.set_task_combiner(Box::new(combiner("pcgrad"))).unwrap();
    let (_, direction) = weighted.meta_gradient(&batch).unwrap();
    let error = (direction.flatten() - &expected).abs().max().double_value(&[]);
    assert!(error < 1e-12 * expected.abs().max().double_value(&[]), "{error:e}");
    // Equal weighting is the plain mean.
    let mut ew = maml();
    ew.set_task_combiner(Box::new(combiner("ew"))).unwrap();
    let (ew_direction, mean) = (ew.meta_gradient(&batch).unwrap().1, plain.meta_gradient(&batch).unwrap().1);
    let error = (ew_direction.flatten() - mean.flatten()).abs().max().double_value(&[]);
    assert!(error < 1e-14, "ew vs plain: {error:e}");
}

#[test]
fn exactly_the_strategies_without_per_task_state_are_accepted() {
    let accepted: Vec<&str> = STRATEGIES
        .iter()
        .map(|s| s.name)
        .filter(|n| refusal(&StrategyConfig::default_for(n).unwrap()).is_none())
        .collect();
    assert_eq!(accepted, ACCEPTED);
    // What the accepted ones keep between steps refers to no task: a random generator, or
    // (Nash-MTL) the last weights that only start the next solve.
    tch::manual_seed(0);
    for name in ACCEPTED {
        let mut c = combiner(name);
        for step in 1..=2 {
            let jacobian = Tensor::randn([3, 5], (Kind::Double, Device::Cpu));
            let d =
                c.combine(&TaskGradients { step, losses: &[0.5, 0.7, 0.2], jacobian: &jacobian }).unwrap();
            assert_eq!(d.size(), [5], "{name}");
        }
        let names: Vec<String> = c.state().names().to_vec();
        let allowed: &[&str] = match *name {
            "nash_mtl" => &["values.alpha", "words.steps"],
            _ => &["words.rng"],
        };
        assert!(names.iter().all(|n| allowed.contains(&n.as_str())), "{name}: {names:?}");
    }
    let representation: StrategyConfig =
        toml::from_str("name = \"pcgrad\"\nspace = \"representation\"").unwrap();
    assert!(refusal(&representation).unwrap().contains("shared representation"));
}

fn experiment(extra: &str) -> Experiment {
    toml::from_str(&format!(
        "name = \"t\"\n[train]\niterations = 2\n[data.sinusoid]\n[model.mlp]\nwidths = [1, 8, 1]\n{extra}"
    ))
    .unwrap()
}

#[test]
fn refused_strategies_and_learners_are_config_errors_that_say_why() {
    let maml = "[meta.maml]\n";
    for (strategy, why) in [
        ("uw", "learns a parameter per task"),
        ("dwa", "per-task loss histories"),
        ("gradvac", "per pair of tasks"),
        ("famo", "losses after the step"),
        ("graddrop", "shared representation"),
        ("auto_lambda", "is bilevel (a validation batch"),
        ("modo", "3 independent gradient samples"),
    ] {
        let err =
            experiment(&format!("{maml}[task_weighting]\nname = \"{strategy}\"\n")).validate().unwrap_err();
        let err = err.to_string();
        assert!(err.contains(strategy) && err.contains(why) && err.contains("new at every step"), "{err}");
    }
    let nash =
        experiment(&format!("{maml}[task_weighting]\nname = \"nash_mtl\"\nupdate_weights_every = 5\n"));
    assert!(nash.validate().unwrap_err().to_string().contains("update_weights_every = 5"));
    let ok = experiment(&format!("{maml}[task_weighting]\nname = \"upgrad\"\n"));
    ok.validate().unwrap();
    let reptile = experiment("[meta.reptile]\n[task_weighting]\nname = \"pcgrad\"\n");
    reptile.validate().unwrap();
    let err = crate::train::meta::learner_for(&reptile, Device::Cpu, 0).err().unwrap().to_string();
    assert!(
        err.contains("task_weighting with meta.reptile") && err.contains("only the MAML family"),
        "{err}"
    );
}

#[test]
fn resumed_runs_continue_exactly_with_stateful_strategies() {
    let batches: Vec<TaskBatch> = {
        let mut tasks = SinusoidTasks::from_rng(SinusoidConfig::default(), substream(1, 0));
        let double = |t: Tensor| t.to_kind(Kind::Double);
        (0..4)
            .map(|_| {
                let b = tasks.sample_batch(3, 5, 5, Device::Cpu).unwrap();
                TaskBatch {
                    support_x: double(b.support_x),
                    support_y: double(b.support_y),
                    query_x: double(b.query_x),
                    query_y: double(b.query_y),
                }
            })
            .collect()
    };
    for name in ["pcgrad", "nash_mtl", "rlw"] {
        let make = || {
            let mut m = maml();
            m.set_task_combiner(Box::new(combiner(name))).unwrap();
            m
        };
        let mut uninterrupted = make();
        for b in &batches {
            uninterrupted.meta_train_step(b).unwrap();
        }
        let mut first = make();
        for b in &batches[..2] {
            first.meta_train_step(b).unwrap();
        }
        let saved = first.state();
        assert!(saved.names().iter().any(|n| n.starts_with("task_combiner.")), "{name}: {:?}", saved.names());
        let mut resumed = make();
        resumed.load_state(&saved).unwrap();
        for b in &batches[2..] {
            resumed.meta_train_step(b).unwrap();
        }
        let (a, b) = (resumed.state(), uninterrupted.state());
        assert_eq!(a.names(), b.names(), "{name}");
        let diff = (a.flatten().to_kind(Kind::Double) - b.flatten().to_kind(Kind::Double)).abs().max();
        assert_eq!(diff.double_value(&[]), 0.0, "{name}: resumed differs from uninterrupted");
    }
}

#[test]
fn maml_with_upgrad_learns_sinusoids() {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let (mlp, theta) = MlpConfig::new([1, 40, 40, 1]).init(&vs.root()).unwrap();
    let config = MamlConfig { outer_lr: 3e-3, ..MamlConfig::default() };
    let mut maml = Maml::new(mlp, theta, &vs, TaskLoss::Mse, config).unwrap();
    maml.set_task_combiner(Box::new(combiner("upgrad"))).unwrap();
    let family = SinusoidConfig::default();
    let mut train = SinusoidTasks::from_rng(family, substream(0, 0));
    for _ in 0..300 {
        maml.meta_train_step(&train.sample_batch(10, 10, 10, Device::Cpu).unwrap()).unwrap();
    }
    let mut test = SinusoidTasks::from_rng(family, substream(100, 2));
    let batches: Vec<_> = (0..2).map(|_| test.sample_batch(100, 10, 50, Device::Cpu).unwrap()).collect();
    let e = metl_meta::evaluate(&maml, batches, &[0, 5]).unwrap();
    let (pre, post) = (e[0].loss.mean, e[1].loss.mean);
    println!("MAML + UPGrad, 300 steps: test MSE pre {pre:.3}, after 5 steps {post:.3}");
    assert!(post < 0.6 * pre, "after 5 steps {post} vs pre-adaptation {pre}");
}
