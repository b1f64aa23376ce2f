//! Smooth Tchebycheff scalarization (STCH).

use crate::{
    checkpoint::StrategyState,
    error::Result,
    linalg::softmax,
    strategy::{check_positive_losses, positive, Combination, Needs, Setup, StepInput, Strategy},
};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Settings of [`Stch`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StchConfig {
    /// Smoothing `μ` (default 1.0, LibMTL's).
    pub mu: f64,
    /// Epochs of `Σ log Lᵢ` before STCH starts; the nadir point is the mean loss of the
    /// last of them (default 4, LibMTL's).
    pub warmup_epochs: usize,
}

impl Default for StchConfig {
    fn default() -> Self {
        Self { mu: 1.0, warmup_epochs: 4 }
    }
}

impl StchConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        positive("stch.mu", self.mu)
    }
}

/// Smooth Tchebycheff scalarization (Lin, Zhang, Yang, Zhang, Zhang & Zhang 2024, "Smooth
/// Tchebycheff scalarization for multi-objective optimization"), as in its multi-task code:
///
/// ```text
/// ℓᵢ = log(Lᵢ / zᵢ),   L = T · μ · log Σᵢ exp(ℓᵢ / μ)
/// ```
///
/// a smooth maximum of the log-losses normalised by the nadir point `z` (the mean loss over
/// epoch `warmup_epochs`); before and during that epoch, `L = Σᵢ log Lᵢ`. The reported
/// weights are `∂L/∂Lᵢ = T softmaxᵢ(ℓ/μ) / Lᵢ`. Needs positive losses.
#[derive(Debug, Clone)]
pub struct Stch {
    config: StchConfig,
    epoch: usize,
    sums: Vec<f64>,
    counts: Vec<u64>,
    nadir: Option<Vec<f64>>,
}

impl Stch {
    /// STCH for `setup.num_tasks` tasks.
    pub fn new(config: &StchConfig, setup: &Setup<'_>) -> Result<Self> {
        config.validate()?;
        let t = setup.num_tasks;
        Ok(Self { config: config.clone(), epoch: 0, sums: vec![0.0; t], counts: vec![0; t], nadir: None })
    }
}

impl Strategy for Stch {
    fn name(&self) -> &'static str {
        "stch"
    }

    fn needs(&self) -> Needs {
        Needs::LOSSES
    }

    fn combine(&mut self, input: &StepInput<'_>) -> Result<Combination> {
        check_positive_losses("stch", input)?;
        let losses = Tensor::f_stack(input.losses, 0)?;
        let values = input.values();
        if self.epoch > self.config.warmup_epochs {
            let nadir = self.nadir.get_or_insert_with(|| {
                self.sums
                    .iter()
                    .zip(&self.counts)
                    .map(|(s, &c)| if c > 0 { s / c as f64 } else { 1.0 })
                    .collect()
            });
            let z: Vec<f64> = input.tasks.iter().map(|&t| nadir[t]).collect();
            let mu = self.config.mu;
            let k = input.k() as f64;
            let z_t = Tensor::from_slice(&z).to_kind(losses.kind()).to_device(losses.device());
            let log_ratio = (losses / z_t + 1e-20).f_log()?;
            let max = values.iter().zip(&z).map(|(l, z)| (l / z).ln()).fold(f64::NEG_INFINITY, f64::max);
            let total = ((log_ratio - max) / mu).f_exp()?.f_sum(Kind::Float)?.f_log()? * (mu * k);
            let soft = softmax(&values.iter().zip(&z).map(|(l, z)| (l / z).ln() / mu).collect::<Vec<_>>());
            let weights = soft.iter().zip(values).map(|(s, l)| k * s / l).collect();
            return Ok(Combination::loss(total, weights));
        }
        if self.epoch == self.config.warmup_epochs {
            for (&t, &v) in input.tasks.iter().zip(values) {
                self.sums[t] += v;
                self.counts[t] += 1;
            }
        }
        let total = (losses + 1e-20).f_log()?.f_sum(Kind::Float)?;
        Ok(Combination::loss(total, values.iter().map(|l| 1.0 / l).collect()))
    }

    fn end_epoch(&mut self) {
        self.epoch += 1;
    }

    /// The epoch, the warm-up epoch's loss sums and counts, and the nadir point once set.
    fn state(&self) -> StrategyState {
        StrategyState::default()
            .with_word("epoch", self.epoch as u64)
            .with_values("sums", self.sums.clone())
            .with_words("counts", self.counts.clone())
            .with_optional_values("nadir", self.nadir.as_deref())
    }

    fn load_state(&mut self, state: &StrategyState) -> Result<()> {
        let t = self.sums.len();
        let mut r = state.reader(self.name());
        let epoch = r.word("epoch")?;
        let epoch =
            usize::try_from(epoch).map_err(|_| r.error("words/epoch", format!("is {epoch}, too large")))?;
        let sums = r.values("sums", t)?;
        let counts = r.words("counts", t)?;
        let nadir = r.optional_values("nadir", t)?;
        r.finish()?;
        *self = Self { epoch, sums, counts, nadir, config: self.config.clone() };
        Ok(())
    }
}
