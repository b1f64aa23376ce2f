//! MoDo: multi-objective gradient with double sampling.

use crate::{
    checkpoint::StrategyState,
    error::Result,
    solvers::simplex,
    strategy::{non_negative, positive, Combination, GradientSpace, Needs, StepInput, Strategy},
};
use serde::{Deserialize, Serialize};

/// Settings of [`MoDo`] (defaults: LibMTL's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MoDoConfig {
    /// Step size `γ` of the weights (default 0.001).
    pub gamma: f64,
    /// ℓ2 regularisation `ρ` of the weights' update (default 0.1).
    pub rho: f64,
    /// Where the gradients are taken (default parameters).
    pub space: GradientSpace,
}

impl Default for MoDoConfig {
    fn default() -> Self {
        Self { gamma: 1e-3, rho: 0.1, space: GradientSpace::Parameters }
    }
}

impl MoDoConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        positive("modo.gamma", self.gamma)?;
        non_negative("modo.rho", self.rho)
    }
}

/// MoDo (Chen, Fernando, Ying & Chen 2023, "Three-way trade-off in multi-objective
/// learning: optimization, generalization and conflict-avoidance"): three independent
/// gradient samples `J₁, J₂, J₃` per step (the batch is split into three disjoint parts);
/// the first two give an unbiased estimate of the Gramian for the weights' update, the
/// third the direction:
///
/// ```text
/// λ ← Π_Δ( λ − γ (J₁ J₂ᵀ λ + ρ λ) ),     update = J₃ᵀ λ
/// ```
///
/// `λ` starts at `1/T`; `Π_Δ` is the Euclidean projection on the simplex. Task-specific
/// parameters get their gradient averaged over the three parts.
#[derive(Debug, Clone)]
pub struct MoDo {
    config: MoDoConfig,
    lambda: Vec<f64>,
}

impl MoDo {
    /// MoDo for `num_tasks` tasks.
    pub fn new(config: &MoDoConfig, num_tasks: usize) -> Result<Self> {
        config.validate()?;
        Ok(Self { config: config.clone(), lambda: vec![1.0 / num_tasks as f64; num_tasks] })
    }
}

impl Strategy for MoDo {
    fn name(&self) -> &'static str {
        "modo"
    }

    fn needs(&self) -> Needs {
        Needs { samples: 3, ..Needs::gradients(self.config.space) }
    }

    fn combine(&mut self, input: &StepInput<'_>) -> Result<Combination> {
        let cross = input.cross_gramian(0, 1)?;
        let lam: Vec<f64> = input.tasks.iter().map(|&t| self.lambda[t]).collect();
        let step = cross.mul_vec(&lam);
        let lam = simplex::project(
            &lam.iter()
                .zip(&step)
                .map(|(l, s)| l - self.config.gamma * (s + self.config.rho * l))
                .collect::<Vec<_>>(),
        );
        for (&t, l) in input.tasks.iter().zip(&lam) {
            self.lambda[t] = *l;
        }
        Ok(Combination::direction(StepInput::combine_rows(input.sample(2)?, &lam)?, lam))
    }

    /// The weights `λ`.
    fn state(&self) -> StrategyState {
        StrategyState::default().with_values("lambda", self.lambda.clone())
    }

    fn load_state(&mut self, state: &StrategyState) -> Result<()> {
        let mut r = state.reader(self.name());
        let lambda = r.values("lambda", self.lambda.len())?;
        r.finish()?;
        self.lambda = lambda;
        Ok(())
    }
}
