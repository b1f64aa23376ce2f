//! [`Preprocess`]: how one image file becomes the pixels a dataset stores — decode, convert
//! the channels, resize (Pillow-exact), optionally invert, and lay out planar `[C, H, W]`.
//!
//! Omniglot and [`crate::image_folder::ImageFolder`] load through it, and so does inference
//! on a user's own images (`metl embed`, `metl fewshot`), so that an image seen at
//! prediction time is preprocessed exactly as the training images were.

use super::{decode_image, DecodedImage, ResizeFilter, Resizer};
use crate::error::{DataError, Result};
use std::path::Path;

/// The preprocessing of a dataset's images.
#[derive(Debug, Clone)]
pub struct Preprocess {
    /// Output `[height, width]`.
    pub size: [usize; 2],
    /// Output channels: 1 (gray) or 3 (RGB).
    pub channels: usize,
    /// The resizing filter.
    pub filter: ResizeFilter,
    /// Store `255 − v` (Omniglot's black strokes on white become 1.0 on 0.0).
    pub invert: bool,
    /// A resizer prepared for the most common input size, reused when it matches.
    prepared: Option<Resizer>,
}

impl Preprocess {
    /// Preprocessing to `[height, width]` with `channels` channels.
    pub fn new(size: [usize; 2], channels: usize, filter: ResizeFilter, invert: bool) -> Self {
        Self { size, channels, filter, invert, prepared: None }
    }

    /// The same, with the resizing coefficients for `width × height` inputs computed once
    /// (all of Omniglot is 105 × 105).
    pub fn expecting_input(mut self, width: usize, height: usize) -> Self {
        let [h, w] = self.size;
        self.prepared = Some(Resizer::new(width, height, w, h, self.filter));
        self
    }

    /// The length of one output image, `C · H · W` bytes.
    pub fn output_len(&self) -> usize {
        self.channels * self.size[0] * self.size[1]
    }

    /// Preprocesses an encoded PNG or JPEG; `path` names it in errors.
    pub fn apply(&self, bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
        Ok(self.apply_decoded(decode_image(bytes, path, self.channels)?))
    }

    /// Reads and preprocesses the image file at `path`.
    pub fn load(&self, path: &Path) -> Result<Vec<u8>> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        self.apply(&bytes, path)
    }

    /// Preprocesses a decoded image (converted to [`Preprocess::channels`] channels).
    pub fn apply_decoded(&self, image: DecodedImage) -> Vec<u8> {
        let image = image.with_channels(self.channels);
        let [h, w] = self.size;
        let c = self.channels;
        let resized = match &self.prepared {
            Some(r) if r.input_size() == (image.width, image.height) => r.resize(&image.pixels, c),
            _ => Resizer::new(image.width, image.height, w, h, self.filter).resize(&image.pixels, c),
        };
        let mut planar = vec![0u8; c * h * w];
        for (i, v) in resized.into_iter().enumerate() {
            planar[(i % c) * h * w + i / c] = if self.invert { 255 - v } else { v };
        }
        planar
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_inverts_and_lays_out_planar() {
        // A 2×1 RGB image: a red pixel and a white one.
        let image = DecodedImage { width: 2, height: 1, channels: 3, pixels: vec![255, 0, 0, 255, 255, 255] };
        let rgb = Preprocess::new([1, 2], 3, ResizeFilter::Nearest, false).apply_decoded(image.clone());
        assert_eq!(rgb, [255, 255, 0, 255, 0, 255]); // R plane, G plane, B plane
        let gray = Preprocess::new([1, 2], 1, ResizeFilter::Nearest, true).apply_decoded(image);
        // Pillow's luma of pure red is 76; inverted 179; white inverted 0.
        assert_eq!(gray, [179, 0]);
    }
}
