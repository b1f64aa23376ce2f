//! Omniglot (Lake, Salakhutdinov & Tenenbaum 2015, "Human-level concept learning through
//! probabilistic program induction", Science): 1,623 handwritten characters of 50
//! alphabets, each drawn once by 20 people. The *background* set has 30 alphabets (964
//! characters), the *evaluation* set 20 (659).
//!
//! [`Omniglot::load`] reads the official `images_background.zip` and
//! `images_evaluation.zip` (or their extracted folders), decodes the 105×105 PNGs in
//! parallel, resizes them with Pillow's Lanczos filter (see [`crate::image::Resizer`]),
//! inverts them so that strokes are 1.0 and background 0.0, and keeps them as `u8`; the
//! result is cached on disk, so later loads take milliseconds. Classes are ordered
//! background first, then evaluation, alphabets and characters by name; a class's images
//! are its drawings in file-name order (drawer order).
//!
//! [`Omniglot::splits`] gives the class splits of the literature ([`OmniglotProtocol`]).

mod cache;
mod protocol;
mod source;

pub use cache::default_cache_dir;
pub use protocol::{OmniglotProtocol, OmniglotSplits, VINYALS_TEST_ALPHABETS, VINYALS_VAL_ALPHABETS};

use crate::{
    error::{DataError, Result},
    image::{BackedByStore, ClassImages, ImageStore, Preprocess, ResizeFilter, StoredClass},
};
use serde::{Deserialize, Serialize};
use source::SetSource;
use std::{path::PathBuf, time::Instant};

/// The two image sets of Omniglot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OmniglotSet {
    /// `images_background`: 30 alphabets, 964 characters.
    Background,
    /// `images_evaluation`: 20 alphabets, 659 characters.
    Evaluation,
}

impl OmniglotSet {
    /// Both sets, in class order.
    pub const ALL: [OmniglotSet; 2] = [OmniglotSet::Background, OmniglotSet::Evaluation];

    /// The folder / zip name, `images_background` or `images_evaluation`.
    pub fn dir_name(self) -> &'static str {
        match self {
            OmniglotSet::Background => "images_background",
            OmniglotSet::Evaluation => "images_evaluation",
        }
    }
}

/// The Omniglot folder to use: `$METL_OMNIGLOT_DIR` when set (and not empty), else
/// `default`.
pub fn omniglot_dir(default: impl Into<PathBuf>) -> PathBuf {
    std::env::var_os("METL_OMNIGLOT_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| default.into(), PathBuf::from)
}

/// How to load Omniglot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OmniglotConfig {
    /// The folder holding `images_background.zip` and `images_evaluation.zip` (or the
    /// extracted `images_background/` and `images_evaluation/`, which take precedence).
    pub root: PathBuf,
    /// Side of the square images after resizing; default 28 (the few-shot literature's;
    /// 105 keeps the originals).
    pub image_size: usize,
    /// The resizing filter; default Lanczos, as torchvision/learn2learn and MAML's scripts.
    pub filter: ResizeFilter,
    /// Whether to read and write the decoded-image cache; default true.
    pub cache: bool,
    /// The cache folder; default [`default_cache_dir`] (`$XDG_CACHE_HOME/metl` or
    /// `~/.cache/metl`).
    pub cache_dir: Option<PathBuf>,
}

impl Default for OmniglotConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("data/omniglot"),
            image_size: 28,
            filter: ResizeFilter::Lanczos,
            cache: true,
            cache_dir: None,
        }
    }
}

impl OmniglotConfig {
    /// The defaults with the data at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), ..Self::default() }
    }

    /// The preprocessing of every drawing: gray, resized to `image_size` with `filter`,
    /// inverted so that strokes are 1.0 (also what images given to a trained Omniglot model
    /// must go through).
    pub fn preprocess(&self) -> Preprocess {
        Preprocess::new([self.image_size, self.image_size], 1, self.filter, true)
    }

    /// Checks the image size (1..=1024).
    pub fn validate(&self) -> Result<()> {
        if !(1..=1024).contains(&self.image_size) {
            return Err(DataError::invalid("omniglot.image_size", self.image_size, "must be in 1..=1024"));
        }
        Ok(())
    }
}

/// How a load went.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    /// Whether the images came from the cache.
    pub from_cache: bool,
    /// The cache file used or written, when caching is on.
    pub cache_file: Option<PathBuf>,
    /// Why the cache could not be written, if it could not (the load itself succeeded).
    pub cache_error: Option<String>,
    /// Wall-clock seconds of the load.
    pub seconds: f64,
}

/// Omniglot in memory: 1,623 classes of 20 `[1, S, S]` `u8` images.
#[derive(Debug)]
pub struct Omniglot {
    store: ImageStore,
    alphabet_sets: Vec<OmniglotSet>,
    image_size: usize,
    report: LoadReport,
}

impl Omniglot {
    /// Loads both sets (from the cache when it is valid).
    pub fn load(config: OmniglotConfig) -> Result<Self> {
        config.validate()?;
        let start = Instant::now();
        let sources = [
            SetSource::locate(&config.root, OmniglotSet::Background.dir_name())?,
            SetSource::locate(&config.root, OmniglotSet::Evaluation.dir_name())?,
        ];
        let cache_file = match (config.cache, config.cache_dir.clone().or_else(default_cache_dir)) {
            (true, Some(dir)) => {
                let mut key = format!("v1;size={};filter={:?}", config.image_size, config.filter);
                for source in &sources {
                    key.push(';');
                    key.push_str(&source.fingerprint()?);
                }
                Some((cache::cache_path(&dir, &key), key))
            }
            _ => None,
        };
        if let Some((path, key)) = &cache_file {
            if let Some(cached) = cache::read(path, key) {
                let report = LoadReport {
                    from_cache: true,
                    cache_file: Some(path.clone()),
                    cache_error: None,
                    seconds: start.elapsed().as_secs_f64(),
                };
                let alphabet_sets = cached
                    .alphabet_sets
                    .iter()
                    .map(|&c| if c == 0 { OmniglotSet::Background } else { OmniglotSet::Evaluation })
                    .collect();
                return Ok(Self {
                    store: cached.store,
                    alphabet_sets,
                    image_size: config.image_size,
                    report,
                });
            }
        }
        let (store, sets) = decode_sets(&sources, config.image_size, config.filter)?;
        let cache_error = cache_file.as_ref().and_then(|(path, key)| {
            let codes: Vec<u8> = sets.iter().map(|s| *s as u8).collect();
            cache::write(path, key, &store, &codes).err().map(|e| e.to_string())
        });
        let report = LoadReport {
            from_cache: false,
            cache_file: cache_file.map(|(path, _)| path),
            cache_error,
            seconds: start.elapsed().as_secs_f64(),
        };
        Ok(Self { store, alphabet_sets: sets, image_size: config.image_size, report })
    }

    /// How the load went (cache hit, time).
    pub fn load_report(&self) -> &LoadReport {
        &self.report
    }

    /// The side `S` of the images.
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// The underlying image store.
    pub fn store(&self) -> &ImageStore {
        &self.store
    }

    /// Alphabet names, background alphabets first.
    pub fn alphabets(&self) -> &[String] {
        self.store.groups()
    }

    /// The set alphabet `alphabet` belongs to.
    pub fn alphabet_set(&self, alphabet: usize) -> OmniglotSet {
        self.alphabet_sets[alphabet]
    }

    /// The alphabet index of `class`.
    pub fn alphabet_of(&self, class: usize) -> usize {
        self.store.classes()[class].group
    }

    /// The alphabet name of `class`, e.g. `Latin`.
    pub fn alphabet_name(&self, class: usize) -> &str {
        &self.store.groups()[self.alphabet_of(class)]
    }

    /// The character name of `class` within its alphabet, e.g. `character07`.
    pub fn character_name(&self, class: usize) -> &str {
        let name = &self.store.classes()[class].name;
        name.rsplit_once('/').map_or(name.as_str(), |(_, c)| c)
    }

    /// The set `class` belongs to.
    pub fn set_of(&self, class: usize) -> OmniglotSet {
        self.alphabet_set(self.alphabet_of(class))
    }

    /// The classes of `set` (a contiguous range).
    pub fn classes_of_set(&self, set: OmniglotSet) -> std::ops::Range<usize> {
        let first = (0..self.num_classes()).find(|&c| self.set_of(c) == set).unwrap_or(self.num_classes());
        let end = (first..self.num_classes()).find(|&c| self.set_of(c) != set).unwrap_or(self.num_classes());
        first..end
    }

    /// The classes of alphabet `alphabet` (a contiguous range).
    pub fn classes_of_alphabet(&self, alphabet: usize) -> std::ops::Range<usize> {
        let classes = self.store.classes();
        let first = classes.iter().position(|c| c.group == alphabet).unwrap_or(classes.len());
        let end =
            classes[first..].iter().position(|c| c.group != alphabet).map_or(classes.len(), |n| first + n);
        first..end
    }
}

/// Class names are `Alphabet/characterNN`, groups are alphabets.
impl BackedByStore for Omniglot {
    fn image_store(&self) -> &ImageStore {
        &self.store
    }
}

/// Decodes, resizes and inverts every PNG of both sets into one store.
fn decode_sets(
    sources: &[SetSource; 2],
    size: usize,
    filter: ResizeFilter,
) -> Result<(ImageStore, Vec<OmniglotSet>)> {
    const SIDE: usize = 105;
    // Strokes are black (0) on white (255): inverted so that strokes are 1.0.
    let preprocess = Preprocess::new([size, size], 1, filter, true).expecting_input(SIDE, SIDE);
    let decode = |path: &std::path::Path, bytes: &[u8]| preprocess.apply(bytes, path);
    let (mut pixels, mut classes, mut groups, mut sets) =
        (Vec::new(), Vec::new(), Vec::<String>::new(), Vec::new());
    for (source, set) in sources.iter().zip(OmniglotSet::ALL) {
        let listing = source.list()?;
        let images = listing.read_all(decode)?;
        for (class, images) in listing.classes.iter().zip(images) {
            if groups.last() != Some(&class.alphabet) || sets.last() != Some(&set) {
                groups.push(class.alphabet.clone());
                sets.push(set);
            }
            let first = classes.last().map_or(0, |c: &StoredClass| c.first + c.len);
            classes.push(StoredClass {
                name: format!("{}/{}", class.alphabet, class.character),
                group: groups.len() - 1,
                first,
                len: images.len(),
            });
            images.iter().for_each(|image| pixels.extend_from_slice(image));
        }
    }
    Ok((ImageStore::new([1, size, size], pixels, classes, groups)?, sets))
}
