//! The conjugate-gradient method on task-stacked [`Params`]: `T` symmetric positive
//! definite systems `Aₜ xₜ = bₜ` solved at once, where every tensor carries the task index
//! first and `A` is only available as a product `p ↦ A p` (iMAML's `I + ∇²L̂/λ`, applied by
//! Hessian-vector products).
//!
//! From `x⁽⁰⁾ = 0`, `r⁽⁰⁾ = p⁽⁰⁾ = b`, per task (Hestenes & Stiefel 1952):
//!
//! ```text
//! αⱼ = ⟨rⱼ, rⱼ⟩ / ⟨pⱼ, A pⱼ⟩,   xⱼ₊₁ = xⱼ + αⱼ pⱼ,   rⱼ₊₁ = rⱼ − αⱼ A pⱼ,
//! βⱼ = ⟨rⱼ₊₁, rⱼ₊₁⟩ / ⟨rⱼ, rⱼ⟩,   pⱼ₊₁ = rⱼ₊₁ + βⱼ pⱼ.
//! ```
//!
//! In exact arithmetic `n` iterations solve an `n`-dimensional system; fewer give the
//! minimiser of `½ xᵀAx − bᵀx` over the Krylov space `span{b, Ab, …}`. The inner products
//! sum over all tensors and all but the task dimension, so each task has its own `α` and
//! `β`. A task stops — keeps its `x` — once its residual is exactly zero or `A` shows no
//! positive curvature along its direction (`⟨p, Ap⟩ ≤ 0`, possible when `A` is not
//! positive definite); the others continue.

use crate::error::Result;
use metl_models::Params;
use tch::{Kind, Tensor};

/// `Σ ⟨aₜ, bₜ⟩` over every tensor of task-stacked `a` and `b` (same names): `[T]`.
pub fn task_dot(a: &Params, b: &Params) -> Result<Tensor> {
    a.check_same_names(b)?;
    let terms: Vec<Tensor> = a
        .tensors()
        .iter()
        .zip(b.tensors())
        .map(|(x, y)| (x * y).flatten(1, -1).sum_dim_intlist(1, false, Kind::Double))
        .collect();
    Ok(Tensor::stack(&terms, 0).sum_dim_intlist(0, false, None::<Kind>))
}

/// Per-task scalars `s` `[T]` times every tensor of task-stacked `p`.
fn scale(p: &Params, s: &Tensor) -> Params {
    p.map(|_, t| {
        let mut shape = vec![-1];
        shape.resize(t.dim(), 1);
        t * s.to_kind(t.kind()).view(shape.as_slice())
    })
}

/// Solves `A xₜ = bₜ` for every task `t` of task-stacked `b` by `iterations` steps of
/// conjugate gradients from `x = 0` (see the [module documentation](self)); `apply(p)`
/// returns `A p` for task-stacked `p`. Run it without a graph (`tch::no_grad`) when `apply`
/// has none.
pub fn conjugate_gradient(
    mut apply: impl FnMut(&Params) -> Result<Params>,
    b: &Params,
    iterations: usize,
) -> Result<Params> {
    let mut x = b.map(|_, t| t.zeros_like());
    let mut r = b.shallow_clone();
    let mut p = b.shallow_clone();
    let mut rs = task_dot(&r, &r)?;
    let mut active = rs.gt(0.0);
    for _ in 0..iterations {
        let ap = apply(&p)?;
        let curvature = task_dot(&p, &ap)?;
        active = active.logical_and(&curvature.gt(0.0));
        let alpha =
            rs.where_self(&active, &rs.zeros_like()) / curvature.where_self(&active, &curvature.ones_like());
        x = x.zip_map(&scale(&p, &alpha), |_, x, step| x + step)?;
        r = r.zip_map(&scale(&ap, &alpha), |_, r, step| r - step)?;
        let rs_next = task_dot(&r, &r)?;
        let beta =
            rs_next.where_self(&active, &rs_next.zeros_like()) / rs.where_self(&active, &rs.ones_like());
        p = r.zip_map(&scale(&p, &beta), |_, r, p| r + p)?;
        active = active.logical_and(&rs_next.gt(0.0));
        rs = rs_next;
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn a_stopped_task_keeps_its_solution() {
        // Task 0: A = 2I (solved in one step); task 1: A = −I (no positive curvature: x stays 0).
        let b =
            Params::from_named(vec![("w".into(), Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0]).view([2, 2]))])
                .unwrap();
        let signs = Tensor::from_slice(&[2.0f64, -1.0]).view([2, 1]);
        let x = conjugate_gradient(|p| Ok(p.map(|_, t| t * &signs)), &b, 3).unwrap();
        let got = Vec::<f64>::try_from(x["w"].reshape([-1])).unwrap();
        assert_eq!(got, vec![0.5, 1.0, 0.0, 0.0]);
        let _ = Device::Cpu;
    }
}
