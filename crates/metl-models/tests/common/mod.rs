//! Helpers shared by the integration tests: the device under test, tolerances,
//! task-stacked parameters, and the comparisons of task-batched passes with the per-task loop.
//!
//! Every integration test runs on the device named by `METL_TEST_DEVICE` (`cpu`, the
//! default, or `cuda`), so that `cargo xtask gpu-check` runs the same tests on a GPU.
#![allow(dead_code)]

use metl_models::{
    model::{forward_tasks_looped, forward_tasks_looped_at_step},
    Model, Params, TaskLoss,
};
use tch::{Device, Kind, Tensor};

/// Tasks per task-stacked pass in the comparisons with the per-task loop.
pub const TASKS: usize = 3;

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

/// Seeds libtorch's global generator and holds a lock for the test's whole body: the tests
/// of one binary run on parallel threads and share that generator, so without it a test's
/// random point is whatever the other tests left, different on every run. In a binary that
/// uses it, every test that draws (a network's initialisation, `Tensor::randn`) must hold it.
pub fn seeded(seed: i64) -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    guard
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

/// Outputs agree between `forward_tasks_at_step` and the loop (and, with `grads`, the
/// gradients of a random linear functional of them with respect to distinct task
/// parameters), and both paths leave the same batch-norm buffers.
pub fn check_against_loop<M: Model + Clone>(
    model: &M,
    theta: &Params,
    x: &Tensor,
    train: bool,
    step: usize,
    grads: bool,
) {
    let stacked = distinct_task_params(theta, TASKS);
    let (batched_model, looped_model) = (model.clone(), model.clone());
    let batched = batched_model.forward_tasks_at_step(&stacked, x, train, step);
    let looped = forward_tasks_looped_at_step(&looped_model, &stacked, x, train, step);
    let tol = tolerance(theta.kind());
    let context = format!("train = {train}, step = {step}, {:?}", theta.kind());
    assert_close(&batched, &looped, tol, &format!("outputs ({context})"));
    if grads {
        let w = Tensor::randn_like(&looped);
        let grads_batched = stacked.grads(&(&batched * &w).sum(theta.kind()), false).unwrap();
        let grads_looped = stacked.grads(&(&looped * &w).sum(theta.kind()), false).unwrap();
        assert_params_close(&grads_batched, &grads_looped, tol, &format!("gradients ({context})"));
    }
    let (b, l) = (batched_model.buffers(), looped_model.buffers());
    for ((name, bt), lt) in b.iter().zip(l.tensors()) {
        assert_close(bt, lt, tol, &format!("buffer {name} ({context})"));
    }
}

/// The meta-gradient of the query loss after one differentiable inner SGD step, task-batched
/// versus per task.
pub fn check_second_order<M: Model>(
    model: &M,
    theta: &Params,
    support: (&Tensor, &Tensor),
    query: (&Tensor, &Tensor),
) {
    let kind = theta.kind();
    let meta_grad = |batched: bool| {
        let theta = theta.detached_leaves();
        let run = |p: &Params, x: &Tensor| {
            if batched {
                model.forward_tasks(p, x, true)
            } else {
                forward_tasks_looped(model, p, x, true)
            }
        };
        let fast = theta.expand_tasks(TASKS);
        let inner = TaskLoss::CrossEntropy.per_task(&run(&fast, support.0), support.1).sum(kind);
        let fast = fast.sgd(&fast.grads(&inner, true).unwrap(), 0.4).unwrap();
        let outer = TaskLoss::CrossEntropy.per_task(&run(&fast, query.0), query.1).mean(kind);
        theta.grads(&outer, false).unwrap()
    };
    assert_params_close(&meta_grad(true), &meta_grad(false), tolerance(kind), "meta-gradient");
}
