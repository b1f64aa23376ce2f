//! Few-shot episodes: N-way K-shot classification tasks with Q queries per class, drawn
//! from any [`ClassImages`](crate::image::ClassImages) source.
//!
//! - [`EpisodeConfig`]: N, K, Q, the meta-batch size and within-group sampling;
//! - [`ClassPool`]: the classes a split may draw from, each with its rotation rule (fixed,
//!   or a random multiple of 90° per episode), which is how the Omniglot protocols differ;
//!   [`ClassSplits`]: a dataset's train, validation and test pools;
//! - [`EpisodeSampler`]: seeded sampling and assembly of meta-batches into a
//!   [`TaskBatch`](crate::TaskBatch) on the caller's device;
//! - [`Transforms`]: training augmentation and per-channel normalisation of the images;
//! - [`Prefetcher`]: the same sampler on a background thread, batches ready in advance;
//! - [`PoolBatchSampler`]: plain labelled mini-batches over all classes of a pool, for
//!   pre-training (the fine-tuning baselines).

mod config;
mod pool;
mod pool_batches;
mod prefetch;
mod sampler;

pub use config::EpisodeConfig;
pub use pool::{ClassPool, ClassSplits, PoolClass, Rotation};
pub use pool_batches::PoolBatchSampler;
pub use prefetch::Prefetcher;
pub use sampler::{Episode, EpisodeBuffers, EpisodeClass, EpisodeSampler};

use crate::{
    error::Result,
    image::{Augmentation, Normalization},
    rng::{substream, Rng},
};
use rand::Rng as _;
use tch::Tensor;

/// What a sampler does to its images once gathered: the augmentation (for training) and
/// the per-channel normalisation; given to [`EpisodeSampler::with_transforms`] and
/// [`PoolBatchSampler::with_transforms`]. The default does nothing.
///
/// Episode (or pre-training batch) `i`'s augmentations draw from their own ChaCha8 stream
/// `i` of a seed derived from the sampler's, so batches stay reproducible and independent
/// of the thread count, and the classes and images drawn are those without augmentation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Transforms {
    augmentation: Option<Augmentation>,
    normalization: Option<Normalization>,
}

impl Transforms {
    /// The same, augmenting every image with `augmentation` (checked).
    pub fn augmenting(self, augmentation: Augmentation) -> Result<Self> {
        augmentation.validate()?;
        Ok(Self { augmentation: Some(augmentation), ..self })
    }

    /// The same, standardising the image tensors with `normalization` (checked).
    pub fn normalizing(self, normalization: Normalization) -> Result<Self> {
        normalization.validate()?;
        Ok(Self { normalization: Some(normalization), ..self })
    }

    /// The same without augmentation (for validation and test episodes).
    pub fn without_augmentation(self) -> Self {
        Self { augmentation: None, ..self }
    }

    /// The augmentation, if any.
    pub fn augmentation(&self) -> Option<&Augmentation> {
        self.augmentation.as_ref()
    }

    /// The normalisation, if any.
    pub fn normalization(&self) -> Option<&Normalization> {
        self.normalization.as_ref()
    }

    /// Whether images are augmented.
    fn augments(&self) -> bool {
        self.augmentation.is_some()
    }

    /// Augments each `shape` image of `images` in turn, drawing from `rng`.
    fn augment(&self, images: &mut [u8], shape: [usize; 3], rng: &mut Rng) {
        if let Some(a) = &self.augmentation {
            images.chunks_exact_mut(shape.iter().product()).for_each(|image| a.apply(image, shape, rng));
        }
    }

    /// Normalises `[..., C, H, W]` `Float` images in `[0, 1]`.
    fn normalize(&self, images: Tensor) -> Result<Tensor> {
        match &self.normalization {
            Some(n) => n.apply(&images),
            None => Ok(images),
        }
    }
}

/// The generator of the augmentations of episode or batch `index`: stream `index` of a
/// seed derived from the sampler's, so that augmenting draws nothing from the streams that
/// choose classes and images.
pub(crate) fn augmentation_stream(seed: u64, index: u64) -> Rng {
    substream(seed ^ 0x6175_676d_656e_7421, index)
}

/// `amount` distinct indices of `0..length` in uniformly random order (Floyd's algorithm
/// followed by a Fisher–Yates shuffle): `O(amount²)`, no allocation of `0..length`, and a
/// fixed algorithm, so that episodes do not change with the `rand` version.
pub(crate) fn sample_distinct(rng: &mut Rng, length: usize, amount: usize) -> Vec<usize> {
    assert!(amount <= length, "cannot draw {amount} distinct of {length}");
    let mut chosen = Vec::with_capacity(amount);
    for j in length - amount..length {
        let t = rng.gen_range(0..=j);
        chosen.push(if chosen.contains(&t) { j } else { t });
    }
    for i in (1..chosen.len()).rev() {
        chosen.swap(i, rng.gen_range(0..=i));
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::seeded;

    #[test]
    fn distinct_samples_are_distinct_uniform_and_shuffled() {
        let mut rng = seeded(0);
        let mut first = [0usize; 5];
        let mut counts = [0usize; 10];
        for _ in 0..5000 {
            let s = sample_distinct(&mut rng, 10, 5);
            let mut sorted = s.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 5);
            s.iter().for_each(|&i| counts[i] += 1);
            first[s[0] % 5] += 1;
        }
        // Each index is drawn with probability 1/2: 2500 ± 4σ (σ ≈ 35).
        assert!(counts.iter().all(|&c| (2360..2640).contains(&c)), "{counts:?}");
        // The first position is not biased to small indices.
        assert!(first.iter().all(|&c| (850..1150).contains(&c)), "{first:?}");
        assert_eq!(sample_distinct(&mut rng, 3, 3).len(), 3);
        assert!(sample_distinct(&mut rng, 3, 0).is_empty());
    }
}
