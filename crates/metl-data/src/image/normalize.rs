//! [`Normalization`]: per-channel standardisation of image tensors, `(x − mean) / std`,
//! with the statistics the few-shot literature uses for each dataset.

use crate::error::{DataError, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Per-channel mean and standard deviation, in the `[0, 1]` units of the image tensors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    /// The mean of each channel (R, G, B; gray images use the first).
    pub mean: [f64; 3],
    /// The standard deviation of each channel.
    pub std: [f64; 3],
}

/// `values / 255`, for statistics given in pixel units.
const fn per_255(values: [f64; 3]) -> [f64; 3] {
    [values[0] / 255.0, values[1] / 255.0, values[2] / 255.0]
}

impl Normalization {
    /// miniImageNet's pixel statistics, also used for tieredImageNet (Lee et al. 2019,
    /// MetaOptNet; Tian et al. 2020, RFS): mean (120.40, 115.59, 104.54) / 255, standard
    /// deviation (70.68, 68.28, 72.55) / 255.
    pub const MINI_IMAGENET: Normalization = Normalization {
        mean: per_255([120.39586422, 115.59361427, 104.54012653]),
        std: per_255([70.68188272, 68.27635443, 72.54505529]),
    };

    /// CIFAR-100's pixel statistics as used for CIFAR-FS and FC100 (Lee et al. 2019,
    /// MetaOptNet): mean (129.38, 124.11, 112.48) / 255, standard deviation
    /// (68.21, 65.43, 70.46) / 255.
    pub const CIFAR100: Normalization = Normalization {
        mean: per_255([129.37731888, 124.10583864, 112.47758569]),
        std: per_255([68.20947949, 65.43124043, 70.45866994]),
    };

    /// ImageNet's statistics (torchvision's), used for CUB by Chen et al. (2019): mean
    /// (0.485, 0.456, 0.406), standard deviation (0.229, 0.224, 0.225).
    pub const IMAGENET: Normalization =
        Normalization { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

    /// Checks that every standard deviation is positive and every value finite.
    pub fn validate(&self) -> Result<()> {
        if self.mean.iter().chain(&self.std).any(|v| !v.is_finite()) || self.std.iter().any(|&s| s <= 0.0) {
            return Err(DataError::invalid(
                "normalization",
                format!("{self:?}"),
                "finite means and positive standard deviations",
            ));
        }
        Ok(())
    }

    /// `(x − mean[c]) / std[c]` for images `x` shaped `[..., C, H, W]` (C = 1 or 3), on
    /// `x`'s device and in its kind.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let size = x.size();
        let c = size.len().checked_sub(3).map(|i| size[i] as usize).filter(|c| (1..=3).contains(c));
        let c = c.ok_or_else(|| {
            DataError::invalid("normalization input", format!("{size:?}"), "[..., C, H, W], C <= 3")
        })?;
        let column = |values: &[f64; 3]| -> Result<Tensor> {
            let v: Vec<f32> = values[..c].iter().map(|&v| v as f32).collect();
            Ok(Tensor::f_from_slice(&v)?
                .f_view([c as i64, 1, 1])?
                .f_to_device(x.device())?
                .f_to_kind(x.kind())?)
        };
        Ok(x.f_sub(&column(&self.mean)?)?.f_div(&column(&self.std)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn standardises_each_channel() {
        let n = Normalization { mean: [0.5, 0.25, 0.0], std: [0.5, 0.25, 2.0] };
        // [1, 3, 1, 2]: channel c holds [1, 0].
        let x = Tensor::from_slice(&[1.0f32, 0.0, 1.0, 0.0, 1.0, 0.0]).view([1, 3, 1, 2]);
        let y = Vec::<f32>::try_from(n.apply(&x).unwrap().reshape([-1])).unwrap();
        assert_eq!(y, [1.0, -1.0, 3.0, -1.0, 0.5, 0.0]);
        // Gray images use the first channel's statistics.
        let gray = n.apply(&Tensor::ones([2, 1, 2, 2], (Kind::Float, tch::Device::Cpu))).unwrap();
        assert_eq!(gray.size(), [2, 1, 2, 2]);
        assert!(gray.allclose(&Tensor::ones([2, 1, 2, 2], (Kind::Float, tch::Device::Cpu)), 0.0, 0.0, false));
        assert!(n.apply(&Tensor::zeros([4, 4], (Kind::Float, tch::Device::Cpu))).is_err());
        assert!(Normalization { std: [1.0, 0.0, 1.0], ..n }.validate().is_err());
        assert!(Normalization::MINI_IMAGENET.validate().is_ok());
        assert!((Normalization::CIFAR100.mean[0] - 0.507362).abs() < 1e-6);
    }
}
