//! Decoding PNG and JPEG files into 8-bit grayscale or RGB pixels.
//!
//! PNG goes through the `png` crate (any bit depth and colour type: palettes and
//! low bit depths are expanded, 16-bit samples reduced to 8), JPEG through
//! `jpeg-decoder`. Colour is reduced to gray with ITU-R 601-2 luma, in the same fixed-point
//! arithmetic as Pillow's `convert("L")`; alpha is dropped. Both decoders are pure Rust and
//! refuse images whose pixels would exceed [`MAX_DECODED_BYTES`], so a hostile or corrupt
//! file yields an error, never a crash or an unbounded allocation.

use crate::error::{DataError, Result};
use std::path::Path;

/// The most bytes a decoded image may take (128 MiB: an 8k × 5k RGB photo).
pub const MAX_DECODED_BYTES: usize = 128 << 20;

/// An image in memory: `height` rows of `width` pixels of `channels` interleaved bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// 1 (gray) or 3 (RGB).
    pub channels: usize,
    /// Row-major interleaved samples, `height * width * channels` bytes.
    pub pixels: Vec<u8>,
}

impl DecodedImage {
    /// The image with `channels` (1 or 3) channels: RGB to gray by ITU-R 601-2 luma
    /// (`L = (19595 R + 38470 G + 7471 B + 2^15) >> 16`, Pillow's formula), gray to RGB by
    /// replication.
    pub fn with_channels(self, channels: usize) -> DecodedImage {
        match (self.channels, channels) {
            (a, b) if a == b => self,
            (3, 1) => {
                let pixels = self
                    .pixels
                    .chunks_exact(3)
                    .map(|p| {
                        ((19595 * p[0] as u32 + 38470 * p[1] as u32 + 7471 * p[2] as u32 + 0x8000) >> 16)
                            as u8
                    })
                    .collect();
                DecodedImage { channels: 1, pixels, ..self }
            }
            (1, 3) => {
                let pixels = self.pixels.iter().flat_map(|&v| [v, v, v]).collect();
                DecodedImage { channels: 3, pixels, ..self }
            }
            (a, b) => unreachable!("channel conversion {a} -> {b}: only 1 and 3 are produced"),
        }
    }
}

/// Decodes a PNG or JPEG (told apart by their magic bytes) into `channels` (1 or 3)
/// channels; `path` only names the file in errors.
pub fn decode_image(bytes: &[u8], path: &Path, channels: usize) -> Result<DecodedImage> {
    let image = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png(bytes, path)?
    } else if bytes.starts_with(&[0xff, 0xd8]) {
        decode_jpeg(bytes, path)?
    } else {
        return Err(image_error(path, "neither a PNG nor a JPEG file (unknown signature)"));
    };
    if image.width == 0 || image.height == 0 {
        return Err(image_error(path, "image has no pixels"));
    }
    Ok(image.with_channels(channels))
}

fn image_error(path: &Path, reason: impl ToString) -> DataError {
    DataError::Image { path: path.to_owned(), reason: reason.to_string() }
}

/// Decodes a PNG into 1 (gray, gray + alpha) or 3 (RGB, RGBA, palette) channels.
pub fn decode_png(bytes: &[u8], path: &Path) -> Result<DecodedImage> {
    let err = |e: png::DecodingError| image_error(path, e);
    let mut decoder = png::Decoder::new_with_limits(bytes, png::Limits { bytes: MAX_DECODED_BYTES });
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(err)?;
    // The decoder's limit covers its own buffers, not the output we allocate here: a
    // header may announce any size (found by fuzzing: a 20-byte change asked for 450 GB).
    let size = reader.output_buffer_size();
    if size > MAX_DECODED_BYTES {
        return Err(image_error(
            path,
            format!("decoded image would take {size} bytes, over {MAX_DECODED_BYTES}"),
        ));
    }
    let mut buf = vec![0; size];
    let frame = reader.next_frame(&mut buf).map_err(err)?;
    let (width, height) = (frame.width as usize, frame.height as usize);
    buf.truncate(frame.buffer_size());
    let samples = frame.color_type.samples();
    if frame.bit_depth != png::BitDepth::Eight || buf.len() != width * height * samples {
        return Err(image_error(
            path,
            format!("unexpected decoded layout {:?}/{:?}", frame.color_type, frame.bit_depth),
        ));
    }
    let (channels, keep) = match frame.color_type {
        png::ColorType::Grayscale => (1, 1),
        png::ColorType::GrayscaleAlpha => (1, 2),
        png::ColorType::Rgb => (3, 3),
        png::ColorType::Rgba => (3, 4),
        png::ColorType::Indexed => return Err(image_error(path, "palette was not expanded")),
    };
    let pixels = if keep == channels {
        buf
    } else {
        buf.chunks_exact(keep).flat_map(|p| p[..channels].iter().copied()).collect()
    };
    Ok(DecodedImage { width, height, channels, pixels })
}

/// Decodes a baseline or progressive JPEG into 1 (gray) or 3 (RGB, CMYK) channels.
pub fn decode_jpeg(bytes: &[u8], path: &Path) -> Result<DecodedImage> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.set_max_decoding_buffer_size(MAX_DECODED_BYTES);
    let buf = decoder.decode().map_err(|e| image_error(path, e))?;
    let info = decoder.info().ok_or_else(|| image_error(path, "no frame header"))?;
    let (width, height) = (info.width as usize, info.height as usize);
    let pixel_count = width * height;
    let (channels, pixels) = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => (1, buf),
        // Big-endian 16-bit samples: keep the high byte.
        jpeg_decoder::PixelFormat::L16 => (1, buf.chunks_exact(2).map(|p| p[0]).collect()),
        jpeg_decoder::PixelFormat::RGB24 => (3, buf),
        // Adobe CMYK JPEGs store inverted values: R = C·K/255 on the stored bytes.
        jpeg_decoder::PixelFormat::CMYK32 => (
            3,
            buf.chunks_exact(4)
                .flat_map(|p| {
                    let k = p[3] as u32;
                    [0, 1, 2].map(|c| ((p[c] as u32 * k + 127) / 255) as u8)
                })
                .collect(),
        ),
    };
    if pixels.len() != pixel_count * channels {
        return Err(image_error(path, "decoded size does not match the header"));
    }
    Ok(DecodedImage { width, height, channels, pixels })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `width × height` 8-bit PNG of the given colour type.
    pub(crate) fn encode_png(width: u32, height: u32, color: png::ColorType, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(color);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.write_header().unwrap().write_image_data(data).unwrap();
        out
    }

    #[test]
    fn png_gray_rgb_and_alpha_decode() {
        let p = Path::new("x.png");
        let gray = decode_image(&encode_png(2, 1, png::ColorType::Grayscale, &[0, 255]), p, 1).unwrap();
        assert_eq!((gray.width, gray.height, gray.pixels), (2, 1, vec![0, 255]));
        let rgba = encode_png(1, 1, png::ColorType::Rgba, &[255, 0, 0, 7]);
        let red = decode_image(&rgba, p, 3).unwrap();
        assert_eq!(red.pixels, [255, 0, 0]);
        // Pillow: Image.new("RGB", (1, 1), (255, 0, 0)).convert("L").getpixel((0, 0)) == 76.
        assert_eq!(decode_image(&rgba, p, 1).unwrap().pixels, [76]);
        assert_eq!(
            decode_image(&encode_png(1, 1, png::ColorType::Grayscale, &[9]), p, 3).unwrap().pixels,
            [9, 9, 9]
        );
    }

    #[test]
    fn huge_announced_sizes_are_refused_before_allocating() {
        let mut out = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut out, 60_000, 60_000);
            encoder.set_color(png::ColorType::Grayscale);
            let mut writer = encoder.write_header().unwrap();
            // An empty zlib stream as the only image data.
            writer.write_chunk(png::chunk::IDAT, &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]).unwrap();
        }
        let err = decode_image(&out, Path::new("huge.png"), 1).unwrap_err().to_string();
        assert!(err.starts_with("huge.png: cannot decode image: decoded image would take"), "{err}");
    }

    #[test]
    fn corrupt_and_truncated_files_name_the_file() {
        let p = Path::new("dir/bad.png");
        let good = encode_png(4, 4, png::ColorType::Grayscale, &[7; 16]);
        for bytes in [&good[..good.len() - 20], &good[..12], b"hello world".as_slice(), &[0xff, 0xd8, 0]] {
            let err = decode_image(bytes, p, 1).unwrap_err();
            assert!(matches!(err, DataError::Image { .. }), "{err}");
            assert!(err.to_string().starts_with("dir/bad.png: cannot decode image"), "{err}");
        }
    }
}
