//! Fast adaptive multitask optimization (FAMO).

use crate::{
    checkpoint::StrategyState,
    error::{MtlError, Result},
    host_optim::HostAdam,
    linalg::{softmax, softmax_backward},
    strategy::{non_negative, positive, Combination, Needs, Setup, StepInput, Strategy},
};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Settings of [`Famo`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FamoConfig {
    /// Learning rate of the task logits (default 0.025, the paper's).
    pub w_lr: f64,
    /// Weight decay `γ` of the task logits (default 0.01, the paper's code; LibMTL uses
    /// 1e-3).
    pub gamma: f64,
    /// Clip the shared gradient to this ℓ2 norm (default 1.0, the paper's code; 0 = off).
    pub max_norm: f64,
    /// Lower bounds `mᵢ` of the losses (default 0; FAMO's toy uses −21·scale, −21).
    pub min_losses: Option<Vec<f64>>,
}

impl Default for FamoConfig {
    fn default() -> Self {
        Self { w_lr: 0.025, gamma: 0.01, max_norm: 1.0, min_losses: None }
    }
}

impl FamoConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        positive("famo.w_lr", self.w_lr)?;
        non_negative("famo.gamma", self.gamma)?;
        non_negative("famo.max_norm", self.max_norm)
    }
}

/// FAMO (Liu, Liu, Stone & Liu 2023, "FAMO: fast adaptive multitask optimization"):
/// task logits `ξ`, `z = softmax(ξ)`, `Dᵢ = Lᵢ − mᵢ + 10⁻⁸`,
///
/// ```text
/// L = Σᵢ zᵢ log Dᵢ / c,   c = Σᵢ zᵢ / Dᵢ   (c held constant)
/// ```
///
/// so that task `i` is weighted `zᵢ / (c Dᵢ)` (reported). After the optimizer step the
/// losses `D'` of the same batch (one extra forward, see [`Needs::losses_after_step`]) give
/// `δᵢ = log Dᵢ − log D'ᵢ` and the logits take an Adam step (lr `w_lr`, weight decay `γ`)
/// along `∂(zᵀδ)/∂ξ`. The shared gradient is clipped to `max_norm`.
#[derive(Debug, Clone)]
pub struct Famo {
    config: FamoConfig,
    logits: Vec<f64>,
    adam: HostAdam,
    min_losses: Vec<f64>,
    previous: Option<(Vec<usize>, Vec<f64>)>,
}

impl Famo {
    /// FAMO for `setup.num_tasks` tasks.
    pub fn new(config: &FamoConfig, setup: &Setup<'_>) -> Result<Self> {
        config.validate()?;
        let t = setup.num_tasks;
        let min_losses = config.min_losses.clone().unwrap_or_else(|| vec![0.0; t]);
        if min_losses.len() != t {
            return Err(MtlError::invalid(
                "famo.min_losses",
                format!("{min_losses:?}"),
                format!("needs {t} entries"),
            ));
        }
        Ok(Self {
            config: config.clone(),
            logits: vec![0.0; t],
            adam: HostAdam::new(t, config.w_lr, config.gamma),
            min_losses,
            previous: None,
        })
    }

    /// The current task weights `softmax(ξ)` of all tasks.
    pub fn task_weights(&self) -> Vec<f64> {
        softmax(&self.logits)
    }
}

impl Strategy for Famo {
    fn name(&self) -> &'static str {
        "famo"
    }

    fn needs(&self) -> Needs {
        Needs { losses_after_step: true, ..Needs::LOSSES }
    }

    fn combine(&mut self, input: &StepInput<'_>) -> Result<Combination> {
        let z = softmax(&input.tasks.iter().map(|&t| self.logits[t]).collect::<Vec<_>>());
        let m: Vec<f64> = input.tasks.iter().map(|&t| self.min_losses[t]).collect();
        let d: Vec<f64> = input.values().iter().zip(&m).map(|(l, m)| l - m + 1e-8).collect();
        if let Some((i, v)) = d.iter().enumerate().find(|(_, v)| **v <= 0.0) {
            return Err(MtlError::Unsupported {
                strategy: "famo",
                reason: format!("loss of task {} is below its min_loss ({v})", input.tasks[i]),
            });
        }
        let c: f64 = z.iter().zip(&d).map(|(z, d)| z / d).sum();
        let losses = Tensor::f_stack(input.losses, 0)?;
        let shift = Tensor::from_slice(&m).to_kind(losses.kind()).to_device(losses.device());
        let coef = Tensor::from_slice(&z.iter().map(|z| z / c).collect::<Vec<_>>())
            .to_kind(losses.kind())
            .to_device(losses.device());
        let total = ((losses - shift + 1e-8).f_log()? * coef).f_sum(Kind::Float)?;
        let weights = z.iter().zip(&d).map(|(z, d)| z / (c * d)).collect();
        self.previous = Some((input.tasks.to_vec(), input.values().to_vec()));
        Ok(Combination::loss(total, weights).clipped(self.config.max_norm))
    }

    fn after_step(&mut self, tasks: &[usize], losses_after: &[f64]) -> Result<()> {
        let Some((prev_tasks, prev)) = self.previous.take() else { return Ok(()) };
        // Tasks present both before and after.
        let pairs: Vec<(usize, f64, f64)> = prev_tasks
            .iter()
            .zip(&prev)
            .filter_map(|(&t, &p)| tasks.iter().position(|&u| u == t).map(|j| (t, p, losses_after[j])))
            .collect();
        if pairs.is_empty() {
            return Ok(());
        }
        let delta: Vec<f64> = pairs
            .iter()
            .map(|&(t, p, a)| (p - self.min_losses[t] + 1e-8).ln() - (a - self.min_losses[t] + 1e-8).ln())
            .collect();
        if delta.iter().any(|d| !d.is_finite()) {
            return Err(MtlError::Unsupported {
                strategy: "famo",
                reason: "a loss fell below its min_loss".into(),
            });
        }
        // Gradient of zᵀδ with respect to all logits (tasks absent this step get 0).
        let z = softmax(&self.logits);
        let mut full_delta = vec![0.0; z.len()];
        let mut grad = vec![0.0; z.len()];
        for (&(t, _, _), d) in pairs.iter().zip(&delta) {
            full_delta[t] = *d;
        }
        if pairs.len() == z.len() {
            grad = softmax_backward(&z, &full_delta);
        } else {
            let sub: Vec<usize> = pairs.iter().map(|p| p.0).collect();
            let zs = softmax(&sub.iter().map(|&t| self.logits[t]).collect::<Vec<_>>());
            for (g, &t) in softmax_backward(&zs, &delta).iter().zip(&sub) {
                grad[t] = *g;
            }
        }
        self.adam.step(&mut self.logits, &grad);
        Ok(())
    }

    /// The task logits, their Adam, and the last step's losses if
    /// [`Strategy::after_step`] has not used them yet.
    fn state(&self) -> StrategyState {
        let state = StrategyState::default().with_values("logits", self.logits.clone());
        let state = self.adam.save("adam", state).with_flag("previous", self.previous.is_some());
        match &self.previous {
            Some((tasks, losses)) => state
                .with_words("previous.tasks", tasks.iter().map(|&t| t as u64).collect::<Vec<_>>())
                .with_values("previous.losses", losses.clone()),
            None => state,
        }
    }

    fn load_state(&mut self, state: &StrategyState) -> Result<()> {
        let t = self.logits.len();
        let mut r = state.reader(self.name());
        let logits = r.values("logits", t)?;
        let adam = self.adam.load("adam", &mut r)?;
        let previous = if r.flag("previous")? {
            let tasks = r.words_any("previous.tasks")?;
            if let Some(bad) = tasks.iter().find(|&&u| u >= t as u64) {
                return Err(r.error("words/previous.tasks", format!("holds task {bad}, expected < {t}")));
            }
            let losses = r.values("previous.losses", tasks.len())?;
            Some((tasks.iter().map(|&u| u as usize).collect(), losses))
        } else {
            None
        };
        r.finish()?;
        self.logits = logits;
        self.adam = adam;
        self.previous = previous;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backward::backward;
    use metl_models::Params;
    use tch::{nn::VarStore, Device};

    fn famo(vs: &VarStore) -> Famo {
        Famo::new(&FamoConfig::default(), &Setup { num_tasks: 2, path: vs.root(), seed: 0 }).unwrap()
    }

    #[test]
    fn state_keeps_the_losses_awaiting_after_step() {
        let vs = VarStore::new(Device::Cpu);
        let mut original = famo(&vs);
        let w = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let shared = Params::from_named(vec![("w".into(), w.shallow_clone())]).unwrap();
        let losses = [w.sum(Kind::Float), (&w * 2.0).sum(Kind::Float)];
        backward(&mut original, &losses, &shared, 1).unwrap();
        // Checkpointed between the combination and the losses after the step.
        let state = original.state();
        let mut restored = famo(&vs);
        restored.load_state(&state).unwrap();
        original.after_step(&[0, 1], &[2.5, 5.5]).unwrap();
        restored.after_step(&[0, 1], &[2.5, 5.5]).unwrap();
        assert_ne!(original.task_weights(), [0.5, 0.5], "the logits moved");
        assert_eq!(restored.task_weights(), original.task_weights());
    }
}
