//! Antialiased image resizing, bit-identical to Pillow's `Image.resize`.
//!
//! Few-shot pipelines resize Omniglot's 105×105 drawings to 28×28 with Pillow: torchvision
//! and learn2learn apply `Resize(28, interpolation=LANCZOS)` to the image converted to
//! 8-bit gray (`"L"`), and MAML's preprocessing script calls `resize((28, 28),
//! Image.LANCZOS)`. To compare with published numbers we reproduce that filter exactly —
//! Pillow's separable convolution (`Resample.c`), including its 22-bit fixed-point
//! coefficients, the rounding, and the 8-bit intermediate image between the horizontal and
//! the vertical pass — so that our 28×28 images equal Pillow's byte for byte.
//!
//! For output pixel `i` of a side scaled by `s = in/out`, the filter `k` is stretched by
//! `f = max(s, 1)` (this widening is the antialiasing: each output pixel averages over all
//! the input pixels it covers); the weights `w_j = k((j − c + ½)/f)` around the centre
//! `c = (i + ½)·s`, `j` within `c ± support·f`, are normalised to sum to 1. Lanczos-3 is
//! `k(x) = sinc(x)·sinc(x/3)` on `|x| < 3`.

use serde::{Deserialize, Serialize};

/// The resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeFilter {
    /// Lanczos-3, Pillow's `LANCZOS` (the default of the few-shot literature).
    #[default]
    Lanczos,
    /// Triangle, Pillow's `BILINEAR` (antialiased: the triangle widens when shrinking).
    Bilinear,
    /// Box (area average), Pillow's `BOX`.
    Box,
    /// Nearest neighbour (no antialiasing), Pillow's `NEAREST`.
    Nearest,
}

impl ResizeFilter {
    fn support(self) -> f64 {
        match self {
            ResizeFilter::Lanczos => 3.0,
            ResizeFilter::Bilinear => 1.0,
            ResizeFilter::Box | ResizeFilter::Nearest => 0.5,
        }
    }

    fn weight(self, x: f64) -> f64 {
        fn sinc(x: f64) -> f64 {
            if x == 0.0 {
                1.0
            } else {
                let x = x * std::f64::consts::PI;
                x.sin() / x
            }
        }
        match self {
            ResizeFilter::Lanczos if (-3.0..3.0).contains(&x) => sinc(x) * sinc(x / 3.0),
            ResizeFilter::Bilinear if x.abs() < 1.0 => 1.0 - x.abs(),
            ResizeFilter::Box | ResizeFilter::Nearest if x > -0.5 && x <= 0.5 => 1.0,
            _ => 0.0,
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Fixed-point filter weights of one axis: output pixel `i` reads input pixels
/// `start[i] .. start[i] + len[i]` with weights `weights[i * taps ..]`.
#[derive(Debug, Clone)]
struct AxisCoeffs {
    start: Vec<usize>,
    len: Vec<usize>,
    taps: usize,
    weights: Vec<i32>,
}

impl AxisCoeffs {
    fn new(in_size: usize, out_size: usize, filter: ResizeFilter) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        let support = filter.support() * filter_scale;
        let taps = support.ceil() as usize * 2 + 1;
        let (mut start, mut len) = (Vec::with_capacity(out_size), Vec::with_capacity(out_size));
        let mut weights = vec![0i32; out_size * taps];
        let mut k = vec![0f64; taps];
        for i in 0..out_size {
            let center = (i as f64 + 0.5) * scale;
            // Pillow truncates towards zero, then clamps.
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = hi.saturating_sub(lo).min(taps);
            let mut total = 0.0;
            for (j, kj) in k.iter_mut().enumerate().take(n) {
                *kj = filter.weight((j as f64 + lo as f64 - center + 0.5) / filter_scale);
                total += *kj;
            }
            for (j, kj) in k.iter().enumerate().take(n) {
                let w = if total != 0.0 { kj / total } else { *kj };
                let fixed = w * (1u32 << PRECISION_BITS) as f64;
                weights[i * taps + j] = if w < 0.0 { (fixed - 0.5) as i32 } else { (fixed + 0.5) as i32 };
            }
            start.push(lo);
            len.push(n);
        }
        Self { start, len, taps, weights }
    }

    /// One output sample from `len` input samples read by `sample(j)`.
    #[inline]
    fn apply(&self, i: usize, sample: impl Fn(usize) -> u8) -> u8 {
        let mut acc: i32 = 1 << (PRECISION_BITS - 1);
        let w = &self.weights[i * self.taps..i * self.taps + self.len[i]];
        for (j, &wj) in w.iter().enumerate() {
            acc = acc.wrapping_add(sample(self.start[i] + j) as i32 * wj);
        }
        (acc >> PRECISION_BITS).clamp(0, 255) as u8
    }
}

/// A reusable resizer from `in_w × in_h` to `out_w × out_h` (coefficients computed once).
#[derive(Debug, Clone)]
pub struct Resizer {
    in_size: (usize, usize),
    out_size: (usize, usize),
    filter: ResizeFilter,
    horizontal: AxisCoeffs,
    vertical: AxisCoeffs,
}

impl Resizer {
    /// A resizer for images of `in_w × in_h` pixels to `out_w × out_h` (all > 0).
    pub fn new(in_w: usize, in_h: usize, out_w: usize, out_h: usize, filter: ResizeFilter) -> Self {
        assert!(in_w > 0 && in_h > 0 && out_w > 0 && out_h > 0, "image sizes must be positive");
        Self {
            in_size: (in_w, in_h),
            out_size: (out_w, out_h),
            filter,
            horizontal: AxisCoeffs::new(in_w, out_w, filter),
            vertical: AxisCoeffs::new(in_h, out_h, filter),
        }
    }

    /// The input size `(width, height)` this resizer expects.
    pub fn input_size(&self) -> (usize, usize) {
        self.in_size
    }

    /// Resizes `pixels` (row-major, `channels` interleaved samples per pixel) into a new
    /// buffer of `out_h` rows of `out_w` pixels, same layout.
    pub fn resize(&self, pixels: &[u8], channels: usize) -> Vec<u8> {
        let ((in_w, in_h), (out_w, out_h)) = (self.in_size, self.out_size);
        assert_eq!(pixels.len(), in_w * in_h * channels, "buffer does not match the input size");
        if self.filter == ResizeFilter::Nearest {
            return self.nearest(pixels, channels);
        }
        // Pillow skips a pass whose axis keeps its size.
        let rows = if out_w != in_w {
            let mut tmp = vec![0u8; in_h * out_w * channels];
            for y in 0..in_h {
                let row = &pixels[y * in_w * channels..(y + 1) * in_w * channels];
                for x in 0..out_w {
                    for c in 0..channels {
                        tmp[(y * out_w + x) * channels + c] =
                            self.horizontal.apply(x, |j| row[j * channels + c]);
                    }
                }
            }
            tmp
        } else {
            pixels.to_vec()
        };
        if out_h == in_h {
            return rows;
        }
        let mut out = vec![0u8; out_h * out_w * channels];
        let stride = out_w * channels;
        for y in 0..out_h {
            for xc in 0..stride {
                out[y * stride + xc] = self.vertical.apply(y, |j| rows[j * stride + xc]);
            }
        }
        out
    }

    fn nearest(&self, pixels: &[u8], channels: usize) -> Vec<u8> {
        let ((in_w, in_h), (out_w, out_h)) = (self.in_size, self.out_size);
        let source = |i: usize, n_in: usize, n_out: usize| {
            (((i as f64 + 0.5) * n_in as f64 / n_out as f64) as usize).min(n_in - 1)
        };
        let mut out = Vec::with_capacity(out_w * out_h * channels);
        for y in 0..out_h {
            let sy = source(y, in_h, out_h);
            for x in 0..out_w {
                let sx = source(x, in_w, out_w);
                out.extend_from_slice(&pixels[(sy * in_w + sx) * channels..(sy * in_w + sx + 1) * channels]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 7 × 5 gray test pattern: `(37 * i + 11 * i * i) % 256`.
    fn pattern() -> Vec<u8> {
        (0..35u32).map(|i| ((37 * i + 11 * i * i) % 256) as u8).collect()
    }

    // Expected values computed with Pillow 13.0 (the `$METL_PYTHON` of this repository):
    //   a = np.array([(37*i + 11*i*i) % 256 for i in range(35)], np.uint8).reshape(5, 7)
    //   Image.fromarray(a, "L").resize((w, h), f).tobytes()
    #[test]
    fn matches_pillow_downscaling() {
        let a = pattern();
        let cases: [(ResizeFilter, (usize, usize), &[u8]); 4] = [
            (ResizeFilter::Lanczos, (3, 2), &[114, 181, 122, 160, 114, 128]),
            (ResizeFilter::Bilinear, (3, 2), &[120, 168, 129, 156, 121, 125]),
            (ResizeFilter::Box, (3, 2), &[106, 158, 111, 194, 92, 140]),
            (ResizeFilter::Nearest, (3, 2), &[232, 190, 236, 250, 56, 206]),
        ];
        for (filter, (w, h), want) in cases {
            assert_eq!(Resizer::new(7, 5, w, h, filter).resize(&a, 1), want, "{filter:?}");
        }
    }

    #[test]
    fn matches_pillow_upscaling_and_channels() {
        let a = pattern();
        let up = Resizer::new(7, 5, 9, 6, ResizeFilter::Lanczos).resize(&a, 1);
        assert_eq!(&up[..9], &[1, 20, 63, 146, 212, 76, 133, 187, 101]);
        // Interleaved channels are resized independently.
        let rgb: Vec<u8> = a.iter().flat_map(|&v| [v, 255 - v, v / 2]).collect();
        let out = Resizer::new(7, 5, 3, 2, ResizeFilter::Lanczos).resize(&rgb, 3);
        let gray = Resizer::new(7, 5, 3, 2, ResizeFilter::Lanczos).resize(&a, 1);
        assert!(out.chunks(3).zip(&gray).all(|(p, g)| p[0] == *g));
    }

    #[test]
    fn constant_images_stay_constant() {
        for filter in
            [ResizeFilter::Lanczos, ResizeFilter::Bilinear, ResizeFilter::Box, ResizeFilter::Nearest]
        {
            let out = Resizer::new(105, 105, 28, 28, filter).resize(&[200; 105 * 105], 1);
            assert!(out.iter().all(|&v| v == 200), "{filter:?}");
        }
    }
}
