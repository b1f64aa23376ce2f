//! Per-task gradient state kept across steps on the gradients' device (MoCo's tracking
//! gradients, DB-MTL's buffer, ExcessMTL's accumulator): a `[T, D]` tensor whose rows of
//! the participating tasks are updated in place each step.

use crate::{
    checkpoint::{StateReader, StrategyState},
    error::{MtlError, Result},
};
use tch::Tensor;

/// A `[T, D]` tensor of per-task rows, created (zeros) on first use.
#[derive(Debug, Default)]
pub struct TaskRows {
    rows: Option<Tensor>,
}

impl TaskRows {
    /// Applies the in-place update `f` to the rows of `tasks` (`[k, D]`, zeros shaped like
    /// `like` for `num_tasks` tasks on first use) and returns them. When every task takes
    /// part, `f` works on the state itself; otherwise on a gathered copy that is written
    /// back.
    pub fn update(
        &mut self,
        tasks: &[usize],
        num_tasks: usize,
        like: &Tensor,
        f: impl FnOnce(&mut Tensor) -> Result<()>,
    ) -> Result<Tensor> {
        let width = like.size()[1];
        let rows = match &mut self.rows {
            Some(r) if r.size()[1] == width => r,
            slot => slot.insert(Tensor::f_zeros([num_tasks as i64, width], (like.kind(), like.device()))?),
        };
        if rows.size()[0] != num_tasks as i64 {
            return Err(MtlError::Shape(format!("{} task rows kept for {num_tasks} tasks", rows.size()[0])));
        }
        // Rows restored from a checkpoint come back on the gradients' device and kind.
        if rows.device() != like.device() || rows.kind() != like.kind() {
            *rows = rows.f_to_device(like.device())?.f_to_kind(like.kind())?;
        }
        if tasks.len() == num_tasks {
            let mut all = rows.shallow_clone();
            f(&mut all)?;
            return Ok(all);
        }
        let idx = index(tasks, like);
        let mut some = rows.f_index_select(0, &idx)?;
        f(&mut some)?;
        let _ = rows.f_index_copy_(0, &idx, &some)?;
        Ok(some)
    }

    /// Adds the rows (if created yet) to `state` as the optional tensor `name`.
    pub fn save(&self, name: &str, state: StrategyState) -> StrategyState {
        state.with_optional_tensor(name, self.rows.as_ref())
    }

    /// The rows [`TaskRows::save`] wrote as `name`: a `[T, D]` tensor, or none yet. They
    /// move to the gradients' device and kind at the next update (where they were made).
    pub fn load(name: &str, reader: &mut StateReader<'_>) -> Result<Self> {
        let rows = reader.optional_tensor(name)?;
        if let Some(r) = &rows {
            if r.dim() != 2 {
                return Err(reader.error(
                    &format!("tensors/{name}"),
                    format!("has shape {:?}, expected [T, D]", r.size()),
                ));
            }
        }
        Ok(Self { rows })
    }
}

/// The task indices as an `Int64` tensor on `like`'s device.
pub fn index(tasks: &[usize], like: &Tensor) -> Tensor {
    Tensor::from_slice(&tasks.iter().map(|&t| t as i64).collect::<Vec<_>>()).to_device(like.device())
}

/// `[k]` host values as a `[k, 1]` column of `like`'s kind and device.
pub fn column(values: &[f64], like: &Tensor) -> Tensor {
    Tensor::from_slice(values).to_kind(like.kind()).to_device(like.device()).unsqueeze(1)
}

/// The ℓ2 norm of every row of `m` (`[k, D]`) on the host.
pub fn row_norms(m: &Tensor) -> Result<Vec<f64>> {
    Ok(Vec::<f64>::try_from(m.f_norm_scalaropt_dim(2, [1], false)?.f_to_kind(tch::Kind::Double)?)?)
}
