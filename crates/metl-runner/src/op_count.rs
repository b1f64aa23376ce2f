//! Counting the libtorch operators a piece of work dispatches, for `metl bench
//! --count-ops`: every `aten::*` operator (nested ones included, as `torch.profiler` lists
//! them) and every autograd node executed, on all threads, through a RecordFunction
//! callback of `cpp/op_count.cpp`. The only module of the runner that uses `unsafe`.
#![allow(unsafe_code)]

/// Operators and autograd nodes counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCount {
    /// `aten::*` operators dispatched.
    pub operators: u64,
    /// Autograd nodes (backward functions) executed.
    pub autograd_nodes: u64,
}

#[cfg(metl_op_count)]
extern "C" {
    fn metl_op_count_start() -> std::ffi::c_int;
    fn metl_op_count_stop(operators: *mut u64, autograd_nodes: *mut u64);
}

/// Counts what `work` dispatches. An error where the counter was not built (no libtorch
/// headers) or one is already counting.
pub fn count<T>(work: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, OpCount)> {
    #[cfg(metl_op_count)]
    {
        // SAFETY: plain C functions of cpp/op_count.cpp; the pointers are to live locals.
        if unsafe { metl_op_count_start() } != 0 {
            anyhow::bail!("operators are already being counted");
        }
        let out = work();
        let mut counted = OpCount::default();
        // SAFETY: as above.
        unsafe { metl_op_count_stop(&mut counted.operators, &mut counted.autograd_nodes) };
        Ok((out?, counted))
    }
    #[cfg(not(metl_op_count))]
    {
        let _ = work;
        anyhow::bail!("this metl was built without libtorch's headers: operators cannot be counted")
    }
}
