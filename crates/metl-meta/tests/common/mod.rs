//! Fixtures shared by the integration tests: a tiny float64 Conv4 classifier and random
//! few-shot episodes for it.

#![allow(dead_code)]

use metl_data::TaskBatch;
use metl_models::{
    conv4::{Conv4, Conv4Config},
    head::LinearHead,
    BatchNormConfig, Classifier, Model, Params,
};
use tch::{nn, Device, Kind, Tensor};

/// The classifier of [`tiny_conv`].
pub type Net = Classifier<Conv4, LinearHead>;

/// Two conv blocks of 3 channels on 8×8 images (12 features), a 3-way linear head, float64.
pub fn tiny_conv(seed: i64, batch_norm: BatchNormConfig) -> (nn::VarStore, Net, Params) {
    tch::manual_seed(seed);
    let mut vs = nn::VarStore::new(Device::Cpu);
    vs.set_kind(Kind::Double);
    let config = Conv4Config { hidden: 3, blocks: 2, batch_norm, ..Conv4Config::new(1) };
    let model = Classifier::new(config.build().unwrap(), LinearHead::new(12, 3).unwrap());
    let params = model.init(&vs.root()).unwrap();
    (vs, model, params)
}

/// Three 3-way episodes, 2 shots and 2 queries per class, of random 8×8 images.
pub fn episodes(seed: i64) -> TaskBatch {
    tch::manual_seed(seed);
    let labels = Tensor::from_slice(&[0i64, 0, 1, 1, 2, 2]).view([1, 6]).repeat([3, 1]);
    let opts = (Kind::Double, Device::Cpu);
    TaskBatch {
        support_x: Tensor::rand([3, 6, 1, 8, 8], opts),
        support_y: labels.shallow_clone(),
        query_x: Tensor::rand([3, 6, 1, 8, 8], opts),
        query_y: labels,
    }
}

/// The tests of one binary run on parallel threads and share libtorch's global generator
/// (`tch::manual_seed`): every test that seeds it holds this lock for its whole body, so
/// that two learners built "from the same seed" really start from the same weights. In a
/// binary that uses it, every test that draws from the generator at all (a network's
/// initialisation, `Tensor::randn`) must hold it too: an unlocked draw can land between
/// another test's seeding and its draws.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The largest relative disagreement, over 4 seeded random directions `v`, between the
/// directional derivative `⟨analytic, v⟩` of a scalar function of `params` and its central
/// difference `(value(θ + εv) − value(θ − εv)) / 2ε` (ε = 1e-6, float64), with `params`
/// (the learner's own leaves) shifted in place and restored.
pub fn directional_error(params: &Params, analytic: &Params, mut value: impl FnMut() -> f64) -> f64 {
    let mut worst: f64 = 0.0;
    for d in 0..4 {
        tch::manual_seed(100 + d);
        let direction = params.map(|_, t| t.randn_like());
        let shift = |sign: f64| {
            tch::no_grad(|| {
                for (p, v) in params.tensors().iter().zip(direction.tensors()) {
                    let _ = p.shallow_clone().g_add_(&(v * (sign * 1e-6)));
                }
            })
        };
        shift(1.0);
        let plus = value();
        shift(-2.0);
        let minus = value();
        shift(1.0);
        let numeric = (plus - minus) / 2e-6;
        let exact = (analytic.flatten() * direction.flatten()).sum(Kind::Double).double_value(&[]);
        worst = worst.max((exact - numeric).abs() / exact.abs().max(numeric.abs()).max(1e-8));
    }
    worst
}

/// `(1 + s) (1/T) Σ_t g_t / ‖g_t‖` at the combiner's `s`-th step: a task combiner that is
/// not linear in the rows and keeps state (the step count) that checkpoints must hold.
pub struct NormalisedMean {
    /// Steps taken.
    pub steps: i64,
    /// The number of tasks every call must see, if checked (data-parallel: the whole
    /// meta-batch on every rank).
    pub expect_tasks: Option<usize>,
}

impl metl_meta::task_combiner::TaskGradientCombiner for NormalisedMean {
    fn name(&self) -> &str {
        "normalised_mean"
    }

    fn combine(
        &mut self,
        input: &metl_meta::task_combiner::TaskGradients<'_>,
    ) -> metl_meta::error::Result<Tensor> {
        if let Some(tasks) = self.expect_tasks {
            assert_eq!(input.num_tasks(), tasks, "the combiner sees the whole meta-batch");
        }
        self.steps += 1;
        let norms = input.jacobian.norm_scalaropt_dim(2, [1i64].as_slice(), true);
        Ok((input.jacobian / norms).mean_dim(0, false, None::<Kind>) * (1.0 + self.steps as f64))
    }

    fn state(&self) -> Params {
        Params::from_named(vec![("steps".into(), Tensor::from_slice(&[self.steps]))]).unwrap()
    }

    fn load_state(&mut self, state: &Params) -> metl_meta::error::Result<()> {
        self.steps = state.f_get("steps")?.int64_value(&[0]);
        Ok(())
    }
}
