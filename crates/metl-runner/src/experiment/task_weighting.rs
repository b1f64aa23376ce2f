//! `[task_weighting]`: an MTL strategy of metl-mtl combining the per-task meta-gradients of
//! each MAML meta-batch instead of their mean ([`metl_meta::task_combiner`]).
//!
//! ```toml
//! [meta.maml]
//! inner_lr = 0.01
//!
//! [task_weighting]           # a strategy of `metl list`, with its fields, as [mtl] strategy
//! name = "pcgrad"
//! ```
//!
//! The strategy sees the `T` tasks of the meta-batch as the tasks of a multi-task step: the
//! loss values `ℓ_t`, and the Jacobian `J` whose row `t` is task `t`'s meta-gradient with
//! respect to every meta-parameter. Its update `c` (`Σ_t w_t g_t`, a direction, or the
//! gradient of a loss of the `ℓ_t` through `J`; clipped where the strategy clips) divided by
//! `T` is the direction of the outer step, `d = c / T`, so that equal weighting (`ew`, the
//! sum) gives exactly the plain MAML step, the mean.
//!
//! **Which strategies.** The tasks of a meta-batch are exchangeable and new at every step:
//! row `t` is the `t`-th task drawn, not a task with an identity. Accepted are the strategies
//! that see only the rows and losses of the current step — stateless, or with state that
//! does not refer to a task: `ew`, `gls`, `scale_invariant`, `rlw` (a random generator),
//! `mgda`, `pcgrad` (a random generator), `imtl_g`, `cagrad`, `nash_mtl` (the last weights,
//! only the start of the next solve; `update_weights_every = 1` only), `aligned_mtl`,
//! `fairgrad`, `upgrad`, `dualproj`, `config`. Refused, with the reason in the error:
//! learned per-task parameters (`uw`, `imtl_l`, `imtl`, `gradnorm`), per-task loss
//! histories (`dwa`, `stch`), per-task or per-pair averages over steps (`gradvac`, `moco`,
//! `db_mtl`, `excess_mtl`), the losses after the step (`famo`), several independent
//! gradient samples (`modo`, `sdmgrad`), a validation batch (`auto_lambda`), and gradients
//! with respect to a shared representation, which a meta-batch does not have (`mgda_ub`,
//! `graddrop`, `aligned_mtl_ub`, or any `space = "representation"`).

use metl_meta::{
    task_combiner::{TaskGradientCombiner, TaskGradients},
    MetaError,
};
use metl_models::Params;
use metl_mtl::{GradientSpace, Setup, StepInput, Strategy, StrategyConfig, StrategyState, Update};
use std::collections::BTreeMap;
use tch::{nn, Device, Kind, Tensor};

/// Why strategy `config` cannot weight the tasks of a meta-batch, as the error of a config
/// naming it, or `None` if it can.
pub fn refusal(config: &StrategyConfig) -> Option<String> {
    refusal_reason(config).map(|reason| {
        format!(
            "task_weighting {:?} cannot weight the tasks of a meta-batch, which are new at every step: it \
             {reason}",
            config.name()
        )
    })
}

/// Why strategy `config` cannot weight the tasks of a meta-batch (completing "it ..."), or
/// `None` if it can: decided from what it needs, its learned parameters, and for per-task
/// state by name (see the module documentation).
pub fn refusal_reason(config: &StrategyConfig) -> Option<String> {
    let vs = nn::VarStore::new(Device::Cpu);
    let strategy = match config.build(&Setup { num_tasks: 2, path: vs.root(), seed: 0 }) {
        Ok(strategy) => strategy,
        Err(e) => return Some(e.to_string()),
    };
    let needs = strategy.needs();
    let reason = if needs.validation {
        "is bilevel (a validation batch and the model, not only the per-task meta-gradients)".to_owned()
    } else if needs.losses_after_step {
        "needs the losses after the step and keeps per-task logits across steps".to_owned()
    } else if needs.samples > 1 {
        format!("needs {} independent gradient samples per task", needs.samples)
    } else if needs.gradients == Some(GradientSpace::Representation) {
        "takes gradients with respect to a shared representation; a meta-batch has per-task gradients of \
         the meta-parameters only (space = \"parameters\")"
            .to_owned()
    } else if !strategy.parameters().is_empty() {
        "learns a parameter per task, which here would follow a position in the meta-batch, not a task"
            .to_owned()
    } else {
        match config {
            StrategyConfig::Dwa(_) | StrategyConfig::Stch(_) => "keeps per-task loss histories".to_owned(),
            StrategyConfig::Gradvac(_) => {
                "keeps an average similarity per pair of tasks across steps".to_owned()
            }
            StrategyConfig::Moco(_) | StrategyConfig::DbMtl(_) => {
                "keeps per-task averages of gradients across steps".to_owned()
            }
            StrategyConfig::ExcessMtl(_) => "accumulates per-task excess risks across steps".to_owned(),
            StrategyConfig::NashMtl(c) if c.update_weights_every > 1 => format!(
                "update_weights_every = {} reuses the weights of earlier steps' tasks (use 1)",
                c.update_weights_every
            ),
            _ => return None,
        }
    };
    Some(reason)
}

/// An MTL strategy as a [`TaskGradientCombiner`]; see the module documentation. The strategy
/// is built for the number of tasks of the first meta-batch it sees (all ranks' tasks in a
/// data-parallel run).
pub struct StrategyCombiner {
    config: StrategyConfig,
    seed: u64,
    device: Device,
    built: Option<(usize, Box<dyn Strategy>)>,
    /// A state loaded before the strategy was built.
    pending: Option<StrategyState>,
}

impl StrategyCombiner {
    /// The combiner of `config` (refused strategies are an error naming the reason), seeded
    /// with `seed`, keeping its checkpoint state on `device`.
    pub fn new(config: StrategyConfig, seed: u64, device: Device) -> anyhow::Result<Self> {
        if let Some(reason) = refusal(&config) {
            return Err(crate::error::bad_input(reason));
        }
        Ok(Self { config, seed, device, built: None, pending: None })
    }

    fn strategy(&mut self, tasks: usize) -> metl_meta::error::Result<&mut dyn Strategy> {
        let name = self.config.name();
        let error = |message: String| MetaError::Combiner { combiner: name.to_owned(), message };
        if self.built.as_ref().is_some_and(|(t, _)| *t != tasks) {
            let built = self.built.as_ref().map_or(0, |(t, _)| *t);
            return Err(error(format!("built for meta-batches of {built} tasks, given {tasks}")));
        }
        if self.built.is_none() {
            let vs = nn::VarStore::new(Device::Cpu);
            let setup = Setup { num_tasks: tasks, path: vs.root(), seed: self.seed };
            let mut strategy = self.config.build(&setup).map_err(|e| error(e.to_string()))?;
            if let Some(state) = self.pending.take() {
                strategy.load_state(&state).map_err(|e| error(e.to_string()))?;
            }
            self.built = Some((tasks, strategy));
        }
        Ok(self.built.as_mut().map(|(_, s)| s.as_mut()).expect("built above"))
    }
}

impl TaskGradientCombiner for StrategyCombiner {
    fn name(&self) -> &str {
        self.config.name()
    }

    fn combine(&mut self, input: &TaskGradients<'_>) -> metl_meta::error::Result<Tensor> {
        let name = self.config.name();
        let error =
            |e: metl_mtl::MtlError| MetaError::Combiner { combiner: name.to_owned(), message: e.to_string() };
        let jacobian = input.jacobian;
        let tasks = input.num_tasks();
        let losses: Vec<Tensor> = input
            .losses
            .iter()
            .map(|&l| Tensor::from(l).to_device(jacobian.device()).set_requires_grad(true))
            .collect();
        let shared = Params::empty();
        let step = StepInput::new(input.step, &losses, &shared)
            .map_err(error)?
            .with_jacobian(jacobian.shallow_clone());
        let combination = self.strategy(tasks)?.combine(&step).map_err(error)?;
        let update = match combination.update {
            Update::Weighted => StepInput::combine_rows(jacobian, &combination.weights).map_err(error)?,
            Update::Direction(d) => d.reshape([-1]).to_kind(jacobian.kind()),
            // The gradient of a loss of the task losses: Σ_t (∂loss/∂ℓ_t) g_t.
            Update::Loss(loss) => {
                let grads = Tensor::f_run_backward(&[loss], &losses, false, false)?;
                let weights: Vec<f64> =
                    grads.iter().map(|g| if g.defined() { g.double_value(&[]) } else { 0.0 }).collect();
                StepInput::combine_rows(jacobian, &weights).map_err(error)?
            }
        };
        let update = match combination.max_norm {
            Some(max) => {
                let norm = update.norm().double_value(&[]);
                if norm > max {
                    update * (max / norm)
                } else {
                    update
                }
            }
            None => update,
        };
        Ok(update / tasks as f64)
    }

    fn state(&self) -> Params {
        let state = match (&self.built, &self.pending) {
            (Some((_, strategy)), _) => strategy.state(),
            (None, Some(pending)) => copy_state(pending),
            (None, None) => StrategyState::default(),
        };
        to_params(&state, self.device)
    }

    /// An empty state is that of a combiner that has not combined yet (whose strategy is
    /// built at its first meta-batch): the strategy starts afresh.
    fn load_state(&mut self, state: &Params) -> metl_meta::error::Result<()> {
        if state.is_empty() {
            (self.built, self.pending) = (None, None);
            return Ok(());
        }
        let state = from_params(state)?;
        match &mut self.built {
            Some((_, strategy)) => strategy.load_state(&state).map_err(|e| MetaError::Combiner {
                combiner: self.config.name().to_owned(),
                message: e.to_string(),
            }),
            None => {
                self.pending = Some(state);
                Ok(())
            }
        }
    }
}

fn copy_state(state: &StrategyState) -> StrategyState {
    let tensors = state.tensors.iter().map(|(n, t)| (n.clone(), t.copy())).collect();
    StrategyState::from_parts(state.host(), tensors)
}

/// A strategy's state as named tensors: `values.*` (f64), `words.*` (the u64 bits as i64),
/// `tensors.*`.
fn to_params(state: &StrategyState, device: Device) -> Params {
    let values = state.values.iter().map(|(n, v)| (format!("values.{n}"), Tensor::from_slice(v)));
    let words = state.words.iter().map(|(n, w)| {
        let bits: Vec<i64> = w.iter().map(|&x| x as i64).collect();
        (format!("words.{n}"), Tensor::from_slice(&bits))
    });
    let tensors = state.tensors.iter().map(|(n, t)| (format!("tensors.{n}"), t.detach().copy()));
    let entries = values.chain(words).chain(tensors).map(|(n, t)| (n, t.to_device(device))).collect();
    Params::from_named(entries).expect("the three prefixes keep the names apart")
}

/// The inverse of [`to_params`].
fn from_params(params: &Params) -> metl_meta::error::Result<StrategyState> {
    let (mut values, mut words, mut tensors) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for (name, t) in params.iter() {
        let host = || t.to_device(Device::Cpu);
        if let Some(n) = name.strip_prefix("values.") {
            values.insert(n.to_owned(), Vec::<f64>::try_from(host().to_kind(Kind::Double))?);
        } else if let Some(n) = name.strip_prefix("words.") {
            let bits = Vec::<i64>::try_from(host().to_kind(Kind::Int64))?;
            words.insert(n.to_owned(), bits.into_iter().map(|x| x as u64).collect());
        } else if let Some(n) = name.strip_prefix("tensors.") {
            tensors.insert(n.to_owned(), t.shallow_clone());
        } else {
            return Err(MetaError::invalid(
                format!("task_combiner.{name}"),
                "present",
                "a task weighting's state holds values.*, words.* and tensors.* only",
            ));
        }
    }
    Ok(StrategyState::from_parts(metl_mtl::StrategyStateHost { values, words }, tensors))
}

#[cfg(test)]
#[path = "task_weighting_tests.rs"]
mod tests;
