//! The backward engine: representation and parameter spaces agree where they must,
//! task-specific parameters get their own plain gradient, masked tasks drop out, and a
//! NaN loss is an error naming the task and the step.

use metl_data::MultiTaskBatch;
use metl_models::{
    gradcheck::Waves,
    mlp::MlpConfig,
    multitask::{decoder_task, split_by_task},
    optim::{Adam, AdamConfig},
    HardSharing, MultiTaskModel, Params, ParamsBuilder, TaskLoss,
};
use metl_mtl::{
    strategy::GradientSpace, MtlBackward, MtlError, MtlStep, Representation, Setup, StrategyConfig,
    TaskLosses,
};
use tch::{nn, Device, Kind, Tensor};

/// `z = W x` (no bias) shared; `ŷₜ = aₜᵀ z + bₜ` per task.
struct LinearShared {
    tasks: usize,
}

impl MultiTaskModel for LinearShared {
    fn num_tasks(&self) -> usize {
        self.tasks
    }

    fn init(&self, path: &nn::Path<'_>) -> metl_models::error::Result<Params> {
        let mut b = ParamsBuilder::new(path);
        b.var("encoder.weight", &[5, 6], nn::Init::Randn { mean: 0.0, stdev: 0.5 })?;
        for t in 0..self.tasks {
            b.var(&format!("decoders.{t}.weight"), &[1, 5], nn::Init::Randn { mean: 0.0, stdev: 1.0 })?;
            b.var(&format!("decoders.{t}.bias"), &[1], nn::Init::Const(0.1))?;
        }
        b.build()
    }

    fn task_of(&self, name: &str) -> Option<usize> {
        decoder_task(name)
    }

    fn encode(&self, params: &Params, x: &Tensor, _train: bool) -> Tensor {
        x.matmul(&params["encoder.weight"].tr())
    }

    fn decode(&self, params: &Params, _x: &Tensor, z: &Tensor, _train: bool) -> Vec<Tensor> {
        (0..self.tasks)
            .map(|t| {
                z.linear(
                    &params[format!("decoders.{t}.weight").as_str()],
                    Some(&params[format!("decoders.{t}.bias").as_str()]),
                )
            })
            .collect()
    }
}

/// Shared-encoder gradient and reported weights of `config` on the linear model, in the
/// representation or the parameter space.
fn encoder_gradient(config: StrategyConfig, representation: bool) -> (Vec<f32>, Vec<f64>) {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = LinearShared { tasks: 3 };
    let params = model.init(&vs.root()).unwrap();
    // Fixed values (not the global generator, which tests running in parallel share).
    Waves { frequency: 0.7, phase: 0.0, scale: 1.0 }.fill(params.tensors()).unwrap();
    let (shared, specific) = split_by_task(&model, &params);
    let mut strategy = config.build(&Setup { num_tasks: 3, path: vs.root().sub("mtl"), seed: 0 }).unwrap();
    // Orthonormal inputs (rows of the identity): XXᵀ = I, so the Gramian of the encoder's
    // gradients RᵢᵀX equals the Gramian of the representation gradients Rᵢ.
    let x = Tensor::eye(6, (Kind::Float, Device::Cpu)).narrow(0, 0, 4);
    let targets: Vec<Tensor> = (0..3)
        .map(|t| Tensor::from_slice(&[1.0f32, -2.0, 0.5, 3.0]).unsqueeze(1) * (t as f64 - 1.0))
        .collect();
    let (losses, rep) = if representation {
        let r = Representation::detach(model.encode(&params, &x, true));
        let out = model.decode(&params, &x, &r.leaf, true);
        (out, Some(r))
    } else {
        (model.forward(&params, &x, true), None)
    };
    let losses = losses.iter().zip(&targets).map(|(o, y)| Some(TaskLoss::Mse.loss(o, y))).collect();
    let report = MtlBackward::new(&shared, &specific)
        .run(strategy.as_mut(), &[TaskLosses { losses, representation: rep }], 1, None)
        .unwrap();
    (Vec::<f32>::try_from(params["encoder.weight"].grad().reshape([-1])).unwrap(), report.weights)
}

#[test]
fn representation_and_parameter_spaces_agree_for_a_linear_encoder_on_orthonormal_inputs() {
    for (param, rep) in [("mgda", "mgda_ub"), ("aligned_mtl", "aligned_mtl_ub")] {
        let (gp, wp) = encoder_gradient(StrategyConfig::default_for(param).unwrap(), false);
        let (gr, wr) = encoder_gradient(StrategyConfig::default_for(rep).unwrap(), true);
        for (a, b) in wp.iter().zip(&wr) {
            assert!((a - b).abs() < 1e-4 * (1.0 + a.abs()), "{param}: {wp:?} vs {wr:?}");
        }
        for (a, b) in gp.iter().zip(&gr) {
            assert!((a - b).abs() < 1e-4, "{param}: {gp:?} vs {gr:?}");
        }
    }
    // Any Gramian weighting can run in either space.
    let mut config = StrategyConfig::default_for("imtl_g").unwrap();
    let (gp, _) = encoder_gradient(config.clone(), false);
    if let StrategyConfig::ImtlG(c) = &mut config {
        c.space = GradientSpace::Representation;
    }
    let (gr, _) = encoder_gradient(config, true);
    assert!(gp.iter().zip(&gr).all(|(a, b)| (a - b).abs() < 1e-4));
}

fn hard_sharing(
    tasks: usize,
) -> (nn::VarStore, HardSharing<metl_models::mlp::Mlp, metl_models::mlp::Mlp>, Params) {
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = HardSharing::new(
        MlpConfig::new([4, 8]).build().unwrap(),
        (0..tasks).map(|_| MlpConfig::new([8, 2]).build().unwrap()).collect(),
    );
    let params = model.init(&vs.root()).unwrap();
    (vs, model, params)
}

#[test]
fn task_specific_parameters_get_their_own_plain_gradient() {
    let (vs, model, params) = hard_sharing(3);
    let (shared, specific) = split_by_task(&model, &params);
    let x = Tensor::randn([6, 4], (Kind::Float, Device::Cpu));
    let outputs = model.forward(&params, &x, true);
    let losses: Vec<Tensor> =
        outputs.iter().enumerate().map(|(t, o)| (o * (t as f64 + 1.0)).square().mean(Kind::Float)).collect();
    // The expected head gradients, one autograd call per task.
    let expected: Vec<Vec<Tensor>> = losses
        .iter()
        .zip(&specific)
        .map(|(l, s)| Tensor::run_backward(&[l], s.tensors(), true, false))
        .collect();
    let mut mgda = StrategyConfig::default_for("mgda")
        .unwrap()
        .build(&Setup { num_tasks: 3, path: vs.root(), seed: 0 })
        .unwrap();
    let report =
        MtlBackward::new(&shared, &specific).run(mgda.as_mut(), &[TaskLosses::all(losses)], 1, None).unwrap();
    assert!((report.weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    for (s, e) in specific.iter().zip(&expected) {
        for (p, g) in s.tensors().iter().zip(e) {
            assert!(p.grad().allclose(g, 1e-6, 1e-7, false));
        }
    }
}

#[test]
fn masked_tasks_drop_out_and_partial_labels_use_their_rows_only() {
    let (vs, model, params) = hard_sharing(3);
    let strategy = StrategyConfig::default_for("pcgrad")
        .unwrap()
        .build(&Setup { num_tasks: 3, path: vs.root().sub("mtl"), seed: 0 })
        .unwrap();
    let mut adam = Adam::new(&params, AdamConfig::with_lr(1e-3)).unwrap();
    let mut trainer =
        MtlStep::new(model, params.shallow_clone(), vec![TaskLoss::CrossEntropy; 3], strategy).unwrap();
    let x = Tensor::randn([4, 4], (Kind::Float, Device::Cpu));
    // Samples 0, 1 belong to task 0, samples 2, 3 to task 1; task 2 has no label.
    let ids = Tensor::from_slice(&[0i64, 0, 1, 1]);
    let targets = vec![
        Tensor::from_slice(&[1i64, 0, 0, 0]),
        Tensor::from_slice(&[0i64, 0, 1, 1]),
        Tensor::zeros([4], (Kind::Int64, Device::Cpu)),
    ];
    let batch = MultiTaskBatch::one_task_per_sample(x.shallow_clone(), targets, ids);
    let expected_loss0 = tch::no_grad(|| {
        trainer.model().forward(&params, &x, false)[0]
            .narrow(0, 0, 2)
            .cross_entropy_for_logits(&Tensor::from_slice(&[1i64, 0]))
            .double_value(&[])
    });
    let report = trainer.step(&batch, &mut adam, None).unwrap();
    assert_eq!(report.tasks, [0, 1]);
    assert_eq!(report.weights[2], 0.0);
    assert!(report.losses[2].is_nan());
    assert!((report.losses[0] - expected_loss0).abs() < 1e-6);
    let head2 = &params["decoders.2.layers.0.weight"];
    assert!(!head2.grad().defined() || head2.grad().abs().sum(Kind::Double).double_value(&[]) == 0.0);
    assert!(params["decoders.1.layers.0.weight"].grad().abs().sum(Kind::Double).double_value(&[]) > 0.0);
}

#[test]
fn a_batch_without_any_label_is_skipped_and_counted() {
    let (vs, model, params) = hard_sharing(2);
    let strategy = StrategyConfig::default_for("dwa")
        .unwrap()
        .build(&Setup { num_tasks: 2, path: vs.root(), seed: 0 })
        .unwrap();
    let mut adam = Adam::new(&params, AdamConfig::with_lr(1e-2)).unwrap();
    let mut trainer = MtlStep::new(model, params.shallow_clone(), vec![TaskLoss::Mse; 2], strategy).unwrap();
    let x = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
    let y = Tensor::ones([3, 2], (Kind::Float, Device::Cpu));
    let mut batch = MultiTaskBatch::fully_labelled(x, vec![y.shallow_clone(), y]);
    batch.mask = batch.mask.zeros_like();
    let before: Vec<Tensor> = params.tensors().iter().map(|t| t.detach().copy()).collect();
    let report = trainer.step(&batch, &mut adam, None).unwrap();
    assert!(report.tasks.is_empty() && report.weights == [0.0, 0.0]);
    assert!(report.losses.iter().all(|l| l.is_nan()));
    assert_eq!(trainer.steps(), 1);
    for (p, b) in params.tensors().iter().zip(&before) {
        assert!(p.equal(b), "a parameter changed on a batch without labels");
    }
}

#[test]
fn a_nan_loss_names_the_task_and_the_step() {
    let (vs, model, params) = hard_sharing(2);
    let strategy = StrategyConfig::default_for("ew")
        .unwrap()
        .build(&Setup { num_tasks: 2, path: vs.root(), seed: 0 })
        .unwrap();
    let mut adam = Adam::new(&params, AdamConfig::default()).unwrap();
    let mut trainer = MtlStep::new(model, params, vec![TaskLoss::Mse; 2], strategy).unwrap();
    let x = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
    let good = Tensor::zeros([3, 2], (Kind::Float, Device::Cpu));
    let batch =
        MultiTaskBatch::fully_labelled(x.shallow_clone(), vec![good.shallow_clone(), good.shallow_clone()]);
    trainer.step(&batch, &mut adam, None).unwrap();
    let bad = MultiTaskBatch::fully_labelled(x, vec![good.shallow_clone(), good.fill(f64::NAN)]);
    let err = trainer.step(&bad, &mut adam, None).unwrap_err();
    assert!(matches!(err, MtlError::NonFiniteLoss { task: 1, step: 2, .. }), "{err}");
    assert!(err.to_string().contains("task 1") && err.to_string().contains("step 2"));
}

#[test]
fn representation_strategies_need_the_detached_representation() {
    let (vs, model, params) = hard_sharing(2);
    let (shared, specific) = split_by_task(&model, &params);
    let x = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
    let losses = model.forward(&params, &x, true).iter().map(|o| o.square().mean(Kind::Float)).collect();
    let mut ub = StrategyConfig::default_for("mgda_ub")
        .unwrap()
        .build(&Setup { num_tasks: 2, path: vs.root(), seed: 0 })
        .unwrap();
    let err = MtlBackward::new(&shared, &specific)
        .run(ub.as_mut(), &[TaskLosses::all(losses)], 1, None)
        .unwrap_err();
    assert!(err.to_string().contains("mgda_ub"), "{err}");
}
