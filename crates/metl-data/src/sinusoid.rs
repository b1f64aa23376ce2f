//! The sinusoid regression task family of Finn et al. (2017), "Model-Agnostic
//! Meta-Learning for Fast Adaptation of Deep Networks", section 5.1.
//!
//! A task is a sine wave `y = A · sin(x − φ)` with amplitude `A ~ U[0.1, 5.0]` and phase
//! `φ ~ U[0, π]`; inputs are drawn `x ~ U[−5, 5]`. A learner sees `K` points of a new
//! task and must regress the whole curve. All three ranges are configurable.

#[cfg(feature = "images")]
use crate::episode::Prefetcher;
use crate::{
    error::{DataError, Result},
    rng::{seeded, substream, Rng},
    TaskBatch,
};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

/// Ranges of the sinusoid family. The defaults are Finn et al.'s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinusoidConfig {
    /// Amplitude range `[low, high]`; default `[0.1, 5.0]`.
    pub amplitude: [f64; 2],
    /// Phase range `[low, high]` in radians; default `[0, π]`.
    pub phase: [f64; 2],
    /// Input range `[low, high]`; default `[−5, 5]`.
    pub x_range: [f64; 2],
}

impl Default for SinusoidConfig {
    fn default() -> Self {
        Self { amplitude: [0.1, 5.0], phase: [0.0, std::f64::consts::PI], x_range: [-5.0, 5.0] }
    }
}

impl SinusoidConfig {
    /// Checks that every range is finite and not reversed.
    pub fn validate(&self) -> Result<()> {
        for (field, [lo, hi]) in [
            ("sinusoid.amplitude", self.amplitude),
            ("sinusoid.phase", self.phase),
            ("sinusoid.x_range", self.x_range),
        ] {
            if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                return Err(DataError::invalid(
                    field,
                    format!("[{lo}, {hi}]"),
                    "must be a finite range [low, high] with low <= high",
                ));
            }
        }
        Ok(())
    }
}

/// One sinusoid task: `y = amplitude · sin(x − phase)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SinusoidTask {
    /// The amplitude `A`.
    pub amplitude: f64,
    /// The phase `φ`.
    pub phase: f64,
}

impl SinusoidTask {
    /// The target at `x`.
    pub fn eval(&self, x: f64) -> f64 {
        self.amplitude * (x - self.phase).sin()
    }
}

/// A seeded stream of sinusoid tasks and their points.
#[derive(Debug, Clone)]
pub struct SinusoidTasks {
    config: SinusoidConfig,
    rng: Rng,
}

fn uniform(rng: &mut Rng, [lo, hi]: [f64; 2]) -> f64 {
    if lo == hi {
        lo
    } else {
        rng.gen_range(lo..hi)
    }
}

impl SinusoidTasks {
    /// A task stream with the given ranges, deterministic from `seed`.
    ///
    /// Call [`SinusoidConfig::validate`] first on user-provided ranges.
    pub fn new(config: SinusoidConfig, seed: u64) -> Self {
        Self::from_rng(config, seeded(seed))
    }

    /// A task stream drawing from `rng` (e.g. a [`crate::rng::substream`], so that
    /// training and test tasks come from independent streams of one seed).
    pub fn from_rng(config: SinusoidConfig, rng: Rng) -> Self {
        Self { config, rng }
    }

    /// The ranges in use.
    pub fn config(&self) -> &SinusoidConfig {
        &self.config
    }

    /// Draws a task.
    pub fn sample_task(&mut self) -> SinusoidTask {
        let amplitude = uniform(&mut self.rng, self.config.amplitude);
        let phase = uniform(&mut self.rng, self.config.phase);
        SinusoidTask { amplitude, phase }
    }

    /// Draws `n` inputs of the configured range.
    pub fn sample_inputs(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| uniform(&mut self.rng, self.config.x_range)).collect()
    }

    /// Draws `tasks` tasks with `support` and `query` points each, as a [`TaskBatch`] of
    /// `Float` tensors shaped `[tasks, support, 1]` and `[tasks, query, 1]` on `device`.
    pub fn sample_batch(
        &mut self,
        tasks: usize,
        support: usize,
        query: usize,
        device: Device,
    ) -> Result<TaskBatch> {
        Ok(self.sample_batch_with_tasks(tasks, support, query, device)?.0)
    }

    /// Like [`SinusoidTasks::sample_batch`], also returning the tasks drawn.
    pub fn sample_batch_with_tasks(
        &mut self,
        tasks: usize,
        support: usize,
        query: usize,
        device: Device,
    ) -> Result<(TaskBatch, Vec<SinusoidTask>)> {
        if tasks == 0 {
            return Err(DataError::invalid("tasks", tasks, "must be at least 1"));
        }
        let mut drawn = Vec::with_capacity(tasks);
        let (mut sx, mut sy, mut qx, mut qy) = (vec![], vec![], vec![], vec![]);
        for _ in 0..tasks {
            let task = self.sample_task();
            for (n, xs, ys) in [(support, &mut sx, &mut sy), (query, &mut qx, &mut qy)] {
                for x in self.sample_inputs(n) {
                    xs.push(x as f32);
                    ys.push(task.eval(x) as f32);
                }
            }
            drawn.push(task);
        }
        let t = tasks as i64;
        let make = |v: &[f32], n: usize| -> Result<Tensor> {
            Ok(Tensor::f_from_slice(v)?.f_view([t, n as i64, 1])?.f_to_device(device)?)
        };
        let batch = TaskBatch {
            support_x: make(&sx, support)?,
            support_y: make(&sy, support)?,
            query_x: make(&qx, query)?,
            query_y: make(&qy, query)?,
        };
        Ok((batch, drawn))
    }
}

/// An endless, seekable stream of sinusoid meta-batches: batch `i` holds `tasks` tasks
/// drawn from ChaCha8 stream `i` of the seed, so that any batch can be drawn without the
/// ones before it (resuming, sharding) and a prefetched stream equals a direct one.
#[derive(Debug, Clone)]
pub struct SinusoidBatches {
    config: SinusoidConfig,
    seed: u64,
    next: u64,
    shape: [usize; 3],
}

impl SinusoidBatches {
    /// The queue depth for [`SinusoidBatches::prefetch`] that `metl train` and `metl bench`
    /// use. A batch is a few kilobytes and a MAML step on it about a millisecond, so a
    /// deep queue costs nothing and rides out the prefetch thread's waits for a core that
    /// libtorch's compute threads hold.
    pub const PREFETCH_DEPTH: usize = 64;

    /// Batches of `tasks` tasks with `support` and `query` points each, from batch 0.
    pub fn new(
        config: SinusoidConfig,
        seed: u64,
        tasks: usize,
        support: usize,
        query: usize,
    ) -> Result<Self> {
        config.validate()?;
        if tasks == 0 {
            return Err(DataError::invalid("tasks", tasks, "must be at least 1"));
        }
        Ok(Self { config, seed, next: 0, shape: [tasks, support, query] })
    }

    /// Continues at batch `index`.
    pub fn seek(&mut self, index: u64) {
        self.next = index;
    }

    /// The next batch, on `device`.
    pub fn next_batch(&mut self, device: Device) -> Result<TaskBatch> {
        let mut tasks = SinusoidTasks::from_rng(self.config, substream(self.seed, self.next));
        self.next += 1;
        let [t, s, q] = self.shape;
        tasks.sample_batch(t, s, q, device)
    }

    /// The same batches drawn ahead on a background thread, at most `depth` waiting
    /// (feature `images`, which holds [`Prefetcher`]).
    #[cfg(feature = "images")]
    pub fn prefetch(mut self, depth: usize, device: Device) -> Prefetcher {
        Prefetcher::from_fn(depth, move || self.next_batch(device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_the_formula_and_ranges() {
        let mut tasks = SinusoidTasks::new(SinusoidConfig::default(), 7);
        let (batch, drawn) = tasks.sample_batch_with_tasks(50, 10, 5, Device::Cpu).unwrap();
        let x = Vec::<f32>::try_from(batch.support_x.flatten(0, -1)).unwrap();
        let y = Vec::<f32>::try_from(batch.support_y.flatten(0, -1)).unwrap();
        for (i, task) in drawn.iter().enumerate() {
            assert!((0.1..5.0).contains(&task.amplitude));
            assert!((0.0..std::f64::consts::PI).contains(&task.phase));
            for j in 0..10 {
                let (xv, yv) = (x[i * 10 + j] as f64, y[i * 10 + j] as f64);
                assert!((-5.0..5.0).contains(&xv));
                assert!((task.eval(xv) - yv).abs() < 1e-5);
            }
        }
        assert_eq!(batch.query_y.size(), [50, 5, 1]);
    }

    #[test]
    fn same_seed_same_tasks() {
        let a = SinusoidTasks::new(SinusoidConfig::default(), 3).sample_batch(4, 3, 3, Device::Cpu);
        let b = SinusoidTasks::new(SinusoidConfig::default(), 3).sample_batch(4, 3, 3, Device::Cpu);
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a.query_y.equal(&b.query_y) && a.support_x.equal(&b.support_x));
        let c = SinusoidTasks::new(SinusoidConfig::default(), 4).sample_batch(4, 3, 3, Device::Cpu);
        assert!(!a.support_x.equal(&c.unwrap().support_x));
    }

    #[test]
    #[cfg(feature = "images")]
    fn batches_are_seekable_and_prefetched_unchanged() {
        let direct = SinusoidBatches::new(SinusoidConfig::default(), 9, 3, 4, 5).unwrap();
        let mut a = direct.clone();
        let first: Vec<TaskBatch> = (0..4).map(|_| a.next_batch(Device::Cpu).unwrap()).collect();
        assert_eq!(first[0].support_x.size(), [3, 4, 1]);
        assert!(!first[0].support_x.equal(&first[1].support_x));
        let mut later = direct.clone();
        later.seek(2);
        assert!(later.next_batch(Device::Cpu).unwrap().query_y.equal(&first[2].query_y));
        let mut ahead = direct.prefetch(2, Device::Cpu);
        for batch in &first {
            let b = ahead.next_batch().unwrap();
            assert!(b.support_x.equal(&batch.support_x) && b.query_y.equal(&batch.query_y));
        }
        assert!(SinusoidBatches::new(SinusoidConfig::default(), 9, 0, 4, 5).is_err());
    }

    #[test]
    fn reversed_range_is_rejected() {
        let config = SinusoidConfig { amplitude: [5.0, 0.1], ..Default::default() };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with("sinusoid.amplitude = [5, 0.1]"), "{err}");
    }
}
