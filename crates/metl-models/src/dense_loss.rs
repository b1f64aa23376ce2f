//! The losses of dense (per-pixel) prediction, as MTAN (Liu, Johns & Davison 2019) and
//! LibMTL define them for NYUv2. Predictions are `[B, C, H, W]`; each loss is the mean over
//! the pixels that have a target (a batch without one gives 0, not NaN).
//!
//! - segmentation: cross-entropy of the logits against class indices `[B, H, W]`, pixels
//!   labelled `−1` ignored (`nn.CrossEntropyLoss(ignore_index=-1)`);
//! - depth: `Σ |ŷ − y| · m / Σ m` with `m` the pixels whose target is non-zero (MTAN's
//!   `binary_mask = (sum(y, dim=1) != 0)`);
//! - surface normals: `1 − Σ ⟨n̂, n⟩ · m / Σ m`, `n̂ = ŷ / ‖ŷ‖` the prediction normalised per
//!   pixel (MTAN normalises in its head, LibMTL in the loss) and `m` the pixels whose target
//!   components do not sum to zero (the same mask rule).

use tch::{Reduction, Tensor};

/// The label of a pixel without one.
pub const IGNORE_INDEX: i64 = -1;

/// `[B, 1, H, W]` as `Float`: 1 where the target has a value, by MTAN's and LibMTL's rule
/// that the channels of a valid target do not sum to zero.
pub fn valid_pixels(target: &Tensor) -> Tensor {
    target.sum_dim_intlist(1, true, target.kind()).ne(0.0).to_kind(target.kind())
}

/// The number of valid pixels, at least 1 (so that an empty mask gives a zero loss).
fn count(mask: &Tensor) -> Tensor {
    mask.sum(mask.kind()).clamp_min(1.0)
}

/// Pixel-wise cross-entropy of `logits` `[B, C, H, W]` against `labels` `[B, H, W]`, pixels
/// labelled [`IGNORE_INDEX`] left out; 0 when every pixel is.
pub fn segmentation_cross_entropy(logits: &Tensor, labels: &Tensor) -> Tensor {
    let total = logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::Sum, IGNORE_INDEX, 0.0);
    total / count(&labels.ne(IGNORE_INDEX).to_kind(logits.kind()))
}

/// Mean absolute error of `prediction` `[B, 1, H, W]` over the pixels whose `target` is
/// non-zero.
pub fn depth_l1(prediction: &Tensor, target: &Tensor) -> Tensor {
    let mask = valid_pixels(target);
    ((prediction - target).abs() * &mask).sum(prediction.kind()) / count(&mask)
}

/// `prediction` `[B, 3, H, W]` normalised to unit length per pixel.
pub fn unit_normals(prediction: &Tensor) -> Tensor {
    prediction / prediction.norm_scalaropt_dim(2.0, [1], true).clamp_min(1e-12)
}

/// One minus the mean cosine between the normalised `prediction` `[B, 3, H, W]` and the
/// unit `target` normals, over the pixels with a target.
pub fn normal_cosine(prediction: &Tensor, target: &Tensor) -> Tensor {
    let mask = valid_pixels(target);
    let dot = (unit_normals(prediction) * target).sum_dim_intlist(1, true, prediction.kind());
    1.0 - (dot * &mask).sum(prediction.kind()) / count(&mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn t(values: &[f64], shape: &[i64]) -> Tensor {
        Tensor::from_slice(values).view(shape)
    }

    #[test]
    fn a_two_by_two_image_by_hand() {
        // Two classes; logits (2, 0) → p = (0.8808, 0.1192) at every pixel; labels
        // [[0, 1], [−1, 0]]: three labelled pixels, two right.
        let logits = Tensor::stack(
            &[
                Tensor::full([1, 2, 2], 2.0, (Kind::Double, Device::Cpu)),
                Tensor::zeros([1, 2, 2], (Kind::Double, Device::Cpu)),
            ],
            1,
        );
        let labels = Tensor::from_slice(&[0i64, 1, -1, 0]).view([1, 2, 2]);
        let lse = (2.0f64.exp() + 1.0).ln();
        let want = ((lse - 2.0) * 2.0 + lse) / 3.0;
        assert!((segmentation_cross_entropy(&logits, &labels).double_value(&[]) - want).abs() < 1e-12);
        let none = Tensor::full([1, 2, 2], -1, (Kind::Int64, Device::Cpu));
        assert_eq!(segmentation_cross_entropy(&logits, &none).double_value(&[]), 0.0);

        // Depth 1, 2, 0 (no measurement), 4 against predictions 1.5, 2, 9, 3: (0.5 + 0 + 1) / 3.
        let y = t(&[1.0, 2.0, 0.0, 4.0], &[1, 1, 2, 2]);
        let p = t(&[1.5, 2.0, 9.0, 3.0], &[1, 1, 2, 2]);
        assert!((depth_l1(&p, &y).double_value(&[]) - 0.5).abs() < 1e-12);

        // Normals: a pixel along z predicted (0, 0, 2) (cosine 1), one along x predicted
        // (1, 1, 0) (cosine 1/√2), one without a target: 1 − (1 + 1/√2) / 2.
        let y = t(&[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0], &[1, 3, 1, 3]);
        let p = t(&[0.0, 1.0, 5.0, 0.0, 1.0, 5.0, 2.0, 0.0, 5.0], &[1, 3, 1, 3]);
        let want = 1.0 - (1.0 + 0.5f64.sqrt()) / 2.0;
        assert!((normal_cosine(&p, &y).double_value(&[]) - want).abs() < 1e-12);
    }
}
