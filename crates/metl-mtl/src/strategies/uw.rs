//! Uncertainty weighting (UW).

use crate::{
    error::Result,
    strategy::{Combination, Needs, Setup, StepInput, Strategy},
};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// Settings of [`Uw`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UwConfig {
    /// Initial log-variance `sᵢ` of every task (default −0.5, LibMTL's).
    pub init_log_var: f64,
}

impl Default for UwConfig {
    fn default() -> Self {
        Self { init_log_var: -0.5 }
    }
}

impl UwConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if !self.init_log_var.is_finite() {
            return Err(crate::MtlError::invalid("uw.init_log_var", self.init_log_var, "must be finite"));
        }
        Ok(())
    }
}

/// Uncertainty weighting (Kendall, Gal & Cipolla 2018, "Multi-task learning using
/// uncertainty to weigh losses for scene geometry and semantics"):
///
/// ```text
/// L = Σᵢ ( e^{−sᵢ} Lᵢ / 2 + sᵢ / 2 ),   sᵢ = log σᵢ²   (learned with the model)
/// ```
///
/// so `∂L/∂sᵢ = (1 − e^{−sᵢ} Lᵢ) / 2` and task `i` is weighted `e^{−sᵢ}/2` (reported).
/// The `sᵢ` are registered as `uw_log_var` under the setup's path.
#[derive(Debug)]
pub struct Uw {
    log_var: Tensor,
}

impl Uw {
    /// UW for `setup.num_tasks` tasks.
    pub fn new(config: &UwConfig, setup: &Setup<'_>) -> Result<Self> {
        config.validate()?;
        let log_var = setup.path.f_var(
            "uw_log_var",
            &[setup.num_tasks as i64],
            nn::Init::Const(config.init_log_var),
        )?;
        Ok(Self { log_var })
    }

    /// The log-variances `s` (a trainable tensor).
    pub fn log_var(&self) -> &Tensor {
        &self.log_var
    }
}

impl Strategy for Uw {
    fn name(&self) -> &'static str {
        "uw"
    }

    fn needs(&self) -> Needs {
        Needs::LOSSES
    }

    fn combine(&mut self, input: &StepInput<'_>) -> Result<Combination> {
        let idx = Tensor::from_slice(&input.tasks.iter().map(|&t| t as i64).collect::<Vec<_>>())
            .to_device(self.log_var.device());
        let s = self.log_var.f_index_select(0, &idx)?;
        let losses = Tensor::f_stack(input.losses, 0)?.f_to_kind(s.kind())?;
        let total = (losses * (-&s).exp() / 2.0 + &s / 2.0).f_sum(Kind::Float)?;
        let weights = Vec::<f64>::try_from((-s.detach()).exp().to_kind(Kind::Double) / 2.0)?;
        Ok(Combination::loss(total, weights))
    }

    /// The log-variances `s`.
    fn parameters(&self) -> Vec<Tensor> {
        vec![self.log_var.shallow_clone()]
    }
}
