//! Finite-difference gradient checks in float64.
//!
//! For a scalar function `f(θ)` of parameters θ, autograd's directional derivative
//! `∇f(θ) · v` is compared with the central difference
//!
//! ```text
//! (f(θ + εv) − f(θ − εv)) / 2ε = ∇f(θ) · v + O(ε² ‖∇³f‖)
//! ```
//!
//! along random unit directions `v` (seeded, so a check is reproducible). Directions test
//! every parameter at once, so a handful of them check a whole network; with ε = 1e-6 in
//! float64 the two agree to about 1e-8 relative unless the segment θ ± εv crosses a kink
//! (a ReLU's zero, a max-pooling switch), where the difference measures neither side's
//! derivative. That is rare but not negligible for a network with many activations: a
//! small SegNet checked at 30 random points crossed one at 2 of them (6 of 30 with a
//! larger input). Check at a fixed point, not at whatever libtorch's global generator
//! gives (which a test binary's parallel tests share): [`Waves`] fills parameters from a
//! formula. `f` may itself differentiate (a loss after a differentiable inner SGD step),
//! which makes this a second-order check; there a kink makes the inner gradient jump, and
//! the difference with it.

use crate::{
    error::{ModelError, Result},
    Params,
};
use rand_distr::{Distribution, StandardNormal};
use tch::{Kind, Tensor};

/// Settings of [`check_gradients`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradCheckConfig {
    /// The number of random directions (default 4).
    pub directions: usize,
    /// The step ε (default 1e-6).
    pub eps: f64,
    /// The seed of the directions (default 0).
    pub seed: u64,
}

impl Default for GradCheckConfig {
    fn default() -> Self {
        Self { directions: 4, eps: 1e-6, seed: 0 }
    }
}

/// The outcome of [`check_gradients`]: per direction, autograd's and the finite-difference
/// directional derivative.
#[derive(Debug, Clone, PartialEq)]
pub struct GradCheckReport {
    /// `(autograd, finite difference)` per direction.
    pub derivatives: Vec<(f64, f64)>,
}

impl GradCheckReport {
    /// The largest magnitude among the derivatives, autograd's or finite differences'.
    pub fn scale(&self) -> f64 {
        self.derivatives.iter().map(|&(a, n)| a.abs().max(n.abs())).fold(0.0, f64::max)
    }

    /// The largest `|a − n| / max(|a|, |n|, floor)` over the directions.
    pub fn max_relative_error(&self, floor: f64) -> f64 {
        self.derivatives
            .iter()
            .map(|&(a, n)| (a - n).abs() / a.abs().max(n.abs()).max(floor))
            .fold(0.0, f64::max)
    }

    /// Whether every direction agrees: `|a − n| ≤ atol + rtol · max(|a|, |n|)`.
    pub fn is_close(&self, rtol: f64, atol: f64) -> bool {
        self.derivatives.iter().all(|&(a, n)| (a - n).abs() <= atol + rtol * a.abs().max(n.abs()))
    }
}

impl std::fmt::Display for GradCheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (a, n)) in self.derivatives.iter().enumerate() {
            writeln!(f, "direction {i}: autograd {a:.12e}, finite difference {n:.12e}")?;
        }
        Ok(())
    }
}

/// Compares the gradient of `f` at `params` (float64) with finite differences along random
/// directions (see the [module docs](self)).
///
/// `f` receives fresh leaf tensors that require gradients and must return a scalar.
pub fn check_gradients(
    params: &Params,
    f: impl Fn(&Params) -> Tensor,
    config: &GradCheckConfig,
) -> Result<GradCheckReport> {
    if let Some((name, t)) = params.iter().find(|(_, t)| t.kind() != Kind::Double) {
        return Err(ModelError::invalid(
            "gradcheck params",
            format!("{name}: {:?}", t.kind()),
            "every tensor must be Double (float64)",
        ));
    }
    let theta = params.detached_leaves();
    let loss = f(&theta);
    let gradient = theta.grads(&loss, false)?.flatten();
    let base = theta.detach().flatten();
    let at = |flat: &Tensor| -> Result<f64> {
        let p = theta.unflatten(flat)?.detached_leaves();
        Ok(f(&p).double_value(&[]))
    };
    let mut rng = metl_data::rng::seeded(config.seed);
    let n = base.numel();
    let mut derivatives = Vec::with_capacity(config.directions);
    for _ in 0..config.directions {
        let v: Vec<f64> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
        let v = Tensor::from_slice(&v).to_device(base.device());
        let v = &v / v.norm();
        let analytic = gradient.dot(&v).double_value(&[]);
        let numeric =
            (at(&(&base + &v * config.eps))? - at(&(&base - &v * config.eps))?) / (2.0 * config.eps);
        derivatives.push((analytic, numeric));
    }
    Ok(GradCheckReport { derivatives })
}

/// Values from a formula rather than a random generator: element `i` (row-major) of the
/// `k`-th tensor becomes `scale · sin(frequency · i + k + phase)`, computed in the tensor's
/// own kind and on its device. A point for gradient checks and other tests that does not
/// depend on libtorch's global generator; distinct phases give distinct points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Waves {
    /// Radians per element.
    pub frequency: f64,
    /// Added to every tensor's offset `k`.
    pub phase: f64,
    /// The amplitude.
    pub scale: f64,
}

impl Waves {
    /// Overwrites every tensor of `tensors` in place (without recording gradients).
    pub fn fill<'a>(&self, tensors: impl IntoIterator<Item = &'a Tensor>) -> Result<()> {
        tch::no_grad(|| {
            for (k, t) in tensors.into_iter().enumerate() {
                let i = Tensor::f_arange(t.numel() as i64, (t.kind(), t.device()))?;
                let values = (i * self.frequency + k as f64 + self.phase).sin() * self.scale;
                t.shallow_clone().f_copy_(&values.f_view(t.size().as_slice())?)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn quadratic(p: &Params) -> Tensor {
        let x = &p["x"];
        (x * x * x).sum(Kind::Double) + x.sin().sum(Kind::Double)
    }

    #[test]
    fn agrees_on_a_closed_form_and_catches_a_wrong_gradient() {
        let x = Tensor::from_slice(&[0.3f64, -1.2, 2.0]).to_device(Device::Cpu);
        let params = Params::from_named(vec![("x".into(), x)]).unwrap();
        let report = check_gradients(&params, quadratic, &GradCheckConfig::default()).unwrap();
        assert!(report.is_close(1e-7, 1e-9), "{report}");
        // A function whose autograd gradient is wrong (detach hides a term) must fail.
        let wrong = |p: &Params| quadratic(p) + (&p["x"] * p["x"].detach()).sum(Kind::Double);
        let report = check_gradients(&params, wrong, &GradCheckConfig::default()).unwrap();
        assert!(!report.is_close(1e-4, 1e-6), "{report}");
        let float = params.to_kind(Kind::Float);
        assert!(check_gradients(&float, quadratic, &GradCheckConfig::default()).is_err());
    }

    #[test]
    fn waves_fill_every_tensor_from_the_formula() {
        let a = Tensor::zeros([2, 3], (Kind::Double, Device::Cpu));
        let b = Tensor::zeros([4], (Kind::Float, Device::Cpu));
        Waves { frequency: 0.7, phase: 0.25, scale: 0.5 }.fill([&a, &b]).unwrap();
        assert!((a.double_value(&[1, 2]) - 0.5 * (0.7f64 * 5.0 + 0.25).sin()).abs() < 1e-15);
        assert!((b.double_value(&[3]) - 0.5 * (0.7f64 * 3.0 + 1.25).sin()).abs() < 1e-6);
        assert_eq!(b.kind(), Kind::Float);
    }
}
