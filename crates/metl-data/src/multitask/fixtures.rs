//! Tiny synthetic datasets written in exactly the on-disk layouts the loaders read — the
//! files of the real datasets, with made-up contents — so that tests, examples and a first
//! try of a configuration run without the downloads.
//!
//! Every writer is seeded: the same seed writes the same bytes.

use crate::{
    error::{DataError, Result},
    rng::substream,
};
use rand::Rng as _;
use std::{fmt::Write as _, path::Path};

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| DataError::io(path, e))
}

/// Writes a CSV file of `rows` samples for [`super::CsvDataset`]: features `x1`..`x4`
/// (uniform in `[−1, 1]`), the tasks `y` (regression, `x1 + 2 x2` plus noise), `class`
/// (classification into `low`/`mid`/`high` by `x3`), `flag` (binary, `x4 > 0` as `0`/`1`)
/// and a `split` column (every tenth row `val`, the row after it `test`). Every seventh
/// row has no `y`, to exercise partial labels.
pub fn write_tabular_csv(path: &Path, rows: usize, seed: u64) -> Result<()> {
    let mut rng = substream(seed, 0x4353_5600);
    let mut text = String::from("x1,x2,x3,x4,y,class,flag,split\n");
    for r in 0..rows {
        let x: [f64; 4] = std::array::from_fn(|_| rng.gen_range(-1.0..=1.0));
        let y = x[0] + 2.0 * x[1] + 0.05 * rng.gen_range(-1.0..=1.0);
        let y = if r % 7 == 3 { String::new() } else { format!("{y:.4}") };
        let class = match x[2] {
            v if v < -0.33 => "low",
            v if v < 0.33 => "mid",
            _ => "high",
        };
        let flag = u8::from(x[3] > 0.0);
        let split = match r % 10 {
            8 => "val",
            9 => "test",
            _ => "train",
        };
        writeln!(text, "{:.4},{:.4},{:.4},{:.4},{y},{class},{flag},{split}", x[0], x[1], x[2], x[3])
            .expect("writing to a String");
    }
    write_file(path, text.as_bytes())
}

/// Writes MNIST's four idx files into `dir` — `train-images-idx3-ubyte`,
/// `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, gzipped
/// with the `.gz` suffix as distributed when `gzip` — with `train` and `test` 28×28 images.
/// Image `i` has label `i % 10` and shows a bright 8×8 square whose place tells the label
/// (row `label / 5`, column `label % 5`) over faint noise, so that a network can learn it.
/// Fashion-MNIST has the same files.
#[cfg(feature = "images")]
pub fn write_mnist(dir: &Path, train: usize, test: usize, gzip: bool, seed: u64) -> Result<()> {
    use std::io::Write as _;
    let mut rng = substream(seed, 0x4d4e_4953);
    for (prefix, n) in [("train", train), ("t10k", test)] {
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let mut pixels = Vec::with_capacity(n * 28 * 28);
        for &label in &labels {
            let (top, left) = (2 + 12 * (label as usize / 5), 5 * (label as usize % 5));
            for y in 0..28 {
                for x in 0..28 {
                    let inside = (top..top + 8).contains(&y) && (left..left + 8).contains(&x);
                    pixels.push(if inside { rng.gen_range(200..=255) } else { rng.gen_range(0..30) });
                }
            }
        }
        let files = [
            (format!("{prefix}-images-idx3-ubyte"), super::idx::encode(&[n, 28, 28], &pixels)),
            (format!("{prefix}-labels-idx1-ubyte"), super::idx::encode(&[n], &labels)),
        ];
        for (name, bytes) in files {
            if gzip {
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(&bytes).and_then(|_| encoder.flush()).map_err(|e| DataError::io(dir, e))?;
                let gz = encoder.finish().map_err(|e| DataError::io(dir, e))?;
                write_file(&dir.join(format!("{name}.gz")), &gz)?;
            } else {
                write_file(&dir.join(name), &bytes)?;
            }
        }
    }
    Ok(())
}

/// Writes a CelebA of `n` images into `dir` in the flat layout of torchvision's `celeba/`
/// folder: `list_attr_celeba.txt` (the image count, the 40 official attribute names, then
/// `000001.jpg -1  1 ...` with the original's column alignment), `list_eval_partition.txt`
/// (the first 60 % of the images in partition 0, the next 20 % in 1, the rest in 2) and
/// `img_align_celeba/000001.jpg`, ... (178×218 JPEGs). Attributes are drawn at random;
/// each image's colour shows three of them (red: `Male`, green: `Smiling`, blue:
/// `Eyeglasses`), so that they can be learnt.
#[cfg(feature = "images")]
pub fn write_celeba(dir: &Path, n: usize, seed: u64) -> Result<()> {
    use super::CELEBA_ATTRIBUTES as NAMES;
    let mut rng = substream(seed, 0x4345_4c45);
    let mut attributes = format!("{n}\n{} \n", NAMES.join(" "));
    let mut partition = String::new();
    std::fs::create_dir_all(dir.join("img_align_celeba")).map_err(|e| DataError::io(dir, e))?;
    for i in 0..n {
        let file = format!("{:06}.jpg", i + 1);
        let values: Vec<bool> = (0..NAMES.len()).map(|_| rng.gen_bool(0.4)).collect();
        attributes.push_str(&file);
        for &v in &values {
            attributes.push_str(if v { "  1" } else { " -1" });
        }
        attributes.push('\n');
        let split = match i * 10 / n.max(1) {
            0..=5 => 0,
            6 | 7 => 1,
            _ => 2,
        };
        writeln!(partition, "{file} {split}").expect("writing to a String");
        let level = |name: &str| {
            if values[NAMES.iter().position(|n| *n == name).expect("a name")] {
                220
            } else {
                30
            }
        };
        let colour = [level("Male"), level("Smiling"), level("Eyeglasses")];
        let pixels: Vec<u8> = (0..3).flat_map(|c| std::iter::repeat_n(colour[c], 218 * 178)).collect();
        let image = tch::Tensor::from_slice(&pixels).view([3, 218, 178]);
        let path = dir.join("img_align_celeba").join(&file);
        tch::vision::image::save(&image, &path)
            .map_err(|e| DataError::Image { path, reason: e.to_string() })?;
    }
    write_file(&dir.join("list_attr_celeba.txt"), attributes.as_bytes())?;
    write_file(&dir.join("list_eval_partition.txt"), partition.as_bytes())
}

/// Writes a preprocessed NYUv2 (MTAN's layout) into `dir`: `train/` with `train` samples
/// and `val/` with `val` samples, each `image/`, `label/`, `depth/`, `normal/` holding
/// `0.npy`, `1.npy`, ... as `np.save` writes them — images `[h, w, 3]`, labels `[h, w]`
/// (classes 0..12 as floats, −1 on about a tenth of the pixels), depth `[h, w, 1]` (0 on
/// about a tenth), normals `[h, w, 3]` (unit vectors, zero on about a tenth), all float32.
/// The tasks follow the image: the label is the first channel's level in 13 steps, the
/// depth 5 × the second channel, the normal leans with the third, so a network can learn them.
pub fn write_nyuv2(dir: &Path, train: usize, val: usize, size: [usize; 2], seed: u64) -> Result<()> {
    use super::npy::encode_npy;
    use tch::Tensor;
    let [h, w] = size;
    let mut rng = substream(seed, 0x4e59_5532);
    for (split, n) in [("train", train), ("val", val)] {
        for i in 0..n {
            let mut image = Vec::with_capacity(h * w * 3);
            let (mut label, mut depth, mut normal) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..h * w {
                let rgb: [f32; 3] = std::array::from_fn(|_| rng.gen_range(0.0..1.0));
                image.extend_from_slice(&rgb);
                let class = (rgb[0] * 12.999) as i64;
                label.push(if rng.gen_bool(0.1) { -1.0 } else { class as f32 });
                depth.push(if rng.gen_bool(0.1) { 0.0 } else { 5.0 * rgb[1] + 0.1 });
                let (x, z) = (rgb[2] - 0.5, 1.0f32);
                let norm = (x * x + z * z).sqrt();
                let n = if rng.gen_bool(0.1) { [0.0; 3] } else { [x / norm, 0.0, z / norm] };
                normal.extend_from_slice(&n);
            }
            let (h, w) = (h as i64, w as i64);
            let arrays = [
                ("image", Tensor::from_slice(&image).view([h, w, 3])),
                ("label", Tensor::from_slice(&label).view([h, w])),
                ("depth", Tensor::from_slice(&depth).view([h, w, 1])),
                ("normal", Tensor::from_slice(&normal).view([h, w, 3])),
            ];
            for (folder, array) in arrays {
                write_file(&dir.join(split).join(folder).join(format!("{i}.npy")), &encode_npy(&array)?)?;
            }
        }
    }
    Ok(())
}
