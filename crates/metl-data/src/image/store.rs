//! [`ClassImages`], the class-indexed image dataset every few-shot source implements, and
//! [`ImageStore`], its in-memory implementation.

use crate::error::{DataError, Result};
use serde::{Deserialize, Serialize};

/// A dataset of images grouped by class: what the episode sampler draws from.
///
/// Omniglot, [`crate::image_folder::ImageFolder`] and any [`ImageStore`] implement it;
/// implement it for your own source to use [`crate::episode::EpisodeSampler`] on it.
/// Images are `u8`, planar `[C, H, W]`; `255` means 1.0.
pub trait ClassImages: Send + Sync {
    /// `[C, H, W]` of every image.
    fn image_shape(&self) -> [usize; 3];

    /// The number of classes.
    fn num_classes(&self) -> usize;

    /// The number of images of `class`.
    fn class_len(&self, class: usize) -> usize;

    /// A readable name of `class` (e.g. `Latin/character07`).
    fn class_name(&self, class: usize) -> String;

    /// The group `class` belongs to (the alphabet, for Omniglot), for within-group
    /// sampling; all classes are in group 0 unless the source says otherwise.
    fn class_group(&self, _class: usize) -> usize {
        0
    }

    /// Image `index` (below `class_len(class)`) of `class`: `C * H * W` bytes.
    fn image(&self, class: usize, index: usize) -> &[u8];
}

/// A source whose images live in an [`ImageStore`] (with extra metadata around it): it is
/// a [`ClassImages`] through the store.
pub trait BackedByStore: Send + Sync {
    /// The store holding the images.
    fn image_store(&self) -> &ImageStore;
}

impl<T: BackedByStore> ClassImages for T {
    fn image_shape(&self) -> [usize; 3] {
        self.image_store().image_shape()
    }

    fn num_classes(&self) -> usize {
        self.image_store().num_classes()
    }

    fn class_len(&self, class: usize) -> usize {
        self.image_store().class_len(class)
    }

    fn class_name(&self, class: usize) -> String {
        self.image_store().class_name(class)
    }

    fn class_group(&self, class: usize) -> usize {
        self.image_store().class_group(class)
    }

    fn image(&self, class: usize, index: usize) -> &[u8] {
        self.image_store().image(class, index)
    }
}

/// A class of an [`ImageStore`]: its name, group and images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredClass {
    /// The class name.
    pub name: String,
    /// The index of its group in [`ImageStore::groups`].
    pub group: usize,
    /// The index of its first image.
    pub first: usize,
    /// Its number of images.
    pub len: usize,
}

/// Images of equal shape stored back to back in one `u8` buffer, class after class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageStore {
    shape: [usize; 3],
    pixels: Vec<u8>,
    classes: Vec<StoredClass>,
    groups: Vec<String>,
}

impl ImageStore {
    /// A store of images shaped `shape` (`[C, H, W]`), from the concatenated `pixels` of
    /// `classes` (each a contiguous, non-empty run of images, in order) and the names of
    /// their `groups`.
    pub fn new(
        shape: [usize; 3],
        pixels: Vec<u8>,
        classes: Vec<StoredClass>,
        groups: Vec<String>,
    ) -> Result<Self> {
        let image_len = shape.iter().product::<usize>();
        if image_len == 0 {
            return Err(DataError::invalid(
                "image_shape",
                format!("{shape:?}"),
                "every dimension must be >= 1",
            ));
        }
        let mut next = 0;
        for class in &classes {
            if class.first != next || class.len == 0 || class.group >= groups.len().max(1) {
                return Err(DataError::invalid(
                    "classes",
                    &class.name,
                    "classes must be non-empty, contiguous, in order, with a valid group",
                ));
            }
            next += class.len;
        }
        if pixels.len() != next * image_len {
            return Err(DataError::invalid(
                "pixels",
                pixels.len(),
                format!("must be {next} images × {image_len} bytes"),
            ));
        }
        Ok(Self { shape, pixels, classes, groups })
    }

    /// The classes, in order.
    pub fn classes(&self) -> &[StoredClass] {
        &self.classes
    }

    /// The group names.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// The total number of images.
    pub fn num_images(&self) -> usize {
        self.classes.last().map_or(0, |c| c.first + c.len)
    }

    /// All pixels, image after image.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// The bytes of one image.
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }
}

impl ClassImages for ImageStore {
    fn image_shape(&self) -> [usize; 3] {
        self.shape
    }

    fn num_classes(&self) -> usize {
        self.classes.len()
    }

    fn class_len(&self, class: usize) -> usize {
        self.classes[class].len
    }

    fn class_name(&self, class: usize) -> String {
        self.classes[class].name.clone()
    }

    fn class_group(&self, class: usize) -> usize {
        self.classes[class].group
    }

    fn image(&self, class: usize, index: usize) -> &[u8] {
        let c = &self.classes[class];
        assert!(index < c.len, "image {index} of class {} with {} images", c.name, c.len);
        let n = self.image_len();
        &self.pixels[(c.first + index) * n..(c.first + index + 1) * n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_found_by_class_and_index() {
        let classes = vec![
            StoredClass { name: "a".into(), group: 0, first: 0, len: 2 },
            StoredClass { name: "b".into(), group: 1, first: 2, len: 1 },
        ];
        let store = ImageStore::new([1, 1, 2], vec![1, 2, 3, 4, 5, 6], classes, vec!["g".into(), "h".into()])
            .unwrap();
        assert_eq!(store.image(0, 1), [3, 4]);
        assert_eq!(store.image(1, 0), [5, 6]);
        assert_eq!((store.num_classes(), store.num_images(), store.class_group(1)), (2, 3, 1));
    }

    #[test]
    fn inconsistent_parts_are_rejected() {
        let classes = vec![StoredClass { name: "a".into(), group: 0, first: 0, len: 2 }];
        assert!(ImageStore::new([1, 1, 2], vec![0; 3], classes.clone(), vec![]).is_err());
        let empty = vec![StoredClass { name: "e".into(), group: 0, first: 0, len: 0 }];
        assert!(ImageStore::new([1, 1, 2], vec![], empty, vec![]).is_err());
        assert!(ImageStore::new([1, 1, 2], vec![0; 4], classes, vec![]).is_ok());
    }
}
