//! [`MtlBackward`]: computes what a [`Strategy`] needs, calls it, and leaves the combined
//! gradient in `.grad`.
//!
//! Per-task gradients come from one path for every strategy (`task_gradients`): the rows of one `[k, D]`
//! Jacobian on the parameters' device, with zeros where a loss does not reach a
//! parameter. When the task heads ran on a detached copy `z̃` of the representation
//! ([`Representation`]), one backward pass per task goes through the heads only, and one
//! task-batched pass goes through the shared encoder (parameter space), or none until the
//! update (representation space).
//!
//! The update is applied by back-propagating one surrogate scalar
//! `Σ_p ⟨p, g_p⟩ (+ ⟨z, d_z⟩)` with the gradients detached: `.grad` then accumulates exactly
//! the combined gradient, as `loss.backward()` would, so any optimizer can step.

use crate::{
    distributed::{pad_rows, surrogate, unpad_rows, Shard},
    error::{MtlError, Result},
    jacobian::check_differentiable,
    strategy::{Bilevel, Combination, GradientSpace, Needs, StepInput, Strategy, Update},
    task_gradients::{task_gradients, SampleGrads},
};
use metl_dist::Local;
use metl_models::Params;
use std::cell::OnceCell;
use tch::{Device, Kind, Tensor};

/// The shared representation of a batch: `encoded = z` (attached to the encoder's graph)
/// and `leaf = z̃`, a detached copy requiring gradients that the task heads were evaluated
/// on (see [`Representation::detach`]).
#[derive(Debug)]
pub struct Representation {
    /// `z`, attached to the shared encoder.
    pub encoded: Tensor,
    /// `z̃ = z.detach()` with `requires_grad`, the task heads' input.
    pub leaf: Tensor,
}

impl Representation {
    /// Splits `z` into itself and a detached leaf to run the task heads on.
    pub fn detach(encoded: Tensor) -> Self {
        let leaf = encoded.detach().set_requires_grad(true);
        Self { encoded, leaf }
    }
}

/// The task losses of one sample of a batch.
#[derive(Debug)]
pub struct TaskLosses {
    /// One scalar loss per task; `None` for a task without labelled samples in the batch.
    pub losses: Vec<Option<Tensor>>,
    /// The shared representation, when the heads ran on a detached copy of it.
    pub representation: Option<Representation>,
}

impl TaskLosses {
    /// Losses of every task, no representation (parameter space or loss-based strategies).
    pub fn all(losses: Vec<Tensor>) -> Self {
        Self { losses: losses.into_iter().map(Some).collect(), representation: None }
    }
}

/// The outcome of one combined backward pass.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The weight of every task (`T` entries; 0 for tasks without labelled samples).
    pub weights: Vec<f64>,
    /// The loss of every task in sample 0 (`NaN` for tasks without labelled samples).
    pub losses: Vec<f64>,
    /// The tasks that took part.
    pub tasks: Vec<usize>,
}

/// The parameters a multi-task update applies to: the shared ones and each task's own.
#[derive(Debug, Clone, Copy)]
pub struct MtlBackward<'a> {
    /// Parameters shared by all tasks.
    pub shared: &'a Params,
    /// Task `t`'s own parameters (`T` entries; empty sets are fine), or an empty slice.
    pub specific: &'a [Params],
}

/// What [`MtlBackward::apply`] works from.
#[derive(Clone, Copy)]
struct Applied<'s> {
    space: Option<GradientSpace>,
    sample: &'s TaskLosses,
    grads: Option<&'s SampleGrads>,
    specific_grads: &'s [Params],
    /// On a data-parallel rank: what the ranks agreed on, and the shape of the whole
    /// batch's representation (representation space).
    sharded: Option<(&'s Shard<'s>, Option<&'s [i64]>)>,
}

impl<'a> MtlBackward<'a> {
    /// Parameters `shared` and task-specific `specific`.
    pub fn new(shared: &'a Params, specific: &'a [Params]) -> Self {
        Self { shared, specific }
    }

    /// Runs `strategy` on the losses of `samples` (as many as [`crate::Needs::samples`]) at
    /// step `step` (from 1), accumulating the combined gradient into `.grad`.
    ///
    /// Errors on a non-finite loss (naming the task and step), on non-finite weights or
    /// update, and when the strategy needs what the inputs lack.
    pub fn run(
        &self,
        strategy: &mut dyn Strategy,
        samples: &[TaskLosses],
        step: u64,
        bilevel: Option<&dyn Bilevel>,
    ) -> Result<StepReport> {
        let needs = strategy.needs();
        let name = strategy.name();
        let first = samples.first().ok_or(MtlError::NoTasks)?;
        let t_total = first.losses.len();
        self.check_inputs(name, &needs, samples, samples.len(), t_total, bilevel)?;
        let tasks: Vec<usize> =
            (0..t_total).filter(|&t| samples.iter().all(|s| s.losses[t].is_some())).collect();
        if tasks.is_empty() {
            return Err(MtlError::NoTasks);
        }
        let losses: Vec<Vec<Tensor>> = samples
            .iter()
            .map(|s| tasks.iter().map(|&t| s.losses[t].as_ref().expect("present").shallow_clone()).collect())
            .collect();
        let loss_values = losses.iter().map(|l| values_of(l, &tasks, step)).collect::<Result<Vec<_>>>()?;

        let no_params = Params::from_named(Vec::new())?;
        let spec_sets: Vec<&Params> =
            (0..t_total).map(|t| self.specific.get(t).unwrap_or(&no_params)).collect();
        if needs.gradients.is_some() {
            losses.iter().try_for_each(|l| check_differentiable(l))?;
        }
        let grads = match needs.gradients {
            None => Vec::new(),
            Some(space) => samples
                .iter()
                .zip(&losses)
                .map(|(s, l)| {
                    let l: Vec<Option<&Tensor>> = l.iter().map(Some).collect();
                    task_gradients(self.shared, name, space, s, &l, &tasks, &spec_sets)
                })
                .collect::<Result<Vec<_>>>()?,
        };
        let jacobians: Vec<Tensor> = grads.iter().map(|g| g.jacobian.shallow_clone()).collect();
        let specific_grads = mean_specific(&grads, &tasks, &spec_sets);
        let representation = match needs.gradients {
            Some(GradientSpace::Representation) => first.representation.as_ref().map(|r| r.leaf.detach()),
            _ => None,
        };
        let input = StepInput {
            step,
            tasks: tasks.clone(),
            num_tasks: t_total,
            losses: &losses[0],
            loss_values: loss_values.clone(),
            jacobians,
            specific_grads: &specific_grads,
            shared: self.shared,
            specific: self.specific,
            representation: representation.as_ref(),
            bilevel,
            gramian: OnceCell::new(),
            collective: &Local,
        };
        let combination = strategy.combine(&input)?;
        check_weights(name, step, &combination, tasks.len())?;
        let applied = Applied {
            space: needs.gradients,
            sample: first,
            grads: grads.first(),
            specific_grads: &specific_grads,
            sharded: None,
        };
        self.apply(name, step, &combination, &applied, &tasks, &spec_sets)?;
        Ok(report(&combination, tasks, t_total, &loss_values[0]))
    }

    /// [`MtlBackward::run`] on one rank of a data-parallel step (see
    /// [`crate::MtlStep::set_collective`]): `samples` are this rank's shards of the parts
    /// of the whole batch (a shard without labels for a task has no loss for it), `shard`
    /// what the ranks agreed on. The strategy sees the whole batch's losses and gradients;
    /// this leaves the whole batch's combined gradient in the `.grad` of every shared and
    /// task-specific parameter on every rank (one sum over the ranks), clipped where the
    /// strategy says so.
    pub(crate) fn run_sharded(
        &self,
        strategy: &mut dyn Strategy,
        samples: &[TaskLosses],
        step: u64,
        bilevel: Option<&dyn Bilevel>,
        shard: &Shard<'_>,
    ) -> Result<StepReport> {
        let needs = strategy.needs();
        let name = strategy.name();
        let t_total = shard.samples.first().ok_or(MtlError::NoTasks)?.values.len();
        self.check_inputs(name, &needs, samples, shard.samples.len(), t_total, bilevel)?;
        let space = needs.gradients;
        let rep = space == Some(GradientSpace::Representation);
        if rep && needs.samples > 1 {
            return Err(MtlError::Unsupported {
                strategy: name,
                reason: "representation gradients of several samples are not supported on several ranks"
                    .into(),
            });
        }
        // The tasks with labels in every part of the whole batch, the same on every rank.
        let tasks: Vec<usize> =
            (0..t_total).filter(|&t| shard.samples.iter().all(|s| s.values[t].is_some())).collect();
        if tasks.is_empty() {
            return Err(MtlError::NoTasks);
        }
        let (kind, device) = samples
            .iter()
            .flat_map(|s| s.losses.iter().flatten())
            .next()
            .map_or((self.shared.kind(), self.shared.device()), |l| (l.kind(), l.device()));
        // The whole batch's losses, with this rank's share of their gradients.
        let losses: Vec<Vec<Tensor>> = samples
            .iter()
            .zip(&shard.samples)
            .map(|(s, g)| {
                tasks
                    .iter()
                    .map(|&t| {
                        let value = g.values[t].expect("present on some rank");
                        surrogate(value, g.scales[t], s.losses[t].as_ref(), kind, device)
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        let loss_values = losses.iter().map(|l| values_of(l, &tasks, step)).collect::<Result<Vec<_>>>()?;

        let no_params = Params::from_named(Vec::new())?;
        let spec_sets: Vec<&Params> =
            (0..t_total).map(|t| self.specific.get(t).unwrap_or(&no_params)).collect();
        let mut grads = Vec::new();
        let mut representation = None;
        if let Some(space) = space {
            // This rank's shares: the gradients of s_{r,t} L_{r,t} (zero rows without labels).
            for (s, g) in samples.iter().zip(&shard.samples) {
                let scaled: Vec<Option<Tensor>> = tasks
                    .iter()
                    .map(|&t| s.losses[t].as_ref().map(|l| l.f_mul_scalar(g.scales[t])).transpose())
                    .collect::<Result<_, _>>()?;
                let present: Vec<Tensor> = scaled.iter().flatten().map(Tensor::shallow_clone).collect();
                check_differentiable(&present)?;
                let scaled: Vec<Option<&Tensor>> = scaled.iter().map(Option::as_ref).collect();
                grads.push(task_gradients(self.shared, name, space, s, &scaled, &tasks, &spec_sets)?);
            }
            // Summed over the ranks in one collective: the Jacobians (parameter space) or
            // the representation's rows of every rank (representation space), and the
            // task-specific gradients.
            let mut to_sum: Vec<Tensor> = Vec::new();
            let mut padded = None;
            if rep {
                let bdim = shard.batch_dim.expect("found before the step for representation gradients");
                let leaf = &samples[0].representation.as_ref().expect("checked by task_gradients").leaf;
                let shape = leaf.size();
                let mut j_shape = vec![tasks.len() as i64];
                j_shape.extend_from_slice(&shape);
                let rank = shard.collective.rank();
                let j =
                    pad_rows(&grads[0].jacobian.f_view(j_shape.as_slice())?, bdim + 1, &shard.rows[0], rank)?;
                let z = pad_rows(leaf, bdim, &shard.rows[0], rank)?;
                to_sum.push(j.shallow_clone());
                to_sum.push(z.shallow_clone());
                padded = Some((j, z, bdim));
            } else {
                to_sum.extend(grads.iter().map(|g| g.jacobian.shallow_clone()));
            }
            for g in &grads {
                to_sum.extend(g.specific.iter().flatten().map(Tensor::shallow_clone));
            }
            shard.collective.all_reduce_sum(&to_sum)?;
            if let Some((j, z, bdim)) = padded {
                grads[0].jacobian =
                    unpad_rows(&j, bdim + 1, &shard.rows[0])?.f_reshape([tasks.len() as i64, -1])?;
                representation = Some(unpad_rows(&z, bdim, &shard.rows[0])?);
            }
        }
        let jacobians: Vec<Tensor> = grads.iter().map(|g| g.jacobian.shallow_clone()).collect();
        let specific_grads = mean_specific(&grads, &tasks, &spec_sets);
        let input = StepInput {
            step,
            tasks: tasks.clone(),
            num_tasks: t_total,
            losses: &losses[0],
            loss_values: loss_values.clone(),
            jacobians,
            specific_grads: &specific_grads,
            shared: self.shared,
            specific: self.specific,
            representation: representation.as_ref(),
            bilevel,
            gramian: OnceCell::new(),
            collective: shard.collective,
        };
        let combination = strategy.combine(&input)?;
        drop(input);
        check_weights(name, step, &combination, tasks.len())?;
        let whole = representation.as_ref().map(Tensor::size);
        let applied = Applied {
            space,
            sample: &samples[0],
            grads: grads.first(),
            specific_grads: &specific_grads,
            sharded: Some((shard, whole.as_deref())),
        };
        self.apply(name, step, &combination, &applied, &tasks, &spec_sets)?;
        // Every rank now holds its share of the update: the sum over the ranks is the whole.
        let params: Vec<&Tensor> = self
            .shared
            .tensors()
            .iter()
            .chain(self.specific.iter().flat_map(|p| p.tensors()))
            .filter(|p| p.requires_grad())
            .collect();
        fill_missing_grads(&params)?;
        let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).collect();
        shard.collective.all_reduce_sum(&grads)?;
        self.clip(combination.max_norm)?;
        Ok(report(&combination, tasks, t_total, &loss_values[0]))
    }

    /// Leaves the combined update in `.grad`, clipped where the strategy says so.
    ///
    /// On a data-parallel rank (`applied.sharded`) it leaves this rank's share of the
    /// update, without the clipping (which must see the whole gradient): a loss is
    /// back-propagated (its gradient is this rank's share); a direction of the whole batch
    /// in parameter space, and the whole batch's task-specific gradients, are divided by
    /// the number of ranks; in representation space, the rows of the direction that belong
    /// to this rank's samples go through its encoder.
    fn apply(
        &self,
        name: &'static str,
        step: u64,
        combination: &Combination,
        applied: &Applied<'_>,
        tasks: &[usize],
        spec_sets: &[&Params],
    ) -> Result<()> {
        let Applied { space, sample: first, grads, specific_grads, sharded } = *applied;
        // The number of ranks whose shares sum to the update (none for one process).
        let world = sharded.map(|(shard, _)| shard.world() as f64);
        let direction = match &combination.update {
            Update::Loss(loss) => {
                if world.is_none() {
                    loss.f_backward()?;
                    return self.clip(combination.max_norm);
                }
                // A rank without a single label has nothing to back-propagate but the
                // strategy's own parameters, if it has any.
                if loss.requires_grad() {
                    loss.f_backward()?;
                }
                return Ok(());
            }
            Update::Weighted => {
                let g = grads.ok_or_else(|| MtlError::Unsupported {
                    strategy: name,
                    reason: "weighted updates need per-task gradients".into(),
                })?;
                StepInput::combine_rows(&g.jacobian, &combination.weights)?
            }
            Update::Direction(d) => d.shallow_clone(),
        };
        // One reduction: a NaN or infinite entry makes the `f64` sum so, and finite `f32`
        // entries cannot overflow it (`f64` ones only beyond ~10³⁰⁰, reported too).
        let finite = direction.f_sum(Kind::Double)?.double_value(&[]).is_finite();
        if !finite {
            return Err(MtlError::NonFiniteUpdate { strategy: name, what: "update", step });
        }
        let mut terms: Vec<Tensor> = Vec::new();
        match space {
            Some(GradientSpace::Representation) => {
                let rep = first.representation.as_ref().expect("checked when computing gradients");
                let d = match sharded {
                    None => direction.f_reshape(rep.encoded.size())?,
                    Some((shard, whole)) => {
                        let bdim =
                            shard.batch_dim.expect("found before the step for representation gradients");
                        let whole = whole.expect("gathered with the gradients");
                        let (offset, rows) = shard.offset(0);
                        direction.f_reshape(whole)?.f_narrow(bdim as i64, offset, rows)?
                    }
                }
                .f_to_kind(rep.encoded.kind())?;
                terms.push(inner(&rep.encoded, &d)?);
                if let Some(g) = grads {
                    // Shared parameters used after the representation: Σᵢ wᵢ gᵢ (of this
                    // rank's shares on a data-parallel rank).
                    let weights = match combination.update {
                        Update::Weighted => combination.weights.clone(),
                        _ => vec![1.0; tasks.len()],
                    };
                    for (w, after) in weights.iter().zip(&g.shared_after) {
                        for (p, gp) in self.shared.tensors().iter().zip(after.iter().flatten()) {
                            accumulate(p, &gp.f_mul_scalar(*w)?, &mut terms)?;
                        }
                    }
                }
            }
            _ => {
                let mut share = direction.f_to_kind(self.shared.kind())?;
                if let Some(world) = world {
                    share = share.f_div_scalar(world)?;
                }
                let flat = self.shared.unflatten(&share)?;
                for (p, g) in self.shared.tensors().iter().zip(flat.tensors()) {
                    accumulate(p, g, &mut terms)?;
                }
            }
        }
        for (&t, g) in tasks.iter().zip(specific_grads) {
            for (p, gp) in spec_sets[t].tensors().iter().zip(g.tensors()) {
                match world {
                    None => accumulate(p, gp, &mut terms)?,
                    Some(world) => accumulate(p, &gp.f_div_scalar(world)?, &mut terms)?,
                }
            }
        }
        let mut terms = terms.into_iter();
        if let Some(first) = terms.next() {
            terms.try_fold(first, |acc, t| acc.f_add(&t.f_to_kind(acc.kind())?))?.f_backward()?;
        }
        match world {
            None => self.clip(combination.max_norm),
            Some(_) => Ok(()),
        }
    }

    /// Checks `samples` (`agreed` parts, as the ranks agreed on them) against what the
    /// strategy `name` needs, for `t_total` tasks.
    fn check_inputs(
        &self,
        name: &'static str,
        needs: &Needs,
        samples: &[TaskLosses],
        agreed: usize,
        t_total: usize,
        bilevel: Option<&dyn Bilevel>,
    ) -> Result<()> {
        if samples.len() != needs.samples || agreed != needs.samples {
            return Err(MtlError::Shape(format!(
                "strategy `{name}` needs {} loss samples per step, got {}",
                needs.samples,
                samples.len()
            )));
        }
        if samples.iter().any(|s| s.losses.len() != t_total) {
            return Err(MtlError::Shape("every sample must have one loss entry per task".into()));
        }
        if !self.specific.is_empty() && self.specific.len() != t_total {
            return Err(MtlError::Shape(format!(
                "{} task-specific parameter sets for {t_total} tasks",
                self.specific.len()
            )));
        }
        if needs.validation && bilevel.is_none() {
            return Err(MtlError::Unsupported { strategy: name, reason: "needs a validation batch".into() });
        }
        Ok(())
    }

    /// Scales the shared parameters' `.grad` down to ℓ2 norm `max_norm`, if above.
    fn clip(&self, max_norm: Option<f64>) -> Result<()> {
        let Some(max_norm) = max_norm else { return Ok(()) };
        tch::no_grad(|| -> Result<()> {
            let grads: Vec<Tensor> =
                self.shared.tensors().iter().map(Tensor::grad).filter(Tensor::defined).collect();
            if grads.is_empty() {
                return Ok(());
            }
            let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
            let total = f64::try_from(Tensor::f_stack(&norms, 0)?.f_norm()?)?;
            let coef = max_norm / (total + 1e-6);
            if coef < 1.0 {
                for mut g in grads {
                    let _ = g.f_mul_scalar_(coef)?;
                }
            }
            Ok(())
        })
    }
}

/// Errors unless the strategy gave one finite weight per participating task.
fn check_weights(name: &'static str, step: u64, combination: &Combination, tasks: usize) -> Result<()> {
    if combination.weights.len() != tasks || combination.weights.iter().any(|w| !w.is_finite()) {
        return Err(MtlError::NonFiniteUpdate { strategy: name, what: "weights", step });
    }
    Ok(())
}

/// The weight and loss of every one of `t_total` tasks (0 and `NaN` for those that did not
/// take part).
fn report(combination: &Combination, tasks: Vec<usize>, t_total: usize, loss_values: &[f64]) -> StepReport {
    let mut weights = vec![0.0; t_total];
    let mut values = vec![f64::NAN; t_total];
    for (i, &t) in tasks.iter().enumerate() {
        weights[t] = combination.weights[i];
        values[t] = loss_values[i];
    }
    StepReport { weights, losses: values, tasks }
}

/// Every participating task's task-specific gradients, averaged over the samples (none
/// without gradients).
fn mean_specific(grads: &[SampleGrads], tasks: &[usize], spec_sets: &[&Params]) -> Vec<Params> {
    if grads.is_empty() {
        return Vec::new();
    }
    tasks
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let n = grads.len() as f64;
            let spec = spec_sets[t];
            let mean = (0..spec.len())
                .map(|p| {
                    let sum = grads
                        .iter()
                        .skip(1)
                        .fold(grads[0].specific[i][p].shallow_clone(), |acc, g| acc + &g.specific[i][p]);
                    if grads.len() > 1 {
                        sum / n
                    } else {
                        sum
                    }
                })
                .collect();
            spec.with_tensors(mean)
        })
        .collect()
}

/// Gives every parameter of `params` without a gradient a zero one (back-propagating
/// `0 · Σ p`), so that a data-parallel rank sums the same set of gradients as the others.
fn fill_missing_grads(params: &[&Tensor]) -> Result<()> {
    let missing: Vec<Tensor> = params
        .iter()
        .filter(|p| !p.grad().defined())
        .map(|p| p.f_sum(p.kind()).and_then(|s| s.f_mul_scalar(0.0)))
        .collect::<Result<_, _>>()?;
    if let Some(first) = missing.first() {
        missing[1..].iter().try_fold(first.shallow_clone(), |a, b| a.f_add(b))?.f_backward()?;
    }
    Ok(())
}

/// `Σ p ⊙ g` as a scalar of `p`'s kind (`g` detached).
fn inner(p: &Tensor, g: &Tensor) -> Result<Tensor> {
    Ok(p.f_mul(&g.f_detach()?)?.f_sum(p.kind())?)
}

/// Adds `g` to `p.grad` in place when `p` already has a gradient tensor (after the first
/// step, optimizers zero it in place), else queues the surrogate term `⟨p, g⟩` whose
/// backward creates it: the same result as back-propagation either way.
fn accumulate(p: &Tensor, g: &Tensor, terms: &mut Vec<Tensor>) -> Result<()> {
    let mut grad = p.grad();
    if grad.defined() {
        tch::no_grad(|| grad.f_add_(&g.f_to_kind(grad.kind())?.f_view_as(&grad)?).map(|_| ()))?;
    } else {
        terms.push(inner(p, g)?);
    }
    Ok(())
}

/// The loss values on the host (one copy), checked finite.
fn values_of(losses: &[Tensor], tasks: &[usize], step: u64) -> Result<Vec<f64>> {
    let stacked = Tensor::f_stack(
        &losses
            .iter()
            .map(|l| l.f_detach()?.f_to_kind(Kind::Double)?.f_reshape([]))
            .collect::<Result<Vec<_>, _>>()?,
        0,
    )?;
    let values = Vec::<f64>::try_from(&stacked.f_to_device(Device::Cpu)?)?;
    if let Some((i, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(MtlError::NonFiniteLoss { task: tasks[i], step, value });
    }
    Ok(values)
}

/// One step with `strategy` on the losses of all tasks, when the model has no
/// task-specific parameters to treat apart (or they are part of `shared`): a convenience
/// for [`MtlBackward::run`].
pub fn backward(
    strategy: &mut dyn Strategy,
    losses: &[Tensor],
    shared: &Params,
    step: u64,
) -> Result<StepReport> {
    let sample = TaskLosses::all(losses.iter().map(Tensor::shallow_clone).collect());
    MtlBackward::new(shared, &[]).run(strategy, &[sample], step, None)
}
