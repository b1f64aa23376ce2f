//! Criterion benchmarks of metl; run them with `cargo bench -p metl-benches` or
//! `cargo xtask bench`. Each file under `benches/` is one workload with its own
//! `criterion_group!`.
