//! [`Timed`]: a [`Collective`] that counts what passes through another one — calls, bytes
//! and wall time — for measuring the communication share of a data-parallel step.
use crate::{
    collective::{Collective, ReduceOp},
    error::Result,
};
use std::{sync::Mutex, time::Instant};
use tch::Tensor;

/// Totals of the collectives run so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommStats {
    /// Collective calls (one per fused call, whatever its tensor count).
    pub calls: u64,
    /// Bytes of the tensors reduced or broadcast (this rank's side).
    pub bytes: u64,
    /// Wall time inside the collectives, in seconds (waiting for slower ranks included).
    pub seconds: f64,
}

/// Wraps a collective and records [`CommStats`].
#[derive(Debug)]
pub struct Timed<C> {
    inner: C,
    stats: Mutex<CommStats>,
}

impl<C: Collective> Timed<C> {
    /// Counts the collectives of `inner`.
    pub fn new(inner: C) -> Self {
        Self { inner, stats: Mutex::new(CommStats::default()) }
    }

    /// The totals so far.
    pub fn stats(&self) -> CommStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the totals back to zero (e.g. after a warm-up).
    pub fn reset(&self) {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner()) = CommStats::default();
    }

    fn record<T>(&self, tensors: &[Tensor], run: impl FnOnce() -> Result<T>) -> Result<T> {
        let start = Instant::now();
        let out = run();
        let seconds = start.elapsed().as_secs_f64();
        let bytes: u64 = tensors
            .iter()
            .filter(|t| t.defined())
            .map(|t| t.numel() as u64 * t.kind().elt_size_in_bytes() as u64)
            .sum();
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.calls += 1;
        stats.bytes += bytes;
        stats.seconds += seconds;
        out
    }
}

impl<C: Collective> Collective for Timed<C> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }

    fn world_size(&self) -> usize {
        self.inner.world_size()
    }

    fn all_reduce(&self, tensors: &[Tensor], op: ReduceOp) -> Result<()> {
        self.record(tensors, || self.inner.all_reduce(tensors, op))
    }

    fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        self.record(tensors, || self.inner.broadcast(tensors, root))
    }

    fn barrier(&self) -> Result<()> {
        self.record(&[], || self.inner.barrier())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Local;

    #[test]
    fn counts_calls_and_bytes() {
        let timed = Timed::new(Local);
        let a = Tensor::zeros([10], (tch::Kind::Float, tch::Device::Cpu));
        let b = Tensor::zeros([3], (tch::Kind::Double, tch::Device::Cpu));
        timed.all_reduce_sum(&[a, b]).unwrap();
        timed.barrier().unwrap();
        let s = timed.stats();
        assert_eq!((s.calls, s.bytes), (2, 10 * 4 + 3 * 8));
        timed.reset();
        assert_eq!(timed.stats(), CommStats::default());
    }
}
