//! IMTL-L: the loss-balancing half of impartial multi-task learning.

use crate::{
    error::Result,
    strategy::{Combination, Needs, Setup, StepInput, Strategy},
};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// Settings of [`ImtlL`] (none; the scales start at `s = 0`, weight 1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImtlLConfig {}

/// IMTL-L (Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang 2021, "Towards impartial
/// multi-task learning"):
///
/// ```text
/// L = Σᵢ ( e^{sᵢ} Lᵢ − sᵢ ),   ∂L/∂sᵢ = e^{sᵢ} Lᵢ − 1
/// ```
///
/// with learned scales `sᵢ` (init 0, registered as `imtl_scale`): at the optimum of `s`
/// every scaled loss `e^{sᵢ}Lᵢ` equals 1. Reported weights `e^{sᵢ}`.
#[derive(Debug)]
pub struct ImtlL {
    scale: Tensor,
}

impl ImtlL {
    /// IMTL-L for `setup.num_tasks` tasks.
    pub fn new(_config: &ImtlLConfig, setup: &Setup<'_>) -> Result<Self> {
        Ok(Self { scale: setup.path.f_var("imtl_scale", &[setup.num_tasks as i64], nn::Init::Const(0.0))? })
    }

    /// `sᵢ` of the participating tasks and `e^{sᵢ}` on the host.
    pub(crate) fn scales(scale: &Tensor, tasks: &[usize]) -> Result<(Tensor, Vec<f64>)> {
        let idx = Tensor::from_slice(&tasks.iter().map(|&t| t as i64).collect::<Vec<_>>())
            .to_device(scale.device());
        let s = scale.f_index_select(0, &idx)?;
        let e = Vec::<f64>::try_from(s.detach().exp().to_kind(Kind::Double))?;
        Ok((s, e))
    }
}

impl Strategy for ImtlL {
    fn name(&self) -> &'static str {
        "imtl_l"
    }

    fn needs(&self) -> Needs {
        Needs::LOSSES
    }

    fn combine(&mut self, input: &StepInput<'_>) -> Result<Combination> {
        let (s, weights) = Self::scales(&self.scale, &input.tasks)?;
        let losses = Tensor::f_stack(input.losses, 0)?.f_to_kind(s.kind())?;
        let total = (losses * s.exp() - &s).f_sum(Kind::Float)?;
        Ok(Combination::loss(total, weights))
    }

    /// The scales `s`.
    fn parameters(&self) -> Vec<Tensor> {
        vec![self.scale.shallow_clone()]
    }
}
