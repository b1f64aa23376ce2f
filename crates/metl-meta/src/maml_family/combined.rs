//! The MAML family with a [`TaskGradientCombiner`]: the per-task meta-gradients of a
//! meta-batch as the rows of `J ∈ ℝ^(T × P)`, combined into the direction of the outer step
//! (see [`crate::task_combiner`] for the formula).
//!
//! **Rows.** Row `t` is `g_t = ∇_(θ, α) ℓ_t`, the meta-gradient of task `t`'s share of the
//! meta-loss alone (flattened in [`MamlFamily::meta_parameters`] order). Two ways, the same
//! numbers:
//! - *one task-batched pass* (task-batched layout, no checkpointing at this iteration, no
//!   learned inner rates): θ enters the pass as `T` copies (`expand`, a view), so the
//!   gradient of `Σ_t ℓ_t` with respect to the copies holds every task's own gradient — one
//!   forward and one backward pass for all rows, as the plain step;
//! - otherwise *one pass per task*, each back-propagated into `.grad` and read back (the
//!   cost of `tasks_per_pass = 1`): with gradient checkpointing, and with learned rates,
//!   which all tasks share (their per-task gradients are not separable in one pass).
//!
//! **Data-parallel.** Each rank computes the rows of its own tasks; an all-gather gives every
//! rank the whole `J` and all `T` losses in rank order, so every rank combines the same
//! matrix (and, for a stateful combiner, advances the same state), writes the same direction
//! into `.grad`, and the outer loop steps without averaging gradients.

use super::{backward::gradients_of, Layout, MamlFamily};
use crate::{
    error::{MetaError, Result},
    outer::add_to_gradients,
    task_combiner::{check_direction, TaskGradientCombiner, TaskGradients},
};
use metl_data::TaskBatch;
use metl_models::{optim::zero_grads, Model, Params};
use std::sync::Mutex;
use tch::{Kind, Tensor};

/// Where a learner's checkpoint state keeps its combiner's.
pub(super) const STATE_PREFIX: &str = "task_combiner";

/// The rows of some tasks of the meta-batch.
struct Rows {
    /// `[n, P]`.
    jacobian: Tensor,
    /// The `n` tasks' shares of the meta-loss.
    losses: Vec<f64>,
    /// Their mean query accuracy times `n` (classification).
    accuracy_sum: Option<f64>,
}

impl<M: Model> MamlFamily<M> {
    /// Makes every meta-gradient ([`MamlFamily::meta_train_step`],
    /// [`MamlFamily::meta_backward`], [`MamlFamily::meta_gradient`]) the direction `combiner`
    /// returns for the per-task meta-gradients `J` instead of their mean (see
    /// [`crate::task_combiner`]). The combiner's state joins the learner's checkpoint state
    /// under `task_combiner.*`.
    pub fn set_task_combiner(&mut self, combiner: Box<dyn TaskGradientCombiner>) {
        self.combiner = Some(Mutex::new(combiner));
    }

    /// The per-task meta-gradients `J` `[T, P]` of `batch` at the next meta-iteration (the
    /// rows a task combiner sees, this rank's tasks only), and the tasks' shares of the
    /// meta-loss; changes nothing (`.grad` is left zeroed).
    pub fn task_meta_gradients(&self, batch: &TaskBatch) -> Result<(Tensor, Vec<f64>)> {
        self.check_batch(batch)?;
        let rows = self.rows(batch, self.outer.steps() + 1);
        zero_grads(self.outer.params());
        let rows = rows?;
        Ok((rows.jacobian, rows.losses))
    }

    /// The combined direction of `batch` at meta-iteration `t` in `.grad`; returns this
    /// rank's mean loss and accuracy, as the plain path does.
    pub(super) fn combined_meta_gradient(
        &self,
        batch: &TaskBatch,
        t: u64,
        combiner: &Mutex<Box<dyn TaskGradientCombiner>>,
    ) -> Result<(f64, Option<f64>)> {
        let Rows { jacobian, losses, accuracy_sum } = self.rows(batch, t)?;
        let n = losses.len() as f64;
        let (loss, accuracy) = (losses.iter().sum::<f64>() / n, accuracy_sum.map(|a| a / n));
        let (jacobian, losses) = match self.outer.collective() {
            Some(collective) => {
                let local = Tensor::from_slice(&losses).to_device(jacobian.device());
                let all =
                    Vec::<f64>::try_from(collective.all_gather_rows(&local)?.to_device(tch::Device::Cpu))?;
                (collective.all_gather_rows(&jacobian)?, all)
            }
            None => (jacobian, losses),
        };
        let mut combiner = combiner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let direction = combiner.combine(&TaskGradients { step: t, losses: &losses, jacobian: &jacobian })?;
        check_direction(combiner.name(), &direction, &jacobian, t)?;
        let params = self.outer.params();
        let direction = params.unflatten(&direction.to_kind(jacobian.kind()))?;
        zero_grads(params);
        add_to_gradients(params, &direction)?;
        Ok((loss, accuracy))
    }

    /// The rows of `batch`'s tasks at meta-iteration `t`, part by part as
    /// [`MamlFamily::per_layout`] splits the batch; `.grad` is left dirty.
    fn rows(&self, batch: &TaskBatch, t: u64) -> Result<Rows> {
        let one_pass = self.settings.task_batched
            && !(self.settings.checkpointing && self.second_order_at(t))
            && self.outer.params().len() == self.params.len();
        let parts = self.per_layout(batch, |part, layout| match layout {
            Layout::Batched if one_pass => Ok(vec![self.batched_rows(part, t)?]),
            _ => (0..part.num_tasks())
                .map(|i| match layout {
                    Layout::Batched => self.single_row(&part.tasks(i, 1), t, layout),
                    Layout::Single => self.single_row(&part.task(i), t, layout),
                })
                .collect::<Result<Vec<_>>>(),
        })?;
        let rows: Vec<Rows> = parts.into_iter().flatten().collect();
        let jacobian = Tensor::f_cat(&rows.iter().map(|r| &r.jacobian).collect::<Vec<_>>(), 0)?;
        let losses = rows.iter().flat_map(|r| r.losses.iter().copied()).collect();
        let accuracy_sum = rows.iter().map(|r| r.accuracy_sum).sum::<Option<f64>>();
        Ok(Rows { jacobian, losses, accuracy_sum })
    }

    /// The row of a one-task `part`: its meta-gradient, back-propagated into `.grad` (zeroed
    /// first) by the plain path and read back in [`MamlFamily::meta_parameters`] order.
    fn single_row(&self, part: &TaskBatch, t: u64, layout: Layout) -> Result<Rows> {
        let params = self.outer.params();
        zero_grads(params);
        let (value, outcome) = self.backward_part(part, t, layout, 1.0)?;
        let grads = gradients_of(params);
        Ok(Rows {
            jacobian: grads.flatten().unsqueeze(0),
            losses: vec![value],
            accuracy_sum: outcome.mean_accuracy(),
        })
    }

    /// The rows of every task of `part` from one task-batched pass: the gradient of
    /// `Σ_t ℓ_t` with respect to the task copies of θ (see the module documentation).
    fn batched_rows(&self, part: &TaskBatch, t: u64) -> Result<Rows> {
        let (start, frozen) = self.start(part, Layout::Batched);
        let copies = start.merge(&frozen)?;
        let (losses, outcome) = self.task_losses_from(part, t, Layout::Batched, start, &frozen)?;
        let values = Vec::<f64>::try_from(losses.detach().to_kind(Kind::Double).to_device(tch::Device::Cpu))?;
        if let Some(&value) = values.iter().find(|v| !v.is_finite()) {
            return Err(MetaError::NonFiniteLoss { what: "meta-loss", value, step: t });
        }
        let grads = copies.grads(&losses.sum(None::<Kind>), false)?;
        let tasks = part.num_tasks() as i64;
        let columns = self
            .params
            .names()
            .iter()
            .map(|name| Ok(grads.f_get(name)?.reshape([tasks, -1])))
            .collect::<Result<Vec<_>>>()?;
        let n = values.len() as f64;
        Ok(Rows {
            jacobian: Tensor::f_cat(&columns, 1)?,
            losses: values,
            accuracy_sum: outcome.mean_accuracy().map(|a| a * n),
        })
    }

    /// A copy of the combiner's checkpoint state, if a combiner is set.
    pub(super) fn combiner_state(&self) -> Option<Params> {
        self.combiner.as_ref().map(|c| c.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).state())
    }

    /// Restores the combiner's state (`state` without the prefix); an error when a state is
    /// given but no combiner is set.
    pub(super) fn load_combiner_state(&self, state: &Params) -> Result<()> {
        match &self.combiner {
            Some(_) => self.restore_combiner_state(state),
            None if state.is_empty() => Ok(()),
            None => Err(MetaError::invalid(
                format!("{STATE_PREFIX}.{}", state.names()[0]),
                "present",
                "the checkpoint holds a task combiner's state, and this learner has no task combiner \
                 (set the same task weighting as the run that wrote it)",
            )),
        }
    }

    /// Loads `state` into the combiner, if a combiner is set.
    pub(super) fn restore_combiner_state(&self, state: &Params) -> Result<()> {
        match &self.combiner {
            Some(c) => c.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).load_state(state),
            None => Ok(()),
        }
    }
}
