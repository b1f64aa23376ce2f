//! The Jacobian and the Gramian of a list of task losses with respect to a [`Params`], for
//! a training loop of your own: feed them to a [`crate::Weighting`], then back-propagate
//! `Σᵢ wᵢ Lᵢ` (the weights held constant, [`weighted_loss`]) — its gradient is `Σᵢ wᵢ gᵢ`.
//!
//! ```
//! use metl_models::Params;
//! use metl_mtl::{
//!     jacobian::{gramian, weighted_loss},
//!     strategies::mgda::{Mgda, MgdaConfig},
//!     weighting::{Context, Weighting},
//! };
//! use tch::{Device, Kind, Tensor};
//!
//! let w = Tensor::zeros([2], (Kind::Double, Device::Cpu)).set_requires_grad(true);
//! let params = Params::from_named(vec![("w".into(), w.shallow_clone())]).unwrap();
//! // Linear losses with gradients g₁ = (1, 0) and g₂ = (−1, 2).
//! let g1 = Tensor::from_slice(&[1.0, 0.0]);
//! let g2 = Tensor::from_slice(&[-1.0, 2.0]);
//! let losses = [(&w * &g1).sum(Kind::Double), (&w * &g2).sum(Kind::Double)];
//!
//! let g = gramian(&losses, &params).unwrap(); // the graph is kept
//! let weights = Mgda::new(&MgdaConfig::default()).unwrap().weights(&g, &Context::new(vec![0.0, 0.0])).unwrap();
//! weighted_loss(&losses, &weights).unwrap().backward();
//! // The min-norm point ¾ g₁ + ¼ g₂ = (0.5, 0.5) is now in `w.grad`.
//! let grad = Vec::<f64>::try_from(w.grad()).unwrap();
//! assert!((grad[0] - 0.5).abs() < 1e-6 && (grad[1] - 0.5).abs() < 1e-6, "{grad:?}");
//! ```

use crate::{
    error::{MtlError, Result},
    linalg::Matrix,
    strategy::gramian_of,
};
use metl_models::Params;
use tch::Tensor;

/// The `[k, P]` Jacobian of the `k` scalar `losses` with respect to `params`: row `i` is
/// `∇Lᵢ`, flattened in the order of `params` (zeros for parameters `Lᵢ` does not reach),
/// on the parameters' device and of their kind. One backward pass per loss; the graph is
/// retained, so the losses can still be back-propagated afterwards.
///
/// Errors (never panics) when there are no losses or no parameters, when a loss is not a
/// scalar, or when a loss does not depend on anything that requires a gradient.
pub fn jacobian(losses: &[Tensor], params: &Params) -> Result<Tensor> {
    if losses.is_empty() {
        return Err(MtlError::NoTasks);
    }
    if params.is_empty() {
        return Err(MtlError::Shape("the Jacobian of task losses needs at least one parameter".into()));
    }
    if let Some((i, loss)) = losses.iter().enumerate().find(|(_, l)| l.numel() != 1) {
        return Err(MtlError::Shape(format!("loss {i} is not a scalar: shape {:?}", loss.size())));
    }
    check_differentiable(losses)?;
    let tensors = params.tensors();
    let width = tensors.iter().map(|p| p.numel() as i64).sum::<i64>();
    // Every entry is written below.
    let jacobian = Tensor::f_empty([losses.len() as i64, width], (params.kind(), params.device()))?;
    for (row, loss) in losses.iter().enumerate() {
        let inputs: Vec<&Tensor> = tensors.iter().collect();
        let grads = Tensor::f_run_backward(&[loss], &inputs, true, false)?;
        write_row(&jacobian.f_select(0, row as i64)?, &grads, tensors)?;
    }
    Ok(jacobian)
}

/// The Gramian `G = J Jᵀ` (`Gᵢⱼ = gᵢᵀgⱼ`) of the losses' gradients with respect to
/// `params`, on the host in `f64`: [`jacobian`], then one matrix product on the
/// parameters' device. The graph is retained.
pub fn gramian(losses: &[Tensor], params: &Params) -> Result<Matrix> {
    gramian_of(&jacobian(losses, params)?)
}

/// `Σᵢ wᵢ Lᵢ` of differentiable losses, the weights held constant: back-propagating it
/// leaves `Σᵢ wᵢ ∇Lᵢ` in `.grad`. Errors when there are no losses or not one weight per
/// loss.
pub fn weighted_loss(losses: &[Tensor], weights: &[f64]) -> Result<Tensor> {
    if losses.len() != weights.len() {
        return Err(MtlError::Shape(format!("{} weights for {} losses", weights.len(), losses.len())));
    }
    let mut terms = losses.iter().zip(weights).map(|(l, &w)| l.f_mul_scalar(w));
    let first = terms.next().ok_or(MtlError::NoTasks)??;
    terms.try_fold(first, |acc, term| Ok(acc.f_add(&term?)?))
}

/// Errors unless every loss is part of a graph (libtorch would crash on a backward pass
/// from a constant).
pub(crate) fn check_differentiable(losses: &[Tensor]) -> Result<()> {
    match losses.iter().position(|l| !l.requires_grad()) {
        Some(i) => Err(MtlError::Shape(format!(
            "loss {i} does not require a gradient: it does not depend on any trainable parameter"
        ))),
        None => Ok(()),
    }
}

/// Writes the flattened gradients `grads` of the tensors `params` into the row `target`
/// (zeros where libtorch returned an undefined gradient: the loss does not reach it).
pub(crate) fn write_row(target: &Tensor, grads: &[Tensor], params: &[Tensor]) -> Result<()> {
    let mut offset = 0;
    for (g, p) in grads.iter().zip(params) {
        let n = p.numel() as i64;
        let mut slot = target.f_narrow(0, offset, n)?;
        if g.defined() {
            slot.f_copy_(&g.f_reshape([-1])?)?;
        } else {
            let _ = slot.f_zero_()?;
        }
        offset += n;
    }
    Ok(())
}
