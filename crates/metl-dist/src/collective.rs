//! [`Collective`]: the communication a data-parallel algorithm needs, and [`Local`], the
//! single-process group where every collective is the identity.
use crate::error::{DistError, Result};
use tch::{Device, Kind, Tensor};

/// How values from the ranks are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// The sum over ranks.
    Sum,
    /// The largest value.
    Max,
    /// The smallest value.
    Min,
    /// The product over ranks.
    Product,
}

/// The collectives of a process group (`torch.distributed`'s `all_reduce`, `broadcast`,
/// `barrier`), on `tch` tensors, in place.
///
/// Tensors are modified through their handles, as `torch.distributed` does: pass the
/// tensors themselves (or shallow clones), of any shapes; those of one kind and device are
/// fused into a single flat buffer so that a whole set of gradients costs one collective.
/// Every rank must call the same collectives in the same order with tensors of the same
/// shapes and kinds. Errors (a peer that died, a timeout) are [`DistError`]s, never hangs
/// without end: c10d's timeout bounds every call.
pub trait Collective: Send + Sync + std::fmt::Debug {
    /// This process's rank, `0..world_size`.
    fn rank(&self) -> usize;

    /// The number of processes.
    fn world_size(&self) -> usize;

    /// Replaces every tensor by its reduction over the ranks.
    fn all_reduce(&self, tensors: &[Tensor], op: ReduceOp) -> Result<()>;

    /// Replaces every tensor by rank `root`'s.
    fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<()>;

    /// Returns when every rank has called it.
    fn barrier(&self) -> Result<()>;

    /// Whether this is rank 0, the one that writes files.
    fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// Replaces every tensor by its sum over the ranks.
    fn all_reduce_sum(&self, tensors: &[Tensor]) -> Result<()> {
        self.all_reduce(tensors, ReduceOp::Sum)
    }

    /// Replaces every tensor by its mean over the ranks.
    fn all_reduce_mean(&self, tensors: &[Tensor]) -> Result<()> {
        self.all_reduce(tensors, ReduceOp::Sum)?;
        if self.world_size() > 1 {
            let n = self.world_size() as f64;
            tch::no_grad(|| tensors.iter().try_for_each(|t| t.shallow_clone().f_div_scalar_(n).map(|_| ())))?;
        }
        Ok(())
    }

    /// Replaces every floating-point tensor by its mean over the ranks and leaves the
    /// others (integer counters such as batch norm's `num_batches_tracked`) as they are:
    /// how data-parallel ranks keep a model's buffers alike.
    fn all_reduce_mean_floating(&self, tensors: &[Tensor]) -> Result<()> {
        let floating: Vec<Tensor> = tensors
            .iter()
            .filter(|t| t.defined() && t.is_floating_point())
            .map(Tensor::shallow_clone)
            .collect();
        if floating.is_empty() {
            return Ok(());
        }
        self.all_reduce_mean(&floating)
    }

    /// Reduces host numbers over the ranks (as one `f64` tensor on `device`).
    fn all_reduce_f64(&self, values: &mut [f64], op: ReduceOp, device: Device) -> Result<()> {
        if self.world_size() == 1 || values.is_empty() {
            return Ok(());
        }
        let t = Tensor::from_slice(values).f_to_device(device)?;
        self.all_reduce(std::slice::from_ref(&t), op)?;
        let reduced = Vec::<f64>::try_from(t.f_to_device(Device::Cpu)?)?;
        values.copy_from_slice(&reduced);
        Ok(())
    }

    /// The rows of every rank's `tensor` (`[n_r, ...]`, `n_r` may differ) concatenated in
    /// rank order: `[Σ n_r, ...]`, the same on every rank. Floating-point tensors only (it
    /// sums a zero-padded buffer).
    fn all_gather_rows(&self, tensor: &Tensor) -> Result<Tensor> {
        if self.world_size() == 1 {
            return Ok(tensor.shallow_clone());
        }
        let (world, rank) = (self.world_size() as i64, self.rank() as i64);
        let shape = tensor.size();
        let rows = *shape.first().ok_or_else(|| DistError::Mismatch {
            what: "all_gather_rows input".into(),
            detail: "a scalar has no rows".into(),
        })?;
        let mut counts = vec![0.0; world as usize];
        counts[rank as usize] = rows as f64;
        self.all_reduce_f64(&mut counts, ReduceOp::Sum, tensor.device())?;
        let counts: Vec<i64> = counts.iter().map(|&c| c as i64).collect();
        let max = counts.iter().copied().max().unwrap_or(0);
        let mut padded_shape = vec![world, max];
        padded_shape.extend_from_slice(&shape[1..]);
        let padded = Tensor::f_zeros(padded_shape.as_slice(), (tensor.kind(), tensor.device()))?;
        tch::no_grad(|| padded.f_select(0, rank)?.f_narrow(0, 0, rows)?.f_copy_(&tensor.detach()))?;
        self.all_reduce_sum(std::slice::from_ref(&padded))?;
        let parts = counts
            .iter()
            .enumerate()
            .map(|(r, &n)| padded.f_select(0, r as i64)?.f_narrow(0, 0, n))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Tensor::f_cat(&parts, 0)?)
    }

    /// Checks that `values` are equal on every rank (bit for bit); `what` names them in the
    /// error. For state that must never diverge (a strategy's weights, a step count).
    fn check_same(&self, what: &str, values: &[f64], device: Device) -> Result<()> {
        if self.world_size() == 1 {
            return Ok(());
        }
        let mut low = values.to_vec();
        let mut high = values.to_vec();
        self.all_reduce_f64(&mut low, ReduceOp::Min, device)?;
        self.all_reduce_f64(&mut high, ReduceOp::Max, device)?;
        let differ: Vec<String> = low
            .iter()
            .zip(&high)
            .enumerate()
            .filter(|(_, (l, h))| l.to_bits() != h.to_bits() && !(l.is_nan() && h.is_nan()))
            .take(3)
            .map(|(i, (l, h))| format!("[{i}] from {l} to {h}"))
            .collect();
        if differ.is_empty() {
            Ok(())
        } else {
            Err(DistError::Mismatch { what: what.to_owned(), detail: differ.join(", ") })
        }
    }
}

/// One process on its own: every collective leaves its tensors as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

impl Collective for Local {
    fn rank(&self) -> usize {
        0
    }

    fn world_size(&self) -> usize {
        1
    }

    fn all_reduce(&self, _tensors: &[Tensor], _op: ReduceOp) -> Result<()> {
        Ok(())
    }

    fn broadcast(&self, _tensors: &[Tensor], _root: usize) -> Result<()> {
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        Ok(())
    }
}

/// A shared collective is a collective.
impl<C: Collective + ?Sized> Collective for std::sync::Arc<C> {
    fn rank(&self) -> usize {
        (**self).rank()
    }

    fn world_size(&self) -> usize {
        (**self).world_size()
    }

    fn all_reduce(&self, tensors: &[Tensor], op: ReduceOp) -> Result<()> {
        (**self).all_reduce(tensors, op)
    }

    fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        (**self).broadcast(tensors, root)
    }

    fn barrier(&self) -> Result<()> {
        (**self).barrier()
    }
}

/// Groups `tensors` by kind and device, each group as one flat contiguous buffer, runs
/// `collective` on each buffer and copies the results back into the tensors.
pub(crate) fn fused(tensors: &[Tensor], mut collective: impl FnMut(&Tensor) -> Result<()>) -> Result<()> {
    let mut groups: Vec<((Kind, Device), Vec<&Tensor>)> = Vec::new();
    for t in tensors.iter().filter(|t| t.defined() && t.numel() > 0) {
        let key = (t.kind(), t.device());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(t),
            None => groups.push((key, vec![t])),
        }
    }
    tch::no_grad(|| {
        for (_, members) in groups {
            let buffer = if members.len() == 1 && members[0].is_contiguous() {
                members[0].detach()
            } else {
                let flat =
                    members.iter().map(|t| t.detach().f_reshape([-1])).collect::<Result<Vec<_>, _>>()?;
                Tensor::f_cat(&flat, 0)?
            };
            collective(&buffer)?;
            if members.len() == 1 && members[0].is_contiguous() {
                continue;
            }
            let mut offset = 0;
            for t in members {
                let n = t.numel() as i64;
                let part = buffer.f_narrow(0, offset, n)?.f_view(t.size().as_slice())?;
                t.shallow_clone().f_copy_(&part)?;
                offset += n;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_collectives_are_the_identity() {
        let t = Tensor::from_slice(&[1.0f32, 2.0]);
        Local.all_reduce_mean(std::slice::from_ref(&t)).unwrap();
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![1.0, 2.0]);
        assert!(Local.is_main());
        let rows = Local.all_gather_rows(&Tensor::ones([3, 2], (Kind::Float, Device::Cpu))).unwrap();
        assert_eq!(rows.size(), vec![3, 2]);
        Local.check_same("nothing", &[1.0, f64::NAN], Device::Cpu).unwrap();
        let counter = Tensor::from_slice(&[3i64]);
        Local.all_reduce_mean_floating(&[t.shallow_clone(), counter.shallow_clone()]).unwrap();
        assert_eq!(counter.int64_value(&[0]), 3);
    }

    #[test]
    fn fused_round_trips_tensors_of_mixed_kinds_and_layouts() {
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([2, 2]).transpose(0, 1);
        let b = Tensor::from_slice(&[5.0f64]);
        let c = Tensor::from_slice(&[6.0f32]);
        let mut seen = Vec::new();
        fused(&[a.shallow_clone(), b.shallow_clone(), c.shallow_clone()], |buf| {
            seen.push(buf.size());
            let _ = buf.shallow_clone().f_mul_scalar_(10.0)?;
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![vec![5], vec![1]]);
        assert_eq!(Vec::<f32>::try_from(a.reshape([-1])).unwrap(), vec![10.0, 30.0, 20.0, 40.0]);
        assert_eq!(b.double_value(&[0]), 50.0);
        assert_eq!(c.double_value(&[0]), 60.0);
    }
}
