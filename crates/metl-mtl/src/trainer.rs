//! [`MtlStep`]: one training step of a [`MultiTaskModel`] with a [`Strategy`] — forward,
//! masked per-task losses, the strategy's combined gradient, the optimizer step — for the
//! runner or any training loop.

use crate::{
    backward::{MtlBackward, Representation, StepReport, TaskLosses},
    error::{MtlError, Result},
    strategy::{Bilevel, GradientSpace, Strategy, StrategyState},
};
use metl_data::MultiTaskBatch;
use metl_models::{multitask::split_by_task, optim::Optimizer, MultiTaskModel, Params, TaskLoss};
use tch::{Device, Kind, Tensor};

/// `batch` split into `parts` disjoint, (nearly) equal parts along the samples (the
/// independent gradient samples of MoDo and SDMGrad).
pub fn split_batch(batch: &MultiTaskBatch, parts: usize) -> Result<Vec<MultiTaskBatch>> {
    let n = batch.len() as i64;
    let parts_i = parts as i64;
    if n < parts_i {
        return Err(MtlError::Shape(format!("a batch of {n} samples cannot be split into {parts} parts")));
    }
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for p in 0..parts_i {
        let len = n / parts_i + i64::from(p < n % parts_i);
        out.push(MultiTaskBatch {
            inputs: batch.inputs.f_narrow(0, start, len)?,
            targets: batch.targets.iter().map(|t| t.f_narrow(0, start, len)).collect::<Result<_, _>>()?,
            mask: batch.mask.f_narrow(0, start, len)?,
            task_ids: batch.task_ids.as_ref().map(|t| t.f_narrow(0, start, len)).transpose()?,
        });
        start += len;
    }
    Ok(out)
}

/// Per-task losses of the task outputs `outputs` (`[N, ...]` each) on `batch`, over each
/// task's labelled rows; `None` for tasks without labelled rows. One host synchronisation
/// (the per-task label counts), and no gather for fully labelled tasks.
pub fn task_losses(
    batch: &MultiTaskBatch,
    outputs: &[Tensor],
    losses: &[TaskLoss],
) -> Result<Vec<Option<Tensor>>> {
    let t = batch.num_tasks();
    if outputs.len() != t || losses.len() != t {
        return Err(MtlError::Shape(format!(
            "{} outputs, {t} targets and {} losses: need one of each per task",
            outputs.len(),
            losses.len()
        )));
    }
    let counts = Vec::<i64>::try_from(
        batch.mask.f_sum_dim_intlist(0i64, false, Kind::Int64)?.f_to_device(Device::Cpu)?,
    )?;
    let n = batch.len() as i64;
    let mut out = Vec::with_capacity(t);
    for (task, ((o, y), l)) in outputs.iter().zip(&batch.targets).zip(losses).enumerate() {
        out.push(match counts[task] {
            0 => None,
            c if c == n => Some(l.loss(o, y)),
            _ => {
                let rows = batch.mask.f_select(1, task as i64)?.f_nonzero()?.f_squeeze_dim(1)?;
                Some(l.loss(&o.f_index_select(0, &rows)?, &y.f_index_select(0, &rows)?))
            }
        });
    }
    Ok(out)
}

/// What [`MtlStep`] keeps between steps besides the parameters and the optimizer, for
/// checkpoints ([`MtlStep::checkpoint`], [`MtlStep::restore`]).
#[derive(Debug, Default)]
pub struct MtlStepState {
    /// Steps taken so far.
    pub steps: u64,
    /// The strategy's internal state ([`Strategy::state`]).
    pub strategy: StrategyState,
}

/// One training step of a multi-task model with a strategy. See the [module docs](self).
pub struct MtlStep<M> {
    model: M,
    params: Params,
    shared: Params,
    specific: Vec<Params>,
    losses: Vec<TaskLoss>,
    strategy: Box<dyn Strategy>,
    step: u64,
}

impl<M: MultiTaskModel> MtlStep<M> {
    /// A trainer for `model` with parameters `params` (from [`MultiTaskModel::init`]), the
    /// loss of every task, and a strategy.
    ///
    /// The optimizer passed to [`MtlStep::step`] must cover `params` and the strategy's own
    /// learned parameters (UW, IMTL, GradNorm register them under the setup's path: build it
    /// over all variables of that `VarStore`).
    pub fn new(model: M, params: Params, losses: Vec<TaskLoss>, strategy: Box<dyn Strategy>) -> Result<Self> {
        let t = model.num_tasks();
        if losses.len() != t {
            return Err(MtlError::Shape(format!("{} task losses for a model with {t} tasks", losses.len())));
        }
        if strategy.needs().gradients == Some(GradientSpace::Representation)
            && !model.has_shared_representation()
        {
            return Err(MtlError::Unsupported {
                strategy: strategy.name(),
                reason: "the model has no representation shared by all tasks".into(),
            });
        }
        let (shared, specific) = split_by_task(&model, &params);
        Ok(Self { model, params, shared, specific, losses, strategy, step: 0 })
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// All parameters of the model.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The strategy.
    pub fn strategy(&self) -> &dyn Strategy {
        self.strategy.as_ref()
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One step on `batch`: zero the gradients, forward (per part, for strategies that
    /// need several gradient samples), masked per-task losses, the strategy's combined
    /// gradient (plus the gradient of the architecture's
    /// [`MultiTaskModel::auxiliary_loss`], if any), the optimizer step, and for FAMO the
    /// losses after the step. Bilevel
    /// strategies (Auto-Lambda) need a `validation` batch.
    ///
    /// A non-finite loss is an error naming the task and the step, raised before any
    /// update. A batch without a single labelled sample (normal with sparse labels) changes
    /// nothing but the step counter and reports every task as absent (loss `NaN`, weight 0).
    pub fn step(
        &mut self,
        batch: &MultiTaskBatch,
        optimizer: &mut dyn Optimizer,
        validation: Option<&MultiTaskBatch>,
    ) -> Result<StepReport> {
        self.step += 1;
        if batch.mask.f_any()?.f_int64_value(&[])? == 0 {
            let t = self.losses.len();
            return Ok(StepReport { weights: vec![0.0; t], losses: vec![f64::NAN; t], tasks: Vec::new() });
        }
        let needs = self.strategy.needs();
        optimizer.zero_grad();
        let parts = if needs.samples > 1 { split_batch(batch, needs.samples)? } else { Vec::new() };
        let samples: Vec<&MultiTaskBatch> =
            if parts.is_empty() { vec![batch] } else { parts.iter().collect() };
        let rep = needs.gradients == Some(GradientSpace::Representation);
        let losses = samples.iter().map(|b| self.forward_losses(b, rep)).collect::<Result<Vec<_>>>()?;
        let bilevel = validation.map(|v| ValidationLosses {
            model: &self.model,
            batch: v,
            losses: &self.losses,
            lr: optimizer.lr(),
        });
        let report = MtlBackward::new(&self.shared, &self.specific).run(
            self.strategy.as_mut(),
            &losses,
            self.step,
            bilevel.as_ref().map(|b| b as &dyn Bilevel),
        )?;
        drop(losses);
        // An architecture's own regulariser (DSelect-k's gate entropy) joins with weight 1.
        if let Some(aux) = self.model.auxiliary_loss(&self.params, &batch.inputs) {
            aux.f_backward()?;
        }
        self.zero_missing_grads()?;
        optimizer.step()?;
        if needs.losses_after_step {
            let after = tch::no_grad(|| self.forward_losses(batch, false))?;
            let present: Vec<(usize, f64)> = after
                .losses
                .iter()
                .enumerate()
                .filter_map(|(t, l)| l.as_ref().map(|l| (t, l.double_value(&[]))))
                .collect();
            let (tasks, values): (Vec<usize>, Vec<f64>) = present.into_iter().unzip();
            self.strategy.after_step(&tasks, &values)?;
        }
        Ok(report)
    }

    /// The step counter and the strategy's state, for a checkpoint. With the parameters
    /// (including the strategy's learned ones in its `VarStore`) and the optimizer's state,
    /// it is everything a run needs to continue exactly.
    pub fn checkpoint(&self) -> MtlStepState {
        MtlStepState { steps: self.step, strategy: self.strategy.state() }
    }

    /// Restores a [`MtlStep::checkpoint`] of a trainer built with the same strategy
    /// configuration; an error ([`MtlError::State`]) leaves the trainer unchanged.
    pub fn restore(&mut self, state: &MtlStepState) -> Result<()> {
        self.strategy.load_state(&state.strategy)?;
        self.step = state.steps;
        Ok(())
    }

    /// Tells the strategy that an epoch ended (DWA, STCH).
    pub fn end_epoch(&mut self) {
        self.strategy.end_epoch();
    }

    /// The per-task losses of `batch` in evaluation mode, without gradients (`NaN` for tasks
    /// without labelled samples), and the per-task accuracy for classification tasks.
    pub fn evaluate(&self, batch: &MultiTaskBatch) -> Result<(Vec<f64>, Vec<Option<f64>>)> {
        tch::no_grad(|| {
            let outputs = self.model.forward(&self.params, &batch.inputs, false);
            let losses = task_losses(batch, &outputs, &self.losses)?;
            let values =
                losses.iter().map(|l| l.as_ref().map_or(f64::NAN, |l| l.double_value(&[]))).collect();
            let accuracy = outputs
                .iter()
                .zip(&batch.targets)
                .zip(&self.losses)
                .enumerate()
                .map(|(t, ((o, y), l))| -> Result<Option<f64>> {
                    if *l != TaskLoss::CrossEntropy {
                        return Ok(None);
                    }
                    let hits = o.f_argmax(-1, false)?.f_eq_tensor(y)?.f_to_kind(Kind::Float)?;
                    let m = batch.mask.f_select(1, t as i64)?.f_to_kind(Kind::Float)?;
                    let count = m.f_sum(Kind::Double)?.double_value(&[]);
                    Ok((count > 0.0).then(|| (hits * m).sum(Kind::Double).double_value(&[]) / count))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((values, accuracy))
        })
    }

    /// Gives every parameter without a gradient (those of tasks without labelled samples
    /// so far) a zero one, so that the optimizer treats them alike whether or not they had
    /// a gradient before — as after a restore, where no parameter has one. A parameter of
    /// a task without labels in a batch thus takes the optimizer's step for a zero
    /// gradient (momentum, weight decay), as in PyTorch with `zero_grad(set_to_none=False)`.
    fn zero_missing_grads(&self) -> Result<()> {
        let missing: Vec<Tensor> = self
            .params
            .tensors()
            .iter()
            .filter(|p| p.requires_grad() && !p.grad().defined())
            .map(|p| p.f_sum(p.kind()).and_then(|s| s.f_mul_scalar(0.0)))
            .collect::<Result<_, _>>()?;
        if let Some(first) = missing.first() {
            // ∂(0 · Σ p)/∂p = 0 whatever p holds.
            missing[1..].iter().try_fold(first.shallow_clone(), |a, b| a.f_add(b))?.f_backward()?;
        }
        Ok(())
    }

    fn forward_losses(&self, batch: &MultiTaskBatch, rep: bool) -> Result<TaskLosses> {
        let x = &batch.inputs;
        if rep {
            let r = Representation::detach(self.model.encode(&self.params, x, true));
            let outputs = self.model.decode(&self.params, x, &r.leaf, true);
            Ok(TaskLosses { losses: task_losses(batch, &outputs, &self.losses)?, representation: Some(r) })
        } else {
            let outputs = self.model.forward(&self.params, x, true);
            Ok(TaskLosses { losses: task_losses(batch, &outputs, &self.losses)?, representation: None })
        }
    }
}

/// The model on a validation batch, for bilevel strategies.
struct ValidationLosses<'a, M> {
    model: &'a M,
    batch: &'a MultiTaskBatch,
    losses: &'a [TaskLoss],
    lr: f64,
}

impl<M: MultiTaskModel> Bilevel for ValidationLosses<'_, M> {
    fn validation_losses(&self, params: &Params) -> Result<Vec<Option<Tensor>>> {
        let outputs = self.model.forward(params, &self.batch.inputs, true);
        task_losses(self.batch, &outputs, self.losses)
    }

    fn inner_lr(&self) -> f64 {
        self.lr
    }
}
