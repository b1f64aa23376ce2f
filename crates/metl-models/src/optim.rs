//! Optimizers over [`Params`] whose state can be saved and restored, so that a run
//! resumed from a checkpoint continues exactly as an uninterrupted one (tch's own
//! optimizers keep their state inside libtorch, out of reach).
//!
//! The update rules are PyTorch's (`torch.optim.Adam`, `AdamW`, `SGD`), to the bit where
//! the same kernels are used; the tests check them against values computed with PyTorch.

use crate::{
    error::{ModelError, Result},
    Params,
};
use serde::{Deserialize, Serialize};

/// An optimizer stepping a fixed set of parameters from their `.grad`.
pub trait Optimizer {
    /// Applies one update from the current gradients (parameters without a gradient are
    /// left alone, as in PyTorch).
    fn step(&mut self) -> Result<()>;

    /// Zeroes the gradients of the parameters.
    fn zero_grad(&mut self);

    /// The learning rate.
    fn lr(&self) -> f64;

    /// Sets the learning rate (for schedules).
    fn set_lr(&mut self, lr: f64);

    /// The number of steps taken.
    fn steps(&self) -> u64;

    /// The optimizer's state tensors (named after the parameters) for a checkpoint.
    fn state(&self) -> Params;

    /// Restores state saved by [`Optimizer::state`] after `steps` steps.
    fn load_state(&mut self, state: &Params, steps: u64) -> Result<()>;
}

/// Zeroes the `.grad` of every tensor that has one.
pub fn zero_grads(params: &Params) {
    for t in params.tensors() {
        let mut g = t.grad();
        if g.defined() {
            let _ = g.detach_().zero_();
        }
    }
}

/// Hyper-parameters of [`Adam`]; the defaults are PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamConfig {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay of the first moment (default 0.9).
    pub beta1: f64,
    /// Decay of the second moment (default 0.999).
    pub beta2: f64,
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
    /// L2 penalty added to the gradient (Adam) or decoupled decay (AdamW); default 0.
    pub weight_decay: f64,
    /// Decoupled weight decay (AdamW, Loshchilov & Hutter 2019) instead of L2.
    pub decoupled: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false }
    }
}

impl AdamConfig {
    /// Adam with learning rate `lr` and PyTorch's other defaults.
    pub fn with_lr(lr: f64) -> Self {
        Self { lr, ..Self::default() }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        let check = |field: &'static str, v: f64, ok: bool, allowed: &str| {
            if ok && v.is_finite() {
                Ok(())
            } else {
                Err(ModelError::invalid(field, v, allowed))
            }
        };
        check("adam.lr", self.lr, self.lr > 0.0, "must be > 0")?;
        check("adam.beta1", self.beta1, (0.0..1.0).contains(&self.beta1), "must be in [0, 1)")?;
        check("adam.beta2", self.beta2, (0.0..1.0).contains(&self.beta2), "must be in [0, 1)")?;
        check("adam.eps", self.eps, self.eps >= 0.0, "must be >= 0")?;
        check("adam.weight_decay", self.weight_decay, self.weight_decay >= 0.0, "must be >= 0")
    }
}

/// Adam (Kingma & Ba, 2015, "Adam: A Method for Stochastic Optimization"), as PyTorch
/// implements it: with gᵗ the gradient (plus λθ for L2 decay),
///
/// ```text
/// mᵗ = β₁ mᵗ⁻¹ + (1 − β₁) gᵗ,    vᵗ = β₂ vᵗ⁻¹ + (1 − β₂) (gᵗ)²,
/// θᵗ = θᵗ⁻¹ − lr / (1 − β₁ᵗ) · mᵗ / (√vᵗ / √(1 − β₂ᵗ) + ε).
/// ```
///
/// With `decoupled`, AdamW: θ is first multiplied by `1 − lr·λ` and g has no L2 term.
#[derive(Debug)]
pub struct Adam {
    params: Params,
    config: AdamConfig,
    exp_avg: Params,
    exp_avg_sq: Params,
    steps: u64,
}

impl Adam {
    /// Adam over `params` (leaf tensors requiring gradients).
    pub fn new(params: &Params, config: AdamConfig) -> Result<Self> {
        config.validate()?;
        let zeros = || params.map(|_, t| t.detach().zeros_like());
        Ok(Self { params: params.shallow_clone(), config, exp_avg: zeros(), exp_avg_sq: zeros(), steps: 0 })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }
}

impl Optimizer for Adam {
    fn step(&mut self) -> Result<()> {
        self.steps += 1;
        let c = self.config;
        let t = self.steps as i32;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        tch::no_grad(|| -> Result<()> {
            for ((p, m), v) in
                self.params.tensors().iter().zip(self.exp_avg.tensors()).zip(self.exp_avg_sq.tensors())
            {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                let mut p = p.shallow_clone();
                let grad =
                    if c.weight_decay != 0.0 && !c.decoupled { grad + &p * c.weight_decay } else { grad };
                if c.weight_decay != 0.0 && c.decoupled {
                    let _ = p.f_mul_scalar_(1.0 - c.lr * c.weight_decay)?;
                }
                let _ = m.shallow_clone().f_lerp_(&grad, 1.0 - c.beta1)?;
                let mut v = v.shallow_clone();
                let _ = v.f_mul_scalar_(c.beta2)?.f_addcmul_(&grad, &(&grad * (1.0 - c.beta2)))?;
                let denom = (v.sqrt() / bias2_sqrt) + c.eps;
                let _ = p.f_addcdiv_(&(m * (-c.lr / bias1)), &denom)?;
            }
            Ok(())
        })
    }

    fn zero_grad(&mut self) {
        zero_grads(&self.params);
    }

    fn lr(&self) -> f64 {
        self.config.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    fn steps(&self) -> u64 {
        self.steps
    }

    fn state(&self) -> Params {
        self.exp_avg
            .prefixed("exp_avg")
            .merge(&self.exp_avg_sq.prefixed("exp_avg_sq"))
            .expect("disjoint prefixes")
    }

    fn load_state(&mut self, state: &Params, steps: u64) -> Result<()> {
        self.exp_avg.copy_from(&state.sub("exp_avg"))?;
        self.exp_avg_sq.copy_from(&state.sub("exp_avg_sq"))?;
        self.steps = steps;
        Ok(())
    }
}

/// Hyper-parameters of [`Sgd`]; the defaults are plain SGD.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SgdConfig {
    /// Learning rate (default 0.01).
    pub lr: f64,
    /// Momentum μ (default 0).
    pub momentum: f64,
    /// Nesterov momentum (default false).
    pub nesterov: bool,
    /// L2 penalty added to the gradient (default 0).
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self { lr: 0.01, momentum: 0.0, nesterov: false, weight_decay: 0.0 }
    }
}

/// Stochastic gradient descent with optional (Nesterov) momentum, as PyTorch's `SGD`
/// (dampening 0): `b ← μ b + g` (b = g at the first step), `θ ← θ − lr · (g + μ b if
/// Nesterov else b)`.
#[derive(Debug)]
pub struct Sgd {
    params: Params,
    config: SgdConfig,
    momentum: Params,
    steps: u64,
}

impl Sgd {
    /// SGD over `params`.
    pub fn new(params: &Params, config: SgdConfig) -> Result<Self> {
        if !(config.lr.is_finite() && config.lr > 0.0) {
            return Err(ModelError::invalid("sgd.lr", config.lr, "must be > 0"));
        }
        if !(config.momentum.is_finite() && config.momentum >= 0.0) {
            return Err(ModelError::invalid("sgd.momentum", config.momentum, "must be >= 0"));
        }
        let momentum = params.map(|_, t| t.detach().zeros_like());
        Ok(Self { params: params.shallow_clone(), config, momentum, steps: 0 })
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        self.steps += 1;
        let c = self.config;
        let first = self.steps == 1;
        tch::no_grad(|| -> Result<()> {
            for (p, b) in self.params.tensors().iter().zip(self.momentum.tensors()) {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                let grad = if c.weight_decay != 0.0 { grad + p * c.weight_decay } else { grad };
                let direction = if c.momentum != 0.0 {
                    let mut b = b.shallow_clone();
                    if first {
                        b.f_copy_(&grad)?;
                    } else {
                        let _ = b.f_mul_scalar_(c.momentum)?.f_add_(&grad)?;
                    }
                    if c.nesterov {
                        grad + b * c.momentum
                    } else {
                        b
                    }
                } else {
                    grad
                };
                let _ = p.shallow_clone().f_sub_(&(direction * c.lr))?;
            }
            Ok(())
        })
    }

    fn zero_grad(&mut self) {
        zero_grads(&self.params);
    }

    fn lr(&self) -> f64 {
        self.config.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    fn steps(&self) -> u64 {
        self.steps
    }

    fn state(&self) -> Params {
        self.momentum.prefixed("momentum_buffer")
    }

    fn load_state(&mut self, state: &Params, steps: u64) -> Result<()> {
        self.momentum.copy_from(&state.sub("momentum_buffer"))?;
        self.steps = steps;
        Ok(())
    }
}

/// A `tch::nn::Optimizer` (your own: `nn::Adam::default().build(&vs, lr)?`, with its
/// parameter groups and options) as an [`Optimizer`], so that metl's training steps
/// (`metl_mtl::MtlStep::step`, ...) take it.
///
/// tch keeps the optimizer's moments inside libtorch, out of reach: [`Optimizer::state`]
/// is empty, and a run resumed from a checkpoint restarts them (use metl's [`Adam`] — Adam or
/// AdamW — or [`Sgd`] for exact resumes). The learning rate is the one given here, kept
/// in step with [`Optimizer::set_lr`].
///
/// ```
/// use metl_models::optim::{Optimizer, TchOptimizer};
/// use tch::nn::{self, OptimizerConfig};
///
/// let vs = nn::VarStore::new(tch::Device::Cpu);
/// let _layer = nn::linear(vs.root() / "fc", 3, 1, Default::default());
/// let mut opt = TchOptimizer::new(nn::Adam::default().build(&vs, 1e-3).unwrap(), 1e-3);
/// opt.zero_grad();
/// opt.step().unwrap();
/// assert_eq!((opt.steps(), opt.lr()), (1, 1e-3));
/// ```
#[derive(Debug)]
pub struct TchOptimizer {
    inner: tch::nn::Optimizer,
    lr: f64,
    steps: u64,
}

impl TchOptimizer {
    /// Wraps `optimizer`, built with learning rate `lr`.
    pub fn new(optimizer: tch::nn::Optimizer, lr: f64) -> Self {
        Self { inner: optimizer, lr, steps: 0 }
    }

    /// The tch optimizer.
    pub fn inner_mut(&mut self) -> &mut tch::nn::Optimizer {
        &mut self.inner
    }
}

impl Optimizer for TchOptimizer {
    fn step(&mut self) -> Result<()> {
        self.inner.step();
        self.steps += 1;
        Ok(())
    }

    fn zero_grad(&mut self) {
        self.inner.zero_grad();
    }

    fn lr(&self) -> f64 {
        self.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.inner.set_lr(lr);
        self.lr = lr;
    }

    fn steps(&self) -> u64 {
        self.steps
    }

    /// Empty: tch's optimizer state cannot be read.
    fn state(&self) -> Params {
        Params::empty()
    }

    /// Accepts only an empty state (what [`TchOptimizer::state`] gives) and sets the step
    /// count.
    fn load_state(&mut self, state: &Params, steps: u64) -> Result<()> {
        if !state.is_empty() {
            return Err(ModelError::invalid(
                "optimizer state",
                format!("[{}]", state.names().join(", ")),
                "a tch::nn::Optimizer cannot load moments: resume with metl's Adam, AdamW or SGD",
            ));
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    fn leaf(values: &[f64]) -> Params {
        let t = Tensor::from_slice(values).to_kind(Kind::Double).set_requires_grad(true);
        Params::from_named(vec![("w".into(), t)]).unwrap()
    }

    fn run(opt: &mut dyn Optimizer, params: &Params, steps: usize) -> Vec<f64> {
        for _ in 0..steps {
            opt.zero_grad();
            // L(w) = Σ (w − 1)² · i  (different curvature per coordinate)
            let w = &params["w"];
            let scale = Tensor::from_slice(&[1.0, 2.0, 3.0]).to_kind(Kind::Double);
            ((w - 1.0).square() * scale).sum(Kind::Double).backward();
            opt.step().unwrap();
        }
        Vec::<f64>::try_from(params["w"].detach()).unwrap()
    }

    /// Constants from PyTorch 2.13: `w = torch.tensor([0.5, -1.0, 2.0], dtype=float64,
    /// requires_grad=True)`, the loss above, three steps of `torch.optim.Adam([w], lr=0.1)`
    /// (resp. `AdamW(lr=0.1, weight_decay=0.5)`, `Adam(lr=0.1, weight_decay=0.5)`,
    /// `SGD(lr=0.05, momentum=0.9, nesterov=True)`).
    #[test]
    fn matches_pytorch() {
        let p = leaf(&[0.5, -1.0, 2.0]);
        let got = run(&mut Adam::new(&p, AdamConfig::with_lr(0.1)).unwrap(), &p, 3);
        let want = [0.7951287474397004, -0.7006233916636408, 1.7015862719071069];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "adam {got:?} vs {want:?}");
        }
        let p = leaf(&[0.5, -1.0, 2.0]);
        let config = AdamConfig { lr: 0.1, weight_decay: 0.5, decoupled: true, ..Default::default() };
        let got = run(&mut Adam::new(&p, config).unwrap(), &p, 3);
        let want = [0.711097282593899, -0.5731429274581749, 1.434171348036544];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "adamw {got:?} vs {want:?}");
        }
        let p = leaf(&[0.5, -1.0, 2.0]);
        let config = AdamConfig { lr: 0.1, weight_decay: 0.5, ..Default::default() };
        let got = run(&mut Adam::new(&p, config).unwrap(), &p, 3);
        let want = [0.7867110296931886, -0.7006698990713061, 1.7014249783298987];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "adam l2 {got:?} vs {want:?}");
        }
        let p = leaf(&[0.5, -1.0, 2.0]);
        let config = SgdConfig { lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 0.0 };
        let got = run(&mut Sgd::new(&p, config).unwrap(), &p, 3);
        let want = [0.8363395, 1.216704, 0.6518269999999999];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "sgd {got:?} vs {want:?}");
        }
    }

    #[test]
    fn state_round_trip_resumes_exactly() {
        let a = leaf(&[0.5, -1.0, 2.0]);
        let mut opt_a = Adam::new(&a, AdamConfig::with_lr(0.1)).unwrap();
        run(&mut opt_a, &a, 2);
        let b = leaf(&[0.0, 0.0, 0.0]);
        b.copy_from(&a).unwrap();
        let mut opt_b = Adam::new(&b, AdamConfig::with_lr(0.1)).unwrap();
        opt_b.load_state(&opt_a.state().deep_copy(), opt_a.steps()).unwrap();
        assert_eq!(run(&mut opt_a, &a, 3), run(&mut opt_b, &b, 3));
        assert_eq!(opt_b.steps(), 5);
    }
}
