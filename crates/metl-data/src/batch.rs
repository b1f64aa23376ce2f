//! The meta-batch: support and query sets of several tasks, stacked.

use tch::{Device, Tensor};

/// Support and query sets of `B` tasks stacked along a leading task dimension.
///
/// Shapes: inputs `[B, S, ...]` and `[B, Q, ...]`; targets `[B, S]`/`[B, Q]` (class
/// indices, `Int64`) for classification or `[B, S, D]`/`[B, Q, D]` (floats) for regression.
#[derive(Debug)]
pub struct TaskBatch {
    /// Support inputs, `[B, S, ...]`.
    pub support_x: Tensor,
    /// Support targets, `[B, S]` or `[B, S, D]`.
    pub support_y: Tensor,
    /// Query inputs, `[B, Q, ...]`.
    pub query_x: Tensor,
    /// Query targets, `[B, Q]` or `[B, Q, D]`.
    pub query_y: Tensor,
}

impl TaskBatch {
    /// The number of tasks `B`.
    pub fn num_tasks(&self) -> usize {
        self.support_x.size()[0] as usize
    }

    /// The device the tensors live on.
    pub fn device(&self) -> Device {
        self.support_x.device()
    }

    /// The batch moved to `device` (a no-op copy of handles when already there).
    pub fn to_device(&self, device: Device) -> TaskBatch {
        TaskBatch {
            support_x: self.support_x.to_device(device),
            support_y: self.support_y.to_device(device),
            query_x: self.query_x.to_device(device),
            query_y: self.query_y.to_device(device),
        }
    }

    /// Task `index` alone, keeping the leading task dimension (of size 1).
    pub fn task(&self, index: usize) -> TaskBatch {
        self.tasks(index, 1)
    }

    /// Tasks `start .. start + len` as a batch of their own (views, no copy).
    pub fn tasks(&self, start: usize, len: usize) -> TaskBatch {
        let (i, n) = (start as i64, len as i64);
        TaskBatch {
            support_x: self.support_x.narrow(0, i, n),
            support_y: self.support_y.narrow(0, i, n),
            query_x: self.query_x.narrow(0, i, n),
            query_y: self.query_y.narrow(0, i, n),
        }
    }
}
