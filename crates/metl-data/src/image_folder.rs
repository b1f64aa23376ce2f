//! [`ImageFolder`]: any folder of class folders of PNG/JPEG images as a few-shot source.
//!
//! ```text
//! root/
//!   cat/   001.jpg 002.png ...
//!   dog/   a.jpeg ...
//! ```
//!
//! Every sub-folder of `root` is a class (sorted by name); every `.png`, `.jpg` or `.jpeg`
//! file in it (any case, sorted by name) is one of its images. Like torchvision's
//! `ImageFolder`, other files are skipped, and so are hidden files and folders. Images are
//! decoded in parallel, converted to the configured channels, resized (stretched, not
//! cropped) to the configured size with the configured filter, and kept as `u8`.

use crate::{
    error::{DataError, Result},
    image::{BackedByStore, ImageStore, Preprocess, ResizeFilter, StoredClass},
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::{
    fs,
    path::{Path, PathBuf},
};

/// How to load an [`ImageFolder`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageFolderConfig {
    /// The folder of class folders.
    pub root: PathBuf,
    /// `[height, width]` after resizing; default `[84, 84]` (the mini-ImageNet size).
    pub image_size: [usize; 2],
    /// 1 (gray) or 3 (RGB); default 3.
    pub channels: usize,
    /// The resizing filter; default Lanczos.
    pub filter: ResizeFilter,
    /// Store `255 − v` (for dark-on-light drawings such as Omniglot's, so that strokes
    /// are 1.0); default false.
    pub invert: bool,
}

impl Default for ImageFolderConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::new(),
            image_size: [84, 84],
            channels: 3,
            filter: ResizeFilter::Lanczos,
            invert: false,
        }
    }
}

impl ImageFolderConfig {
    /// The defaults for the folder `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), ..Self::default() }
    }

    /// The preprocessing every image of the folder goes through.
    pub fn preprocess(&self) -> Preprocess {
        Preprocess::new(self.image_size, self.channels, self.filter, self.invert)
    }

    /// Checks the size and channels.
    pub fn validate(&self) -> Result<()> {
        if self.image_size.iter().any(|s| !(1..=4096).contains(s)) {
            return Err(DataError::invalid(
                "image_folder.image_size",
                format!("{:?}", self.image_size),
                "both sides must be in 1..=4096",
            ));
        }
        if self.channels != 1 && self.channels != 3 {
            return Err(DataError::invalid("image_folder.channels", self.channels, "must be 1 or 3"));
        }
        Ok(())
    }
}

/// A folder of class folders, decoded into memory.
#[derive(Debug)]
pub struct ImageFolder {
    store: ImageStore,
    root: PathBuf,
}

fn is_image(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".png", ".jpg", ".jpeg"].iter().any(|ext| lower.ends_with(ext))
}

fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        // Follows symbolic links, so that linked class folders and images count.
        let is_dir = entry.path().is_dir();
        entries.push((name, entry.path(), is_dir));
    }
    entries.sort();
    Ok(entries)
}

impl ImageFolder {
    /// Lists, decodes and resizes every image under `config.root`.
    ///
    /// Errors: the root missing, a root without class folders, a class folder without
    /// images, an unreadable or undecodable image (naming the file).
    pub fn load(config: ImageFolderConfig) -> Result<Self> {
        config.validate()?;
        let root = &config.root;
        if !root.is_dir() {
            return Err(DataError::NotFound { path: root.clone(), what: "a folder of class folders".into() });
        }
        let mut classes = Vec::new();
        for (name, path, is_dir) in sorted_entries(root)? {
            if !is_dir {
                continue;
            }
            let files: Vec<PathBuf> = sorted_entries(&path)?
                .into_iter()
                .filter(|(n, _, d)| !d && is_image(n))
                .map(|(_, p, _)| p)
                .collect();
            if files.is_empty() {
                return Err(DataError::EmptyClass { path });
            }
            classes.push((name, files));
        }
        if classes.is_empty() {
            return Err(DataError::layout(
                root,
                "no class folder found (expected <root>/<class>/<image>.png|jpg)",
            ));
        }
        let preprocess = config.preprocess();
        let files: Vec<&PathBuf> = classes.iter().flat_map(|(_, f)| f).collect();
        let images: Vec<Vec<u8>> =
            files.par_iter().map(|path| preprocess.load(path)).collect::<Result<_>>()?;
        let mut stored = Vec::with_capacity(classes.len());
        let mut first = 0;
        for (name, files) in &classes {
            stored.push(StoredClass { name: name.clone(), group: 0, first, len: files.len() });
            first += files.len();
        }
        let pixels = images.concat();
        let [h, w] = config.image_size;
        let store = ImageStore::new([config.channels, h, w], pixels, stored, vec![String::new()])?;
        Ok(Self { store, root: root.clone() })
    }

    /// The folder the images came from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The underlying image store.
    pub fn store(&self) -> &ImageStore {
        &self.store
    }
}

/// Classes are the folders, all in group 0.
impl BackedByStore for ImageFolder {
    fn image_store(&self) -> &ImageStore {
        &self.store
    }
}
