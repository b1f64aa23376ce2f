//! The bookkeeping of a data-parallel step ([`crate::MtlStep::set_collective`]): what the
//! ranks agree on before the strategy runs (the per-task label counts and losses of the
//! whole batch, the ranks' row counts), and the gathers of representation-space tensors.
//!
//! Rank `r` holds `c_{r,t}` labelled rows of task `t`, of `c_t = Σ_r c_{r,t}` in the whole
//! batch, and its mean loss `L_{r,t}` over them. The whole batch's loss is then
//! `L_t = Σ_r s_{r,t} L_{r,t}` with `s_{r,t} = c_{r,t} / c_t`, and its gradient (in any
//! space) is `Σ_r s_{r,t} ∇L_{r,t}`: rank `r`'s *share* is `s_{r,t} ∇L_{r,t}`.

use crate::error::{MtlError, Result};
use metl_dist::{Collective, ReduceOp};
use tch::{Device, Kind, Tensor};

/// The most dimensions a shared representation may have in a data-parallel step (its
/// batch dimension is searched among them).
pub(crate) const MAX_REP_DIMS: usize = 8;

/// The task losses of one sample (part) of the whole batch, as every rank knows them.
#[derive(Debug, Clone)]
pub(crate) struct GlobalLosses {
    /// `s_{r,t} = c_{r,t} / c_t` of this rank (0 where no rank has labels).
    pub(crate) scales: Vec<f64>,
    /// `L_t` of the whole batch; `None` where no rank has labels for task `t`.
    pub(crate) values: Vec<Option<f64>>,
}

impl GlobalLosses {
    /// The number of labelled rows of the whole batch, over all tasks, is zero.
    pub(crate) fn is_empty(&self) -> bool {
        self.values.iter().all(Option::is_none)
    }
}

/// This rank's shard of a step's batch and what the ranks agreed on about the whole.
pub(crate) struct Shard<'c> {
    /// The ranks.
    pub(crate) collective: &'c dyn Collective,
    /// Per sample: the losses of the whole batch's part.
    pub(crate) samples: Vec<GlobalLosses>,
    /// Per sample: the rows of every rank, in rank order.
    pub(crate) rows: Vec<Vec<i64>>,
    /// The batch dimension of the shared representation (representation space only).
    pub(crate) batch_dim: Option<usize>,
}

impl Shard<'_> {
    /// The number of ranks.
    pub(crate) fn world(&self) -> usize {
        self.collective.world_size()
    }

    /// This rank's first row of sample `s` in the whole part, and its row count.
    pub(crate) fn offset(&self, s: usize) -> (i64, i64) {
        let rank = self.collective.rank();
        (self.rows[s][..rank].iter().sum(), self.rows[s][rank])
    }
}

/// The per-task counts of labelled rows of a batch's `mask` (`[N, T]`), on the host.
pub(crate) fn label_counts(mask: &Tensor) -> Result<Vec<f64>> {
    let counts = mask.f_sum_dim_intlist(0i64, false, Kind::Double)?.f_to_device(Device::Cpu)?;
    Ok(Vec::<f64>::try_from(&counts)?)
}

/// The values of the present losses of one sample on the host (one copy), `None` elsewhere.
pub(crate) fn loss_values(losses: &[Option<Tensor>]) -> Result<Vec<Option<f64>>> {
    let present: Vec<Tensor> = losses
        .iter()
        .flatten()
        .map(|l| l.f_detach()?.f_to_kind(Kind::Double)?.f_reshape([]))
        .collect::<Result<_, _>>()?;
    let mut values = if present.is_empty() {
        Vec::new()
    } else {
        Vec::<f64>::try_from(&Tensor::f_stack(&present, 0)?.f_to_device(Device::Cpu)?)?
    }
    .into_iter();
    Ok(losses.iter().map(|l| l.as_ref().and_then(|_| values.next())).collect())
}

/// Sums, over the ranks, every sample's per-task counts and count-weighted losses together
/// with `extra` (in one collective on `device`), and returns the samples' losses of the
/// whole batch. `local[s]` holds sample `s`'s counts and loss values on this rank.
pub(crate) fn agree(
    collective: &dyn Collective,
    device: Device,
    local: &[(Vec<f64>, Vec<Option<f64>>)],
    extra: &mut [f64],
) -> Result<Vec<GlobalLosses>> {
    let mut buffer: Vec<f64> = Vec::new();
    for (counts, values) in local {
        buffer.extend(counts);
        // A task without labels here has no loss; 0 · (anything) would still be 0.
        buffer.extend(counts.iter().zip(values).map(|(c, v)| v.map_or(0.0, |v| c * v)));
    }
    buffer.extend_from_slice(extra);
    collective.all_reduce_f64(&mut buffer, ReduceOp::Sum, device)?;
    let (sums, rest) = buffer.split_at(buffer.len() - extra.len());
    extra.copy_from_slice(rest);
    let mut out = Vec::with_capacity(local.len());
    let mut chunks = sums.chunks(sums.len() / local.len().max(1));
    for (counts, _) in local {
        let chunk = chunks.next().expect("one chunk per sample");
        let (total, weighted) = chunk.split_at(counts.len());
        out.push(GlobalLosses {
            scales: counts.iter().zip(total).map(|(c, t)| if *t > 0.0 { c / t } else { 0.0 }).collect(),
            values: total.iter().zip(weighted).map(|(t, w)| (*t > 0.0).then(|| w / t)).collect(),
        });
    }
    Ok(out)
}

/// `global` as a scalar of `kind` on `device` whose gradient is `scale` times that of
/// `local`: `L_t + s (L_{r,t} − stop_gradient(L_{r,t}))`. Its value is exactly `L_t` (the
/// added term is `0`), the same on every rank; back-propagating it gives this rank's share
/// of the whole batch's gradient. Without a local loss, the constant `L_t`.
pub(crate) fn surrogate(
    global: f64,
    scale: f64,
    local: Option<&Tensor>,
    kind: Kind,
    device: Device,
) -> Result<Tensor> {
    let value = Tensor::f_from_slice(&[global])?.f_to_kind(kind)?.f_to_device(device)?.f_reshape([])?;
    Ok(match local {
        Some(l) => value.f_add(&l.f_sub(&l.f_detach()?)?.f_mul_scalar(scale)?)?,
        None => value,
    })
}

/// `tensor` (rows along `dim`) laid out in a zero buffer `[world, max rows, ...]` at this
/// rank's index, so that its sum over the ranks holds every rank's rows.
pub(crate) fn pad_rows(tensor: &Tensor, dim: usize, rows: &[i64], rank: usize) -> Result<Tensor> {
    let moved = tensor.f_detach()?.f_movedim([dim as i64], [0])?;
    let max = rows.iter().copied().max().unwrap_or(0);
    let mut shape = vec![rows.len() as i64, max];
    shape.extend_from_slice(&moved.size()[1..]);
    let padded = Tensor::f_zeros(shape.as_slice(), (moved.kind(), moved.device()))?;
    padded.f_select(0, rank as i64)?.f_narrow(0, 0, rows[rank])?.f_copy_(&moved)?;
    Ok(padded)
}

/// Every rank's rows of a summed [`pad_rows`] buffer, concatenated in rank order along
/// `dim`.
pub(crate) fn unpad_rows(padded: &Tensor, dim: usize, rows: &[i64]) -> Result<Tensor> {
    let parts = rows
        .iter()
        .enumerate()
        .map(|(q, &n)| padded.f_select(0, q as i64)?.f_narrow(0, 0, n))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Tensor::f_cat(&parts, 0)?.f_movedim([0], [dim as i64])?)
}

/// The shared representation's batch dimension from the summed indicators
/// `[size(d) == rows]` of every rank: the first dimension where it holds on all `world`
/// ranks.
pub(crate) fn batch_dim(indicators: &[f64], world: usize, strategy: &'static str) -> Result<usize> {
    indicators.iter().position(|&n| n as usize == world).ok_or_else(|| MtlError::Unsupported {
        strategy,
        reason: format!(
            "on several ranks the shared representation needs a batch dimension (one of its first \
             {MAX_REP_DIMS}) whose size is each rank's number of samples, on every rank; every rank \
             needs at least one sample"
        ),
    })
}

/// `[size(d) == rows]` for the first [`MAX_REP_DIMS`] dimensions of `representation`
/// (zeros without one).
pub(crate) fn batch_dim_indicators(representation: Option<&Tensor>, rows: i64) -> Vec<f64> {
    let size = representation.map(Tensor::size).unwrap_or_default();
    (0..MAX_REP_DIMS).map(|d| f64::from(u8::from(size.get(d) == Some(&rows) && rows > 0))).collect()
}
