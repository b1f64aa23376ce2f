//! GradDrop: gradient sign dropout.

use crate::{
    checkpoint::StrategyState,
    error::{MtlError, Result},
    strategy::{Combination, GradientSpace, Needs, Setup, StepInput, Strategy},
};
use metl_data::rng::{seeded, Rng};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Settings of [`GradDrop`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GradDropConfig {
    /// Fraction `ℓ ∈ [0, 1]` of every gradient that always passes (default 0, LibMTL's).
    pub leak: f64,
}

impl GradDropConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.leak) {
            return Err(MtlError::invalid("graddrop.leak", self.leak, "must be in [0, 1]"));
        }
        Ok(())
    }
}

/// GradDrop (Chen, Ngiam, Huang, Luong, Kretzschmar, Chai & Anguelov 2020, "Just pick a
/// sign: optimizing deep multitask models with gradient sign dropout"), on the gradients
/// `Rᵢ = ∇_z Lᵢ` of the shared representation `z` (`[B, F]`):
///
/// ```text
/// Gᵢ = Σ_b sign(z_b) ⊙ Rᵢ,b            (batch-summed, sign-corrected; [F])
/// P  = ½ (1 + Σᵢ Gᵢ / Σᵢ |Gᵢ|),        U ~ Uniform(0, 1)^F
/// Mᵢ = [P > U]·[Gᵢ > 0] + [P < U]·[Gᵢ < 0]
/// ∇_z = Σᵢ (ℓ + (1 − ℓ) Mᵢ) ⊙ Rᵢ       (mask broadcast over the batch)
/// ```
///
/// so each feature keeps only the gradients of one sign, the positive one with probability
/// `P` (its sign purity). `U` comes from a seeded ChaCha8 stream. Works in the
/// representation space only; reported weights are the fraction of each task's features
/// kept (`ℓ + (1 − ℓ) mean Mᵢ`).
#[derive(Debug, Clone)]
pub struct GradDrop {
    config: GradDropConfig,
    rng: Rng,
}

impl GradDrop {
    /// GradDrop seeded from `setup.seed`.
    pub fn new(config: &GradDropConfig, setup: &Setup<'_>) -> Result<Self> {
        config.validate()?;
        Ok(Self { config: config.clone(), rng: seeded(setup.seed) })
    }
}

impl Strategy for GradDrop {
    fn name(&self) -> &'static str {
        "graddrop"
    }

    fn needs(&self) -> Needs {
        Needs::gradients(GradientSpace::Representation)
    }

    fn combine(&mut self, input: &StepInput<'_>) -> Result<Combination> {
        let z = input.representation.ok_or_else(|| MtlError::Unsupported {
            strategy: "graddrop",
            reason: "needs the shared representation".into(),
        })?;
        let j = input.jacobian()?;
        let batch = z.size()[0];
        let k = input.k() as i64;
        let r = j.f_reshape([k, batch, -1])?;
        let sign = z.f_reshape([batch, -1])?.f_sign()?.f_to_kind(r.kind())?;
        let g = (&r * sign.unsqueeze(0)).f_sum_dim_intlist(1i64, false, r.kind())?;
        let purity = (g.f_sum_dim_intlist(0i64, false, r.kind())?
            / (g.abs().f_sum_dim_intlist(0i64, false, r.kind())? + 1e-7)
            + 1.0)
            * 0.5;
        let features = purity.size()[0];
        let u: Vec<f32> = (0..features).map(|_| self.rng.gen::<f32>()).collect();
        let u = Tensor::from_slice(&u).to_kind(r.kind()).to_device(r.device());
        let up = purity.gt_tensor(&u).unsqueeze(0).logical_and(&g.gt(0.0));
        let down = purity.lt_tensor(&u).unsqueeze(0).logical_and(&g.lt(0.0));
        let mask = up.logical_or(&down).to_kind(r.kind());
        let leak = self.config.leak;
        let keep = mask * (1.0 - leak) + leak;
        let direction = (&r * keep.unsqueeze(1)).f_sum_dim_intlist(0i64, false, r.kind())?.f_reshape([-1])?;
        let weights = Vec::<f64>::try_from(keep.f_mean_dim(1i64, false, Kind::Double)?)?;
        Ok(Combination::direction(direction, weights))
    }

    /// The random generator.
    fn state(&self) -> StrategyState {
        StrategyState::of_rng(&self.rng)
    }

    fn load_state(&mut self, state: &StrategyState) -> Result<()> {
        self.rng = state.only_rng(self.name())?;
        Ok(())
    }
}
