//! [`MultiTaskLoader`]: seeded, shuffled mini-batches of one split of a
//! [`MultiTaskDataset`].

use super::{MultiTaskBatch, MultiTaskDataset};
use crate::{
    error::{DataError, Result},
    rng::{substream, Rng},
    Split,
};
use rand::seq::SliceRandom;
use tch::Device;

/// Walks one split of a dataset in mini-batches, epoch after epoch.
///
/// With `shuffle`, every epoch visits the samples in a fresh order drawn from a ChaCha8
/// stream of `seed` (the same order on every machine); without, in index order. The last
/// batch of an epoch is smaller when the split size is not a multiple of the batch size,
/// unless `drop_last` is set.
#[derive(Debug)]
pub struct MultiTaskLoader<'a, D: MultiTaskDataset + ?Sized> {
    dataset: &'a D,
    split: Split,
    batch_size: usize,
    drop_last: bool,
    rng: Option<Rng>,
    order: Vec<usize>,
    cursor: usize,
    epoch: usize,
}

impl<'a, D: MultiTaskDataset + ?Sized> MultiTaskLoader<'a, D> {
    /// A loader over `split` of `dataset`; shuffled with `Some(seed)`, in order with `None`.
    pub fn new(dataset: &'a D, split: Split, batch_size: usize, shuffle: Option<u64>) -> Result<Self> {
        if batch_size == 0 {
            return Err(DataError::invalid("batch_size", batch_size, "must be at least 1"));
        }
        let len = dataset.len(split);
        if len == 0 {
            return Err(DataError::invalid("split", split, "has no samples"));
        }
        // One stream per split, so that the train order does not depend on whether the
        // validation loader was created first.
        let rng = shuffle.map(|seed| substream(seed, 0x4d54_4c00 + split.index() as u64));
        let mut loader = Self {
            dataset,
            split,
            batch_size,
            drop_last: false,
            rng,
            order: (0..len).collect(),
            cursor: 0,
            epoch: 0,
        };
        loader.reshuffle();
        Ok(loader)
    }

    /// Drops the last, smaller batch of each epoch (when there is one).
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// The number of batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        let len = self.order.len();
        if self.drop_last {
            (len / self.batch_size).max(1)
        } else {
            len.div_ceil(self.batch_size)
        }
    }

    /// Completed epochs so far.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    fn reshuffle(&mut self) {
        if let Some(rng) = self.rng.as_mut() {
            self.order.sort_unstable();
            self.order.shuffle(rng);
        }
    }

    /// The sample indices of the next batch, starting a new epoch when the current one is
    /// exhausted.
    pub fn next_indices(&mut self) -> Vec<usize> {
        let len = self.order.len();
        let remaining = len - self.cursor;
        let short = remaining < self.batch_size;
        // A split smaller than the batch yields the whole split even with drop_last.
        if remaining == 0 || (short && self.drop_last && self.cursor > 0) {
            self.epoch += 1;
            self.cursor = 0;
            self.reshuffle();
        }
        let end = (self.cursor + self.batch_size).min(len);
        let indices = self.order[self.cursor..end].to_vec();
        self.cursor = end;
        indices
    }

    /// The next batch, on `device`.
    pub fn next_batch(&mut self, device: Device) -> Result<MultiTaskBatch> {
        let indices = self.next_indices();
        self.dataset.batch(self.split, &indices, device)
    }

    /// The batches of one whole epoch from the current position on (a fresh epoch when
    /// the previous one was completed), on `device`.
    pub fn epoch_batches(
        &mut self,
        device: Device,
    ) -> impl Iterator<Item = Result<MultiTaskBatch>> + use<'_, 'a, D> {
        let n = match self.remaining_batches() {
            0 => self.batches_per_epoch(),
            n => n,
        };
        (0..n).map(move |_| self.next_batch(device))
    }

    fn remaining_batches(&self) -> usize {
        let remaining = self.order.len() - self.cursor;
        if self.drop_last {
            remaining / self.batch_size
        } else {
            remaining.div_ceil(self.batch_size)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multitask::{SyntheticRegression, SyntheticRegressionConfig};

    fn small() -> SyntheticRegression {
        let config = SyntheticRegressionConfig { sizes: [10, 3, 3], ..SyntheticRegressionConfig::t2() };
        SyntheticRegression::new(config).unwrap()
    }

    #[test]
    fn an_epoch_visits_every_sample_once() {
        let data = small();
        let mut loader = MultiTaskLoader::new(&data, Split::Train, 4, Some(1)).unwrap();
        assert_eq!(loader.batches_per_epoch(), 3);
        let mut seen: Vec<usize> = (0..3).flat_map(|_| loader.next_indices()).collect();
        assert_ne!(seen, (0..10).collect::<Vec<_>>(), "shuffled");
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_eq!(loader.epoch(), 0);
        loader.next_indices();
        assert_eq!(loader.epoch(), 1);
    }

    #[test]
    fn drop_last_and_order_are_respected() {
        let data = small();
        let mut loader = MultiTaskLoader::new(&data, Split::Train, 4, None).unwrap().drop_last(true);
        assert_eq!(loader.batches_per_epoch(), 2);
        assert_eq!(loader.next_indices(), [0, 1, 2, 3]);
        assert_eq!(loader.next_indices(), [4, 5, 6, 7]);
        assert_eq!(loader.next_indices(), [0, 1, 2, 3]);
        let batches: Vec<_> = loader.epoch_batches(Device::Cpu).collect::<Result<_>>().unwrap();
        assert_eq!(batches.len(), 1);
        // A finished epoch is followed by a whole new one.
        assert_eq!(loader.epoch_batches(Device::Cpu).count(), 2);
        assert_eq!(loader.epoch_batches(Device::Cpu).count(), 2);
        let mut full = MultiTaskLoader::new(&data, Split::Train, 4, Some(0)).unwrap();
        let sizes: Vec<usize> = full.epoch_batches(Device::Cpu).map(|b| b.unwrap().len()).collect();
        assert_eq!(sizes, [4, 4, 2]);
        assert_eq!(full.epoch_batches(Device::Cpu).count(), 3);
    }

    #[test]
    fn same_seed_same_order() {
        let data = small();
        let order = |seed| {
            let mut l = MultiTaskLoader::new(&data, Split::Train, 3, Some(seed)).unwrap();
            (0..8).flat_map(|_| l.next_indices()).collect::<Vec<_>>()
        };
        assert_eq!(order(5), order(5));
        assert_ne!(order(5), order(6));
        assert!(MultiTaskLoader::new(&data, Split::Train, 0, None).is_err());
    }
}
