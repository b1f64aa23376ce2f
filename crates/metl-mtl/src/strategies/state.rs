//! Per-task gradient state kept across steps on the gradients' device (MoCo's tracking
//! gradients, DB-MTL's buffer, ExcessMTL's accumulator): a `[T, D]` tensor whose rows of
//! the participating tasks are read and written each step.

use crate::error::Result;
use tch::Tensor;

/// A `[T, D]` tensor of per-task rows, created (zeros) on first use.
#[derive(Debug, Default)]
pub struct TaskRows {
    rows: Option<Tensor>,
}

impl TaskRows {
    /// The rows of `tasks` (`[k, D]`), creating zeros shaped like `like` (`[k, D]`) for
    /// `num_tasks` tasks on first use.
    pub fn get(&mut self, tasks: &[usize], num_tasks: usize, like: &Tensor) -> Result<Tensor> {
        let width = like.size()[1];
        let rows = match &self.rows {
            Some(r) if r.size()[1] == width => r,
            _ => self.rows.insert(Tensor::f_zeros([num_tasks as i64, width], (like.kind(), like.device()))?),
        };
        Ok(rows.f_index_select(0, &index(tasks, like))?)
    }

    /// Writes `values` (`[k, D]`) into the rows of `tasks`.
    pub fn set(&mut self, tasks: &[usize], values: &Tensor) -> Result<()> {
        if let Some(rows) = &mut self.rows {
            let _ = rows.f_index_copy_(0, &index(tasks, values), values)?;
        }
        Ok(())
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
