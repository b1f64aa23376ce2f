//! The two-objective toy problem of CAGrad (Liu et al. 2021, `toy.py`), as used by Nash-MTL
//! (Navon et al. 2022) and FAMO (Liu et al. 2023): two losses of `x ∈ R²` whose Pareto set
//! is the segment `x₂ = −8.3552, x₁ ∈ [−7, 7]`, with the average-loss optimum at
//! `(0, −8.3552)`, and a run of any metl strategy on it.
//!
//! With `c₁ = max(tanh(x₂/2), 0)`, `c₂ = max(tanh(−x₂/2), 0)`:
//!
//! ```text
//! f₁ = log max(|½(−x₁ − 7) − tanh(−x₂)|, 5·10⁻⁶) + 6
//! f₂ = log max(|½(−x₁ + 3) + tanh(−x₂) + 2|, 5·10⁻⁶) + 6
//! g₁ = ((7 − x₁)² + 0.1 (−x₂ − 8)²) / 10 − 20
//! g₂ = ((−7 − x₁)² + 0.1 (−x₂ − 8)²) / 10 − 20
//! L₁ = s · (c₁ f₁ + c₂ g₁),    L₂ = c₁ f₂ + c₂ g₂
//! ```
//!
//! `s = 0.1` in Nash-MTL and FAMO, `s = 1` in CAGrad.

use metl_models::{
    optim::{Adam, AdamConfig, Optimizer},
    Params,
};
use metl_mtl::{
    backward::{MtlBackward, TaskLosses},
    strategy::Bilevel,
    Setup, StrategyConfig,
};
use tch::{nn, Device, Kind, Tensor};

/// The lower clamp inside the logarithms.
pub const LOWER: f64 = 5e-6;
/// `x₂` on the Pareto set.
pub const PARETO_X2: f64 = -8.3552;
/// Nash-MTL's five start points.
pub const STARTS: [(f64, f64); 5] = [(-8.5, 7.5), (0.0, 0.0), (9.0, 9.0), (-7.5, -0.5), (9.0, -1.0)];

/// Both losses at `(x₁, x₂)` in `f64` (for contours and checks).
pub fn losses_at(x1: f64, x2: f64, scale: f64) -> [f64; 2] {
    let c1 = (x2 * 0.5).tanh().max(0.0);
    let c2 = (-x2 * 0.5).tanh().max(0.0);
    let f1 = (0.5 * (-x1 - 7.0) - (-x2).tanh()).abs().max(LOWER).ln() + 6.0;
    let f2 = (0.5 * (-x1 + 3.0) + (-x2).tanh() + 2.0).abs().max(LOWER).ln() + 6.0;
    let g1 = ((-x1 + 7.0).powi(2) + 0.1 * (-x2 - 8.0).powi(2)) / 10.0 - 20.0;
    let g2 = ((-x1 - 7.0).powi(2) + 0.1 * (-x2 - 8.0).powi(2)) / 10.0 - 20.0;
    [scale * (c1 * f1 + c2 * g1), c1 * f2 + c2 * g2]
}

/// Both losses of `x` (`[2]`), differentiable.
pub fn losses(x: &Tensor, scale: f64) -> [Tensor; 2] {
    let (x1, x2) = (x.select(0, 0), x.select(0, 1));
    let c1 = (&x2 * 0.5).tanh().clamp_min(0.0);
    let c2 = (&x2 * -0.5).tanh().clamp_min(0.0);
    let t = (-&x2).tanh();
    let f1 = ((-&x1 - 7.0) * 0.5 - &t).abs().clamp_min(LOWER).log() + 6.0;
    let f2 = ((-&x1 + 3.0) * 0.5 + &t + 2.0).abs().clamp_min(LOWER).log() + 6.0;
    let q = (-&x2 - 8.0).square() * 0.1;
    let g1 = ((-&x1 + 7.0).square() + &q) / 10.0 - 20.0;
    let g2 = ((-&x1 - 7.0).square() + &q) / 10.0 - 20.0;
    [(&c1 * f1 + &c2 * g1) * scale, c1 * f2 + c2 * g2]
}

/// Whether `(x₁, x₂)` is on the Pareto set, to `tol` in `x₂` (and in the ends of `x₁`).
pub fn on_pareto_set(x1: f64, x2: f64, tol: f64) -> bool {
    (x2 - PARETO_X2).abs() <= tol && (-7.0 - tol..=7.0 + tol).contains(&x1)
}

/// Distance to the average-loss optimum `(0, −8.3552)`.
pub fn distance_to_optimum(x1: f64, x2: f64) -> f64 {
    (x1 * x1 + (x2 - PARETO_X2).powi(2)).sqrt()
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct ToyRun {
    /// `(x₁, x₂)` every `record_every` steps, from the start to the end.
    pub trajectory: Vec<(f64, f64)>,
    /// The final point.
    pub end: (f64, f64),
    /// The error that stopped the run early, if any.
    pub error: Option<String>,
}

/// The losses both strategies see: `Lᵢ + 21 sᵢ` (`s₂ = 1`), positive everywhere, so that
/// strategies taking logarithms of losses run; gradients are unchanged (FAMO's toy sets its
/// lower bounds to `−21 s` instead, which is the same).
pub fn shifted(x: &Tensor, scale: f64) -> Vec<Tensor> {
    let [l1, l2] = losses(x, scale);
    vec![l1 + 21.0 * scale, l2 + 21.0]
}

struct ToyValidation {
    scale: f64,
    lr: f64,
}

impl Bilevel for ToyValidation {
    fn validation_losses(&self, params: &Params) -> metl_mtl::error::Result<Vec<Option<Tensor>>> {
        Ok(shifted(params.f_get("x")?, self.scale).into_iter().map(Some).collect())
    }

    fn inner_lr(&self) -> f64 {
        self.lr
    }
}

/// Runs `strategy` from `start` for `steps` Adam steps (lr 1e-3 for `x`; the strategy's own
/// parameters, if any, with lr 0.025 as Nash-MTL's toy), calling `end_epoch` every 100
/// steps; records the trajectory every `record_every` steps.
pub fn run(
    strategy: &StrategyConfig,
    scale: f64,
    start: (f64, f64),
    steps: usize,
    record_every: usize,
) -> ToyRun {
    let vs = nn::VarStore::new(Device::Cpu);
    let x = Tensor::from_slice(&[start.0 as f32, start.1 as f32]).set_requires_grad(true);
    let shared = Params::from_named(vec![("x".into(), x.shallow_clone())]).expect("one name");
    let mut trajectory = vec![start];
    let end = |x: &Tensor| {
        let v = Vec::<f64>::try_from(x.detach().to_kind(Kind::Double)).expect("two values");
        (v[0], v[1])
    };
    let result = (|| -> Result<(), String> {
        let mut strategy =
            strategy.build(&Setup { num_tasks: 2, path: vs.root(), seed: 0 }).map_err(|e| e.to_string())?;
        let mut adam_x = Adam::new(&shared, AdamConfig::with_lr(1e-3)).map_err(|e| e.to_string())?;
        let own: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        let mut adam_own = if own.is_empty() {
            None
        } else {
            Some(
                Adam::new(&Params::from_named(own).expect("unique"), AdamConfig::with_lr(0.025))
                    .map_err(|e| e.to_string())?,
            )
        };
        let needs = strategy.needs();
        let validation = ToyValidation { scale, lr: 1e-3 };
        for step in 1..=steps {
            adam_x.zero_grad();
            if let Some(a) = adam_own.as_mut() {
                a.zero_grad();
            }
            let samples: Vec<TaskLosses> =
                (0..needs.samples).map(|_| TaskLosses::all(shifted(&x, scale))).collect();
            let bilevel = needs.validation.then_some(&validation as &dyn Bilevel);
            MtlBackward::new(&shared, &[])
                .run(strategy.as_mut(), &samples, step as u64, bilevel)
                .map_err(|e| e.to_string())?;
            adam_x.step().map_err(|e| e.to_string())?;
            if let Some(a) = adam_own.as_mut() {
                a.step().map_err(|e| e.to_string())?;
            }
            if needs.losses_after_step {
                let after: Vec<f64> =
                    tch::no_grad(|| shifted(&x, scale).iter().map(|l| l.double_value(&[])).collect());
                strategy.after_step(&[0, 1], &after).map_err(|e| e.to_string())?;
            }
            if step % 100 == 0 {
                strategy.end_epoch();
            }
            if step % record_every == 0 {
                trajectory.push(end(&x));
            }
        }
        Ok(())
    })();
    let last = end(&x);
    if trajectory.last() != Some(&last) {
        trajectory.push(last);
    }
    ToyRun { trajectory, end: last, error: result.err() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_match_cagrad_toy_values() {
        // CAGrad's toy formula evaluated with PyTorch in float64 (scale 1; L₁ scales by s).
        let reference = [
            ((-8.5, 7.5), [6.5523634078, 7.9007981432]),
            ((0.0, PARETO_X2), [-15.0916384452, -15.0916384452]),
            ((9.0, 9.0), [7.943949189, 6.6914953692]),
            ((1.0, -3.0), [-14.6181442964, -12.0837291862]),
            ((-7.5, -0.5), [0.3888083766, -4.7544835339]),
        ];
        for ((x1, x2), [r1, r2]) in reference {
            for scale in [0.1, 1.0] {
                let x = Tensor::from_slice(&[x1, x2]);
                let [a, b] = losses(&x, scale);
                let [c, d] = losses_at(x1, x2, scale);
                assert!((c - scale * r1).abs() < 1e-9 && (d - r2).abs() < 1e-9, "({x1}, {x2}): {c} {d}");
                assert!((a.double_value(&[]) - c).abs() < 1e-9 && (b.double_value(&[]) - d).abs() < 1e-9);
            }
        }
        // On the Pareto set both losses are symmetric in x₁.
        let [l1, l2] = losses_at(3.0, PARETO_X2, 1.0);
        let [m1, m2] = losses_at(-3.0, PARETO_X2, 1.0);
        assert!((l1 - m2).abs() < 1e-12 && (l2 - m1).abs() < 1e-12);
    }
}
