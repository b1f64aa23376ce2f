//! Any bytes through the PNG/JPEG decoder and the resizer: errors are fine, panics,
//! hangs and unbounded allocations are not.

#![no_main]

use libfuzzer_sys::fuzz_target;
use metl_data::image::{decode_image, ResizeFilter, Resizer};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&options, bytes)) = data.split_first() else { return };
    let channels = if options & 1 == 0 { 1 } else { 3 };
    let Ok(image) = decode_image(bytes, Path::new("fuzz.png"), channels) else { return };
    assert_eq!(image.channels, channels);
    assert_eq!(image.pixels.len(), image.width * image.height * channels);
    let filter = [ResizeFilter::Lanczos, ResizeFilter::Bilinear, ResizeFilter::Box, ResizeFilter::Nearest]
        [(options >> 1) as usize % 4];
    let out = Resizer::new(image.width, image.height, 7, 5, filter).resize(&image.pixels, channels);
    assert_eq!(out.len(), 7 * 5 * channels);
});
