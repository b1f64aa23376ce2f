//! Batch normalisation (Ioffe & Szegedy, ICML 2015, "Batch Normalization: Accelerating Deep
//! Network Training by Reducing Internal Covariate Shift") for explicit parameters, in the
//! three modes meta-learning needs.
//!
//! Per channel c, `y = γ_c (x − μ_c) / √(σ²_c + ε) + β_c`, where μ and σ² are either the
//! statistics of the current batch (mean and biased variance over every axis but the
//! channels) or running averages, updated at every training-mode pass by
//! `r ← (1 − m) r + m s` with `s` the batch mean and the *unbiased* batch variance (as
//! PyTorch does). γ (`weight`, initialised to 1) and β (`bias`, initialised to 0) are
//! parameters; the running averages are *buffers*: kept inside the layer, updated without
//! recording gradients, and saved with PyTorch's names.
//!
//! | [`BatchNormMode`] | `train = true` | `train = false` | buffers |
//! | --- | --- | --- | --- |
//! | `Batch` (MAML, transductive) | batch statistics | batch statistics | none |
//! | `Running` (PyTorch's default) | batch statistics; running averages updated | running averages | `running_mean` `[C]`, `running_var` `[C]`, `num_batches_tracked` `[]` |
//! | `PerStep` (MAML++) | batch statistics; the running averages of step `s` updated | the running averages of step `s` | `running_mean` `[S, C]`, `running_var` `[S, C]`, `num_batches_tracked` `[S]` |
//!
//! The step `s` is the one passed to [`crate::Model::forward_at_step`] (0 for
//! [`crate::Model::forward`]); steps at or beyond `S` use the last set, so an evaluation with
//! more inner steps than training reuses the final statistics. With
//! [`BatchNormConfig::per_step_affine`] (MAML++'s "BNWB") γ and β are `[S, C]` and step `s`
//! uses row `s` as well.
//!
//! In a task-batched pass every task is normalised with its own batch statistics and its own
//! γ, β; the running averages are updated as if the `T` tasks had been seen one after another
//! (the closed form `r ← (1 − m)^T r + Σ_t m (1 − m)^{T−1−t} s_t`), so the task-batched and
//! the per-task paths leave the same buffers. A new running average is a new tensor (never an
//! in-place write), so autograd graphs that saved the old one stay valid.

use crate::{
    error::{ModelError, Result},
    layers::Layout,
    model::Mode,
    params::ParamsBuilder,
    Params,
};
use serde::{Deserialize, Serialize};
use std::sync::{Mutex, MutexGuard};
use tch::{nn, Device, Kind, Tensor};

/// Which statistics batch norm normalises with (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchNormMode {
    /// Batch statistics at training and at test time, no buffers (PyTorch's
    /// `track_running_stats=False`; MAML's setting).
    Batch,
    /// Batch statistics and running-average updates in training, running averages in
    /// evaluation (PyTorch's default).
    #[default]
    Running,
    /// One set of running averages per inner-loop step (MAML++).
    PerStep,
}

/// Configuration of batch norm layers; the defaults are PyTorch's (`Running`, momentum 0.1,
/// ε = 1e-5).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchNormConfig {
    /// Which statistics to normalise with.
    pub mode: BatchNormMode,
    /// The number `S` of per-step statistics sets (`PerStep` only; default 1).
    pub steps: usize,
    /// Per-step γ and β, `[S, C]` (MAML++'s BNWB; `PerStep` only; default false).
    pub per_step_affine: bool,
    /// The running-average momentum `m` (default 0.1).
    pub momentum: f64,
    /// ε added to the variance (default 1e-5).
    pub eps: f64,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        Self { mode: BatchNormMode::Running, steps: 1, per_step_affine: false, momentum: 0.1, eps: 1e-5 }
    }
}

impl BatchNormConfig {
    /// Batch statistics always (MAML).
    pub fn batch() -> Self {
        Self { mode: BatchNormMode::Batch, ..Self::default() }
    }

    /// Running statistics (PyTorch's default).
    pub fn running() -> Self {
        Self::default()
    }

    /// Per-step running statistics for `steps` inner steps (MAML++).
    pub fn per_step(steps: usize) -> Self {
        Self { mode: BatchNormMode::PerStep, steps, ..Self::default() }
    }

    /// Whether the layer keeps running averages (buffers).
    pub fn tracks_running_stats(&self) -> bool {
        self.mode != BatchNormMode::Batch
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if !(self.momentum > 0.0 && self.momentum <= 1.0) {
            return Err(ModelError::invalid("batch_norm.momentum", self.momentum, "must be in (0, 1]"));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(ModelError::invalid("batch_norm.eps", self.eps, "must be > 0"));
        }
        if self.steps == 0 {
            return Err(ModelError::invalid("batch_norm.steps", 0, "must be >= 1"));
        }
        if self.per_step_affine && self.mode != BatchNormMode::PerStep {
            return Err(ModelError::invalid(
                "batch_norm.per_step_affine",
                true,
                "needs batch_norm.mode = \"per_step\"",
            ));
        }
        Ok(())
    }

    /// The number of statistics sets: `steps` for `PerStep`, else 1.
    fn sets(&self) -> usize {
        if self.mode == BatchNormMode::PerStep {
            self.steps
        } else {
            1
        }
    }
}

/// Running averages: `[C]` (or `[S, C]` per step) means and variances, and the number of
/// batches seen (`[]` or `[S]`, int64).
#[derive(Debug)]
struct RunningStats {
    mean: Tensor,
    var: Tensor,
    count: Tensor,
}

impl RunningStats {
    fn deep_copy(&self) -> Self {
        Self { mean: self.mean.copy(), var: self.var.copy(), count: self.count.copy() }
    }
}

/// A batch norm layer over `C` channels whose γ and β are the parameters `{name}.weight`
/// and `{name}.bias`, and whose running averages it keeps itself.
///
/// Cloning copies the running averages (a clone is an independent layer).
#[derive(Debug)]
pub struct BatchNorm {
    name: String,
    channels: i64,
    config: BatchNormConfig,
    stats: Mutex<Option<RunningStats>>,
}

impl Clone for BatchNorm {
    fn clone(&self) -> Self {
        let stats = self.lock().as_ref().map(RunningStats::deep_copy);
        Self {
            name: self.name.clone(),
            channels: self.channels,
            config: self.config,
            stats: Mutex::new(stats),
        }
    }
}

impl BatchNorm {
    /// A layer called `name` (e.g. `blocks.0.bn`) over `channels` channels. The
    /// configuration is validated by the model that owns the layer.
    pub fn new(name: impl Into<String>, channels: i64, config: BatchNormConfig) -> Self {
        Self { name: name.into(), channels, config, stats: Mutex::new(None) }
    }

    /// The layer's name (the prefix of its parameters and buffers).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration.
    pub fn config(&self) -> &BatchNormConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Option<RunningStats>> {
        // A panic while holding the lock cannot leave the stats half-updated (they are
        // replaced whole), so a poisoned lock is safe to use.
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn affine_shape(&self) -> Vec<i64> {
        if self.config.per_step_affine {
            vec![self.config.steps as i64, self.channels]
        } else {
            vec![self.channels]
        }
    }

    /// Registers γ (ones) and β (zeros) and resets the running averages on the builder's
    /// device and kind.
    pub fn init(&self, builder: &mut ParamsBuilder<'_>) -> Result<()> {
        let shape = self.affine_shape();
        builder.var(&format!("{}.weight", self.name), &shape, nn::Init::Const(1.0))?;
        builder.var(&format!("{}.bias", self.name), &shape, nn::Init::Const(0.0))?;
        let (device, kind) = (builder.path().device(), builder.path().kind());
        *self.lock() = self.config.tracks_running_stats().then(|| self.fresh_stats(device, kind));
        Ok(())
    }

    fn fresh_stats(&self, device: Device, kind: Kind) -> RunningStats {
        let mut shape = vec![self.channels];
        let mut count_shape = vec![];
        if self.config.mode == BatchNormMode::PerStep {
            shape.insert(0, self.config.steps as i64);
            count_shape.push(self.config.steps as i64);
        }
        RunningStats {
            mean: Tensor::zeros(shape.as_slice(), (kind, device)),
            var: Tensor::ones(shape.as_slice(), (kind, device)),
            count: Tensor::zeros(count_shape.as_slice(), (Kind::Int64, device)),
        }
    }

    /// The statistics set used at inner step `step`.
    fn set_index(&self, step: usize) -> usize {
        step.min(self.config.sets() - 1)
    }

    /// The running averages on `device` and `kind`, created (zeros and ones, as PyTorch
    /// starts) or converted there on first use.
    fn stats_on<'g>(
        &self,
        guard: &'g mut MutexGuard<'_, Option<RunningStats>>,
        device: Device,
        kind: Kind,
    ) -> &'g mut RunningStats {
        let stale = guard.as_ref().is_some_and(|s| s.mean.device() != device || s.mean.kind() != kind);
        if stale {
            let s = guard.take().expect("checked above");
            **guard = Some(RunningStats {
                mean: s.mean.to_device(device).to_kind(kind),
                var: s.var.to_device(device).to_kind(kind),
                count: s.count.to_device(device),
            });
        }
        guard.get_or_insert_with(|| self.fresh_stats(device, kind))
    }

    /// γ or β for `step`, flattened to `[T·C]` in the task layout.
    fn affine(&self, params: &Params, which: &str, set: usize, layout: Layout) -> Tensor {
        let t = &params[format!("{}.{which}", self.name).as_str()];
        let t = match (self.config.per_step_affine, layout) {
            (false, _) => t.shallow_clone(),
            (true, Layout::Single) => t.select(0, set as i64),
            (true, Layout::Tasks(_)) => t.select(1, set as i64),
        };
        match layout {
            Layout::Single => t,
            Layout::Tasks(tasks) => t.reshape([tasks * self.channels]),
        }
    }

    /// The forward pass for `x` `[B, C, ...]`.
    pub fn forward(&self, params: &Params, x: &Tensor, mode: Mode) -> Tensor {
        self.forward_in(params, x, mode, Layout::Single)
    }

    /// The forward pass in `layout`: channels on axis 1 (`T·C` of them, task-major, for
    /// [`Layout::Tasks`]).
    pub(crate) fn forward_in(&self, params: &Params, x: &Tensor, mode: Mode, layout: Layout) -> Tensor {
        let set = self.set_index(mode.step);
        let weight = self.affine(params, "weight", set, layout);
        let bias = self.affine(params, "bias", set, layout);
        let (momentum, eps) = (self.config.momentum, self.config.eps);
        let single_set = self.config.mode != BatchNormMode::PerStep;
        if mode.train && self.config.tracks_running_stats() && layout.tasks() == 1 && single_set {
            // One task, one set of averages: libtorch folds the batch statistics into the
            // running averages in the same pass (in place, as PyTorch's `BatchNorm2d`),
            // instead of a second reduction over the batch.
            let mut guard = self.lock();
            let stats = self.stats_on(&mut guard, x.device(), x.kind());
            let y = x.batch_norm(
                Some(&weight),
                Some(&bias),
                Some(&stats.mean),
                Some(&stats.var),
                true,
                momentum,
                eps,
                true,
            );
            let _ = stats.count.f_add_scalar_(1);
            return y;
        }
        if mode.train || !self.config.tracks_running_stats() {
            let y =
                x.batch_norm(Some(&weight), Some(&bias), None::<&Tensor>, None, true, momentum, eps, true);
            if mode.train && self.config.tracks_running_stats() {
                self.update(x, layout.tasks(), set);
            }
            y
        } else {
            let (mean, var) = {
                let mut guard = self.lock();
                let stats = self.stats_on(&mut guard, x.device(), x.kind());
                match self.config.mode {
                    BatchNormMode::PerStep => {
                        (stats.mean.select(0, set as i64).copy(), stats.var.select(0, set as i64).copy())
                    }
                    _ => (stats.mean.shallow_clone(), stats.var.shallow_clone()),
                }
            };
            let tasks = layout.tasks();
            let (mean, var) =
                if tasks > 1 { (mean.repeat([tasks]), var.repeat([tasks])) } else { (mean, var) };
            x.batch_norm(Some(&weight), Some(&bias), Some(&mean), Some(&var), false, momentum, eps, true)
        }
    }

    /// Folds the batch statistics of `tasks` tasks (channels task-major on axis 1) into the
    /// running averages of set `set`, as `tasks` sequential updates would.
    fn update(&self, x: &Tensor, tasks: i64, set: usize) {
        tch::no_grad(|| {
            let x = x.detach();
            let (device, kind, c) = (x.device(), x.kind(), self.channels);
            let dims: Vec<i64> = (0..x.dim() as i64).filter(|&d| d != 1).collect();
            let (var, mean) = x.var_mean_dim(dims.as_slice(), true, false);
            let m = self.config.momentum;
            // m (1 − m)^{T−1−t}, built on the device (no host-to-device copy, no sync).
            let exponents = Tensor::arange(tasks, (kind, device)).neg() + (tasks - 1) as f64;
            let weights = (Tensor::pow_scalar(1.0 - m, &exponents) * m).view([1, tasks]);
            let decay = (1.0 - m).powi(tasks as i32);
            let fold = |old: &Tensor, batch: &Tensor| {
                old * decay + weights.matmul(&batch.view([tasks, c])).view([c])
            };
            let mut guard = self.lock();
            let stats = self.stats_on(&mut guard, device, kind);
            if self.config.mode == BatchNormMode::PerStep {
                let s = set as i64;
                let (new_mean, new_var, new_count) =
                    (stats.mean.copy(), stats.var.copy(), stats.count.copy());
                new_mean.select(0, s).copy_(&fold(&stats.mean.select(0, s), &mean));
                new_var.select(0, s).copy_(&fold(&stats.var.select(0, s), &var));
                new_count.select(0, s).copy_(&(stats.count.select(0, s) + tasks));
                *stats = RunningStats { mean: new_mean, var: new_var, count: new_count };
            } else {
                *stats = RunningStats {
                    mean: fold(&stats.mean, &mean),
                    var: fold(&stats.var, &var),
                    count: &stats.count + tasks,
                };
            }
        });
    }

    /// The running averages as `{name}.running_mean`, `{name}.running_var` and
    /// `{name}.num_batches_tracked` (sharing storage); empty in `Batch` mode. Before the
    /// first pass they are PyTorch's initial values, on the CPU in `Float`.
    pub fn buffers(&self) -> Params {
        if !self.config.tracks_running_stats() {
            return Params::empty();
        }
        let mut guard = self.lock();
        let (device, kind) =
            guard.as_ref().map_or((Device::Cpu, Kind::Float), |s| (s.mean.device(), s.mean.kind()));
        let stats = self.stats_on(&mut guard, device, kind);
        Params::from_named(vec![
            (format!("{}.running_mean", self.name), stats.mean.shallow_clone()),
            (format!("{}.running_var", self.name), stats.var.shallow_clone()),
            (format!("{}.num_batches_tracked", self.name), stats.count.shallow_clone()),
        ])
        .expect("three distinct names")
    }

    /// Replaces the running averages by copies of `{name}.running_mean` and
    /// `{name}.running_var` in `src` (and `{name}.num_batches_tracked` when present), which
    /// must have this layer's shapes. Does nothing in `Batch` mode.
    pub fn load_buffers(&self, src: &Params) -> Result<()> {
        if !self.config.tracks_running_stats() {
            return Ok(());
        }
        let current = self.buffers();
        let mut loaded = Vec::with_capacity(3);
        for (name, dst) in current.iter() {
            let found = match src.get(name) {
                Some(t) => t,
                None if name.ends_with(".num_batches_tracked") => dst,
                None => {
                    return Err(ModelError::MissingParam { name: name.to_owned(), context: String::new() })
                }
            };
            if found.size() != dst.size() {
                return Err(ModelError::ShapeMismatch {
                    name: name.to_owned(),
                    expected: dst.size(),
                    found: found.size(),
                    context: String::new(),
                });
            }
            loaded.push(found.detach().to_device(dst.device()).to_kind(dst.kind()).copy());
        }
        let mut it = loaded.into_iter();
        let (mean, var, count) = (it.next(), it.next(), it.next());
        *self.lock() = Some(RunningStats {
            mean: mean.expect("three buffers"),
            var: var.expect("three buffers"),
            count: count.expect("three buffers"),
        });
        Ok(())
    }
}

/// The buffers of several layers, in order.
pub(crate) fn collect_buffers<'a>(layers: impl IntoIterator<Item = &'a BatchNorm>) -> Params {
    let entries: Vec<(String, Tensor)> = layers
        .into_iter()
        .flat_map(|bn| {
            let b = bn.buffers();
            b.iter().map(|(n, t)| (n.to_owned(), t.shallow_clone())).collect::<Vec<_>>()
        })
        .collect();
    Params::from_named(entries).expect("layer names are unique")
}

/// Loads the buffers of several layers.
pub(crate) fn load_all_buffers<'a>(
    layers: impl IntoIterator<Item = &'a BatchNorm>,
    src: &Params,
) -> Result<()> {
    layers.into_iter().try_for_each(|bn| bn.load_buffers(src))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn layer(config: BatchNormConfig) -> (BatchNorm, Params) {
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = BatchNorm::new("bn", 4, config);
        let mut builder = ParamsBuilder::new(&vs.root());
        bn.init(&mut builder).unwrap();
        (bn, builder.build().unwrap())
    }

    /// Per-task batch norm over `[B, T·C, H, W]` equals one batch norm per task (float32,
    /// outputs and gradients), and folds the running statistics as sequential updates do.
    #[test]
    fn task_layout_equals_per_task_normalisation() {
        let (t, c) = (3, 4);
        let (bn, params) = layer(BatchNormConfig::running());
        let looped_bn = bn.clone();
        let stacked = params.map(|_, p| {
            (Tensor::randn([t, c], (Kind::Float, Device::Cpu)) * 0.3 + p.detach().unsqueeze(0))
                .set_requires_grad(true)
        });
        let x = Tensor::randn([t, 5, c, 3, 3], (Kind::Float, Device::Cpu)) * 2.0 + 1.0;
        let merged = x.transpose(0, 1).reshape([5, t * c, 3, 3]);
        let batched = bn
            .forward_in(&stacked, &merged, Mode::train(), Layout::Tasks(t))
            .view([5, t, c, 3, 3])
            .transpose(0, 1);
        let looped = Tensor::stack(
            &(0..t)
                .map(|i| looped_bn.forward(&stacked.task(i as usize), &x.get(i), Mode::train()))
                .collect::<Vec<_>>(),
            0,
        );
        assert!((&batched - &looped).abs().max().double_value(&[]) < 1e-5);
        let w = Tensor::randn_like(&looped);
        let gb = stacked.grads(&(&batched * &w).sum(Kind::Float), false).unwrap();
        let gl = stacked.grads(&(&looped * &w).sum(Kind::Float), false).unwrap();
        for (a, b) in gb.tensors().iter().zip(gl.tensors()) {
            assert!((a - b).abs().max().double_value(&[]) < 1e-5);
        }
        for ((name, a), b) in bn.buffers().iter().zip(looped_bn.buffers().tensors()) {
            assert!(
                (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[]) < 1e-6,
                "{name}"
            );
        }
        assert_eq!(bn.buffers()["bn.num_batches_tracked"].int64_value(&[]), 3);
    }

    /// Running statistics follow PyTorch: `r ← 0.9 r + 0.1 s` with the unbiased variance.
    #[test]
    fn running_statistics_follow_pytorch() {
        let (bn, params) = layer(BatchNormConfig::running());
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 6.0]).view([4, 1]).repeat([1, 4]);
        let _ = bn.forward(&params, &x, Mode::train());
        let buffers = bn.buffers();
        // mean 3, unbiased variance 14/3.
        assert!((buffers["bn.running_mean"].double_value(&[0]) - 0.3).abs() < 1e-6);
        assert!((buffers["bn.running_var"].double_value(&[0]) - (0.9 + 0.1 * 14.0 / 3.0)).abs() < 1e-6);
        // Evaluation normalises with the running statistics.
        let y = bn.forward(&params, &x, Mode::eval());
        let expected = (1.0 - 0.3) / (0.9f64 + 0.1 * 14.0 / 3.0 + 1e-5).sqrt();
        assert!((y.double_value(&[0, 0]) - expected).abs() < 1e-5);
    }

    #[test]
    fn batch_mode_has_no_buffers_and_ignores_train() {
        let (bn, params) = layer(BatchNormConfig::batch());
        let x = Tensor::randn([6, 4], (Kind::Float, Device::Cpu));
        let a = bn.forward(&params, &x, Mode::train());
        let b = bn.forward(&params, &x, Mode::eval());
        assert!(a.allclose(&b, 0.0, 0.0, false));
        assert!(bn.buffers().is_empty());
    }

    #[test]
    fn buffers_load_with_shape_checks_and_configs_validate() {
        let (bn, _) = layer(BatchNormConfig::per_step(2));
        let wrong = Params::from_named(vec![
            ("bn.running_mean".into(), Tensor::zeros([4], (Kind::Float, Device::Cpu))),
            ("bn.running_var".into(), Tensor::ones([4], (Kind::Float, Device::Cpu))),
        ])
        .unwrap();
        let err = bn.load_buffers(&wrong).unwrap_err().to_string();
        assert!(err.contains("bn.running_mean") && err.contains("[2, 4]"), "{err}");
        let right = Params::from_named(vec![
            ("bn.running_mean".into(), Tensor::full([2, 4], 0.5, (Kind::Float, Device::Cpu))),
            ("bn.running_var".into(), Tensor::full([2, 4], 2.0, (Kind::Float, Device::Cpu))),
        ])
        .unwrap();
        bn.load_buffers(&right).unwrap();
        assert_eq!(bn.buffers()["bn.running_var"].double_value(&[1, 3]), 2.0);
        let bad = BatchNormConfig { momentum: 0.0, ..BatchNormConfig::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("batch_norm.momentum"));
        let bad = BatchNormConfig { per_step_affine: true, ..BatchNormConfig::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("batch_norm.per_step_affine"));
    }
}
