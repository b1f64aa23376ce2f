//! [`MtlStep`]: one training step of a [`MultiTaskModel`] with a [`Strategy`] — forward,
//! masked per-task losses, the strategy's combined gradient, the optimizer step — for the
//! runner or any training loop.

use crate::{
    backward::{MtlBackward, Representation, StepReport, TaskLosses},
    distributed::{agree, batch_dim, batch_dim_indicators, label_counts, loss_values, surrogate, Shard},
    error::{MtlError, Result},
    strategy::{Bilevel, GradientSpace, Strategy, StrategyState},
};
use metl_data::MultiTaskBatch;
use metl_dist::{Collective, Local, ReduceOp};
use metl_models::{multitask::split_by_task, optim::Optimizer, MultiTaskModel, Params, TaskLoss};
use std::sync::Arc;
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
    collective: Arc<dyn Collective>,
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
        Ok(Self { model, params, shared, specific, losses, strategy, step: 0, collective: Arc::new(Local) })
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

    /// Makes the steps data-parallel over the ranks of `collective` (by default [`Local`]:
    /// one process, and the steps are exactly those without a collective, at no extra
    /// cost).
    ///
    /// With `N > 1` ranks, every rank calls [`MtlStep::step`] with its own shard of the
    /// step's batch — rank `r` the `r`-th block of consecutive rows; shards may be uneven
    /// — and the step is that of one process on the whole batch (their concatenation in
    /// rank order): the same per-task losses and weights reported on every rank, the same
    /// gradients (to rounding) and so the same optimizer step on every rank, and the same
    /// strategy state on every rank. The ranks must start alike: the same model
    /// parameters ([`MtlStep::broadcast_parameters`]), the same strategy configuration and
    /// seed, the same optimizer settings and state, the same [`MtlStep::end_epoch`] calls.
    ///
    /// How: the ranks sum, in one collective, each task's labelled-row count `c_{r,t}` and
    /// count-weighted loss, so that each knows the whole batch's loss
    /// `L_t = Σ_r (c_{r,t}/c_t) L_{r,t}` and which tasks have labels anywhere (the tasks of
    /// the step: a rank without labels for one of them contributes nothing to it). Then, by
    /// what the strategy needs:
    ///
    /// - *Losses* (EW, UW, DWA, RLW, GLS, scale-invariant, IMTL-L, STCH, FAMO): the strategy
    ///   gets `L̃_t = L_t + s (L_{r,t} − stop_gradient(L_{r,t}))`, `s = c_{r,t}/c_t`: its
    ///   value is the whole batch's loss (weights and state follow it), its gradient this
    ///   rank's share. The model's gradients are summed over the ranks after the backward
    ///   pass; gradients of the strategy's own parameters (UW's log-variances, IMTL-L's
    ///   scales), computed from the whole batch's losses, are already the same everywhere
    ///   and are not summed.
    /// - *Gradients of the shared parameters* (MGDA, PCGrad, CAGrad, Nash-MTL, UPGrad, ...):
    ///   each rank's Jacobian of `s_{r,t} L_{r,t}` and task-specific gradients are summed
    ///   over the ranks (one collective): the strategy sees the whole batch's. Its update
    ///   is then the same on every rank; each rank applies `1/N` of it, and the final sum
    ///   of the model's gradients over the ranks restores it.
    /// - *Gradients of the shared representation* (MGDA-UB, Aligned-MTL-UB, GradDrop, and
    ///   any strategy with `space = "representation"`): the rows of the representation and
    ///   of its gradients of every rank are gathered (one collective), so the strategy sees
    ///   the whole batch's representation and Jacobian; each rank back-propagates the rows
    ///   of the resulting direction that belong to its samples through its encoder, and the
    ///   model's gradients are summed over the ranks. The representation's batch dimension
    ///   is the first one whose size is each rank's number of samples (on every rank).
    ///   Every rank needs at least one sample.
    /// - *Several gradient samples* (MoDo, SDMGrad): the whole batch is split into its
    ///   parts as one process would, each rank taking the rows of each part it holds (an
    ///   extra collective of the ranks' row counts), and every part is handled as above.
    ///   In the representation space (a non-default setting) this is an error.
    /// - *Bilevel* (Auto-Lambda): each rank passes its own shard of the validation batch;
    ///   the validation losses are made whole like the training losses and the inner
    ///   products of their gradients with the task gradients summed over the ranks.
    /// - *Losses after the step* (FAMO): summed with the same count weights.
    /// - Clipping (Nash-MTL's and FAMO's `max_norm`) applies to the summed gradient.
    ///   Randomised strategies (RLW, PCGrad, GradVac, GradDrop) draw the same numbers on
    ///   every rank from the same seed.
    /// - A model's [`MultiTaskModel::auxiliary_loss`] (DSelect-k) is evaluated on the whole
    ///   batch's inputs, gathered on every rank (one more collective per step, for such
    ///   models only).
    ///
    /// So every strategy of the registry steps as one process on the whole batch, to
    /// floating-point rounding (sums in another order; the `1/N` shares) — CAGrad to its
    /// iterative solver's accuracy (about 10⁻⁷ relative: from inputs equal to rounding the
    /// solver can stop elsewhere) — provided rank `r`'s shard is the `r`-th block of rows,
    /// which only MoDo's and SDMGrad's parts and GradDrop depend on; with another
    /// assignment of rows those are equivalent in distribution only. What is *not* that of one process: batch normalisation uses each
    /// shard's own statistics (no synchronised batch norm); the running statistics (every
    /// floating buffer of the model) are averaged over the ranks after each step, to stay
    /// the same everywhere.
    ///
    /// After every step the reported weights are checked to be bit-identical on all ranks
    /// ([`Collective::check_same`], an [`MtlError::Dist`] otherwise): strategy state that
    /// diverged is an error, not a silent drift. A step costs 4 collectives for loss-based
    /// strategies, 5 for gradient-based ones: the counts and losses (a few numbers), the
    /// Jacobian and task-specific gradients (`k` gradients; in the representation space
    /// the padded rows of the representation and its `k` gradients), the model's gradients
    /// (one gradient, as in any data-parallel training), the weight check (2 of `k`
    /// numbers); plus one each for the row counts (MoDo, SDMGrad), the losses after the
    /// step (FAMO), the validation losses (Auto-Lambda), the inputs (auxiliary losses) and
    /// the buffers (models with batch norm). An error on one rank only (a
    /// failing forward) makes the others' next collective fail after the group's timeout.
    pub fn set_collective(&mut self, collective: Arc<dyn Collective>) {
        self.collective = collective;
    }

    /// The ranks the steps run on ([`Local`] unless [`MtlStep::set_collective`] was called).
    pub fn collective(&self) -> &dyn Collective {
        self.collective.as_ref()
    }

    /// Sends rank 0's model parameters, the strategy's learned parameters
    /// ([`Strategy::parameters`]) and the model's buffers to every rank (one collective;
    /// nothing with one rank), so that data-parallel ranks start alike. Call it on every
    /// rank, after [`MtlStep::set_collective`] and any restore, before the first step.
    pub fn broadcast_parameters(&self) -> Result<()> {
        if self.collective.world_size() == 1 {
            return Ok(());
        }
        let mut tensors: Vec<Tensor> = self.params.tensors().iter().map(Tensor::shallow_clone).collect();
        tensors.extend(self.strategy.parameters());
        tensors.extend(self.model.buffers().tensors().iter().map(Tensor::shallow_clone));
        self.collective.broadcast(&tensors, 0)?;
        Ok(())
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
    ///
    /// After [`MtlStep::set_collective`] with several ranks, `batch` and `validation` are
    /// this rank's shards, and the step (its report included) is that of one process on
    /// the whole batches.
    pub fn step(
        &mut self,
        batch: &MultiTaskBatch,
        optimizer: &mut dyn Optimizer,
        validation: Option<&MultiTaskBatch>,
    ) -> Result<StepReport> {
        self.step += 1;
        if self.collective.world_size() > 1 {
            return self.step_sharded(batch, optimizer, validation);
        }
        if batch.mask.f_any()?.f_int64_value(&[])? == 0 {
            let t = self.losses.len();
            return Ok(StepReport { weights: vec![0.0; t], losses: vec![f64::NAN; t], tasks: Vec::new() });
        }
        let needs = self.strategy.needs();
        optimizer.zero_grad();
        let parts = if needs.samples > 1 { split_batch(batch, needs.samples)? } else { Vec::new() };
        let samples: Vec<&MultiTaskBatch> =
            if parts.is_empty() { vec![batch] } else { parts.iter().collect() };
        let split = self.split_representation();
        let losses = samples.iter().map(|b| self.forward_losses(b, split)).collect::<Result<Vec<_>>>()?;
        let bilevel = validation.map(|v| ValidationLosses {
            model: &self.model,
            batch: v,
            losses: &self.losses,
            lr: optimizer.lr(),
            collective: None,
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

    /// [`MtlStep::step`] on one of several ranks, `batch` being this rank's shard (see
    /// [`MtlStep::set_collective`]).
    fn step_sharded(
        &mut self,
        batch: &MultiTaskBatch,
        optimizer: &mut dyn Optimizer,
        validation: Option<&MultiTaskBatch>,
    ) -> Result<StepReport> {
        let collective = Arc::clone(&self.collective);
        let c = collective.as_ref();
        let (world, rank) = (c.world_size(), c.rank());
        let device = self.params.device();
        let needs = self.strategy.needs();
        let name = self.strategy.name();
        let t = self.losses.len();
        let rep = needs.gradients == Some(GradientSpace::Representation);
        if rep && needs.samples > 1 {
            return Err(MtlError::Unsupported {
                strategy: name,
                reason: "representation gradients of several samples are not supported on several ranks"
                    .into(),
            });
        }
        optimizer.zero_grad();
        let n = batch.len() as i64;
        // This rank's rows of every part of the whole batch, and every rank's row counts.
        let (parts, mut rows) = if needs.samples > 1 {
            let mut counts = vec![0.0; world];
            counts[rank] = n as f64;
            c.all_reduce_f64(&mut counts, ReduceOp::Sum, device)?;
            let counts: Vec<i64> = counts.iter().map(|&r| r as i64).collect();
            shard_parts(batch, &counts, rank, needs.samples)?
        } else {
            (vec![None], Vec::new())
        };
        let losses = parts
            .iter()
            .map(|part| {
                let b = part.as_ref().unwrap_or(batch);
                if b.is_empty() {
                    Ok(TaskLosses { losses: (0..t).map(|_| None).collect(), representation: None })
                } else {
                    self.forward_losses(b, self.split_representation())
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let local = parts
            .iter()
            .zip(&losses)
            .map(|(part, l)| {
                let b = part.as_ref().unwrap_or(batch);
                let counts = if b.is_empty() { vec![0.0; t] } else { label_counts(&b.mask)? };
                Ok((counts, loss_values(&l.losses)?))
            })
            .collect::<Result<Vec<_>>>()?;
        // One collective: the counts and losses, with (one sample) every rank's row count
        // and (representation space) where the representation's batch dimension is.
        let mut extra = Vec::new();
        if needs.samples == 1 {
            extra.resize(world, 0.0);
            extra[rank] = n as f64;
            if rep {
                extra.extend(batch_dim_indicators(losses[0].representation.as_ref().map(|r| &r.leaf), n));
            }
        }
        let samples = agree(c, device, &local, &mut extra)?;
        if samples.iter().all(|s| s.is_empty()) {
            // Not a single label in the whole batch: nothing changes (as in one process).
            return Ok(StepReport { weights: vec![0.0; t], losses: vec![f64::NAN; t], tasks: Vec::new() });
        }
        if needs.samples == 1 {
            rows = vec![extra[..world].iter().map(|&r| r as i64).collect()];
        }
        let batch_dim = if rep { Some(batch_dim(&extra[world..], world, name)?) } else { None };
        let shard = Shard { collective: c, samples, rows, batch_dim };
        let bilevel = validation.map(|v| ValidationLosses {
            model: &self.model,
            batch: v,
            losses: &self.losses,
            lr: optimizer.lr(),
            collective: Some(c),
        });
        let report = MtlBackward::new(&self.shared, &self.specific).run_sharded(
            self.strategy.as_mut(),
            &losses,
            self.step,
            bilevel.as_ref().map(|b| b as &dyn Bilevel),
            &shard,
        )?;
        drop(losses);
        // An auxiliary loss is the whole batch's (its gradient is not a sum of per-row
        // terms in general): evaluated on every rank on the gathered inputs, after the sum.
        if self.model.auxiliary_loss(&self.params, &batch.inputs).is_some() {
            let inputs = gather_inputs(c, &batch.inputs)?;
            if let Some(aux) = self.model.auxiliary_loss(&self.params, &inputs) {
                aux.f_backward()?;
            }
        }
        self.zero_missing_grads()?;
        optimizer.step()?;
        if needs.losses_after_step {
            let after = if batch.is_empty() {
                (0..t).map(|_| None).collect()
            } else {
                tch::no_grad(|| self.forward_losses(batch, false))?.losses
            };
            let local = [(label_counts(&batch.mask)?, loss_values(&after)?)];
            let whole = agree(c, device, &local, &mut [])?.remove(0);
            let (tasks, values): (Vec<usize>, Vec<f64>) =
                whole.values.iter().enumerate().filter_map(|(t, v)| v.map(|v| (t, v))).unzip();
            self.strategy.after_step(&tasks, &values)?;
        }
        // Batch-norm running statistics are each shard's: averaged, to stay alike.
        c.all_reduce_mean_floating(self.model.buffers().tensors())?;
        c.check_same(
            &format!("the weights of strategy `{name}` at step {}", self.step),
            &report.weights,
            device,
        )?;
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

    /// Whether the heads run on a detached copy of the shared representation: for every
    /// gradient strategy on a model that has one — representation gradients need it, and
    /// parameter gradients then take one task-batched pass through the encoder instead of
    /// one pass per task (see `task_gradients`).
    fn split_representation(&self) -> bool {
        self.strategy.needs().gradients.is_some() && self.model.has_shared_representation()
    }

    fn forward_losses(&self, batch: &MultiTaskBatch, split: bool) -> Result<TaskLosses> {
        let x = &batch.inputs;
        if split {
            let r = Representation::detach(self.model.encode(&self.params, x, true));
            let outputs = self.model.decode(&self.params, x, &r.leaf, true);
            Ok(TaskLosses { losses: task_losses(batch, &outputs, &self.losses)?, representation: Some(r) })
        } else {
            let outputs = self.model.forward(&self.params, x, true);
            Ok(TaskLosses { losses: task_losses(batch, &outputs, &self.losses)?, representation: None })
        }
    }
}

/// This rank's rows (`batch`, rank `rank` of ranks holding `counts` rows, in order) of each
/// of the `parts` parts [`split_batch`] makes of the whole batch, and every rank's row
/// count in each part.
#[allow(clippy::type_complexity)]
fn shard_parts(
    batch: &MultiTaskBatch,
    counts: &[i64],
    rank: usize,
    parts: usize,
) -> Result<(Vec<Option<MultiTaskBatch>>, Vec<Vec<i64>>)> {
    let n: i64 = counts.iter().sum();
    let parts_i = parts as i64;
    if n < parts_i {
        return Err(MtlError::Shape(format!("a batch of {n} samples cannot be split into {parts} parts")));
    }
    let offsets: Vec<i64> = counts.iter().scan(0, |o, &c| Some(std::mem::replace(o, *o + c))).collect();
    let mut local = Vec::with_capacity(parts);
    let mut rows = Vec::with_capacity(parts);
    let mut start = 0;
    for p in 0..parts_i {
        let end = start + n / parts_i + i64::from(p < n % parts_i);
        // Rank q holds rows [o_q, o_q + c_q) of the whole batch.
        let overlap = |q: usize| (start.max(offsets[q]), end.min(offsets[q] + counts[q]));
        rows.push((0..counts.len()).map(|q| (overlap(q).1 - overlap(q).0).max(0)).collect());
        let (a, b) = overlap(rank);
        let len = (b - a).max(0);
        let from = if len > 0 { a - offsets[rank] } else { 0 };
        local.push(Some(MultiTaskBatch {
            inputs: batch.inputs.f_narrow(0, from, len)?,
            targets: batch.targets.iter().map(|t| t.f_narrow(0, from, len)).collect::<Result<_, _>>()?,
            mask: batch.mask.f_narrow(0, from, len)?,
            task_ids: batch.task_ids.as_ref().map(|t| t.f_narrow(0, from, len)).transpose()?,
        }));
        start = end;
    }
    Ok((local, rows))
}

/// Every rank's `inputs` rows, concatenated in rank order (integer inputs travel as
/// `f64`, exact below 2⁵³).
fn gather_inputs(collective: &dyn Collective, inputs: &Tensor) -> Result<Tensor> {
    if inputs.is_floating_point() {
        return Ok(collective.all_gather_rows(inputs)?);
    }
    let gathered = collective.all_gather_rows(&inputs.f_to_kind(Kind::Double)?)?;
    Ok(gathered.f_to_kind(inputs.kind())?)
}

/// The model on a validation batch, for bilevel strategies.
struct ValidationLosses<'a, M> {
    model: &'a M,
    batch: &'a MultiTaskBatch,
    losses: &'a [TaskLoss],
    lr: f64,
    /// On several ranks: `batch` is this rank's shard of the validation batch.
    collective: Option<&'a dyn Collective>,
}

impl<M: MultiTaskModel> Bilevel for ValidationLosses<'_, M> {
    fn validation_losses(&self, params: &Params) -> Result<Vec<Option<Tensor>>> {
        let outputs = self.model.forward(params, &self.batch.inputs, true);
        let losses = task_losses(self.batch, &outputs, self.losses)?;
        let Some(collective) = self.collective else { return Ok(losses) };
        // The whole validation batch's losses, with this rank's share of their gradients;
        // tasks labelled on other ranks only are 0 · (this rank's outputs), so that every
        // loss reaches the parameters.
        let local = [(label_counts(&self.batch.mask)?, loss_values(&losses)?)];
        let whole = agree(collective, params.device(), &local, &mut [])?.remove(0);
        whole
            .values
            .iter()
            .zip(&whole.scales)
            .zip(losses.iter().zip(&outputs))
            .map(|((value, &scale), (loss, output))| {
                let Some(value) = *value else { return Ok(None) };
                Ok(Some(match loss {
                    Some(l) => surrogate(value, scale, Some(l), l.kind(), l.device())?,
                    None => surrogate(value, 0.0, None, output.kind(), output.device())?
                        .f_add(&output.f_sum(output.kind())?.f_mul_scalar(0.0)?)?,
                }))
            })
            .collect()
    }

    fn inner_lr(&self) -> f64 {
        self.lr
    }
}
