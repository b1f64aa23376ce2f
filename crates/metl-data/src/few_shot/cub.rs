//! CUB-200-2011 (Wah et al. 2011, *The Caltech-UCSD Birds-200-2011 Dataset*): 11,788
//! photographs of 200 bird species, under the few-shot split of Chen et al. (2019, *A
//! Closer Look at Few-shot Classification*): classes in `classes.txt` order, index `i`
//! (from 0) for training when `i % 2 == 0`, validation when `i % 4 == 1`, test when
//! `i % 4 == 3` — 100 / 50 / 50 classes.

use super::{FewShotConfig, Source, StoreBuilder};
use crate::{
    error::{DataError, Result},
    image::{BackedByStore, ImageStore, Normalization},
    ClassSplits, Split,
};
use rayon::prelude::*;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

const SOURCE: Source = Source {
    name: "CUB-200-2011",
    layout: "<root>/CUB_200_2011/ (or that folder itself) with classes.txt, images.txt, \
             image_class_labels.txt and images/<class>/<image>.jpg, as extracted from CUB_200_2011.tgz",
    download: "https://data.caltech.edu/records/65de6-vp158 (CUB_200_2011.tgz)",
    setting: "`root` of [data.cub], or $METL_CUB_DIR",
};

/// CUB-200-2011 in memory: the 200 classes in `classes.txt` order, each class's images in
/// `images.txt` order, resized (stretched) to the configured side.
#[derive(Debug)]
pub struct Cub {
    store: ImageStore,
    splits: ClassSplits,
}

/// Chen et al.'s split of class `index` (0-based, `classes.txt` order).
fn split_of(index: usize) -> Option<Split> {
    match (index % 2, index % 4) {
        (0, _) => Some(Split::Train),
        (_, 1) => Some(Split::Val),
        (_, 3) => Some(Split::Test),
        _ => None,
    }
}

/// The `id value` lines of one of CUB's text files, by id.
fn id_lines(folder: &Path, name: &str) -> Result<BTreeMap<usize, String>> {
    let path = folder.join(name);
    let text = String::from_utf8(SOURCE.read(&path)?)
        .map_err(|_| DataError::layout(&path, "not a UTF-8 text file"))?;
    let mut lines = BTreeMap::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let parsed =
            line.trim().split_once(' ').and_then(|(id, v)| Some((id.parse::<usize>().ok()?, v.trim())));
        let (id, value) = parsed
            .ok_or_else(|| DataError::layout(&path, format!("line {}: expected `<id> <value>`", n + 1)))?;
        if lines.insert(id, value.to_owned()).is_some() {
            return Err(DataError::layout(&path, format!("line {}: id {id} given twice", n + 1)));
        }
    }
    Ok(lines)
}

impl Cub {
    /// The environment variable naming the CUB folder.
    pub const DIR_ENV: &'static str = "METL_CUB_DIR";

    /// The side the few-shot literature resizes CUB to.
    pub const IMAGE_SIZE: usize = 84;

    /// Reads the class and image lists and decodes every image in parallel.
    ///
    /// Errors: the data missing ([`DataError::MissingDataset`]), a list not in CUB's
    /// `<id> <value>` format or naming an unknown class or image, an undecodable image.
    pub fn load(config: FewShotConfig) -> Result<Self> {
        config.validate()?;
        let root = SOURCE.require(config.root.clone())?;
        let folder = if root.join("classes.txt").is_file() { root } else { root.join("CUB_200_2011") };
        let classes = id_lines(&folder, "classes.txt")?;
        let images = id_lines(&folder, "images.txt")?;
        let labels = id_lines(&folder, "image_class_labels.txt")?;
        let mut members: BTreeMap<usize, Vec<PathBuf>> = classes.keys().map(|&id| (id, Vec::new())).collect();
        for (image, path) in &images {
            let labels_path = folder.join("image_class_labels.txt");
            let class = labels
                .get(image)
                .and_then(|c| c.parse::<usize>().ok())
                .filter(|c| classes.contains_key(c))
                .ok_or_else(|| {
                    DataError::layout(&labels_path, format!("image {image}: no class of classes.txt"))
                })?;
            members.get_mut(&class).expect("listed").push(folder.join("images").join(path));
        }
        let preprocess = config.preprocess();
        let mut builder = StoreBuilder::new([3, config.image_size, config.image_size]);
        for (index, (id, files)) in members.iter().enumerate() {
            let Some(split) = split_of(index) else { continue };
            if files.is_empty() {
                return Err(DataError::EmptyClass { path: folder.join("images").join(&classes[id]) });
            }
            let decoded: Vec<Vec<u8>> =
                files.par_iter().map(|f| preprocess.load(f)).collect::<Result<_>>()?;
            builder.push_class(classes[id].clone(), "", split, &decoded.concat());
        }
        let (store, splits) = builder.finish("cub")?;
        Ok(Self { store, splits })
    }

    /// Chen et al.'s split: the pools `cub/{train,val,test}`.
    pub fn splits(&self) -> &ClassSplits {
        &self.splits
    }

    /// ImageNet's statistics, with which Chen et al. normalise CUB
    /// ([`Normalization::IMAGENET`]).
    pub fn normalization() -> Normalization {
        Normalization::IMAGENET
    }

    /// The underlying image store.
    pub fn store(&self) -> &ImageStore {
        &self.store
    }
}

/// Classes are CUB's folder names (`001.Black_footed_Albatross`), all in one group.
impl BackedByStore for Cub {
    fn image_store(&self) -> &ImageStore {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chen_et_al_split_is_100_50_50() {
        let counts = Split::ALL.map(|s| (0..200).filter(|&i| split_of(i) == Some(s)).count());
        assert_eq!(counts, [100, 50, 50]);
        assert_eq!(
            (split_of(0), split_of(1), split_of(2), split_of(3)),
            (Some(Split::Train), Some(Split::Val), Some(Split::Train), Some(Split::Test))
        );
    }
}
