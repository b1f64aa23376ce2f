//! SDMGrad: stochastic direction-oriented multi-objective gradient descent.

use crate::{
    checkpoint::StrategyState,
    error::{MtlError, Result},
    host_optim::HostSgd,
    solvers::simplex,
    strategy::{non_negative, Combination, GradientSpace, Needs, StepInput, Strategy},
};
use serde::{Deserialize, Serialize};

/// Settings of [`SdmGrad`] (defaults: LibMTL's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SdmGradConfig {
    /// Regularisation `λ` towards the mean gradient (default 0.3).
    pub lambda: f64,
    /// Inner iterations on the weights per step (default 20).
    pub niter: usize,
    /// Where the gradients are taken (default parameters).
    pub space: GradientSpace,
}

impl Default for SdmGradConfig {
    fn default() -> Self {
        Self { lambda: 0.3, niter: 20, space: GradientSpace::Parameters }
    }
}

impl SdmGradConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        non_negative("sdmgrad.lambda", self.lambda)?;
        if self.niter == 0 {
            return Err(MtlError::invalid("sdmgrad.niter", 0, "must be >= 1"));
        }
        Ok(())
    }
}

/// SDMGrad (Xiao, Ban & Ji 2023, "Direction-oriented multi-objective learning: simple and
/// provable stochastic algorithms"): three independent gradient samples `J₀, J₁, J₂` per
/// step (three disjoint parts of the batch). With the cross-Gramian `M = J₁J₂ᵀ / s²`
/// (`s` the mean of `√diag(M)`), the weights take `niter` projected SGD steps (lr 5,
/// momentum 0.5, as in the authors' code) on `½wᵀMw + λ wᵀM1/T`, then
///
/// ```text
/// update = (J₀ᵀ w + λ ḡ₀) / (1 + λ),   ḡ₀ = mean of J₀'s rows
/// ```
///
/// `w` (on the simplex, from `1/T`) carries over between steps. Reported weights
/// `(w + λ/T)/(1 + λ)`.
#[derive(Debug, Clone)]
pub struct SdmGrad {
    config: SdmGradConfig,
    w: Vec<f64>,
}

impl SdmGrad {
    /// SDMGrad for `num_tasks` tasks.
    pub fn new(config: &SdmGradConfig, num_tasks: usize) -> Result<Self> {
        config.validate()?;
        Ok(Self { config: config.clone(), w: vec![1.0 / num_tasks as f64; num_tasks] })
    }
}

impl Strategy for SdmGrad {
    fn name(&self) -> &'static str {
        "sdmgrad"
    }

    fn needs(&self) -> Needs {
        Needs { samples: 3, ..Needs::gradients(self.config.space) }
    }

    fn combine(&mut self, input: &StepInput<'_>) -> Result<Combination> {
        let k = input.k();
        let lambda = self.config.lambda;
        let m = input.cross_gramian(1, 2)?;
        let scale = m.diag().iter().map(|d| d.max(0.0).sqrt()).sum::<f64>() / k as f64;
        let m = m.scaled(1.0 / (scale * scale + 1e-8));
        let mean_col: Vec<f64> = (0..k).map(|i| m.row(i).iter().sum::<f64>() / k as f64).collect();
        let mut w: Vec<f64> = input.tasks.iter().map(|&t| self.w[t]).collect();
        let sum: f64 = w.iter().sum();
        w.iter_mut().for_each(|v| *v /= sum);
        let mut sgd = HostSgd::new(5.0, 0.5);
        for _ in 0..self.config.niter {
            let grad: Vec<f64> = m.mul_vec(&w).iter().zip(&mean_col).map(|(a, b)| a + lambda * b).collect();
            sgd.step(&mut w, &grad);
            w = simplex::project(&w);
        }
        for (&t, v) in input.tasks.iter().zip(&w) {
            self.w[t] = *v;
        }
        let weights: Vec<f64> = w.iter().map(|v| (v + lambda / k as f64) / (1.0 + lambda)).collect();
        Ok(Combination::direction(StepInput::combine_rows(input.sample(0)?, &weights)?, weights))
    }

    /// The weights `w` (the next step's start).
    fn state(&self) -> StrategyState {
        StrategyState::default().with_values("w", self.w.clone())
    }

    fn load_state(&mut self, state: &StrategyState) -> Result<()> {
        let mut r = state.reader(self.name());
        let w = r.values("w", self.w.len())?;
        r.finish()?;
        self.w = w;
        Ok(())
    }
}
