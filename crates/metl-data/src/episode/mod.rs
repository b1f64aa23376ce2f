//! Few-shot episodes: N-way K-shot classification tasks with Q queries per class, drawn
//! from any [`ClassImages`](crate::image::ClassImages) source.
//!
//! - [`EpisodeConfig`]: N, K, Q, the meta-batch size and within-group sampling;
//! - [`ClassPool`]: the classes a split may draw from, each with its rotation rule (fixed,
//!   or a random multiple of 90° per episode), which is how the Omniglot protocols differ;
//! - [`EpisodeSampler`]: seeded sampling and assembly of meta-batches into a
//!   [`TaskBatch`](crate::TaskBatch) on the caller's device;
//! - [`Prefetcher`]: the same sampler on a background thread, batches ready in advance;
//! - [`PoolBatchSampler`]: plain labelled mini-batches over all classes of a pool, for
//!   pre-training (the fine-tuning baselines).

mod config;
mod pool;
mod pool_batches;
mod prefetch;
mod sampler;

pub use config::EpisodeConfig;
pub use pool::{ClassPool, PoolClass, Rotation};
pub use pool_batches::PoolBatchSampler;
pub use prefetch::Prefetcher;
pub use sampler::{Episode, EpisodeBuffers, EpisodeClass, EpisodeSampler};

use crate::rng::Rng;
use rand::Rng as _;

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
