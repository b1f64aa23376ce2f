//! The multiple-gradient descent algorithm (MGDA, MGDA-UB).

use crate::{
    error::{MtlError, Result},
    linalg::Matrix,
    solvers::min_norm::{min_norm_weights, FrankWolfe},
    strategy::GradientSpace,
    weighting::{Context, Weighting},
};
use serde::{Deserialize, Serialize};

/// How task gradients are normalised before the min-norm problem (Sener & Koltun's code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GradientNormalization {
    /// `nᵢ = 1` (default, as LibMTL's and the PyTorch reference).
    #[default]
    None,
    /// `nᵢ = ‖gᵢ‖`.
    L2,
    /// `nᵢ = Lᵢ`.
    Loss,
    /// `nᵢ = Lᵢ ‖gᵢ‖`.
    #[serde(rename = "loss+")]
    LossPlus,
}

/// Settings of [`Mgda`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MgdaConfig {
    /// Gradient normalisation (default none).
    pub normalization: GradientNormalization,
    /// Frank–Wolfe iteration limit (default 250).
    pub max_iters: usize,
    /// Frank–Wolfe stopping tolerance on the ℓ1 change of the weights (default 1e-5).
    pub tol: f64,
    /// Where the gradients are taken (default parameters; `mgda_ub` uses the representation).
    pub space: GradientSpace,
}

impl Default for MgdaConfig {
    fn default() -> Self {
        let fw = FrankWolfe::default();
        Self {
            normalization: GradientNormalization::None,
            max_iters: fw.max_iters,
            tol: fw.tol,
            space: GradientSpace::Parameters,
        }
    }
}

impl MgdaConfig {
    /// MGDA-UB's settings: the representation space.
    pub fn upper_bound() -> Self {
        Self { space: GradientSpace::Representation, ..Self::default() }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.max_iters == 0 {
            return Err(MtlError::invalid("mgda.max_iters", 0, "must be >= 1"));
        }
        crate::strategy::positive("mgda.tol", self.tol)
    }
}

/// MGDA (Désidéri 2012; Sener & Koltun 2018, "Multi-task learning as multi-objective
/// optimization"): the min-norm element of the convex hull of the task gradients,
///
/// ```text
/// α = argmin_{α ∈ Δ} ‖Σᵢ αᵢ gᵢ/nᵢ‖² = argmin_{α ∈ Δ} αᵀ G' α,   G' = N⁻¹ G N⁻¹
/// ```
///
/// solved by Frank–Wolfe ([`min_norm_weights`]); the update is `Σᵢ (αᵢ/nᵢ) gᵢ` (the
/// reported weights are `αᵢ/nᵢ`). With gradients of the shared representation instead of
/// the shared parameters this is MGDA-UB (one backward through the encoder).
#[derive(Debug, Clone)]
pub struct Mgda {
    config: MgdaConfig,
    name: &'static str,
}

impl Mgda {
    /// MGDA with these settings; named `mgda_ub` in the representation space.
    pub fn new(config: &MgdaConfig) -> Result<Self> {
        config.validate()?;
        let name = match config.space {
            GradientSpace::Parameters => "mgda",
            GradientSpace::Representation => "mgda_ub",
        };
        Ok(Self { config: config.clone(), name })
    }
}

impl Weighting for Mgda {
    fn name(&self) -> &'static str {
        self.name
    }

    fn space(&self) -> GradientSpace {
        self.config.space
    }

    fn weigh(&mut self, gramian: &Matrix, context: &Context) -> Result<Vec<f64>> {
        let g = gramian;
        let norms: Vec<f64> = g.diag().iter().map(|d| d.max(0.0).sqrt()).collect();
        let n: Vec<f64> = match self.config.normalization {
            GradientNormalization::None => vec![1.0; context.tasks.len()],
            GradientNormalization::L2 => norms,
            GradientNormalization::Loss => context.losses.to_vec(),
            GradientNormalization::LossPlus => {
                context.losses.iter().zip(&norms).map(|(l, n)| l * n).collect()
            }
        };
        let inv: Vec<f64> = n.iter().map(|v| if *v > 0.0 { 1.0 / v } else { 0.0 }).collect();
        let fw = FrankWolfe { max_iters: self.config.max_iters, tol: self.config.tol };
        let alpha = min_norm_weights(&g.scale_rows_cols(&inv), fw);
        Ok(alpha.iter().zip(&inv).map(|(a, i)| a * i).collect())
    }
}
