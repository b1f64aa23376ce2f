//! tieredImageNet (Ren et al. 2018, *Meta-Learning for Semi-Supervised Few-Shot
//! Classification*): 608 ImageNet classes at 84×84 grouped into 34 high-level categories,
//! split by category — 20 / 6 / 8 categories, 351 / 97 / 160 classes, 448,695 / 124,261 /
//! 206,209 images — as distributed by the authors (and loaded by learn2learn and
//! torchmeta): per split, `<split>_images_png.pkl` (a list of numpy `uint8` arrays, each a
//! PNG file) and `<split>_labels.pkl` (`label_specific`, `label_specific_str`,
//! `label_general`, `label_general_str`). The split is the files'; classes are grouped by
//! their category, for within-group episodes.

use super::{pickle_error, FewShotConfig, Source, StoreBuilder};
use crate::{
    error::{DataError, Result},
    image::{BackedByStore, ImageStore, Normalization},
    pickle::{self, Value},
    ClassSplits, Split,
};
use rayon::prelude::*;
use std::path::Path;

const SOURCE: Source = Source {
    name: "tieredImageNet",
    layout: "<root>/{train,val,test}_images_png.pkl and <root>/{train,val,test}_labels.pkl \
             (or those in <root>/tiered-imagenet/), Ren et al.'s distribution",
    download: "the tiered-imagenet.tar linked from github.com/renmengye/few-shot-ssl-public \
               (also what learn2learn's TieredImagenet downloads)",
    setting: "`root` of [data.tiered_imagenet], or $METL_TIERED_IMAGENET_DIR",
};

/// tieredImageNet in memory: the training classes, then validation, then test, named as
/// in `label_specific_str`, grouped by category.
#[derive(Debug)]
pub struct TieredImagenet {
    store: ImageStore,
    splits: ClassSplits,
}

impl TieredImagenet {
    /// The environment variable naming the tieredImageNet folder.
    pub const DIR_ENV: &'static str = "METL_TIERED_IMAGENET_DIR";

    /// The side of tieredImageNet's images.
    pub const IMAGE_SIZE: usize = 84;

    /// Reads and decodes (in parallel) the three splits. All of tieredImageNet at 84×84
    /// takes 16.5 GB of memory.
    ///
    /// Errors: the data missing ([`DataError::MissingDataset`]), pickles not in the
    /// layout, a label out of range, an undecodable PNG.
    pub fn load(config: FewShotConfig) -> Result<Self> {
        config.validate()?;
        let root = SOURCE.require(config.root.clone())?;
        let folder =
            if root.join("train_labels.pkl").is_file() { root } else { root.join("tiered-imagenet") };
        let mut builder = StoreBuilder::new([3, config.image_size, config.image_size]);
        for split in Split::ALL {
            read_split(&folder, split, &config, &mut builder)?;
        }
        let (store, splits) = builder.finish("tiered_imagenet")?;
        Ok(Self { store, splits })
    }

    /// Ren et al.'s split: the pools `tiered_imagenet/{train,val,test}`.
    pub fn splits(&self) -> &ClassSplits {
        &self.splits
    }

    /// miniImageNet's statistics, with which tieredImageNet is normalised (MetaOptNet, RFS).
    pub fn normalization() -> Normalization {
        Normalization::MINI_IMAGENET
    }

    /// The underlying image store.
    pub fn store(&self) -> &ImageStore {
        &self.store
    }
}

/// Adds the classes of one split.
fn read_split(folder: &Path, split: Split, config: &FewShotConfig, builder: &mut StoreBuilder) -> Result<()> {
    let labels_path = folder.join(format!("{split}_labels.pkl"));
    let labels_bytes = SOURCE.read(&labels_path)?;
    let labels = pickle::parse(&labels_bytes).map_err(|e| pickle_error(&labels_path, e))?;
    let err = |reason: String| pickle_error(&labels_path, reason);
    let ints = |key: &str| labels.get(key).and_then(Value::to_ints).ok_or_else(|| err(format!("no `{key}`")));
    let names = |key: &str| -> Vec<String> {
        let items = labels.get(key).and_then(Value::as_items).unwrap_or_default();
        items.iter().map(|v| v.as_text().unwrap_or_default().into_owned()).collect()
    };
    let (specific, general) = (ints("label_specific")?, ints("label_general")?);
    let (specific_names, general_names) = (names("label_specific_str"), names("label_general_str"));

    let images_path = folder.join(format!("{split}_images_png.pkl"));
    let images_bytes = SOURCE.read(&images_path)?;
    let images = pickle::parse(&images_bytes).map_err(|e| pickle_error(&images_path, e))?;
    let images = images.as_items().ok_or_else(|| pickle_error(&images_path, "not a list of PNG arrays"))?;
    if images.len() != specific.len() || general.len() != specific.len() {
        return Err(err(format!("{} labels for {} images", specific.len(), images.len())));
    }
    let preprocess = config.preprocess();
    let decoded: Vec<Vec<u8>> = images
        .par_iter()
        .enumerate()
        .map(|(i, png)| {
            let png = png.as_array().filter(|a| a.dtype.itemsize == 1);
            let png =
                png.ok_or_else(|| pickle_error(&images_path, format!("item {i} is not a uint8 array")))?;
            preprocess.apply(&png.data, &images_path.join(format!("{i}")))
        })
        .collect::<Result<_>>()?;

    let classes = specific.iter().max().map_or(0, |&m| m + 1).max(0) as usize;
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &label) in specific.iter().enumerate() {
        let label = usize::try_from(label).map_err(|_| err(format!("image {i}: negative label")))?;
        members[label].push(i);
    }
    for (label, rows) in members.iter().enumerate() {
        let Some(&first) = rows.first() else {
            return Err(DataError::layout(&labels_path, format!("class {label} has no image")));
        };
        let name = specific_names.get(label).cloned().unwrap_or_else(|| format!("{split}/class{label}"));
        // Ren et al.'s `label_general` can run past `label_general_str`: then the index names it.
        let g = general[first];
        let group = usize::try_from(g).ok().and_then(|g| general_names.get(g).cloned());
        let group = group.unwrap_or_else(|| format!("{split}/category{g}"));
        let pixels: Vec<u8> = rows.iter().flat_map(|&r| decoded[r].iter().copied()).collect();
        builder.push_class(name, &group, split, &pixels);
    }
    Ok(())
}

/// Classes are tieredImageNet's, groups its high-level categories.
impl BackedByStore for TieredImagenet {
    fn image_store(&self) -> &ImageStore {
        &self.store
    }
}
