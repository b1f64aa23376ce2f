//! The synthetic multi-task regression of Chen et al. (2018), "GradNorm: Gradient
//! Normalization for Adaptive Loss Balancing in Deep Multitask Networks", section 4 (the
//! toy example): tasks that share structure but whose losses differ in scale by orders of
//! magnitude.
//!
//! Task `i` regresses `f_i(x) = σ_i · tanh((B + ε_i) x)` with `x ∈ R^250`, `f_i(x) ∈ R^100`.
//! `B` (shared by all tasks) and `ε_i` (task-specific) are constant matrices drawn once,
//! elementwise i.i.d. `N(0, 10)` and `N(0, 3.5)`. The scalars `σ_i` set each task's output
//! scale, hence the scale of its squared loss (∝ σ_i²): with `σ = [1, 100]` an unweighted
//! sum of losses is dominated by the second task.
//!
//! What the paper leaves open, and what is used here (all configurable):
//! - `N(0, 10)` and `N(0, 3.5)` are read as *standard deviations* 10 and 3.5 (as in the
//!   widely used PyTorch re-implementation of the toy example);
//! - inputs are drawn uniformly in `[−1, 1]^250` and rescaled to unit L2 norm (likewise);
//! - `σ` for `T = 2` is `[1, 100]` (the paper's figure); for `T = 10` the paper only says
//!   the scales span two orders of magnitude: [`SyntheticRegressionConfig::t10`] spaces ten
//!   values geometrically from 1 to 100;
//! - split sizes: 10,000 / 1,000 / 1,000 samples by default.

use super::{check_indices, MultiTaskBatch, MultiTaskDataset, TaskInfo, TaskKind};
use crate::{
    error::{DataError, Result},
    rng::substream,
    Split,
};
use rand::Rng as _;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Parameters of the generator. The defaults are the paper's `T = 2` setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticRegressionConfig {
    /// The output scale `σ_i` of each task (one entry per task); default `[1, 100]`.
    pub sigmas: Vec<f64>,
    /// Input dimension; default 250.
    pub input_dim: usize,
    /// Output dimension of every task; default 100.
    pub output_dim: usize,
    /// Standard deviation of the shared matrix `B`; default 10.
    pub shared_std: f64,
    /// Standard deviation of the task matrices `ε_i`; default 3.5.
    pub task_std: f64,
    /// Samples in the train, validation and test splits; default `[10000, 1000, 1000]`.
    pub sizes: [usize; 3],
    /// Seed of the matrices and inputs.
    pub seed: u64,
}

impl Default for SyntheticRegressionConfig {
    fn default() -> Self {
        Self::t2()
    }
}

impl SyntheticRegressionConfig {
    /// The paper's two tasks, `σ = [1, 100]`.
    pub fn t2() -> Self {
        Self {
            sigmas: vec![1.0, 100.0],
            input_dim: 250,
            output_dim: 100,
            shared_std: 10.0,
            task_std: 3.5,
            sizes: [10_000, 1_000, 1_000],
            seed: 0,
        }
    }

    /// Ten tasks with `σ_i = 100^(i/9)`, `i = 0..9`: 1, 1.67, 2.78, ..., 100.
    pub fn t10() -> Self {
        Self::geometric(10, 1.0, 100.0)
    }

    /// `tasks` tasks with scales spaced geometrically from `low` to `high`.
    pub fn geometric(tasks: usize, low: f64, high: f64) -> Self {
        let sigmas = (0..tasks)
            .map(|i| if tasks == 1 { low } else { low * (high / low).powf(i as f64 / (tasks - 1) as f64) })
            .collect();
        Self { sigmas, ..Self::t2() }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.sigmas.is_empty() {
            return Err(DataError::invalid("synthetic.sigmas", "[]", "must list at least one task scale"));
        }
        if let Some(s) = self.sigmas.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(DataError::invalid("synthetic.sigmas", s, "every scale must be finite and > 0"));
        }
        for (field, v) in [("synthetic.input_dim", self.input_dim), ("synthetic.output_dim", self.output_dim)]
        {
            if v == 0 {
                return Err(DataError::invalid(field, v, "must be at least 1"));
            }
        }
        for (field, v) in [("synthetic.shared_std", self.shared_std), ("synthetic.task_std", self.task_std)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(DataError::invalid(field, v, "must be finite and >= 0"));
            }
        }
        if self.sizes[0] == 0 {
            return Err(DataError::invalid(
                "synthetic.sizes",
                format!("{:?}", self.sizes),
                "train size must be >= 1",
            ));
        }
        Ok(())
    }
}

/// The GradNorm toy regression, generated in memory (see the module docs).
#[derive(Debug, Clone)]
pub struct SyntheticRegression {
    config: SyntheticRegressionConfig,
    tasks: Vec<TaskInfo>,
    /// `B + ε_i` of every task, row-major `[T, output_dim, input_dim]`.
    weights: Vec<f32>,
    /// Inputs of each split, row-major `[N, input_dim]`.
    inputs: [Vec<f32>; 3],
}

impl SyntheticRegression {
    /// Generates the matrices and the inputs of the three splits from `config.seed`.
    pub fn new(config: SyntheticRegressionConfig) -> Result<Self> {
        config.validate()?;
        let (t, o, d) = (config.sigmas.len(), config.output_dim, config.input_dim);
        let mut rng = substream(config.seed, 0);
        let normal = |std: f64| Normal::new(0.0, std).expect("std validated finite and >= 0");
        let shared: Vec<f64> = normal(config.shared_std).sample_iter(&mut rng).take(o * d).collect();
        let task_noise = normal(config.task_std);
        let mut weights = Vec::with_capacity(t * o * d);
        for _ in 0..t {
            weights.extend(shared.iter().map(|b| (b + task_noise.sample(&mut rng)) as f32));
        }
        let inputs = Split::ALL.map(|split| {
            let mut rng = substream(config.seed, 1 + split.index() as u64);
            let mut xs = Vec::with_capacity(config.sizes[split.index()] * d);
            for _ in 0..config.sizes[split.index()] {
                let x: Vec<f64> = (0..d).map(|_| rng.gen_range(-1.0..=1.0)).collect();
                let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
                xs.extend(x.iter().map(|v| (v / norm) as f32));
            }
            xs
        });
        let tasks = (0..t)
            .map(|i| TaskInfo { name: format!("task{i}"), kind: TaskKind::Regression { dims: o } })
            .collect();
        Ok(Self { config, tasks, weights, inputs })
    }

    /// The generator's parameters.
    pub fn config(&self) -> &SyntheticRegressionConfig {
        &self.config
    }

    /// Input `index` of `split`.
    pub fn input(&self, split: Split, index: usize) -> &[f32] {
        let d = self.config.input_dim;
        &self.inputs[split.index()][index * d..(index + 1) * d]
    }

    /// `f_task(x)` computed in `f64` on the CPU (the reference for the batched targets).
    pub fn target(&self, task: usize, x: &[f32]) -> Vec<f64> {
        let (o, d) = (self.config.output_dim, self.config.input_dim);
        let w = &self.weights[task * o * d..(task + 1) * o * d];
        let sigma = self.config.sigmas[task];
        (0..o)
            .map(|r| {
                let dot: f64 = w[r * d..(r + 1) * d].iter().zip(x).map(|(a, b)| *a as f64 * *b as f64).sum();
                sigma * dot.tanh()
            })
            .collect()
    }
}

impl MultiTaskDataset for SyntheticRegression {
    fn tasks(&self) -> &[TaskInfo] {
        &self.tasks
    }

    fn input_shape(&self) -> Vec<i64> {
        vec![self.config.input_dim as i64]
    }

    fn len(&self, split: Split) -> usize {
        self.config.sizes[split.index()]
    }

    /// Inputs `[N, input_dim]` and targets `[N, output_dim]` per task, all `Float`.
    /// Targets are computed on `device` (float32 matrix products).
    fn batch(&self, split: Split, indices: &[usize], device: Device) -> Result<MultiTaskBatch> {
        check_indices(split, indices, self.len(split))?;
        let (t, o, d) =
            (self.config.sigmas.len() as i64, self.config.output_dim as i64, self.config.input_dim);
        let mut xs = Vec::with_capacity(indices.len() * d);
        for &i in indices {
            xs.extend_from_slice(self.input(split, i));
        }
        let x = Tensor::f_from_slice(&xs)?.f_view([indices.len() as i64, d as i64])?.f_to_device(device)?;
        let w = Tensor::f_from_slice(&self.weights)?.f_view([t, o, d as i64])?.f_to_device(device)?;
        let sigmas: Vec<f32> = self.config.sigmas.iter().map(|&s| s as f32).collect();
        let sigma = Tensor::f_from_slice(&sigmas)?.f_view([t, 1, 1])?.f_to_device(device)?;
        // [T, N, O] = σ_t · tanh(x W_tᵀ).
        let y = x.f_matmul(&w.f_transpose(1, 2)?)?.f_tanh()?.f_mul(&sigma)?;
        let targets = y.f_unbind(0)?.into_iter().map(|t| t.f_contiguous()).collect::<Result<_, _>>()?;
        Ok(MultiTaskBatch::fully_labelled(x.f_to_kind(Kind::Float)?, targets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(sigmas: Vec<f64>) -> SyntheticRegression {
        let config =
            SyntheticRegressionConfig { sigmas, sizes: [64, 8, 8], ..SyntheticRegressionConfig::t2() };
        SyntheticRegression::new(config).unwrap()
    }

    #[test]
    fn batch_targets_match_the_closed_form() {
        let data = small(vec![1.0, 100.0]);
        let batch = data.batch(Split::Train, &[3, 0, 17], Device::Cpu).unwrap();
        assert_eq!(batch.inputs.size(), [3, 250]);
        assert_eq!(batch.targets.len(), 2);
        for (task, target) in batch.targets.iter().enumerate() {
            assert_eq!(target.size(), [3, 100]);
            for (row, &i) in [3usize, 0, 17].iter().enumerate() {
                let got = Vec::<f32>::try_from(target.get(row as i64)).unwrap();
                let want = data.target(task, data.input(Split::Train, i));
                for (g, w) in got.iter().zip(&want) {
                    // float32 products of 250 terms of size ~10: relative error ~1e-5.
                    assert!((*g as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()), "task {task}: {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn inputs_have_unit_norm_and_scales_follow_sigma() {
        let data = small(vec![1.0, 100.0]);
        let x = data.input(Split::Val, 5);
        let norm: f64 = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6);
        let batch = data.batch(Split::Train, &(0..64).collect::<Vec<_>>(), Device::Cpu).unwrap();
        let rms = |t: &Tensor| t.square().mean(Kind::Float).sqrt().double_value(&[]);
        let (a, b) = (rms(&batch.targets[0]), rms(&batch.targets[1]));
        // |tanh| <= 1, and |(B + ε)x| is ~10, so targets are mostly saturated: rms close to σ.
        assert!(a > 0.5 && a <= 1.0, "{a}");
        assert!((90.0..110.0).contains(&(b / a)), "{b} / {a}");
        assert!(bool::try_from(batch.mask.all()).unwrap());
    }

    #[test]
    fn the_matrices_have_the_configured_statistics() {
        let data = small(vec![1.0, 1.0, 1.0]);
        let per_task = 100 * 250;
        let w = |t: usize| &data.weights[t * per_task..(t + 1) * per_task];
        // B + ε_i has variance 10² + 3.5²; the difference of two tasks 2 · 3.5².
        let var = w(0).iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / per_task as f64;
        assert!((var - 112.25).abs() < 0.05 * 112.25, "{var}");
        let diff =
            w(0).iter().zip(w(2)).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / per_task as f64;
        assert!((diff - 24.5).abs() < 0.05 * 24.5, "{diff}");
    }

    #[test]
    fn same_seed_same_data_and_t10_spans_two_orders() {
        let a = small(vec![1.0, 2.0]);
        let b = small(vec![1.0, 2.0]);
        assert_eq!(a.weights, b.weights);
        assert_eq!(a.inputs, b.inputs);
        let c = SyntheticRegression::new(SyntheticRegressionConfig {
            seed: 1,
            sizes: [4, 1, 1],
            ..a.config.clone()
        });
        assert_ne!(a.weights, c.unwrap().weights);
        let t10 = SyntheticRegressionConfig::t10();
        assert_eq!(t10.sigmas.len(), 10);
        assert!((t10.sigmas[0] - 1.0).abs() < 1e-12 && (t10.sigmas[9] - 100.0).abs() < 1e-9);
    }

    #[test]
    fn bad_configs_and_indices_are_rejected() {
        let bad = SyntheticRegressionConfig { sigmas: vec![1.0, -2.0], ..Default::default() };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.starts_with("synthetic.sigmas = -2"), "{err}");
        let data = small(vec![1.0]);
        let err = data.batch(Split::Test, &[8], Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("below the 8 samples of split test"), "{err}");
    }
}
