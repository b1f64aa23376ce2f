//! The idx files of MNIST and Fashion-MNIST (LeCun et al.; Xiao, Rasul & Vollgraf 2017):
//! `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
//! `t10k-labels-idx1-ubyte`, plain or gzipped (`.gz`, as distributed).
//!
//! An idx file is a big-endian header — the magic number `0x00000803` (2051: unsigned
//! bytes, three dimensions) for images or `0x00000801` (2049: one dimension) for labels,
//! then each dimension as a `u32` — followed by the data, `u8` row-major.

use crate::error::{DataError, Result};
use std::{
    io::Read,
    path::{Path, PathBuf},
};

/// The magic number of an idx file of `u8` images `[N, rows, cols]`.
pub const IMAGES_MAGIC: u32 = 0x0803;
/// The magic number of an idx file of `u8` labels `[N]`.
pub const LABELS_MAGIC: u32 = 0x0801;

/// Images of one idx file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Rows (height) of each image.
    pub rows: usize,
    /// Columns (width) of each image.
    pub cols: usize,
    /// `N · rows · cols` bytes, image after image, row-major.
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// The number of images.
    pub fn len(&self) -> usize {
        self.pixels.len() / (self.rows * self.cols)
    }

    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.pixels.is_empty()
    }

    /// Image `i`, row-major.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.rows * self.cols;
        &self.pixels[i * n..(i + 1) * n]
    }
}

/// One split of an MNIST-format dataset: images and their labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxSplit {
    /// The images.
    pub images: IdxImages,
    /// One label per image.
    pub labels: Vec<u8>,
}

/// `dir/name`, or `dir/name.gz` when only that exists; an error naming both otherwise.
fn find(dir: &Path, name: &str, what: &str) -> Result<PathBuf> {
    let plain = dir.join(name);
    if plain.is_file() {
        return Ok(plain);
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(DataError::NotFound { path: plain, what: format!("{name} or {name}.gz of {what}") })
}

/// The bytes of `path`, inflated when it is gzipped (by its magic bytes `1f 8b`).
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut out)
        .map_err(|e| DataError::layout(path, format!("cannot inflate gzip: {e}")))?;
    Ok(out)
}

/// Parses an idx file with `magic` and its dimensions; `path` names it in errors.
fn parse<'a>(bytes: &'a [u8], magic: u32, path: &Path) -> Result<(Vec<usize>, &'a [u8])> {
    let word =
        |i: usize| -> Option<u32> { Some(u32::from_be_bytes(bytes.get(4 * i..4 * i + 4)?.try_into().ok()?)) };
    let found = word(0).ok_or_else(|| DataError::layout(path, "truncated idx header"))?;
    if found != magic {
        return Err(DataError::layout(
            path,
            format!("idx magic number {found:#010x}, expected {magic:#010x}"),
        ));
    }
    let ndim = (magic & 0xff) as usize;
    let dims = (1..=ndim)
        .map(|i| word(i).map(|d| d as usize))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| DataError::layout(path, "truncated idx header"))?;
    let len: usize = dims.iter().product();
    let data = &bytes[4 * (ndim + 1)..];
    if data.len() != len {
        return Err(DataError::layout(
            path,
            format!("idx header announces {dims:?} = {len} bytes, the file holds {}", data.len()),
        ));
    }
    Ok((dims, data))
}

/// Reads `train` (`train-*`) or test (`t10k-*`) images and labels from `dir`; `what` names
/// the dataset in the error for missing files (e.g. "MNIST (yann.lecun.com/exdb/mnist)").
pub fn read_split(dir: &Path, train: bool, what: &str) -> Result<IdxSplit> {
    let prefix = if train { "train" } else { "t10k" };
    let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte"), what)?;
    let labels_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"), what)?;
    let bytes = read_maybe_gz(&images_path)?;
    let (dims, pixels) = parse(&bytes, IMAGES_MAGIC, &images_path)?;
    let images = IdxImages { rows: dims[1], cols: dims[2], pixels: pixels.to_vec() };
    let bytes = read_maybe_gz(&labels_path)?;
    let (dims, labels) = parse(&bytes, LABELS_MAGIC, &labels_path)?;
    if dims[0] != images.len() || images.rows == 0 || images.cols == 0 {
        return Err(DataError::layout(
            &labels_path,
            format!("{} labels for {} images of {}×{}", dims[0], images.len(), images.rows, images.cols),
        ));
    }
    Ok(IdxSplit { images, labels: labels.to_vec() })
}

/// The bytes of an idx file of `dims` (`u8` data, one to three dimensions).
pub fn encode(dims: &[usize], data: &[u8]) -> Vec<u8> {
    assert_eq!(dims.iter().product::<usize>(), data.len(), "data does not match the dimensions");
    let mut out = (0x0800u32 + dims.len() as u32).to_be_bytes().to_vec();
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_big_endian_and_checked() {
        // Two 2×3 images as MNIST lays them out: 00 00 08 03, 00 00 00 02, ...
        let bytes = encode(&[2, 2, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(&bytes[..16], &[0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3]);
        let (dims, data) = parse(&bytes, IMAGES_MAGIC, Path::new("x")).unwrap();
        assert_eq!((dims, data.len()), (vec![2, 2, 3], 12));
        let labels = encode(&[3], &[7, 0, 9]);
        assert_eq!(&labels[..8], &[0, 0, 8, 1, 0, 0, 0, 3]);
        let err = |b: &[u8], m| parse(b, m, Path::new("f")).unwrap_err().to_string();
        assert!(err(&labels, IMAGES_MAGIC).contains("idx magic number 0x00000801, expected 0x00000803"));
        assert!(err(&bytes[..18], IMAGES_MAGIC).contains("the file holds 2"));
        assert!(err(&bytes[..6], IMAGES_MAGIC).contains("truncated"));
    }
}
