//! Gradient vaccine (GradVac).

use crate::{
    checkpoint::StrategyState,
    error::Result,
    linalg::Matrix,
    strategy::{GradientSpace, Setup},
    weighting::{Context, Weighting},
};
use metl_data::rng::{seeded, Rng};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// Settings of [`GradVac`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GradVacConfig {
    /// EMA rate `β` of the target similarities (default 0.01, the paper's; LibMTL uses 0.5).
    pub beta: f64,
    /// Where the gradients are taken (default parameters).
    pub space: GradientSpace,
}

impl Default for GradVacConfig {
    fn default() -> Self {
        Self { beta: 0.01, space: GradientSpace::Parameters }
    }
}

impl GradVacConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if !(self.beta > 0.0 && self.beta <= 1.0) {
            return Err(crate::MtlError::invalid("gradvac.beta", self.beta, "must be in (0, 1]"));
        }
        Ok(())
    }
}

/// GradVac (Wang, Tsvetkov, Firat & Cao 2021, "Gradient vaccine: investigating and
/// improving multi-task optimization in massively multilingual models"): PCGrad with an
/// adaptive target similarity. Visiting the other tasks `j` in random order, with
/// `φ = cos(gᵢᴾˢ, gⱼ)` and the EMA target `φ̂ᵢⱼ` (initially 0):
///
/// ```text
/// if φ < φ̂ᵢⱼ:  gᵢᴾˢ ← gᵢᴾˢ + ‖gᵢᴾˢ‖ (φ̂ᵢⱼ √(1−φ²) − φ √(1−φ̂ᵢⱼ²)) / (‖gⱼ‖ √(1−φ̂ᵢⱼ²)) gⱼ
/// φ̂ᵢⱼ ← (1−β) φ̂ᵢⱼ + β φ                                   (every visit, the paper's Eq. 3)
/// ```
///
/// update `Σᵢ gᵢᴾˢ`. Computed on the Gramian as [`super::pcgrad`] is (`gᵢᴾˢ = Σₖ cᵢₖ gₖ`).
/// Whole-model granularity (LibMTL's default). LibMTL updates `φ̂` only when `φ < φ̂`.
#[derive(Debug, Clone)]
pub struct GradVac {
    config: GradVacConfig,
    rng: Rng,
    target: Vec<Vec<f64>>,
}

impl GradVac {
    /// GradVac for `setup.num_tasks` tasks, orders drawn from `setup.seed`.
    pub fn new(config: &GradVacConfig, setup: &Setup<'_>) -> Result<Self> {
        config.validate()?;
        let t = setup.num_tasks;
        Ok(Self { config: config.clone(), rng: seeded(setup.seed), target: vec![vec![0.0; t]; t] })
    }
}

impl Weighting for GradVac {
    fn name(&self) -> &'static str {
        "gradvac"
    }

    fn space(&self) -> GradientSpace {
        self.config.space
    }

    fn weigh(&mut self, gramian: &Matrix, context: &Context) -> Result<Vec<f64>> {
        let g = gramian;
        let n = g.n();
        let norms: Vec<f64> = g.diag().iter().map(|d| d.max(0.0).sqrt()).collect();
        let beta = self.config.beta;
        let mut weights = vec![0.0; n];
        for i in 0..n {
            let mut c = vec![0.0; n];
            c[i] = 1.0;
            let mut others: Vec<usize> = (0..n).filter(|&j| j != i).collect();
            others.shuffle(&mut self.rng);
            for j in others {
                let pc_norm = g.quad(&c).max(0.0).sqrt();
                let dot: f64 = (0..n).map(|k| c[k] * g.get(k, j)).sum();
                let phi = dot / (pc_norm * norms[j] + 1e-8);
                let (ti, tj) = (context.tasks[i], context.tasks[j]);
                let target = self.target[ti][tj];
                if phi < target {
                    let w = pc_norm
                        * (target * (1.0 - phi * phi).max(0.0).sqrt()
                            - phi * (1.0 - target * target).max(0.0).sqrt())
                        / (norms[j] * (1.0 - target * target).max(0.0).sqrt() + 1e-8);
                    c[j] += w;
                }
                self.target[ti][tj] = (1.0 - beta) * target + beta * phi;
            }
            for (w, ci) in weights.iter_mut().zip(&c) {
                *w += ci;
            }
        }
        Ok(weights)
    }

    /// The random generator and the target similarities (`T × T`, row-major).
    fn state(&self) -> StrategyState {
        StrategyState::default().with_rng("rng", &self.rng).with_values("target", self.target.concat())
    }

    fn load_state(&mut self, state: &StrategyState) -> Result<()> {
        let t = self.target.len();
        let mut r = state.reader(self.name());
        let rng = r.rng("rng")?;
        let target = r.values("target", t * t)?;
        r.finish()?;
        self.rng = rng;
        self.target = target.chunks(t).map(<[f64]>::to_vec).collect();
        Ok(())
    }
}
