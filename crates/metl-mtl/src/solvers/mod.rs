//! The small optimisation problems shared by several strategies, solved on the host in
//! `f64` (a `T×T` problem is tiny next to the `T` backward passes that produce it).
//!
//! - [`simplex`]: Euclidean projection onto the probability simplex.
//! - [`min_norm`]: the min-norm point of the convex hull of the task gradients
//!   (Frank–Wolfe, MGDA).
//! - [`dual_cone`]: projection onto the dual cone of the task gradients (the quadratic
//!   programs of UPGrad and DualProj).
//!
//! Problems used by one strategy only (CAGrad's inner problem, Nash-MTL's sequential
//! convex approximation, FairGrad's nonlinear system) live in that strategy's file.

pub mod dual_cone;
pub mod min_norm;
pub mod simplex;
