//! miniImageNet (Vinyals et al. 2016, *Matching Networks for One Shot Learning*) under the
//! split of Ravi & Larochelle (2017, *Optimization as a Model for Few-Shot Learning*):
//! 100 ImageNet classes of 600 images at 84×84, 64 for training, 16 for validation, 20 for
//! testing.

use super::{lines, pickle_error, preprocess_interleaved, FewShotConfig, Source, StoreBuilder};
use crate::{
    error::{DataError, Result},
    image::{BackedByStore, ImageStore, Normalization, Preprocess},
    image_folder::{ImageFolder, ImageFolderConfig},
    pickle::{self, Value},
    ClassSplits, Split,
};
use std::path::Path;

const SOURCE: Source = Source {
    name: "miniImageNet",
    layout: "<root>/mini-imagenet-cache-{train,val,test}.pkl (the pickles learn2learn uses; \
             -validation.pkl is accepted for val), or class folders \
             <root>/{train,val,test}/<wnid>/<image>.jpg of Ravi & Larochelle's split",
    download: "the pickles linked from learn2learn's MiniImagenet documentation \
               (learn2learn.vision.datasets.MiniImagenet), or the images listed by \
               Ravi & Larochelle's train/val/test.csv (github.com/twitter/meta-learning-lstm)",
    setting: "`root` of [data.mini_imagenet], or $METL_MINI_IMAGENET_DIR",
};

/// Ravi & Larochelle's classes (ImageNet synset ids) of each split, from their
/// `data/miniImagenet/{train,val,test}.csv`.
const CLASSES: [&str; 3] = [
    include_str!("splits/mini_imagenet_train.txt"),
    include_str!("splits/mini_imagenet_val.txt"),
    include_str!("splits/mini_imagenet_test.txt"),
];

/// miniImageNet in memory: the training classes, then validation, then test, each
/// named by its ImageNet synset id.
#[derive(Debug)]
pub struct MiniImagenet {
    store: ImageStore,
    splits: ClassSplits,
}

/// The split whose shipped list has `wnid`.
fn split_of(wnid: &str) -> Option<Split> {
    Split::ALL.into_iter().zip(CLASSES).find(|(_, list)| lines(list).any(|w| w == wnid)).map(|(s, _)| s)
}

/// Checks that class `wnid`, found in `path`, belongs to `split` of Ravi & Larochelle's.
fn check_class(wnid: &str, split: Split, path: &Path) -> Result<()> {
    match split_of(wnid) {
        Some(s) if s == split => Ok(()),
        Some(s) => Err(DataError::layout(
            path,
            format!(
                "class {wnid} is a {s} class of Ravi & Larochelle's split, found among the {split} classes"
            ),
        )),
        None => {
            Err(DataError::layout(path, format!("class {wnid} is not one of miniImageNet's 100 classes")))
        }
    }
}

impl MiniImagenet {
    /// The environment variable naming the miniImageNet folder.
    pub const DIR_ENV: &'static str = "METL_MINI_IMAGENET_DIR";

    /// The side of miniImageNet's images.
    pub const IMAGE_SIZE: usize = 84;

    /// Loads the three splits from the pickles in `config.root`, or else from its class
    /// folders.
    ///
    /// Errors: the data missing ([`DataError::MissingDataset`]), a pickle not in the
    /// layout (`image_data` `uint8 [N, 84, 84, 3]`, `class_dict` of synset → image
    /// indices), an index out of range, a class outside its split of Ravi & Larochelle's.
    pub fn load(config: FewShotConfig) -> Result<Self> {
        config.validate()?;
        let root = SOURCE.require(config.root.clone())?;
        let preprocess = config.preprocess();
        let mut builder = StoreBuilder::new([3, config.image_size, config.image_size]);
        let pickles = root.join("mini-imagenet-cache-train.pkl");
        if !pickles.exists() && root.join("train").is_dir() {
            for split in Split::ALL {
                let folder = SOURCE.require(root.join(split.name()))?;
                let folder_config = ImageFolderConfig {
                    image_size: [config.image_size; 2],
                    filter: config.filter,
                    ..ImageFolderConfig::new(&folder)
                };
                let loaded = ImageFolder::load(folder_config)?;
                for class in loaded.store().classes() {
                    check_class(&class.name, split, &folder.join(&class.name))?;
                }
                builder.push_store(loaded.store(), split);
            }
        } else {
            for split in Split::ALL {
                let mut path = root.join(format!("mini-imagenet-cache-{split}.pkl"));
                let long = root.join("mini-imagenet-cache-validation.pkl");
                if split == Split::Val && !path.exists() && long.exists() {
                    path = long;
                }
                read_pickle(&path, split, &preprocess, &mut builder)?;
            }
        }
        let (store, splits) = builder.finish("mini_imagenet")?;
        Ok(Self { store, splits })
    }

    /// Ravi & Larochelle's split: the pools `mini_imagenet/{train,val,test}`.
    pub fn splits(&self) -> &ClassSplits {
        &self.splits
    }

    /// The per-channel statistics the literature normalises miniImageNet with
    /// ([`Normalization::MINI_IMAGENET`]).
    pub fn normalization() -> Normalization {
        Normalization::MINI_IMAGENET
    }

    /// The underlying image store.
    pub fn store(&self) -> &ImageStore {
        &self.store
    }
}

/// Adds the classes of one `mini-imagenet-cache-<split>.pkl`, by synset id.
fn read_pickle(path: &Path, split: Split, preprocess: &Preprocess, builder: &mut StoreBuilder) -> Result<()> {
    let bytes = SOURCE.read(path)?;
    let value = pickle::parse(&bytes).map_err(|e| pickle_error(path, e))?;
    let err = |reason: String| pickle_error(path, reason);
    let images = value
        .get("image_data")
        .and_then(Value::as_array)
        .ok_or_else(|| err("no array `image_data`".into()))?;
    let [n, h, w, 3] = images.shape[..] else {
        return Err(err(format!("`image_data` is {:?}, expected [N, H, W, 3]", images.shape)));
    };
    if images.dtype.itemsize != 1 || images.fortran_order {
        return Err(err("`image_data` must be uint8 in C order".into()));
    }
    let Some(Value::Dict(class_dict)) = value.get("class_dict") else {
        return Err(err("no dict `class_dict`".into()));
    };
    let mut classes = Vec::with_capacity(class_dict.len());
    for (wnid, indices) in class_dict {
        let wnid =
            wnid.as_text().ok_or_else(|| err("a `class_dict` key is not a string".into()))?.into_owned();
        let indices =
            indices.to_ints().ok_or_else(|| err(format!("class {wnid}: indices are not integers")))?;
        if indices.is_empty() || indices.iter().any(|&i| !(0..n as i64).contains(&i)) {
            return Err(err(format!("class {wnid}: no indices, or one outside 0..{n}")));
        }
        check_class(&wnid, split, path)?;
        classes.push((wnid, indices));
    }
    classes.sort();
    let image_len = h * w * 3;
    for (wnid, indices) in classes {
        let interleaved: Vec<u8> = indices
            .iter()
            .flat_map(|&i| &images.data[i as usize * image_len..(i as usize + 1) * image_len])
            .copied()
            .collect();
        builder.push_class(wnid, "", split, &preprocess_interleaved(&interleaved, h, w, preprocess));
    }
    Ok(())
}

/// Classes are synset ids, all in one group.
impl BackedByStore for MiniImagenet {
    fn image_store(&self) -> &ImageStore {
        &self.store
    }
}
