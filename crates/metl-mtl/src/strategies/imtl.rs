//! IMTL: impartial multi-task learning, loss and gradient balancing together.

use super::{imtl_g::imtl_g_weights, imtl_l::ImtlL};
use crate::{
    error::Result,
    linalg::Matrix,
    strategy::{GradientSpace, Setup},
    weighting::{Context, Weighting},
};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// Settings of [`Imtl`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImtlConfig {
    /// Where the gradients are taken (default parameters).
    pub space: GradientSpace,
}

/// IMTL (Liu et al. 2021, "Towards impartial multi-task learning"): IMTL-L's scaled losses
/// `e^{sᵢ}Lᵢ − sᵢ` (learned `sᵢ`, registered as `imtl_scale`), then IMTL-G on their
/// gradients `e^{sᵢ} gᵢ`:
///
/// ```text
/// α = IMTL-G(D G D),  D = diag(e^{s}),    update = Σᵢ αᵢ e^{sᵢ} gᵢ,   ∂/∂sᵢ = e^{sᵢ}Lᵢ − 1
/// ```
///
/// (as LibMTL combines them). Reported weights `αᵢ e^{sᵢ}`.
#[derive(Debug)]
pub struct Imtl {
    config: ImtlConfig,
    scale: Tensor,
}

impl Imtl {
    /// IMTL for `setup.num_tasks` tasks.
    pub fn new(config: &ImtlConfig, setup: &Setup<'_>) -> Result<Self> {
        let scale = setup.path.f_var("imtl_scale", &[setup.num_tasks as i64], nn::Init::Const(0.0))?;
        Ok(Self { config: config.clone(), scale })
    }
}

impl Weighting for Imtl {
    fn name(&self) -> &'static str {
        "imtl"
    }

    fn space(&self) -> GradientSpace {
        self.config.space
    }

    fn weigh(&mut self, gramian: &Matrix, context: &Context) -> Result<Vec<f64>> {
        let (s, e) = ImtlL::scales(&self.scale, &context.tasks)?;
        // The scales' own gradient: ∂ Σᵢ (e^{sᵢ}Lᵢ − sᵢ) / ∂sᵢ.
        let values = Tensor::from_slice(&context.losses).to_kind(s.kind()).to_device(s.device());
        let grad = (s.detach().exp() * values - 1.0).detach();
        (s * grad).f_sum(Kind::Float)?.f_backward()?;
        let alpha = imtl_g_weights(&gramian.scale_rows_cols(&e));
        Ok(alpha.iter().zip(&e).map(|(a, e)| a * e).collect())
    }

    /// The scales `s`.
    fn parameters(&self) -> Vec<Tensor> {
        vec![self.scale.shallow_clone()]
    }
}
