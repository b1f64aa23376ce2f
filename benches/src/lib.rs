//! Criterion benchmarks of metl; run them with `cargo bench -p metl-benches` or
//! `cargo xtask bench`. Each file under `benches/` is one workload with its own
//! `criterion_group!`. Experiments that print tables and draw figures are examples
//! (`cargo run --release -p metl-benches --example <name>`); the problems they share live in
//! this library:
//!
//! - [`mtl_toy`]: the two-objective toy problem of CAGrad / Nash-MTL / FAMO.
//! - [`models`]: meta-batches through the MLP, Conv4 and ResNet-12, per-task loop against
//!   task-batched.

pub mod models;
pub mod mtl_toy;
