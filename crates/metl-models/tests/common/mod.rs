//! Helpers shared by the integration tests: the device under test, tolerances, and
//! task-stacked parameters.
//!
//! Every integration test runs on the device named by `METL_TEST_DEVICE` (`cpu`, the
//! default, or `cuda`), so that `cargo xtask gpu-check` runs the same tests on a GPU.
#![allow(dead_code)]

use metl_models::Params;
use tch::{Device, Kind, Tensor};

/// The device under test: `METL_TEST_DEVICE` = `cpu` (default) or `cuda`.
///
/// # Panics
/// When CUDA is asked for and libtorch sees no GPU: a GPU run must not silently test the CPU.
pub fn device() -> Device {
    match std::env::var("METL_TEST_DEVICE").as_deref() {
        Err(_) | Ok("") | Ok("cpu") => Device::Cpu,
        Ok("cuda") => {
            assert!(tch::Cuda::is_available(), "METL_TEST_DEVICE=cuda but libtorch finds no CUDA device");
            Device::Cuda(0)
        }
        Ok(other) => panic!("METL_TEST_DEVICE={other}: expected `cpu` or `cuda`"),
    }
}

/// The float32 tolerance of task-batched-versus-looped comparisons: 1e-5 on the CPU; on
/// CUDA, cuDNN runs float32 convolutions in TF32 by default (10-bit mantissa), so 5e-3.
pub fn f32_tolerance() -> f64 {
    if device().is_cuda() {
        5e-3
    } else {
        1e-5
    }
}

/// The tolerance of task-batched-versus-looped comparisons in `kind`: [`f32_tolerance`] for
/// float32, 1e-10 for float64.
pub fn tolerance(kind: Kind) -> f64 {
    if kind == Kind::Double {
        1e-10
    } else {
        f32_tolerance()
    }
}

/// A `VarStore` on the device under test whose variables are created in `kind`.
pub fn var_store(kind: Kind) -> tch::nn::VarStore {
    let mut vs = tch::nn::VarStore::new(device());
    vs.set_kind(kind);
    vs
}

/// `max |a − b| / max(1, max |b|)`: the error relative to the scale of `b` (absolute for
/// values of magnitude below 1).
pub fn scaled_error(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
    let diff = (&a - &b).abs().max().double_value(&[]);
    let scale = b.abs().max().double_value(&[]).max(1.0);
    diff / scale
}

/// Asserts `scaled_error(a, b) <= tol`.
pub fn assert_close(a: &Tensor, b: &Tensor, tol: f64, what: &str) {
    let err = scaled_error(a, b);
    assert!(err <= tol, "{what}: scaled error {err:e} > {tol:e}");
}

/// Asserts that two parameter sets (gradients, say) agree name by name, relative to the
/// largest magnitude in `b` (at least 1): a gradient that is zero in exact arithmetic (the
/// bias of a convolution followed by batch norm) is compared with the others' scale, not
/// its own rounding noise.
pub fn assert_params_close(a: &Params, b: &Params, tol: f64, what: &str) {
    a.check_same_names(b).unwrap();
    let scale = b.tensors().iter().map(|t| t.abs().max().double_value(&[])).fold(1.0, f64::max);
    for ((name, x), y) in a.iter().zip(b.tensors()) {
        let diff = (x.to_kind(Kind::Double) - y.to_kind(Kind::Double)).abs().max().double_value(&[]);
        assert!(diff / scale <= tol, "{what}: {name}: error {diff:e} relative to {scale:e} > {tol:e}");
    }
}

/// `T` different parameter sets around `theta`, stacked: `θ_t = θ + 0.1 t ε_t` with
/// Gaussian noise ε, so that tasks are distinguishable; fresh leaves.
pub fn distinct_task_params(theta: &Params, tasks: usize) -> Params {
    let stacked = theta.expand_tasks(tasks).map(|_, t| t.detach().copy());
    let noise = stacked.map(|_, t| {
        Tensor::randn(t.size().as_slice(), (Kind::Double, Device::Cpu))
            .to_kind(t.kind())
            .to_device(t.device())
    });
    let scale: Vec<f64> = (0..tasks).map(|t| 0.1 * t as f64).collect();
    stacked
        .zip_map(&noise, |_, p, n| {
            let mut shape = vec![tasks as i64];
            shape.resize(p.dim(), 1);
            let s = Tensor::from_slice(&scale).to_kind(p.kind()).to_device(p.device()).view(shape.as_slice());
            (p + n * s).detach().set_requires_grad(true)
        })
        .unwrap()
}

/// A random tensor of `shape` on the device under test.
pub fn rand(shape: &[i64], kind: Kind) -> Tensor {
    Tensor::randn(shape, (kind, device()))
}
