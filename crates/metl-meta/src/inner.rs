//! [`InnerLoop`]: the one inner loop of every gradient-based learner in this crate —
//! MAML and first-order MAML, Meta-SGD, ANIL, MAML++, Reptile, and the head fitting of the
//! fine-tuning baselines.
//!
//! From fast weights φ⁽⁰⁾ it takes `k` steps on a support loss `L^s`,
//!
//! ```text
//! gʲ = ∇φ L^s(φ⁽ʲ⁾),   φ⁽ʲ⁺¹⁾ = φ⁽ʲ⁾ − αʲ ⊙ u(gʲ),
//! ```
//!
//! where the learning rate αʲ is a scalar, a tensor shaped like each parameter (Meta-SGD), or
//! a scalar per parameter tensor and step (MAML++), see [`InnerLr`]; and `u` is the update
//! direction of plain SGD (`u(g) = g`), SGD with momentum, or Adam ([`InnerOptimizer`]).
//!
//! With `create_graph` the gradients gʲ stay differentiable, so that the meta-gradient of a
//! loss at φ⁽ᵏ⁾ flows back through every step (second order); without it they are constants
//! (first order). What is adapted, and on which inputs, is the caller's choice: the loop only
//! sees a [`Params`] (all weights, the head alone, task-stacked or not) and a closure that
//! returns the support loss at given weights.

use crate::error::{MetaError, Result};
use metl_models::Params;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// How the inner loop scales gradients.
#[derive(Debug, Clone, Copy)]
pub enum InnerLr<'a> {
    /// One scalar α for every parameter and step (MAML, ANIL, Reptile).
    Fixed(f64),
    /// One tensor per parameter, shaped like it, used at every step (Meta-SGD's α).
    PerParameter(&'a Params),
    /// One vector `[S]` per parameter tensor: entry `j` is the learning rate of step `j`
    /// (MAML++'s per-layer per-step rates). Steps beyond `S` use the last entry.
    PerStep(&'a Params),
}

impl InnerLr<'_> {
    /// The learning rate of parameter `name` at step `step`: a scalar tensor or one that
    /// broadcasts against the (possibly task-stacked) parameter.
    fn at(&self, name: &str, step: usize) -> Result<Lr> {
        match self {
            InnerLr::Fixed(lr) => Ok(Lr::Scalar(*lr)),
            InnerLr::PerParameter(lrs) => Ok(Lr::Tensor(lrs.f_get(name)?.shallow_clone())),
            InnerLr::PerStep(lrs) => {
                let per_step = lrs.f_get(name)?;
                let last = per_step.size()[0] - 1;
                Ok(Lr::Tensor(per_step.select(0, (step as i64).min(last))))
            }
        }
    }
}

enum Lr {
    Scalar(f64),
    Tensor(Tensor),
}

impl Lr {
    fn scale(&self, t: &Tensor) -> Tensor {
        match self {
            Lr::Scalar(lr) => t * *lr,
            Lr::Tensor(lr) => t * lr,
        }
    }
}

/// The update direction of the inner loop. The defaults of each variant are PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum InnerOptimizer {
    /// Plain gradient descent, `φ ← φ − α g` (MAML and its relatives).
    #[default]
    Sgd,
    /// SGD with momentum as `torch.optim.SGD` defines it: `g ← g + λφ`,
    /// `b ← g` at the first step and `b ← μ b + (1 − d) g` after, `φ ← φ − α b`
    /// (Chen et al.'s head fitting: μ = 0.9, d = 0.9, λ = 0.001).
    Momentum {
        /// μ.
        momentum: f64,
        /// d.
        dampening: f64,
        /// λ (L2 penalty).
        weight_decay: f64,
    },
    /// Adam as `torch.optim.Adam` defines it (Reptile's inner optimizer uses β₁ = 0).
    Adam {
        /// β₁.
        beta1: f64,
        /// β₂.
        beta2: f64,
        /// ε.
        eps: f64,
    },
}

impl InnerOptimizer {
    /// Checks the hyper-parameters; `field` names the config entry in errors.
    pub fn validate(&self, field: &'static str) -> Result<()> {
        let unit = |v: f64| v.is_finite() && (0.0..1.0).contains(&v);
        match *self {
            InnerOptimizer::Sgd => Ok(()),
            InnerOptimizer::Momentum { momentum, dampening, weight_decay } => {
                if !(unit(momentum) && (0.0..=1.0).contains(&dampening) && weight_decay >= 0.0) {
                    return Err(MetaError::invalid(
                        field,
                        format!("{self:?}"),
                        "needs momentum in [0, 1), dampening in [0, 1], weight_decay >= 0",
                    ));
                }
                Ok(())
            }
            InnerOptimizer::Adam { beta1, beta2, eps } => {
                if !(unit(beta1) && unit(beta2) && eps.is_finite() && eps >= 0.0) {
                    return Err(MetaError::invalid(
                        field,
                        format!("{self:?}"),
                        "needs beta1 and beta2 in [0, 1) and eps >= 0",
                    ));
                }
                Ok(())
            }
        }
    }
}

/// The moments of a stateful [`InnerOptimizer`], one tensor per parameter (empty before
/// the first step).
#[derive(Default)]
struct Moments {
    first: Vec<Tensor>,
    second: Vec<Tensor>,
}

/// The inner loop: how gradients become updates. See the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct InnerLoop<'a> {
    /// The learning rate(s).
    pub lr: InnerLr<'a>,
    /// The update direction.
    pub optimizer: InnerOptimizer,
    /// Keep the inner gradients differentiable (second-order meta-gradients).
    pub create_graph: bool,
}

impl<'a> InnerLoop<'a> {
    /// Plain SGD with learning rate(s) `lr`.
    pub fn sgd(lr: InnerLr<'a>, create_graph: bool) -> Self {
        Self { lr, optimizer: InnerOptimizer::Sgd, create_graph }
    }

    /// Takes `steps` steps from `start` and returns the final fast weights.
    ///
    /// `support_loss(φ, j)` returns the scalar whose gradient with respect to φ drives
    /// step `j` (for task-stacked φ, the sum of the per-task losses, so that each task's
    /// slice of the gradient is its own gradient). `after_step(j, φ)` sees the weights after
    /// step `j` (0-based), e.g. to add a query loss per step.
    pub fn run(
        &self,
        start: Params,
        steps: usize,
        support_loss: impl FnMut(&Params, usize) -> Result<Tensor>,
        after_step: impl FnMut(usize, &Params) -> Result<()>,
    ) -> Result<Params> {
        self.run_steps(start, 0..steps, support_loss, after_step)
    }

    /// Takes steps `steps.start .. steps.end` from `start` (the weights before step
    /// `steps.start`), as [`InnerLoop::run`] would take them: with step `j`'s learning rate
    /// and `support_loss(φ, j)`. This replays part of an inner loop (gradient checkpointing
    /// recomputes one step at a time). Only plain SGD is a function of the weights alone;
    /// the stateful optimizers (momentum, Adam) must start at step 0.
    pub fn run_steps(
        &self,
        start: Params,
        steps: std::ops::Range<usize>,
        mut support_loss: impl FnMut(&Params, usize) -> Result<Tensor>,
        mut after_step: impl FnMut(usize, &Params) -> Result<()>,
    ) -> Result<Params> {
        if steps.start > 0 && self.optimizer != InnerOptimizer::Sgd {
            return Err(MetaError::invalid(
                "inner.optimizer",
                format!("{:?}", self.optimizer),
                format!("keeps state across steps: it cannot resume at step {}", steps.start),
            ));
        }
        let mut fast = start;
        let mut moments = Moments::default();
        for step in steps {
            let loss = support_loss(&fast, step)?;
            let grads = fast.grads(&loss, self.create_graph)?;
            fast = self.update(&fast, &grads, step, &mut moments)?;
            after_step(step, &fast)?;
        }
        Ok(fast)
    }

    /// One plain-SGD step `φ − αʲ ⊙ g` with step `step`'s learning rate(s), from gradients
    /// you computed (the learn2learn-style [`crate::maml_family::Learner::adapt`]). Errors for
    /// the stateful optimizers, whose step depends on the steps before.
    pub fn sgd_step(&self, fast: &Params, grads: &Params, step: usize) -> Result<Params> {
        if self.optimizer != InnerOptimizer::Sgd {
            return Err(MetaError::invalid(
                "inner.optimizer",
                format!("{:?}", self.optimizer),
                "a single step from given gradients needs plain SGD",
            ));
        }
        fast.check_same_names(grads)?;
        self.update(fast, grads, step, &mut Moments::default())
    }

    fn update(&self, fast: &Params, grads: &Params, step: usize, moments: &mut Moments) -> Result<Params> {
        let first_step = moments.first.is_empty();
        let mut updated = Vec::with_capacity(fast.len());
        for (i, ((name, w), g)) in fast.iter().zip(grads.tensors()).enumerate() {
            let lr = self.lr.at(name, step)?;
            let direction = match self.optimizer {
                InnerOptimizer::Sgd => g.shallow_clone(),
                InnerOptimizer::Momentum { momentum, dampening, weight_decay } => {
                    let g = if weight_decay != 0.0 { g + w * weight_decay } else { g.shallow_clone() };
                    if first_step {
                        moments.first.push(g);
                    } else {
                        moments.first[i] = &moments.first[i] * momentum + g * (1.0 - dampening);
                    }
                    moments.first[i].shallow_clone()
                }
                InnerOptimizer::Adam { beta1, beta2, eps } => {
                    if first_step {
                        moments.first.push(g * (1.0 - beta1));
                        moments.second.push(g.square() * (1.0 - beta2));
                    } else {
                        moments.first[i] = &moments.first[i] * beta1 + g * (1.0 - beta1);
                        moments.second[i] = &moments.second[i] * beta2 + g.square() * (1.0 - beta2);
                    }
                    let t = step as i32 + 1;
                    let bias1 = 1.0 - beta1.powi(t);
                    let bias2_sqrt = (1.0 - beta2.powi(t)).sqrt();
                    (&moments.first[i] / bias1) / (moments.second[i].sqrt() / bias2_sqrt + eps)
                }
            };
            updated.push(w - lr.scale(&direction));
        }
        Ok(fast.with_tensors(updated))
    }
}

/// Mini-batches of task-stacked support sets: per task, a fresh random order of its `S`
/// examples on every pass, cut into consecutive chunks of `size` (the last chunk of a pass
/// is smaller when `size` does not divide `S`), as `torch.randperm` and slicing do in
/// Chen et al.'s head fitting. Orders come from torch's global generator on the data's
/// device (seed it with `tch::manual_seed`).
#[derive(Debug)]
pub struct SupportBatches {
    order: Tensor,
    chunks: Vec<(i64, i64)>,
    support: i64,
}

impl SupportBatches {
    /// Chunks for `steps` steps over `tasks` support sets of `support` examples.
    pub fn new(tasks: usize, support: usize, size: usize, steps: usize, device: tch::Device) -> Self {
        let (s, b) = (support as i64, size.clamp(1, support.max(1)) as i64);
        let per_pass: Vec<(i64, i64)> =
            (0..s).step_by(b as usize).map(|start| (start, b.min(s - start))).collect();
        let passes = steps.div_ceil(per_pass.len().max(1)).max(1);
        let orders: Vec<Tensor> = (0..passes)
            .map(|_| Tensor::rand([tasks as i64, s], (tch::Kind::Float, device)).argsort(1, false))
            .collect();
        let chunks = (0..passes)
            .flat_map(|p| per_pass.iter().map(move |&(start, len)| (p as i64 * s + start, len)))
            .take(steps)
            .collect();
        Self { order: Tensor::cat(&orders, 1), chunks, support: s }
    }

    /// The indices `[T, b]` of step `step`'s chunk.
    pub fn indices(&self, step: usize) -> Tensor {
        let (start, len) = self.chunks[step];
        self.order.narrow(1, start, len)
    }

    /// Rows `indices` `[T, b]` of each task's `x` `[T, S, ...]`: `[T, b, ...]`.
    pub fn gather(&self, x: &Tensor, indices: &Tensor) -> Tensor {
        let size = x.size();
        let tasks = size[0];
        let offsets = Tensor::arange(tasks, (tch::Kind::Int64, x.device())).unsqueeze(1) * self.support;
        let flat = x.reshape(
            [tasks * self.support].iter().copied().chain(size[2..].iter().copied()).collect::<Vec<_>>(),
        );
        let rows = flat.index_select(0, &(indices + offsets).reshape([-1]));
        let mut shape = vec![tasks, indices.size()[1]];
        shape.extend_from_slice(&size[2..]);
        rows.reshape(shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn quadratic(w: &Params) -> Tensor {
        // L(w) = Σ w² / 2, ∇L = w.
        w.tensors()
            .iter()
            .map(|t| t.square().sum(Kind::Double) * 0.5)
            .fold(Tensor::from(0.0f64), |a, b| a + b)
    }

    fn leaf(values: &[f64]) -> Params {
        let t = Tensor::from_slice(values).to_kind(Kind::Double).set_requires_grad(true);
        Params::from_named(vec![("w".into(), t)]).unwrap()
    }

    fn values(p: &Params) -> Vec<f64> {
        Vec::<f64>::try_from(p["w"].detach()).unwrap()
    }

    #[test]
    fn sgd_on_a_quadratic_shrinks_geometrically() {
        // w ← w − α w = (1 − α) w per step.
        let inner = InnerLoop::sgd(InnerLr::Fixed(0.25), false);
        let out = inner.run(leaf(&[4.0, -2.0]), 3, |w, _| Ok(quadratic(w)), |_, _| Ok(())).unwrap();
        let expect = 0.75f64.powi(3);
        assert_eq!(values(&out), vec![4.0 * expect, -2.0 * expect]);
    }

    #[test]
    fn per_step_rates_pick_the_step_and_clamp() {
        let lrs = Params::from_named(vec![("w".into(), Tensor::from_slice(&[0.5f64, 0.25]))]).unwrap();
        let inner = InnerLoop::sgd(InnerLr::PerStep(&lrs), false);
        let out = inner.run(leaf(&[8.0]), 3, |w, _| Ok(quadratic(w)), |_, _| Ok(())).unwrap();
        // 8 · (1 − 0.5) · (1 − 0.25) · (1 − 0.25): the third step reuses the last rate.
        assert_eq!(values(&out), vec![8.0 * 0.5 * 0.75 * 0.75]);
    }

    #[test]
    fn momentum_and_adam_follow_pytorch() {
        // torch.optim.SGD([w], lr=0.1, momentum=0.9, dampening=0.9, weight_decay=0.01) on
        // L = Σ w²/2 from w = [1, -2], 3 steps, and torch.optim.Adam([w], lr=0.1, betas=(0, 0.999))
        // likewise: the closed forms below replay PyTorch's update rules step by step.
        let momentum = InnerOptimizer::Momentum { momentum: 0.9, dampening: 0.9, weight_decay: 0.01 };
        let inner = InnerLoop { lr: InnerLr::Fixed(0.1), optimizer: momentum, create_graph: false };
        let out = inner.run(leaf(&[1.0, -2.0]), 3, |w, _| Ok(quadratic(w)), |_, _| Ok(())).unwrap();
        let mut expect = vec![];
        for w0 in [1.0f64, -2.0] {
            let (mut w, mut b) = (w0, 0.0);
            for s in 0..3 {
                let g = w + 0.01 * w;
                b = if s == 0 { g } else { 0.9 * b + 0.1 * g };
                w -= 0.1 * b;
            }
            expect.push(w);
        }
        for (a, b) in values(&out).iter().zip(&expect) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }

        let adam = InnerOptimizer::Adam { beta1: 0.0, beta2: 0.999, eps: 1e-8 };
        let inner = InnerLoop { lr: InnerLr::Fixed(0.1), optimizer: adam, create_graph: false };
        let out = inner.run(leaf(&[1.0, -2.0]), 3, |w, _| Ok(quadratic(w)), |_, _| Ok(())).unwrap();
        let mut expect = vec![];
        for w0 in [1.0f64, -2.0] {
            let (mut w, mut v) = (w0, 0.0);
            for s in 1..=3 {
                let g = w;
                v = 0.999 * v + 0.001 * g * g;
                let denom = (v.sqrt() / (1.0 - 0.999f64.powi(s)).sqrt()) + 1e-8;
                w -= 0.1 * g / denom;
            }
            expect.push(w);
        }
        for (a, b) in values(&out).iter().zip(&expect) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
    }

    #[test]
    fn run_steps_resumes_sgd_and_refuses_stateful_optimizers() {
        // Steps 1..3 from the weights after step 0 finish the same loop, with step 1's and
        // step 2's per-step rates.
        let lrs = Params::from_named(vec![("w".into(), Tensor::from_slice(&[0.5f64, 0.25, 0.125]))]).unwrap();
        let inner = InnerLoop::sgd(InnerLr::PerStep(&lrs), false);
        let whole = inner.run(leaf(&[8.0]), 3, |w, _| Ok(quadratic(w)), |_, _| Ok(())).unwrap();
        let first = inner.run(leaf(&[8.0]), 1, |w, _| Ok(quadratic(w)), |_, _| Ok(())).unwrap();
        let rest =
            inner.run_steps(first.detached_leaves(), 1..3, |w, _| Ok(quadratic(w)), |_, _| Ok(())).unwrap();
        assert_eq!(values(&rest), values(&whole));
        assert_eq!(values(&whole), vec![8.0 * 0.5 * 0.75 * 0.875]);
        let adam = InnerOptimizer::Adam { beta1: 0.0, beta2: 0.999, eps: 1e-8 };
        let inner = InnerLoop { lr: InnerLr::Fixed(0.1), optimizer: adam, create_graph: false };
        let err = inner.run_steps(leaf(&[1.0]), 1..2, |w, _| Ok(quadratic(w)), |_, _| Ok(())).unwrap_err();
        assert!(err.to_string().starts_with("inner.optimizer = Adam"), "{err}");
    }

    #[test]
    fn after_step_sees_every_step() {
        let mut seen = vec![];
        let inner = InnerLoop::sgd(InnerLr::Fixed(0.5), false);
        inner
            .run(
                leaf(&[2.0]),
                2,
                |w, _| Ok(quadratic(w)),
                |j, w| {
                    seen.push((j, values(w)[0]));
                    Ok(())
                },
            )
            .unwrap();
        assert_eq!(seen, vec![(0, 1.0), (1, 0.5)]);
        let _ = Device::Cpu;
    }

    #[test]
    fn support_batches_cover_each_pass_once_per_task() {
        // 2 tasks of 5 examples, chunks of 2: per pass 2 + 2 + 1; 4 steps span two passes.
        let batches = SupportBatches::new(2, 5, 2, 4, Device::Cpu);
        let x = Tensor::arange(10, (Kind::Int64, Device::Cpu)).view([2, 5]);
        let mut first_pass = vec![vec![]; 2];
        for step in 0..3 {
            let rows = batches.gather(&x, &batches.indices(step));
            assert_eq!(rows.size(), [2, if step == 2 { 1 } else { 2 }]);
            for (t, pass) in first_pass.iter_mut().enumerate() {
                pass.extend(Vec::<i64>::try_from(rows.get(t as i64)).unwrap());
            }
        }
        for (t, mut pass) in first_pass.into_iter().enumerate() {
            pass.sort();
            assert_eq!(pass, (0..5).map(|i| 5 * t as i64 + i).collect::<Vec<_>>());
        }
        assert_eq!(batches.indices(3).size(), [2, 2]);
    }

    #[test]
    fn bad_optimizer_settings_are_named() {
        let bad = InnerOptimizer::Adam { beta1: 1.5, beta2: 0.9, eps: 1e-8 };
        let err = bad.validate("reptile.inner_optimizer").unwrap_err().to_string();
        assert!(err.starts_with("reptile.inner_optimizer = Adam"), "{err}");
    }
}
