//! Images in memory: decoding ([`decode_image`]), Pillow-exact resizing ([`Resizer`]), the
//! class-indexed image abstraction every few-shot source implements ([`ClassImages`]) and
//! its in-memory implementation ([`ImageStore`]); [`Preprocess`] chains decoding, resizing and
//! inversion for a dataset; [`Augmentation`] (training-time crops, colour jitter, flips) and
//! [`Normalization`] (per-channel standardisation) are what the samplers can apply on top.
//!
//! Pixels are `u8`, planar `[C, H, W]` per image, `0` ↦ 0.0 and `255` ↦ 1.0 once turned
//! into tensors, so that all of Omniglot at 28×28 takes 25 MB.

mod augment;
mod decode;
mod normalize;
mod preprocess;
mod resize;
mod store;

pub use augment::Augmentation;
pub use decode::{decode_image, decode_jpeg, decode_png, DecodedImage, MAX_DECODED_BYTES};
pub use normalize::Normalization;
pub use preprocess::Preprocess;
pub use resize::{ResizeFilter, Resizer};
pub use store::{BackedByStore, ClassImages, ImageStore, StoredClass};

/// Writes `src` (planar `[C, S, S]`, square) rotated counter-clockwise by `quarter_turns`
/// × 90° into `dst` (like `numpy.rot90` and Pillow's `rotate`).
pub fn rotate_square(src: &[u8], channels: usize, side: usize, quarter_turns: u8, dst: &mut [u8]) {
    let n = side;
    debug_assert_eq!(src.len(), channels * n * n);
    debug_assert_eq!(dst.len(), src.len());
    for c in 0..channels {
        let (s, d) = (&src[c * n * n..(c + 1) * n * n], &mut dst[c * n * n..(c + 1) * n * n]);
        match quarter_turns % 4 {
            0 => d.copy_from_slice(s),
            1 => (0..n).for_each(|y| (0..n).for_each(|x| d[y * n + x] = s[x * n + (n - 1 - y)])),
            2 => (0..n).for_each(|y| (0..n).for_each(|x| d[y * n + x] = s[(n - 1 - y) * n + (n - 1 - x)])),
            _ => (0..n).for_each(|y| (0..n).for_each(|x| d[y * n + x] = s[(n - 1 - x) * n + y])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotations_match_numpy_rot90() {
        // m = [[0, 1], [2, 3]]; np.rot90(m, k).ravel() for k = 0..3.
        let m = [0u8, 1, 2, 3];
        let want: [[u8; 4]; 4] = [[0, 1, 2, 3], [1, 3, 0, 2], [3, 2, 1, 0], [2, 0, 3, 1]];
        for (k, w) in want.iter().enumerate() {
            let mut d = [0u8; 4];
            rotate_square(&m, 1, 2, k as u8, &mut d);
            assert_eq!(&d, w, "k = {k}");
        }
        // Four quarter turns are the identity, per channel.
        let src: Vec<u8> = (0..18).collect();
        let (mut a, mut b) = (vec![0; 18], vec![0; 18]);
        rotate_square(&src, 2, 3, 1, &mut a);
        rotate_square(&a, 2, 3, 3, &mut b);
        assert_eq!(b, src);
    }
}
