//! Dynamic weight average (DWA).

use crate::{
    checkpoint::StrategyState,
    error::Result,
    linalg::softmax,
    jacobian::weighted_loss,
    strategy::{positive, Combination, Needs, Setup, StepInput, Strategy},
};
use serde::{Deserialize, Serialize};

/// Settings of [`Dwa`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DwaConfig {
    /// Softmax temperature `τ` (default 2, the paper's).
    pub temperature: f64,
}

impl Default for DwaConfig {
    fn default() -> Self {
        Self { temperature: 2.0 }
    }
}

impl DwaConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        positive("dwa.temperature", self.temperature)
    }
}

/// Dynamic weight average (Liu, Johns & Davison 2019, "End-to-end multi-task learning with
/// attention"):
///
/// ```text
/// wᵢ(e) = T · softmax_i( rᵢ(e−1) / τ ),   rᵢ(e−1) = L̄ᵢ(e−1) / L̄ᵢ(e−2)
/// ```
///
/// with `L̄ᵢ(e)` task `i`'s mean training loss over epoch `e` (the trainer calls
/// [`Strategy::end_epoch`]); `wᵢ = 1` during the first two epochs. `L = Σᵢ wᵢ Lᵢ`.
#[derive(Debug, Clone)]
pub struct Dwa {
    temperature: f64,
    sums: Vec<f64>,
    counts: Vec<u64>,
    history: Vec<Vec<f64>>,
}

impl Dwa {
    /// DWA for `setup.num_tasks` tasks.
    pub fn new(config: &DwaConfig, setup: &Setup<'_>) -> Result<Self> {
        config.validate()?;
        let t = setup.num_tasks;
        Ok(Self {
            temperature: config.temperature,
            sums: vec![0.0; t],
            counts: vec![0; t],
            history: Vec::new(),
        })
    }

    /// The weights of all `T` tasks for the current epoch.
    pub fn epoch_weights(&self) -> Vec<f64> {
        let t = self.sums.len();
        match self.history.as_slice() {
            [.., before, last] => {
                let ratios: Vec<f64> = last
                    .iter()
                    .zip(before)
                    .map(|(l, b)| if *b > 0.0 && l.is_finite() && b.is_finite() { l / b } else { 1.0 })
                    .map(|r| r / self.temperature)
                    .collect();
                softmax(&ratios).iter().map(|w| w * t as f64).collect()
            }
            _ => vec![1.0; t],
        }
    }
}

impl Strategy for Dwa {
    fn name(&self) -> &'static str {
        "dwa"
    }

    fn needs(&self) -> Needs {
        Needs::LOSSES
    }

    fn combine(&mut self, input: &StepInput<'_>) -> Result<Combination> {
        for (&t, &v) in input.tasks.iter().zip(input.values()) {
            self.sums[t] += v;
            self.counts[t] += 1;
        }
        let all = self.epoch_weights();
        let weights: Vec<f64> = input.tasks.iter().map(|&t| all[t]).collect();
        Ok(Combination::loss(weighted_loss(input.losses, &weights)?, weights))
    }

    fn end_epoch(&mut self) {
        let means = self
            .sums
            .iter()
            .zip(&self.counts)
            .map(|(s, &c)| if c > 0 { s / c as f64 } else { f64::NAN })
            .collect();
        self.history.push(means);
        self.sums.iter_mut().for_each(|s| *s = 0.0);
        self.counts.iter_mut().for_each(|c| *c = 0);
    }

    /// The current epoch's loss sums and counts, and the mean loss of every past epoch
    /// (`history`, `T` numbers per epoch).
    fn state(&self) -> StrategyState {
        StrategyState::default()
            .with_values("sums", self.sums.clone())
            .with_words("counts", self.counts.clone())
            .with_values("history", self.history.concat())
    }

    fn load_state(&mut self, state: &StrategyState) -> Result<()> {
        let t = self.sums.len();
        let mut r = state.reader(self.name());
        let sums = r.values("sums", t)?;
        let counts = r.words("counts", t)?;
        let history = r.values_any("history")?;
        if history.len() % t != 0 {
            return Err(
                r.error("values/history", format!("has {} entries, not a multiple of {t}", history.len()))
            );
        }
        r.finish()?;
        self.sums = sums;
        self.counts = counts;
        self.history = history.chunks(t).map(<[f64]>::to_vec).collect();
        Ok(())
    }
}
