//! The [`Weighting`] interface and equal weighting.

use crate::error::{MtlError, Result};
use tch::{Kind, Tensor};

/// A strategy that combines `T` task losses into the gradient of the shared model.
///
/// `backward` leaves the combined gradient in the parameters' `.grad`, so any tch
/// optimizer can step afterwards, and returns the task weights it used.
pub trait Weighting {
    /// Back-propagates the combination of `losses` and returns the weight of each task.
    fn backward(&mut self, losses: &[Tensor]) -> Result<Vec<f64>>;
}

/// Equal weighting (EW): the plain sum `Σᵢ Lᵢ`, every weight 1.
///
/// Note that the weights are 1, not 1/T (LibMTL's docstring says 1/T, its code uses 1).
#[derive(Debug, Clone, Copy, Default)]
pub struct Equal;

/// Checks that there is at least one loss and that every loss is finite.
pub fn check_losses(losses: &[Tensor]) -> Result<()> {
    if losses.is_empty() {
        return Err(MtlError::NoTasks);
    }
    for (task, loss) in losses.iter().enumerate() {
        let value = loss.double_value(&[]);
        if !value.is_finite() {
            return Err(MtlError::NonFiniteLoss { task, value });
        }
    }
    Ok(())
}

impl Weighting for Equal {
    fn backward(&mut self, losses: &[Tensor]) -> Result<Vec<f64>> {
        check_losses(losses)?;
        let total =
            losses.iter().fold(Tensor::zeros([], (Kind::Float, losses[0].device())), |acc, l| acc + l);
        total.f_backward()?;
        Ok(vec![1.0; losses.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_loss_is_an_error() {
        let bad = [Tensor::from(f32::NAN)];
        let err = Equal.backward(&bad).unwrap_err();
        assert!(err.to_string().contains("task 0"));
        assert!(matches!(Equal.backward(&[]), Err(MtlError::NoTasks)));
    }
}
