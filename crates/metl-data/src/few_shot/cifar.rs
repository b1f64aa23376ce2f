//! CIFAR-100 (Krizhevsky 2009) from its python pickles, with the two few-shot splits
//! built on it: CIFAR-FS (Bertinetto et al. 2019, *Meta-learning with differentiable
//! closed-form solvers*) and FC100 (Oreshkin et al. 2018, *TADAM*).

use super::{lines, pickle_error, preprocess_interleaved, splits_by, FewShotConfig, Source};
use crate::{
    error::{DataError, Result},
    image::{BackedByStore, ClassImages, ImageStore, Normalization, StoredClass},
    pickle::{self, Value},
    ClassSplits, Split,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

const SOURCE: Source = Source {
    name: "CIFAR-100 (for CIFAR-FS and FC100)",
    layout: "<root>/cifar-100-python/{train,test,meta} (or those three files in <root>), \
             the python version of CIFAR-100 as extracted from cifar-100-python.tar.gz",
    download: "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    setting: "`root` of [data.cifar_fs] or [data.fc100], or $METL_CIFAR100_DIR",
};

/// CIFAR-FS's classes, `superclass fine_class` per line (Bertinetto et al.'s split files,
/// as distributed with torchmeta).
const CIFAR_FS: [&str; 3] = [
    include_str!("splits/cifar_fs_train.txt"),
    include_str!("splits/cifar_fs_val.txt"),
    include_str!("splits/cifar_fs_test.txt"),
];

/// FC100's superclasses per split (Oreshkin et al. 2018, supplementary material).
const FC100: [&str; 3] = [
    include_str!("splits/fc100_train.txt"),
    include_str!("splits/fc100_val.txt"),
    include_str!("splits/fc100_test.txt"),
];

/// The class split of CIFAR-100 to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cifar100Protocol {
    /// CIFAR-FS: 64 / 16 / 20 fine classes drawn across superclasses.
    CifarFs,
    /// FC100: the classes of 12 / 4 / 4 superclasses (60 / 20 / 20 classes), so that test
    /// classes share no superclass with training classes.
    Fc100,
}

/// CIFAR-100 in memory: 100 classes (fine labels, in the order of `meta`) of 600 images
/// (the 500 of `train`, then the 100 of `test`), grouped by their 20 superclasses.
#[derive(Debug)]
pub struct Cifar100 {
    store: ImageStore,
}

/// One pickle of images: rows of 3,072 planar bytes, fine and coarse labels.
struct Batch {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl Cifar100 {
    /// The environment variable naming the CIFAR-100 folder (see [`super::dataset_dir`]).
    pub const DIR_ENV: &'static str = "METL_CIFAR100_DIR";

    /// The side of CIFAR's images.
    pub const IMAGE_SIZE: usize = 32;

    /// Reads `train`, `test` and `meta` from `config.root`: the `cifar-100-python` folder
    /// or the folder holding it.
    ///
    /// Errors: a missing file ([`DataError::MissingDataset`], with where to download it),
    /// a pickle that is not CIFAR-100's layout, a class without images, a fine class under
    /// two superclasses.
    pub fn load(config: FewShotConfig) -> Result<Self> {
        config.validate()?;
        let root = SOURCE.require(config.root.clone())?;
        let folder = if root.join("meta").is_file() { root } else { root.join("cifar-100-python") };
        let meta_path = folder.join("meta");
        let meta_bytes = SOURCE.read(&meta_path)?;
        let meta = pickle::parse(&meta_bytes).map_err(|e| pickle_error(&meta_path, e))?;
        let names = |key: &str| -> Result<Vec<String>> {
            let items = meta.get(key).and_then(Value::as_items);
            let names: Option<Vec<String>> =
                items.and_then(|items| items.iter().map(|v| v.as_text().map(|s| s.into_owned())).collect());
            names.ok_or_else(|| pickle_error(&meta_path, format!("no list of names `{key}`")))
        };
        let (fine_names, coarse_names) = (names("fine_label_names")?, names("coarse_label_names")?);
        let batches = ["train", "test"]
            .map(|name| folder.join(name))
            .map(|path| SOURCE.read(&path).map(|bytes| Batch { path, bytes }));
        let batches = batches.into_iter().collect::<Result<Vec<_>>>()?;

        // Per class: (batch, row) of each image, train first; its superclass.
        let mut members: Vec<Vec<(usize, usize)>> = vec![Vec::new(); fine_names.len()];
        let mut superclass: Vec<Option<usize>> = vec![None; fine_names.len()];
        let mut parsed = Vec::with_capacity(2);
        for (b, batch) in batches.iter().enumerate() {
            let value = pickle::parse(&batch.bytes).map_err(|e| pickle_error(&batch.path, e))?;
            let err = |reason: String| pickle_error(&batch.path, reason);
            let data =
                value.get("data").and_then(Value::as_array).ok_or_else(|| err("no array `data`".into()))?;
            let ints = |key: &str| {
                value.get(key).and_then(Value::to_ints).ok_or_else(|| err(format!("no list `{key}`")))
            };
            let (fine, coarse) = (ints("fine_labels")?, ints("coarse_labels")?);
            let n = fine.len();
            if data.shape != [n, 3072] || data.dtype.itemsize != 1 || data.fortran_order || coarse.len() != n
            {
                return Err(err(format!(
                    "`data` is {:?}, expected [{n}, 3072] bytes in C order for {n} labels",
                    data.shape
                )));
            }
            for (row, (&f, &c)) in fine.iter().zip(&coarse).enumerate() {
                let (f, c) = (usize::try_from(f).ok(), usize::try_from(c).ok());
                let (Some(f), Some(c)) =
                    (f.filter(|&f| f < fine_names.len()), c.filter(|&c| c < coarse_names.len()))
                else {
                    return Err(err(format!("image {row}: label outside the names of `meta`")));
                };
                if *superclass[f].get_or_insert(c) != c {
                    return Err(err(format!("class {} under two superclasses", fine_names[f])));
                }
                members[f].push((b, row));
            }
            parsed.push(data.data.clone().into_owned());
        }

        let preprocess = config.preprocess();
        let side = config.image_size;
        let (mut pixels, mut classes) = (Vec::new(), Vec::new());
        for (f, rows) in members.iter().enumerate() {
            let Some(group) = superclass[f] else {
                return Err(DataError::layout(&folder, format!("class {} has no image", fine_names[f])));
            };
            classes.push(StoredClass {
                name: fine_names[f].clone(),
                group,
                first: pixels.len() / (3 * side * side),
                len: rows.len(),
            });
            if side == 32 {
                rows.iter()
                    .for_each(|&(b, r)| pixels.extend_from_slice(&parsed[b][r * 3072..(r + 1) * 3072]));
            } else {
                // Planar rows to interleaved images, then resized.
                let interleaved: Vec<u8> = rows
                    .iter()
                    .flat_map(|&(b, r)| {
                        let image = &parsed[b][r * 3072..(r + 1) * 3072];
                        (0..1024).flat_map(move |i| [image[i], image[1024 + i], image[2048 + i]])
                    })
                    .collect();
                pixels.extend(preprocess_interleaved(&interleaved, 32, 32, &preprocess));
            }
        }
        Ok(Self { store: ImageStore::new([3, side, side], pixels, classes, coarse_names)? })
    }

    /// The classes of each split of `protocol`.
    ///
    /// Errors when a class or superclass of the split lists is not in the data's `meta`
    /// (not CIFAR-100), or a CIFAR-FS class is under another superclass than its list says.
    pub fn splits(&self, protocol: Cifar100Protocol) -> Result<ClassSplits> {
        let n = self.num_classes();
        let find = |names: &[String], name: &str| names.iter().position(|n| n == name);
        let class_names: Vec<String> = (0..n).map(|c| self.class_name(c)).collect();
        let mut split_of = vec![None; n];
        match protocol {
            Cifar100Protocol::CifarFs => {
                for (split, list) in Split::ALL.into_iter().zip(CIFAR_FS) {
                    for line in lines(list) {
                        let (superclass, fine) =
                            line.split_once(' ').expect("shipped list: `superclass fine`");
                        let c = find(&class_names, fine).ok_or_else(|| self.unknown("class", fine))?;
                        if self.store.groups()[self.class_group(c)] != superclass {
                            return Err(self.unknown("superclass of class", fine));
                        }
                        split_of[c] = Some(split);
                    }
                }
            }
            Cifar100Protocol::Fc100 => {
                for (split, list) in Split::ALL.into_iter().zip(FC100) {
                    for superclass in lines(list) {
                        let g = find(self.store.groups(), superclass)
                            .ok_or_else(|| self.unknown("superclass", superclass))?;
                        (0..n).filter(|&c| self.class_group(c) == g).for_each(|c| split_of[c] = Some(split));
                    }
                }
            }
        }
        let name = match protocol {
            Cifar100Protocol::CifarFs => "cifar_fs",
            Cifar100Protocol::Fc100 => "fc100",
        };
        Ok(splits_by(name, n, |c| split_of[c]))
    }

    fn unknown(&self, what: &str, name: &str) -> DataError {
        DataError::invalid(
            "cifar100",
            format!("{what} {name}"),
            "not as in CIFAR-100's meta file (is this CIFAR-100?)",
        )
    }

    /// The per-channel statistics used with CIFAR-FS and FC100 ([`Normalization::CIFAR100`]).
    pub fn normalization() -> Normalization {
        Normalization::CIFAR100
    }

    /// The underlying image store.
    pub fn store(&self) -> &ImageStore {
        &self.store
    }
}

/// Classes are CIFAR-100's fine classes, groups its superclasses.
impl BackedByStore for Cifar100 {
    fn image_store(&self) -> &ImageStore {
        &self.store
    }
}
