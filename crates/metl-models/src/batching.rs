//! How convolutional networks lay out their activations, and how many tasks a task-batched
//! pass evaluates per grouped convolution — a per-thread performance policy
//! ([`set_task_batching`]) that never changes results.
//!
//! Two effects decide CPU speed, measured on Conv4 for a 32-task meta-batch (one thread):
//! - **Memory format.** libtorch's CPU batch norm, ReLU and max-pooling are vectorised over
//!   channels in the channels-last (NHWC) format and several times faster there than in
//!   NCHW on large activations (ReLU + 2×2 max-pool on 2400 images of 64×28×28: 100 ms
//!   against 660 ms), and convolutions (oneDNN) are as fast or faster. But the second-order
//!   backward pass (batch norm's and the grouped convolutions' double backward) is about 3×
//!   slower in channels-last. So on the CPU a pass whose largest activation per task is at
//!   least 4 MiB (a query set: 75 images of 64×28×28 take 15 MB) runs channels-last, and a
//!   smaller one (a support set, the part of MAML that is differentiated twice: 5 images,
//!   1 MB) runs NCHW. Second-order MAML on Omniglot 5-way 1-shot (32 tasks, 15 queries per
//!   class) takes 2.98 s this way, against 3.74 s all NCHW and 3.89 s all channels-last.
//! - **Allocation size.** glibc serves allocations above its mmap threshold (at most
//!   32 MiB) with fresh pages that the kernel must zero on first touch, every time; a
//!   task-batched activation for all tasks at once (the query set of a meta-batch: 2400
//!   images × 64 × 28 × 28 floats, 480 MB) spent most of its time in those page faults. So
//!   on the CPU a task-batched pass runs its tasks in chunks whose largest activation stays
//!   below 30 MiB; each chunk is still one grouped convolution per layer.
//!
//! On CUDA the default keeps NCHW and one chunk: the caching allocator has no page-fault
//! cost, and large kernels are what a GPU needs.

use std::cell::Cell;
use tch::Device;

/// The memory format of convolutional activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvFormat {
    /// On the CPU channels-last for activations of at least 4 MiB per task and NCHW for
    /// smaller ones; NCHW elsewhere.
    #[default]
    Auto,
    /// Always NCHW (PyTorch's default).
    Contiguous,
    /// Always channels-last (NHWC strides).
    ChannelsLast,
}

/// The task-batching policy (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskBatching {
    /// The memory format of convolutional activations.
    pub format: ConvFormat,
    /// The largest activation of one chunk of tasks, in bytes: `Some(0)` disables chunking,
    /// `None` (the default) means 30 MiB on the CPU and no chunking elsewhere.
    pub chunk_bytes: Option<usize>,
}

impl Default for TaskBatching {
    fn default() -> Self {
        Self { format: ConvFormat::Auto, chunk_bytes: None }
    }
}

/// Below glibc's largest mmap threshold (32 MiB), so that chunk buffers are reused.
const CPU_CHUNK_BYTES: usize = 30 << 20;

/// The per-task activation size from which `Auto` uses channels-last on the CPU.
const CPU_CHANNELS_LAST_BYTES: usize = 4 << 20;

thread_local! {
    static POLICY: Cell<TaskBatching> =
        const { Cell::new(TaskBatching { format: ConvFormat::Auto, chunk_bytes: None }) };
}

/// The current thread's policy.
pub fn task_batching() -> TaskBatching {
    POLICY.with(Cell::get)
}

/// Sets the current thread's policy (passes run in the thread that calls them).
pub fn set_task_batching(policy: TaskBatching) {
    POLICY.with(|p| p.set(policy));
}

impl TaskBatching {
    /// Whether activations on `device` whose largest takes `bytes_per_task` bytes per task
    /// (the whole batch for a single pass) are channels-last.
    pub fn channels_last(&self, device: Device, bytes_per_task: usize) -> bool {
        match self.format {
            ConvFormat::Auto => device == Device::Cpu && bytes_per_task >= CPU_CHANNELS_LAST_BYTES,
            ConvFormat::Contiguous => false,
            ConvFormat::ChannelsLast => true,
        }
    }

    /// How many of `tasks` tasks to run per chunk when each task's largest activation takes
    /// `bytes_per_task` bytes (at least 1; `tasks` when chunking is off).
    pub fn chunk_tasks(&self, device: Device, tasks: i64, bytes_per_task: usize) -> i64 {
        let budget = match self.chunk_bytes {
            Some(0) => return tasks,
            Some(b) => b,
            None if device == Device::Cpu => CPU_CHUNK_BYTES,
            None => return tasks,
        };
        let per_chunk = (budget / bytes_per_task.max(1)).max(1) as i64;
        // Balanced chunks: as few as the budget allows, of nearly equal size.
        let chunks = (tasks + per_chunk - 1) / per_chunk;
        (tasks + chunks - 1) / chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_stay_under_the_budget_and_are_balanced() {
        let cpu = TaskBatching::default();
        // 5 images × 64 × 28 × 28 floats ≈ 1 MB per task: 32 tasks in 2 chunks of 16.
        assert_eq!(cpu.chunk_tasks(Device::Cpu, 32, 5 * 64 * 784 * 4), 16);
        // 75 images ≈ 15 MB per task: 2 tasks per chunk.
        assert_eq!(cpu.chunk_tasks(Device::Cpu, 32, 75 * 64 * 784 * 4), 2);
        // Larger than the budget: one task per chunk.
        assert_eq!(cpu.chunk_tasks(Device::Cpu, 4, 100 << 20), 1);
        assert_eq!(cpu.chunk_tasks(Device::Cuda(0), 32, 100 << 20), 32);
        let off = TaskBatching { chunk_bytes: Some(0), ..cpu };
        assert_eq!(off.chunk_tasks(Device::Cpu, 32, 100 << 20), 32);
        assert!(cpu.channels_last(Device::Cpu, 15 << 20) && !cpu.channels_last(Device::Cpu, 1 << 20));
        assert!(!cpu.channels_last(Device::Cuda(0), 15 << 20));
    }
}
