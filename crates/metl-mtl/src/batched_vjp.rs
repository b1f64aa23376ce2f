//! Task-batched vector-Jacobian products: `k` backward passes of the same graph in one.
//!
//! For outputs `yᵢ` and `k` cotangents per output (`cᵢ`, shaped `[k, ...shape of yᵢ]`),
//! [`batched_vjp`] returns for every input `x` the `k` products
//! `v_b = Σᵢ cᵢ[b]ᵀ ∂yᵢ/∂x` stacked as `[k, ...shape of x]`: what `k` calls of
//! `torch.autograd.grad(y, x, c[b], retain_graph=True)` give, from one pass of libtorch's
//! autograd engine over the graph, as `torch.autograd.grad(y, x, c,
//! is_grads_batched=True)` does in Python. The cotangents travel through the engine as
//! libtorch's vmap batched tensors: each backward formula runs once on `[k, ...]` tensors
//! through its batching rule — a linear layer's `k` weight gradients `δ[b]ᵀ a` become one
//! batched matrix product over the activations `a` that all `k` share. The values are those
//! of the `k` separate passes up to floating-point summation order.
//!
//! It runs only on graphs made of operators that batch: matrix products, views and joins,
//! element-wise operations and activations, sums and means (the list is in the shim,
//! checked against libtorch's fallback warnings). libtorch runs any other operator
//! (convolutions, batch norm, pooling) slice by slice and stacks the slices' large
//! intermediate gradients, which is slower than `k` separate passes (measured: Conv4, 10
//! tasks, 1.8× the CPU time); for such a graph [`batched_vjp`] computes nothing and says
//! so, and the caller takes one pass per cotangent.
//!
//! This is how [`crate::MtlBackward`] gets the per-task gradients of a shared encoder:
//! the task losses' gradients `δₜ = ∂Lₜ/∂z` of the representation (cheap, through the
//! heads only) are the cotangents of one batched pass through the encoder.
//!
//! The only module of metl-mtl that uses `unsafe`: the C interface of
//! `cpp/batched_vjp.cpp`. A build without libtorch's headers has no shim, and
//! [`batched_vjp`] is then an error (its callers fall back to one pass per cotangent).
#![allow(unsafe_code)]

use crate::error::{MtlError, Result};
#[cfg(metl_batched_vjp)]
use std::ffi::{c_char, c_int, c_void, CStr};
use tch::Tensor;

#[cfg(metl_batched_vjp)]
extern "C" {
    fn metl_batched_vjp(
        outputs: *const *mut c_void,
        cotangents: *const *mut c_void,
        n_outputs: i64,
        inputs: *const *mut c_void,
        n_inputs: i64,
        results: *mut *mut c_void,
        error: *mut c_char,
        capacity: usize,
    ) -> c_int;
}

/// The `[k, ...shape of x]` vector-Jacobian products of `outputs` with the batched
/// `cotangents` (one per output, `[k, ...shape of the output]`, the same `k` for all) for
/// every tensor `x` of `inputs` (see the [module docs](self)), `None` for an input no
/// output reaches; or `Ok(None)` when the graph has an operator that does not batch. The
/// graph is retained; no `.grad` is written.
///
/// Errors (never panics) on mismatched counts or shapes, an output or input that does not
/// require gradients, and when libtorch fails (the message says which operator).
pub(crate) fn batched_vjp(
    outputs: &[&Tensor],
    cotangents: &[&Tensor],
    inputs: &[&Tensor],
) -> Result<Option<Vec<Option<Tensor>>>> {
    check(outputs, cotangents, inputs)?;
    run(outputs, cotangents, inputs)
}

/// The call into the shim.
#[cfg(metl_batched_vjp)]
fn run(
    outputs: &[&Tensor],
    cotangents: &[&Tensor],
    inputs: &[&Tensor],
) -> Result<Option<Vec<Option<Tensor>>>> {
    let ptr = |t: &&Tensor| t.as_ptr() as *mut c_void;
    let outputs: Vec<*mut c_void> = outputs.iter().map(ptr).collect();
    let cotangents: Vec<*mut c_void> = cotangents.iter().map(ptr).collect();
    let inputs: Vec<*mut c_void> = inputs.iter().map(ptr).collect();
    let mut results = vec![std::ptr::null_mut::<c_void>(); inputs.len()];
    let mut error = vec![0 as c_char; 1024];
    // SAFETY: every pointer is a live `at::Tensor*` owned by a `Tensor` borrowed for the
    // call; the shim writes `inputs.len()` result pointers (each a new `at::Tensor*` or
    // null) and at most `error.len()` bytes of NUL-terminated message.
    let status = unsafe {
        metl_batched_vjp(
            outputs.as_ptr(),
            cotangents.as_ptr(),
            outputs.len() as i64,
            inputs.as_ptr(),
            inputs.len() as i64,
            results.as_mut_ptr(),
            error.as_mut_ptr(),
            error.len(),
        )
    };
    // SAFETY: the shim NUL-terminated any message within the buffer (zeroed otherwise).
    let message = || unsafe { CStr::from_ptr(error.as_ptr()) }.to_string_lossy().trim().to_owned();
    match status {
        0 => {}
        // An operator that does not batch (its node's name in the message): nothing computed.
        2 => return Ok(None),
        _ => {
            return Err(MtlError::Tensor(tch::TchError::Torch(format!(
                "batched vector-Jacobian product: {}",
                message()
            ))))
        }
    }
    Ok(Some(
        results
            .into_iter()
            .map(|r| {
                // SAFETY: a non-null result is a new `at::Tensor*` that nothing else owns;
                // `Tensor` frees it once when dropped.
                (!r.is_null()).then(|| unsafe { Tensor::from_ptr(r.cast()) })
            })
            .collect(),
    ))
}

/// Without the shim (a build without libtorch's headers).
#[cfg(not(metl_batched_vjp))]
fn run(_: &[&Tensor], _: &[&Tensor], _: &[&Tensor]) -> Result<Option<Vec<Option<Tensor>>>> {
    Err(MtlError::Tensor(tch::TchError::Torch(
        "batched vector-Jacobian product: metl-mtl was built without libtorch's headers".into(),
    )))
}

/// The checks that keep libtorch from failing obscurely (or crashing) on bad input.
fn check(outputs: &[&Tensor], cotangents: &[&Tensor], inputs: &[&Tensor]) -> Result<()> {
    if outputs.is_empty() || outputs.len() != cotangents.len() {
        return Err(MtlError::Shape(format!(
            "batched vector-Jacobian product: {} outputs and {} cotangents (need one per output, at least one)",
            outputs.len(),
            cotangents.len()
        )));
    }
    let k = cotangents[0].size().first().copied();
    for (i, (y, c)) in outputs.iter().zip(cotangents).enumerate() {
        let (shape, batched) = (y.size(), c.size());
        if batched.first().copied() != k || k == Some(0) || batched[1..] != shape[..] {
            return Err(MtlError::Shape(format!(
                "batched vector-Jacobian product: cotangent {i} has shape {batched:?}; need [k, {}] with k = {} for \
                 every output",
                shape.iter().map(i64::to_string).collect::<Vec<_>>().join(", "),
                k.unwrap_or(0)
            )));
        }
        if !y.requires_grad() {
            return Err(MtlError::Shape(format!(
                "batched vector-Jacobian product: output {i} does not require a gradient"
            )));
        }
    }
    if let Some(j) = inputs.iter().position(|x| !x.requires_grad()) {
        return Err(MtlError::Shape(format!(
            "batched vector-Jacobian product: input {j} does not require a gradient"
        )));
    }
    Ok(())
}

#[cfg(all(test, metl_batched_vjp))]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// A two-layer tanh/ReLU network in f64 and its output on a batch.
    fn network() -> (Vec<Tensor>, Tensor) {
        tch::manual_seed(3);
        let o = (Kind::Double, Device::Cpu);
        let params: Vec<Tensor> = [vec![5, 3], vec![5], vec![4, 5], vec![4]]
            .into_iter()
            .map(|s| Tensor::randn(s, o).set_requires_grad(true))
            .collect();
        let x = Tensor::randn([6, 3], o);
        let y = x.linear(&params[0], Some(&params[1])).tanh().linear(&params[2], Some(&params[3])).relu();
        (params, y)
    }

    #[test]
    fn equals_one_backward_pass_per_cotangent() {
        let (params, y) = network();
        let c = Tensor::randn([3, 6, 4], (Kind::Double, Device::Cpu));
        let inputs: Vec<&Tensor> = params.iter().collect();
        let batched = batched_vjp(&[&y], &[&c], &inputs).unwrap().unwrap();
        for b in 0..3 {
            let root = (&y * c.get(b)).sum(Kind::Double);
            let single = Tensor::run_backward(&[&root], &inputs, true, false);
            for (p, (s, v)) in params.iter().zip(single.iter().zip(&batched)) {
                let v = v.as_ref().unwrap().get(b);
                assert_eq!(v.size(), p.size());
                let err = f64::try_from((&v - s).abs().max()).unwrap();
                assert!(err <= 1e-12 * (1.0 + f64::try_from(s.abs().max()).unwrap()), "slice {b}: {err}");
            }
        }
        // Nothing was accumulated.
        assert!(params.iter().all(|p| !p.grad().defined()));
    }

    #[test]
    fn unreached_inputs_and_bad_shapes() {
        let (params, y) = network();
        let unused = Tensor::zeros([2], (Kind::Double, Device::Cpu)).set_requires_grad(true);
        let c = Tensor::ones([2, 6, 4], (Kind::Double, Device::Cpu));
        let out = batched_vjp(&[&y], &[&c], &[&params[0], &unused]).unwrap().unwrap();
        assert_eq!(out[0].as_ref().unwrap().size(), [2, 5, 3]);
        assert!(out[1].is_none());
        let wrong = Tensor::ones([2, 6, 5], (Kind::Double, Device::Cpu));
        assert!(batched_vjp(&[&y], &[&wrong], &[&params[0]]).unwrap_err().to_string().contains("[k, 6, 4]"));
        let constant = Tensor::ones([5], (Kind::Double, Device::Cpu));
        assert!(batched_vjp(&[&y], &[&c], &[&constant]).unwrap_err().to_string().contains("input 0"));
        assert!(batched_vjp(&[], &[], &[&params[0]]).is_err());
    }

    #[test]
    fn graphs_with_operators_that_do_not_batch_are_declined() {
        let o = (Kind::Double, Device::Cpu);
        let w = Tensor::randn([2, 1, 3, 3], o).set_requires_grad(true);
        let y = Tensor::randn([4, 1, 6, 6], o).conv2d::<&Tensor>(&w, None, [1, 1], [0, 0], [1, 1], 1);
        let c = Tensor::ones([3, 4, 2, 4, 4], o);
        assert!(batched_vjp(&[&y], &[&c], &[&w]).unwrap().is_none());
    }
}
