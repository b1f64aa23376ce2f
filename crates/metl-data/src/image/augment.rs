//! [`Augmentation`]: the standard training augmentation of few-shot image datasets —
//! random crop of the zero-padded image, colour jitter, horizontal flip — applied to `u8`
//! planar images with draws from a seeded generator, so that augmented episodes are as
//! reproducible as the rest.

use crate::{
    error::{DataError, Result},
    rng::Rng,
};
use rand::Rng as _;
use serde::{Deserialize, Serialize};

/// The augmentation of Lee et al. (2019, MetaOptNet) and Tian et al. (2020, RFS), in
/// their order: `RandomCrop(S, padding)`, `ColorJitter(brightness, contrast,
/// saturation)`, `RandomHorizontalFlip()`.
///
/// - **Crop**: the image padded with `padding` black pixels on each side, then an `S × S`
///   window at a uniformly random offset in `0..=2·padding` on each axis.
/// - **Colour jitter** (torchvision's definitions, the three in a random order): brightness
///   `v·b`; contrast `(v − m)·c + m` with `m` the mean luma of the image; saturation
///   `(v − l)·s + l` with `l` the pixel's luma (RGB only); factors uniform in
///   `[max(0, 1 − x), 1 + x]`; luma `0.299 R + 0.587 G + 0.114 B`; rounded and clamped to
///   `0..=255` once at the end.
/// - **Flip**: left–right with probability 1/2.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augmentation {
    /// Zero padding of the random crop, pixels per side (0: no crop).
    pub padding: usize,
    /// Brightness jitter strength (0: none).
    pub brightness: f64,
    /// Contrast jitter strength (0: none).
    pub contrast: f64,
    /// Saturation jitter strength (0: none).
    pub saturation: f64,
    /// Random horizontal flips.
    pub flip: bool,
}

impl Default for Augmentation {
    /// MetaOptNet's for 84×84 images: padding 8, jitter 0.4, flips.
    fn default() -> Self {
        Self::standard(84)
    }
}

impl Augmentation {
    /// MetaOptNet's augmentation for images of side `side`: padding 8 from 64 pixels up
    /// (miniImageNet, tieredImageNet at 84), 4 below (CIFAR-FS, FC100 at 32); jitter 0.4
    /// for brightness, contrast and saturation; flips.
    pub fn standard(side: usize) -> Self {
        Self {
            padding: if side >= 64 { 8 } else { 4 },
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            flip: true,
        }
    }

    /// Checks the strengths (finite, in `0..=1`) and padding (below 1024).
    pub fn validate(&self) -> Result<()> {
        for (field, v) in
            [("brightness", self.brightness), ("contrast", self.contrast), ("saturation", self.saturation)]
        {
            if !(0.0..=1.0).contains(&v) {
                return Err(DataError::invalid(format!("augment.{field}"), v, "must be in [0, 1]"));
            }
        }
        if self.padding >= 1024 {
            return Err(DataError::invalid("augment.padding", self.padding, "must be below 1024"));
        }
        Ok(())
    }

    /// Augments `image` (planar `[C, H, W]` `u8`, `shape`) in place with draws from `rng`.
    /// Every call makes the same draws whatever the settings, so that changing one setting
    /// does not change the others' draws.
    pub fn apply(&self, image: &mut [u8], shape: [usize; 3], rng: &mut Rng) {
        let [c, h, w] = shape;
        debug_assert_eq!(image.len(), c * h * w);
        let p = self.padding;
        // Seven uniform draws, always: offsets, factors, the order of the jitters, the flip.
        let u: [f64; 7] = rng.gen();
        let index = |u: f64, n: usize| ((u * n as f64) as usize).min(n - 1);
        let (dy, dx) = (index(u[0], 2 * p + 1), index(u[1], 2 * p + 1));
        let factor = |u: f64, x: f64| {
            let low = (1.0 - x).max(0.0);
            low + u * (1.0 + x - low)
        };
        let factors =
            [factor(u[2], self.brightness), factor(u[3], self.contrast), factor(u[4], self.saturation)];
        let mut order = [0usize, 1, 2];
        order.swap(2, index(u[5], 3));
        order.swap(1, index(u[6], 2));
        let flip = rng.gen_bool(0.5);

        if p > 0 {
            crop_padded(image, shape, p, dy, dx);
        }
        let strengths = [self.brightness, self.contrast, self.saturation];
        if strengths.iter().any(|&s| s > 0.0) {
            let mut v: Vec<f32> = image.iter().map(|&b| b as f32).collect();
            for op in order.into_iter().filter(|&op| strengths[op] > 0.0) {
                let f = factors[op] as f32;
                match op {
                    0 => v.iter_mut().for_each(|x| *x *= f),
                    1 => {
                        let luma = luma(&v, c, h * w);
                        let m = luma.iter().sum::<f32>() / luma.len() as f32;
                        v.iter_mut().for_each(|x| *x = (*x - m) * f + m);
                    }
                    _ if c == 3 => {
                        let luma = luma(&v, c, h * w);
                        for plane in v.chunks_exact_mut(h * w) {
                            plane.iter_mut().zip(&luma).for_each(|(x, l)| *x = (*x - l) * f + l);
                        }
                    }
                    _ => {}
                }
            }
            image.iter_mut().zip(&v).for_each(|(b, x)| *b = x.round().clamp(0.0, 255.0) as u8);
        }
        if self.flip && flip {
            image.chunks_exact_mut(w).for_each(<[u8]>::reverse);
        }
    }
}

/// The luma of each pixel of planar `v` (the values themselves for gray images).
fn luma(v: &[f32], channels: usize, pixels: usize) -> Vec<f32> {
    if channels != 3 {
        return v[..pixels].to_vec();
    }
    (0..pixels).map(|i| 0.299 * v[i] + 0.587 * v[pixels + i] + 0.114 * v[2 * pixels + i]).collect()
}

/// The `H × W` window at `(dy, dx)` of the image padded with `p` zeros per side.
fn crop_padded(image: &mut [u8], [c, h, w]: [usize; 3], p: usize, dy: usize, dx: usize) {
    let source = image.to_vec();
    for ch in 0..c {
        for y in 0..h {
            let row = &mut image[(ch * h + y) * w..(ch * h + y + 1) * w];
            let sy = (y + dy).checked_sub(p).filter(|&sy| sy < h);
            for (x, out) in row.iter_mut().enumerate() {
                let sx = (x + dx).checked_sub(p).filter(|&sx| sx < w);
                *out = match (sy, sx) {
                    (Some(sy), Some(sx)) => source[(ch * h + sy) * w + sx],
                    _ => 0,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::seeded;

    const NONE: Augmentation =
        Augmentation { padding: 0, brightness: 0.0, contrast: 0.0, saturation: 0.0, flip: false };

    #[test]
    fn crops_shift_in_zeros_and_flips_mirror() {
        // A 1×2×3 image [[1, 2, 3], [4, 5, 6]].
        let base = [1u8, 2, 3, 4, 5, 6];
        let mut shifted = base;
        crop_padded(&mut shifted, [1, 2, 3], 1, 0, 2);
        // Window one row up (zeros), one column right.
        assert_eq!(shifted, [0, 0, 0, 2, 3, 0]);
        let mut same = base;
        crop_padded(&mut same, [1, 2, 3], 1, 1, 1);
        assert_eq!(same, base);
        // Over many draws the flip happens about half the time, the crop stays in range.
        let flip = Augmentation { flip: true, ..NONE };
        let mut rng = seeded(3);
        let flipped = (0..1000)
            .filter(|_| {
                let mut im = base;
                flip.apply(&mut im, [1, 2, 3], &mut rng);
                assert!(im == base || im == [3, 2, 1, 6, 5, 4]);
                im != base
            })
            .count();
        assert!((440..560).contains(&flipped), "{flipped}");
    }

    #[test]
    fn jitter_follows_torchvision_definitions() {
        // Contrast alone at factor c: (v − mean)·c + mean on a gray image.
        let image = [50u8, 100, 150, 100];
        let contrast = Augmentation { contrast: 0.5, ..NONE };
        let mut rng = seeded(0);
        for _ in 0..20 {
            let mut im = image;
            contrast.apply(&mut im, [1, 2, 2], &mut rng);
            // Mean 100 is kept and the image stays symmetric around it.
            assert_eq!(im[1], 100);
            assert_eq!(im[0] as i32 + im[2] as i32, 200, "{im:?}");
            assert!(im[2] >= 125 && im[2] <= 175, "{im:?}");
        }
        // Saturation 0 factor range [0, 2]: a gray RGB pixel never changes.
        let sat = Augmentation { saturation: 1.0, ..NONE };
        let mut gray = [77u8, 77, 77];
        sat.apply(&mut gray, [3, 1, 1], &mut rng);
        assert_eq!(gray, [77, 77, 77]);
        // Nothing enabled: the identity, yet the same number of draws.
        let (mut a, mut b) = (seeded(9), seeded(9));
        let mut im = [9u8, 8, 7, 6];
        NONE.apply(&mut im, [1, 2, 2], &mut a);
        Augmentation::standard(2).apply(&mut [0u8; 4], [1, 2, 2], &mut b);
        assert_eq!(im, [9, 8, 7, 6]);
        assert_eq!(a.gen::<u64>(), b.gen::<u64>());
        assert!(Augmentation { brightness: 2.0, ..NONE }.validate().is_err());
        assert_eq!(Augmentation::standard(32).padding, 4);
    }
}
