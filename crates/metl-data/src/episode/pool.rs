//! [`ClassPool`]: the classes an episode may draw from, with their rotation rule.

use crate::Split;
use serde::{Deserialize, Serialize};

/// How a pooled class's images are rotated (counter-clockwise, multiples of 90°).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Rotation {
    /// Always `k` quarter turns (`k` in 0..4). Vinyals et al.'s protocol makes each of the
    /// four rotations of a character a class of its own: four entries, `Fixed(0..4)`.
    Fixed(u8),
    /// A quarter-turn count drawn uniformly from 0..4 for each class of each episode, the
    /// same for all of that class's images in the episode (MAML's protocol).
    Random,
}

/// One entry of a [`ClassPool`]: a class of the source and its rotation rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PoolClass {
    /// The class index in the [`ClassImages`](crate::image::ClassImages) source.
    pub class: usize,
    /// How its images are rotated.
    pub rotation: Rotation,
}

/// The named list of classes a split draws episodes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassPool {
    name: String,
    classes: Vec<PoolClass>,
}

impl ClassPool {
    /// A pool called `name` (it appears in errors, e.g. `omniglot/vinyals/test`).
    pub fn new(name: impl Into<String>, classes: Vec<PoolClass>) -> Self {
        Self { name: name.into(), classes }
    }

    /// The source classes `classes`, unrotated.
    pub fn unrotated(name: impl Into<String>, classes: impl IntoIterator<Item = usize>) -> Self {
        let classes =
            classes.into_iter().map(|class| PoolClass { class, rotation: Rotation::Fixed(0) }).collect();
        Self::new(name, classes)
    }

    /// The source classes `classes`, each rotated by a random multiple of 90° per episode.
    pub fn randomly_rotated(name: impl Into<String>, classes: impl IntoIterator<Item = usize>) -> Self {
        let classes =
            classes.into_iter().map(|class| PoolClass { class, rotation: Rotation::Random }).collect();
        Self::new(name, classes)
    }

    /// Each of the source classes `classes` four times, rotated by 0°, 90°, 180° and 270°:
    /// four classes per source class.
    pub fn rotations_as_classes(name: impl Into<String>, classes: impl IntoIterator<Item = usize>) -> Self {
        let classes = classes
            .into_iter()
            .flat_map(|class| (0..4).map(move |k| PoolClass { class, rotation: Rotation::Fixed(k) }))
            .collect();
        Self::new(name, classes)
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The entries, in order.
    pub fn classes(&self) -> &[PoolClass] {
        &self.classes
    }

    /// The number of entries (classes an episode can tell apart).
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// Whether the pool has no class.
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }
}

/// The train, validation and test class pools of a dataset's split (a few-shot
/// protocol): what [`crate::EpisodeSampler`]s of each split draw from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassSplits {
    /// Meta-training classes.
    pub train: ClassPool,
    /// Validation classes (empty when the protocol has none).
    pub val: ClassPool,
    /// Test classes.
    pub test: ClassPool,
}

impl ClassSplits {
    /// The pool of `split`.
    pub fn get(&self, split: Split) -> &ClassPool {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotations_as_classes_quadruple_the_pool() {
        let pool = ClassPool::rotations_as_classes("p", [7, 9]);
        assert_eq!(pool.len(), 8);
        assert_eq!(pool.classes()[5], PoolClass { class: 9, rotation: Rotation::Fixed(1) });
        assert!(ClassPool::randomly_rotated("r", 0..3)
            .classes()
            .iter()
            .all(|c| c.rotation == Rotation::Random));
    }
}
