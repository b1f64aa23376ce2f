//! CelebA as 40 binary tasks: Liu, Luo, Wang & Tang (2015), "Deep Learning Face Attributes
//! in the Wild" (ICCV) — 202,599 aligned face photos, each labelled with 40 yes/no
//! attributes — read from the official files, as Sener & Koltun (2018), Nash-MTL (Navon
//! et al. 2022) and FAMO (Liu et al. 2023) use it.
//!
//! - `list_attr_celeba.txt`: the number of images, a line of the 40 attribute names, then
//!   `000001.jpg -1  1  1 -1 ...`: a file name and 40 values `1` (yes) or `-1` (no);
//! - `list_eval_partition.txt`: `000001.jpg 0` — 0 train (162,770 images), 1 validation
//!   (19,867), 2 test (19,962);
//! - `img_align_celeba/000001.jpg`, ...: the aligned and cropped 178×218 JPEGs
//!   (`img_align_celeba_png/*.png`, the lossless version, is read when present).
//!
//! Both the layout of the Google Drive folder (`Anno/`, `Eval/`, `Img/`) and the flat one of
//! torchvision (`celeba/` holding everything) are accepted. Images are decoded when a batch
//! is gathered (in parallel), resized to `image_size` (64×64 by default, as Nash-MTL and
//! FAMO; Pillow's bilinear filter, as `transforms.Resize` and `scipy.misc.imresize`), so
//! the dataset holds only names and labels in memory.

use super::{check_indices, images_to_float, MultiTaskBatch, MultiTaskDataset, TaskInfo, TaskKind};
use crate::{
    error::{DataError, Result},
    image::{Preprocess, ResizeFilter},
    Split,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// The 40 attributes, in the order of `list_attr_celeba.txt`.
pub const CELEBA_ATTRIBUTES: [&str; 40] = [
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
];

const DOWNLOAD: &str =
    "the aligned CelebA (mmlab.ie.cuhk.edu.hk/projects/CelebA.html): list_attr_celeba.txt, \
                        list_eval_partition.txt and img_align_celeba.zip unzipped, in this folder or its \
                        Anno/, Eval/ and Img/ subfolders";

fn default_root() -> PathBuf {
    PathBuf::from("data/celeba")
}

fn default_size() -> [usize; 2] {
    [64, 64]
}

fn default_filter() -> ResizeFilter {
    ResizeFilter::Bilinear
}

/// How to read CelebA (`[data.celeba]` in configs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CelebaConfig {
    /// The CelebA folder; default `data/celeba`.
    #[serde(default = "default_root")]
    pub root: PathBuf,
    /// `[height, width]` after resizing; default `[64, 64]`.
    #[serde(default = "default_size")]
    pub image_size: [usize; 2],
    /// The resizing filter; default `bilinear`.
    #[serde(default = "default_filter")]
    pub filter: ResizeFilter,
    /// The attributes kept as tasks, by name; default all 40, in the file's order.
    #[serde(default)]
    pub attributes: Option<Vec<String>>,
    /// Keep only the first `limit` images of each split (quick runs); default all.
    #[serde(default)]
    pub limit: Option<usize>,
}

impl Default for CelebaConfig {
    fn default() -> Self {
        Self {
            root: default_root(),
            image_size: default_size(),
            filter: default_filter(),
            attributes: None,
            limit: None,
        }
    }
}

/// CelebA's images and attributes as a [`MultiTaskDataset`] (see the module docs).
#[derive(Debug, Clone)]
pub struct Celeba {
    tasks: Vec<TaskInfo>,
    images: PathBuf,
    preprocess: Preprocess,
    /// Per split: `(file name, one 0/1 label per kept attribute)`.
    samples: [Vec<(String, Vec<f32>)>; 3],
}

/// The first of `candidates` (relative to `root`) that exists.
fn find(root: &Path, candidates: &[&str]) -> Result<PathBuf> {
    candidates
        .iter()
        .map(|c| root.join(c))
        .find(|p| p.exists())
        .ok_or_else(|| DataError::NotFound { path: root.join(candidates[0]), what: DOWNLOAD.into() })
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))
}

/// `(names, [(file, ±1 values)])` of `list_attr_celeba.txt`.
#[allow(clippy::type_complexity)]
fn parse_attributes(text: &str, path: &Path) -> Result<(Vec<String>, Vec<(String, Vec<i8>)>)> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let bad = |line: usize, what: String| DataError::layout(path, format!("line {}: {what}", line + 1));
    let (_, count) = lines.next().ok_or_else(|| DataError::layout(path, "empty file"))?;
    let count: usize = count
        .trim()
        .parse()
        .map_err(|_| bad(0, format!("{:?} is not the number of images", count.trim())))?;
    let (_, header) = lines.next().ok_or_else(|| bad(1, "no line of attribute names".into()))?;
    let names: Vec<String> = header.split_whitespace().map(str::to_owned).collect();
    let mut rows = Vec::with_capacity(count);
    for (line, text) in lines {
        let mut fields = text.split_whitespace();
        let file = fields.next().expect("non-blank line").to_owned();
        let values = fields
            .map(|v| match v {
                "1" => Ok(1),
                "-1" => Ok(-1),
                other => Err(bad(line, format!("{file}: attribute value {other:?} is not 1 or -1"))),
            })
            .collect::<Result<Vec<i8>>>()?;
        if values.len() != names.len() {
            return Err(bad(line, format!("{file}: {} values for {} attributes", values.len(), names.len())));
        }
        rows.push((file, values));
    }
    if rows.len() != count {
        return Err(DataError::layout(path, format!("announces {count} images, lists {}", rows.len())));
    }
    Ok((names, rows))
}

/// File name → partition (0, 1, 2) of `list_eval_partition.txt`.
fn parse_partition(text: &str, path: &Path) -> Result<std::collections::HashMap<String, usize>> {
    let mut out = std::collections::HashMap::new();
    for (line, text) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let partition = match fields.as_slice() {
            [_, "0"] => 0,
            [_, "1"] => 1,
            [_, "2"] => 2,
            _ => {
                return Err(DataError::layout(
                    path,
                    format!("line {}: {text:?} is not `<file> <0|1|2>`", line + 1),
                ))
            }
        };
        out.insert(fields[0].to_owned(), partition);
    }
    Ok(out)
}

impl Celeba {
    /// Reads the two label files and locates the image folder (images are decoded per batch).
    pub fn load(config: &CelebaConfig) -> Result<Self> {
        if config.image_size.iter().any(|s| !(1..=1024).contains(s)) {
            return Err(DataError::invalid(
                "celeba.image_size",
                format!("{:?}", config.image_size),
                "both sides in 1..=1024",
            ));
        }
        let root = &config.root;
        if !root.is_dir() {
            return Err(DataError::NotFound { path: root.clone(), what: DOWNLOAD.into() });
        }
        let attr_path = find(root, &["list_attr_celeba.txt", "Anno/list_attr_celeba.txt"])?;
        let partition_path = find(root, &["list_eval_partition.txt", "Eval/list_eval_partition.txt"])?;
        let images = find(
            root,
            &["img_align_celeba", "Img/img_align_celeba", "img_align_celeba_png", "Img/img_align_celeba_png"],
        )?;
        let png = images.file_name().is_some_and(|n| n.to_string_lossy().ends_with("_png"));
        let (names, rows) = parse_attributes(&read_text(&attr_path)?, &attr_path)?;
        let partition = parse_partition(&read_text(&partition_path)?, &partition_path)?;
        let kept: Vec<usize> = match &config.attributes {
            None => (0..names.len()).collect(),
            Some(wanted) if wanted.is_empty() => {
                return Err(DataError::invalid("celeba.attributes", "[]", "at least one attribute"))
            }
            Some(wanted) => wanted
                .iter()
                .map(|w| {
                    names.iter().position(|n| n == w).ok_or_else(|| {
                        DataError::invalid("celeba.attributes", w, format!("one of {}", names.join(", ")))
                    })
                })
                .collect::<Result<_>>()?,
        };
        let mut samples: [Vec<(String, Vec<f32>)>; 3] = Default::default();
        for (file, values) in rows {
            let split = *partition.get(&file).ok_or_else(|| {
                DataError::layout(
                    &partition_path,
                    format!("{file} (listed in list_attr_celeba.txt) is missing"),
                )
            })?;
            if config.limit.is_some_and(|l| samples[split].len() >= l) {
                continue;
            }
            let labels = kept.iter().map(|&k| f32::from(values[k] > 0)).collect();
            let file = if png { file.replace(".jpg", ".png") } else { file };
            samples[split].push((file, labels));
        }
        let tasks =
            kept.iter().map(|&k| TaskInfo { name: names[k].clone(), kind: TaskKind::Binary }).collect();
        let preprocess = Preprocess::new(config.image_size, 3, config.filter, false);
        Ok(Self { tasks, images, preprocess, samples })
    }

    /// The image file of sample `index` of `split`.
    pub fn image_path(&self, split: Split, index: usize) -> PathBuf {
        self.images.join(&self.samples[split.index()][index].0)
    }
}

impl MultiTaskDataset for Celeba {
    fn tasks(&self) -> &[TaskInfo] {
        &self.tasks
    }

    fn input_shape(&self) -> Vec<i64> {
        let [h, w] = self.preprocess.size;
        vec![3, h as i64, w as i64]
    }

    fn len(&self, split: Split) -> usize {
        self.samples[split.index()].len()
    }

    /// Images `[N, 3, H, W]` in `[0, 1]` (decoded now, in parallel) and, per attribute,
    /// targets `[N, 1]` holding 1 (yes) or 0 (no).
    fn batch(&self, split: Split, indices: &[usize], device: Device) -> Result<MultiTaskBatch> {
        check_indices(split, indices, self.len(split))?;
        let images: Vec<Vec<u8>> = indices
            .par_iter()
            .map(|&i| self.preprocess.load(&self.image_path(split, i)))
            .collect::<Result<_>>()?;
        let [h, w] = self.preprocess.size;
        let n = indices.len() as i64;
        let inputs = images_to_float(&images.concat(), &[n, 3, h as i64, w as i64], device)?;
        let samples = &self.samples[split.index()];
        let targets = (0..self.tasks.len())
            .map(|t| {
                let y: Vec<f32> = indices.iter().map(|&i| samples[i].1[t]).collect();
                Tensor::f_from_slice(&y)?.f_view([n, 1])?.f_to_device(device)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MultiTaskBatch::fully_labelled(inputs, targets))
    }
}
