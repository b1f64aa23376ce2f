//! MoCo: multi-objective gradient correction.

use super::state::{column, row_norms, TaskRows};
use crate::{
    checkpoint::StrategyState,
    error::Result,
    linalg::{softmax, Matrix},
    strategy::{non_negative, positive, Combination, GradientSpace, Needs, StepInput, Strategy},
};
use serde::{Deserialize, Serialize};

/// Settings of [`MoCo`] (defaults: LibMTL's, from the authors' code).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MoCoConfig {
    /// Step size `β` of the tracking gradients (default 0.5).
    pub beta: f64,
    /// Decay exponent of `β` (default 0.5): `β_t = β / t^σ`.
    pub beta_sigma: f64,
    /// Step size `γ` of the weights (default 0.1).
    pub gamma: f64,
    /// Decay exponent of `γ` (default 0.5).
    pub gamma_sigma: f64,
    /// ℓ2 regularisation `ρ` of the weights' update (default 0).
    pub rho: f64,
    /// Where the gradients are taken (default parameters).
    pub space: GradientSpace,
}

impl Default for MoCoConfig {
    fn default() -> Self {
        Self {
            beta: 0.5,
            beta_sigma: 0.5,
            gamma: 0.1,
            gamma_sigma: 0.5,
            rho: 0.0,
            space: GradientSpace::Parameters,
        }
    }
}

impl MoCoConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        positive("moco.beta", self.beta)?;
        non_negative("moco.beta_sigma", self.beta_sigma)?;
        positive("moco.gamma", self.gamma)?;
        non_negative("moco.gamma_sigma", self.gamma_sigma)?;
        non_negative("moco.rho", self.rho)
    }
}

/// MoCo (Fernando, Shen, Liu, Chaudhury, Murugesan & Chen 2023, "Mitigating gradient bias
/// in multi-objective learning: a provably convergent approach"): tracking gradients `yᵢ`
/// follow the loss-scaled unit gradients, and the weights `λ` take a projected-gradient
/// step on `‖Yᵀλ‖²` (the simplex projection replaced by a softmax, as in the authors' code):
///
/// ```text
/// ĝᵢ = Lᵢ gᵢ / (‖gᵢ‖ + 10⁻⁸),   yᵢ ← yᵢ − β_t (yᵢ − ĝᵢ),   β_t = β / t^{σ_β}
/// λ ← softmax(λ − γ_t (Y Yᵀ + ρI) λ),   γ_t = γ / t^{σ_γ},     update = Yᵀλ
/// ```
///
/// `Y` (`[T, D]`) lives on the gradients' device. `λ` starts at `1/T`.
#[derive(Debug)]
pub struct MoCo {
    config: MoCoConfig,
    y: TaskRows,
    lambda: Vec<f64>,
    steps: u64,
}

impl MoCo {
    /// MoCo for `num_tasks` tasks.
    pub fn new(config: &MoCoConfig, num_tasks: usize) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config: config.clone(),
            y: TaskRows::default(),
            lambda: vec![1.0 / num_tasks as f64; num_tasks],
            steps: 0,
        })
    }
}

impl Strategy for MoCo {
    fn name(&self) -> &'static str {
        "moco"
    }

    fn needs(&self) -> Needs {
        Needs::gradients(self.config.space)
    }

    fn combine(&mut self, input: &StepInput<'_>) -> Result<Combination> {
        self.steps += 1;
        let t = self.steps as f64;
        let j = input.jacobian()?;
        let beta = self.config.beta / t.powf(self.config.beta_sigma);
        // y ← (1 − β) y + β ĝ, with ĝᵢ = Lᵢ gᵢ / (‖gᵢ‖ + 10⁻⁸), in place.
        let scale: Vec<f64> =
            row_norms(j)?.iter().zip(input.values()).map(|(n, l)| beta * l / (n + 1e-8)).collect();
        let y = self.y.update(&input.tasks, input.num_tasks, j, |y| {
            let _ = y.f_mul_scalar_(1.0 - beta)?.f_addcmul_(j, &column(&scale, j))?;
            Ok(())
        })?;
        let yy = Matrix::from_tensor(&y.f_matmul(&y.f_transpose(0, 1)?)?)?.add_diag(self.config.rho);
        let gamma = self.config.gamma / t.powf(self.config.gamma_sigma);
        let lam: Vec<f64> = input.tasks.iter().map(|&t| self.lambda[t]).collect();
        let step = yy.mul_vec(&lam);
        let lam = softmax(&lam.iter().zip(&step).map(|(l, s)| l - gamma * s).collect::<Vec<_>>());
        for (&t, l) in input.tasks.iter().zip(&lam) {
            self.lambda[t] = *l;
        }
        let direction = StepInput::combine_rows(&y, &lam)?;
        Ok(Combination::direction(direction, lam))
    }

    /// The tracking gradients `Y` (once made), the weights `λ` and the step count.
    fn state(&self) -> StrategyState {
        let state = StrategyState::default()
            .with_values("lambda", self.lambda.clone())
            .with_word("steps", self.steps);
        self.y.save("y", state)
    }

    fn load_state(&mut self, state: &StrategyState) -> Result<()> {
        let mut r = state.reader(self.name());
        let lambda = r.values("lambda", self.lambda.len())?;
        let steps = r.word("steps")?;
        let y = TaskRows::load("y", &mut r)?;
        r.finish()?;
        self.lambda = lambda;
        self.steps = steps;
        self.y = y;
        Ok(())
    }
}
