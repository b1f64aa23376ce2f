//! Evaluation over many test tasks, reported as papers do: the mean and its 95%
//! confidence interval.

use crate::{error::Result, learner::MetaLearner};
use metl_data::TaskBatch;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// A mean over samples with the half-width of its 95% confidence interval,
/// `1.96 · s / √n` (normal approximation, `s` the sample standard deviation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The sample mean.
    pub mean: f64,
    /// The half-width of the 95% confidence interval (0 for fewer than 2 samples).
    pub ci95: f64,
    /// The number of samples.
    pub n: usize,
}

impl Estimate {
    /// The estimate from samples (`NaN` mean when empty).
    pub fn from_samples(samples: &[f64]) -> Self {
        let n = samples.len();
        let mean = samples.iter().sum::<f64>() / n as f64;
        let ci95 = if n < 2 {
            0.0
        } else {
            let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            1.96 * (var / n as f64).sqrt()
        };
        Self { mean, ci95, n }
    }
}

impl std::fmt::Display for Estimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = f.precision().unwrap_or(4);
        write!(f, "{:.p$} ± {:.p$}", self.mean, self.ci95)
    }
}

/// The result of evaluating after a given number of adaptation steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Adaptation steps taken on each support set.
    pub steps: usize,
    /// Query loss (MSE for regression) over tasks.
    pub loss: Estimate,
    /// Query accuracy over tasks (classification only).
    pub accuracy: Option<Estimate>,
}

fn to_vec(t: &Tensor) -> Result<Vec<f64>> {
    Ok(Vec::<f64>::try_from(t.to_kind(tch::Kind::Double).reshape([-1]))?)
}

/// Evaluates `learner` on every task of `batches` after each step count in `steps`.
///
/// One [`Evaluation`] per entry of `steps`, each over all tasks of all batches.
pub fn evaluate<L: MetaLearner + ?Sized>(
    learner: &L,
    batches: impl IntoIterator<Item = TaskBatch>,
    steps: &[usize],
) -> Result<Vec<Evaluation>> {
    let mut losses = vec![Vec::new(); steps.len()];
    let mut accuracies = vec![Vec::new(); steps.len()];
    for batch in batches {
        for (i, &k) in steps.iter().enumerate() {
            let outcome = learner.adapt_and_evaluate(&batch, k)?;
            losses[i].extend(to_vec(&outcome.loss)?);
            if let Some(acc) = outcome.accuracy {
                accuracies[i].extend(to_vec(&acc)?);
            }
        }
    }
    Ok(steps
        .iter()
        .zip(losses.iter().zip(&accuracies))
        .map(|(&steps, (l, a))| Evaluation {
            steps,
            loss: Estimate::from_samples(l),
            accuracy: (!a.is_empty()).then(|| Estimate::from_samples(a)),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_interval_matches_the_formula() {
        // mean 2.5, sample variance 5/3, n 4: 1.96 * sqrt(5/12) = 1.26518...
        let e = Estimate::from_samples(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(e.mean, 2.5);
        assert!((e.ci95 - 1.96 * (5.0f64 / 12.0).sqrt()).abs() < 1e-12);
        assert_eq!(Estimate::from_samples(&[3.0]).ci95, 0.0);
        assert_eq!(format!("{:.2}", e), "2.50 ± 1.27");
    }
}
