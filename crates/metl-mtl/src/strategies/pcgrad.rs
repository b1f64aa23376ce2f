//! Projecting conflicting gradients (PCGrad).

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

/// Settings of [`PcGrad`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PcGradConfig {
    /// Where the gradients are taken (default parameters).
    pub space: GradientSpace,
}

/// PCGrad (Yu, Kumar, Gupta, Levine, Hausman & Finn 2020, "Gradient surgery for multi-task
/// learning"): every task gradient, visiting the others in a fresh random order, loses its
/// component along each gradient it conflicts with,
///
/// ```text
/// gᵢᴾᶜ ← gᵢᴾᶜ − (gᵢᴾᶜ·gⱼ / ‖gⱼ‖²) gⱼ   if gᵢᴾᶜ·gⱼ < 0,      update = Σᵢ gᵢᴾᶜ
/// ```
///
/// As a weighting of the Gramian: `gᵢᴾᶜ = Σₖ cᵢₖ gₖ` stays a combination of the original
/// gradients, with `gᵢᴾᶜ·gⱼ = (c G)ᵢⱼ`, so the whole surgery runs on `G` (`O(T³)` on the
/// host instead of `O(T²P)` dot products), and the update is `Σₖ (Σᵢ cᵢₖ) gₖ`.
#[derive(Debug, Clone)]
pub struct PcGrad {
    config: PcGradConfig,
    rng: Rng,
}

impl PcGrad {
    /// PCGrad with its orders drawn from `setup.seed`.
    pub fn new(config: &PcGradConfig, setup: &Setup<'_>) -> Result<Self> {
        Ok(Self { config: config.clone(), rng: seeded(setup.seed) })
    }
}

/// PCGrad's weights for Gramian `g`, with the visiting order of task `i`'s partners given
/// by `order(i)` (a permutation of the others).
pub fn pcgrad_weights(g: &Matrix, mut order: impl FnMut(usize) -> Vec<usize>) -> Vec<f64> {
    let n = g.n();
    let mut weights = vec![0.0; n];
    for i in 0..n {
        let mut c = vec![0.0; n];
        c[i] = 1.0;
        for j in order(i) {
            let dot: f64 = (0..n).map(|k| c[k] * g.get(k, j)).sum();
            let gjj = g.get(j, j);
            if dot < 0.0 && gjj > 0.0 {
                c[j] -= dot / gjj;
            }
        }
        for (w, ci) in weights.iter_mut().zip(&c) {
            *w += ci;
        }
    }
    weights
}

impl Weighting for PcGrad {
    fn name(&self) -> &'static str {
        "pcgrad"
    }

    fn space(&self) -> GradientSpace {
        self.config.space
    }

    fn weigh(&mut self, gramian: &Matrix, _context: &Context) -> Result<Vec<f64>> {
        let g = gramian;
        let rng = &mut self.rng;
        let weights = pcgrad_weights(g, |i| {
            let mut others: Vec<usize> = (0..g.n()).filter(|&j| j != i).collect();
            others.shuffle(rng);
            others
        });
        Ok(weights)
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
