//! The per-task Jacobian of the shared parameters, in `f64`: the task-batched pass through
//! the encoder (the heads on a detached representation) gives the rows of one backward pass
//! per task through the whole network, to rounding, for an MLP, a Conv4 with batch norm,
//! MMoE and a model with a shared parameter after the representation; both are the
//! central finite differences of the losses; and every strategy that consumes per-task
//! parameter gradients trains alike with either path.

use metl_data::MultiTaskBatch;
use metl_models::{
    conv4::Conv4Config,
    gradcheck::Waves,
    head::LinearHead,
    mlp::{Activation, MlpConfig},
    multitask::{decoder_task, split_by_task, Mmoe, MmoeConfig},
    optim::{Sgd, SgdConfig},
    HardSharing, MultiTaskModel, Params, ParamsBuilder, TaskLoss,
};
use metl_mtl::{
    registry::STRATEGIES, strategy::GradientSpace, Combination, MtlBackward, MtlStep, Needs, Representation,
    Setup, StepInput, Strategy, StrategyConfig, TaskLosses,
};
use std::sync::{Arc, Mutex};
use tch::{nn, Device, Kind, Tensor};

const TASKS: usize = 3;

/// Records the Jacobian it is given; weighs every task 1.
struct Capture(Arc<Mutex<Option<Tensor>>>);

impl Strategy for Capture {
    fn name(&self) -> &'static str {
        "capture"
    }

    fn needs(&self) -> Needs {
        Needs::gradients(GradientSpace::Parameters)
    }

    fn combine(&mut self, input: &StepInput<'_>) -> metl_mtl::error::Result<Combination> {
        *self.0.lock().unwrap() = Some(input.jacobian()?.copy());
        Ok(Combination::weighted(vec![1.0; input.tasks.len()]))
    }
}

/// `model` with fresh `f64` parameters set to fixed values (not the global generator,
/// which tests running in parallel share).
fn init<M: MultiTaskModel>(model: &M, vs: &mut nn::VarStore) -> Params {
    let params = model.init(&vs.root().sub("model")).unwrap();
    vs.double();
    Waves { frequency: 0.7, phase: 0.0, scale: 0.5 }.fill(params.tensors()).unwrap();
    params
}

/// Inputs `[n, ...shape]` and `TASKS` regression targets `[n, 1]`, fixed values.
fn batch(shape: &[i64], n: i64) -> MultiTaskBatch {
    let mut size = vec![n];
    size.extend_from_slice(shape);
    let numel = size.iter().product::<i64>();
    let x = (Tensor::arange(numel, (Kind::Double, Device::Cpu)) * 1.3).sin().view(size.as_slice());
    let targets = (0..TASKS)
        .map(|t| (Tensor::arange(n, (Kind::Double, Device::Cpu)) * (0.5 + t as f64)).cos().unsqueeze(1))
        .collect();
    MultiTaskBatch::fully_labelled(x, targets)
}

/// The losses of `batch`, the heads on a detached representation (`split`) or not.
fn losses<M: MultiTaskModel>(model: &M, params: &Params, batch: &MultiTaskBatch, split: bool) -> TaskLosses {
    let x = &batch.inputs;
    let (outputs, representation) = if split {
        let r = Representation::detach(model.encode(params, x, true));
        (model.decode(params, x, &r.leaf, true), Some(r))
    } else {
        (model.forward(params, x, true), None)
    };
    let losses = outputs.iter().zip(&batch.targets).map(|(o, y)| Some(TaskLoss::Mse.loss(o, y))).collect();
    TaskLosses { losses, representation }
}

/// The `[T, P]` Jacobian of the shared parameters through the batched pass (`split`) or
/// one pass per task.
fn jacobian<M: MultiTaskModel>(model: &M, params: &Params, batch: &MultiTaskBatch, split: bool) -> Tensor {
    let (shared, specific) = split_by_task(model, params);
    let seen = Arc::new(Mutex::new(None));
    let sample = losses(model, params, batch, split);
    MtlBackward::new(&shared, &specific).run(&mut Capture(Arc::clone(&seen)), &[sample], 1, None).unwrap();
    let j = seen.lock().unwrap().take().unwrap();
    j
}

/// `max |a − b| / max |b|`.
fn relative(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a - b).abs().max()).unwrap() / f64::try_from(b.abs().max()).unwrap()
}

fn assert_paths_agree<M: MultiTaskModel>(what: &str, model: M, shape: &[i64], n: i64) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let params = init(&model, &mut vs);
    let b = batch(shape, n);
    let batched = jacobian(&model, &params, &b, true);
    let looped = jacobian(&model, &params, &b, false);
    assert_eq!(batched.size(), looped.size(), "{what}");
    assert!(f64::try_from(looped.abs().max()).unwrap() > 0.0, "{what}: a zero Jacobian tests nothing");
    let err = relative(&batched, &looped);
    assert!(err < 1e-10, "{what}: relative difference {err:e}");
}

#[test]
fn the_batched_pass_gives_the_rows_of_one_pass_per_task() {
    let heads = || (0..TASKS).map(|_| MlpConfig::new([6, 1]).build().unwrap()).collect::<Vec<_>>();
    let mlp = |activation| MlpConfig::new([4, 8, 7, 6]).with_activation(activation).build().unwrap();
    for activation in [Activation::Relu, Activation::Tanh, Activation::Gelu] {
        assert_paths_agree(
            &format!("MLP {activation:?}"),
            HardSharing::new(mlp(activation), heads()),
            &[4],
            9,
        );
    }
    let conv = Conv4Config::new(1).with_hidden(4).build().unwrap();
    let conv_heads = (0..TASKS).map(|_| LinearHead::new(4, 1).unwrap()).collect();
    assert_paths_agree("Conv4", HardSharing::new(conv, conv_heads), &[1, 16, 16], 5);
    let expert = MlpConfig::new([4, 8, 6]).build().unwrap();
    let mmoe = Mmoe::new(&expert, heads(), &[4], MmoeConfig { num_experts: 2 }).unwrap();
    assert_paths_agree("MMoE", mmoe, &[4], 9);
    assert_paths_agree("shared scale after the representation", ScaledHeads, &[4], 9);
}

/// `z = tanh(W x)` shared, `ŷₜ = s · aₜᵀ z` with a shared scale `s` used after the
/// representation, and a shared `u` used by the heads only.
struct ScaledHeads;

impl MultiTaskModel for ScaledHeads {
    fn num_tasks(&self) -> usize {
        TASKS
    }

    fn init(&self, path: &nn::Path<'_>) -> metl_models::error::Result<Params> {
        let mut b = ParamsBuilder::new(path);
        b.var("encoder.weight", &[5, 4], nn::Init::Const(0.0))?;
        b.var("scale", &[1], nn::Init::Const(0.0))?;
        b.var("offset", &[1], nn::Init::Const(0.0))?;
        for t in 0..TASKS {
            b.var(&format!("decoders.{t}.weight"), &[1, 5], nn::Init::Const(0.0))?;
        }
        b.build()
    }

    fn task_of(&self, name: &str) -> Option<usize> {
        decoder_task(name)
    }

    fn encode(&self, params: &Params, x: &Tensor, _train: bool) -> Tensor {
        x.matmul(&params["encoder.weight"].tr()).tanh()
    }

    fn decode(&self, params: &Params, _x: &Tensor, z: &Tensor, _train: bool) -> Vec<Tensor> {
        (0..TASKS)
            .map(|t| {
                z.linear::<&Tensor>(&params[format!("decoders.{t}.weight").as_str()], None) * &params["scale"]
                    + &params["offset"] * (t as f64 + 1.0)
            })
            .collect()
    }
}

#[test]
fn both_paths_are_the_finite_differences_of_the_losses() {
    let encoder = MlpConfig::new([3, 4, 3]).with_activation(Activation::Tanh).build().unwrap();
    let model =
        HardSharing::new(encoder, (0..TASKS).map(|_| MlpConfig::new([3, 1]).build().unwrap()).collect());
    let mut vs = nn::VarStore::new(Device::Cpu);
    let params = init(&model, &mut vs);
    let b = batch(&[3], 5);
    let (shared, _) = split_by_task(&model, &params);
    let loss_values = || -> Vec<f64> {
        let out = model.forward(&params, &b.inputs, true);
        out.iter().zip(&b.targets).map(|(o, y)| TaskLoss::Mse.loss(o, y).double_value(&[])).collect()
    };
    let eps = 1e-6;
    let mut columns = Vec::new();
    tch::no_grad(|| {
        for p in shared.tensors() {
            let flat = p.view([-1]);
            for i in 0..p.numel() as i64 {
                let mut entry = flat.get(i);
                let v = entry.double_value(&[]);
                let _ = entry.fill_(v + eps);
                let plus = loss_values();
                let _ = entry.fill_(v - eps);
                let minus = loss_values();
                let _ = entry.fill_(v);
                columns.push(plus.iter().zip(&minus).map(|(a, b)| (a - b) / (2.0 * eps)).collect::<Vec<_>>());
            }
        }
    });
    let fd = Tensor::from_slice(&columns.concat()).view([-1, TASKS as i64]).tr();
    for split in [true, false] {
        let j = jacobian(&model, &params, &b, split);
        let err = relative(&j, &fd);
        assert!(err < 1e-7, "split {split}: relative difference to finite differences {err:e}");
    }
}

/// `M` without its shared representation: [`MtlStep`] then takes one pass per task.
struct PerTask<M>(M);

impl<M: MultiTaskModel> MultiTaskModel for PerTask<M> {
    fn num_tasks(&self) -> usize {
        self.0.num_tasks()
    }

    fn init(&self, path: &nn::Path<'_>) -> metl_models::error::Result<Params> {
        self.0.init(path)
    }

    fn task_of(&self, name: &str) -> Option<usize> {
        self.0.task_of(name)
    }

    fn has_shared_representation(&self) -> bool {
        false
    }

    fn encode(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        self.0.encode(params, x, train)
    }

    fn decode(&self, params: &Params, x: &Tensor, z: &Tensor, train: bool) -> Vec<Tensor> {
        self.0.decode(params, x, z, train)
    }
}

/// The model's parameters after 3 steps of strategy `name` with SGD.
fn trained<M: MultiTaskModel>(model: M, name: &str) -> Vec<f64> {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let strategy = StrategyConfig::default_for(name)
        .unwrap()
        .build(&Setup { num_tasks: TASKS, path: vs.root().sub("mtl"), seed: 3 })
        .unwrap();
    let params = init(&model, &mut vs);
    let mut sgd =
        Sgd::new(&Params::from_var_store(&vs, "").unwrap(), SgdConfig { lr: 0.05, ..SgdConfig::default() })
            .unwrap();
    let mut trainer = MtlStep::new(model, params, vec![TaskLoss::Mse; TASKS], strategy).unwrap();
    let (train, validation) = (batch(&[4], 12), batch(&[4], 8));
    for _ in 0..3 {
        trainer.step(&train, &mut sgd, Some(&validation)).unwrap();
    }
    Vec::<f64>::try_from(trainer.params().flatten().detach()).unwrap()
}

#[test]
fn every_strategy_with_parameter_gradients_trains_alike_on_either_path() {
    let model = || {
        let encoder = MlpConfig::new([4, 8, 6]).build().unwrap();
        HardSharing::new(encoder, (0..TASKS).map(|_| MlpConfig::new([6, 1]).build().unwrap()).collect())
    };
    let mut checked = Vec::new();
    for info in STRATEGIES {
        if info.needs().unwrap().gradients != Some(GradientSpace::Parameters) {
            continue;
        }
        let batched = trained(model(), info.name);
        let looped = trained(PerTask(model()), info.name);
        let scale = looped.iter().fold(0f64, |m, v| m.max(v.abs()));
        let err = batched.iter().zip(&looped).fold(0f64, |m, (a, b)| m.max((a - b).abs())) / scale;
        assert!(err < 1e-10, "{}: relative difference {err:e}", info.name);
        checked.push(info.name);
    }
    for name in ["pcgrad", "cagrad", "gradvac", "mgda", "nash_mtl", "imtl_g", "upgrad"] {
        assert!(checked.contains(&name), "{name} was not checked: {checked:?}");
    }
}
