//! [`PoolBatchSampler`]: ordinary labelled mini-batches over all classes of a pool, for
//! pre-training a backbone as a classifier of every training class (the fine-tuning
//! baselines, Baseline and Baseline++ of Chen et al. 2019).

use super::{augmentation_stream, ClassPool, Rotation, Transforms};
use crate::{
    error::{DataError, Result},
    image::{rotate_square, ClassImages},
    rng::substream,
    TaskBatch,
};
use rand::Rng as _;
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// Mini-batches of `B` images drawn uniformly (class, then image) from a [`ClassPool`],
/// each labelled with its class's *index in the pool* (a global label in `0..C`), rotated
/// as the pool's rule says. Batch `i` draws only from ChaCha8 stream `i` of the seed.
///
/// A batch is a [`TaskBatch`] of one task whose support and query sets are the same
/// images: `[1, B, C, H, W]` and labels `[1, B]`.
#[derive(Debug)]
pub struct PoolBatchSampler<D: ClassImages + ?Sized> {
    data: Arc<D>,
    pool: ClassPool,
    batch_size: usize,
    seed: u64,
    position: u64,
    transforms: Transforms,
}

impl<D: ClassImages + ?Sized> PoolBatchSampler<D> {
    /// Batches of `batch_size` images of `pool`, deterministic from `seed`.
    pub fn new(data: Arc<D>, pool: ClassPool, batch_size: usize, seed: u64) -> Result<Self> {
        if batch_size == 0 {
            return Err(DataError::invalid("batch_size", 0, "must be >= 1"));
        }
        if pool.is_empty() {
            return Err(DataError::invalid("pool", pool.name().to_owned(), "has no classes"));
        }
        for entry in pool.classes() {
            if entry.class >= data.num_classes() || data.class_len(entry.class) == 0 {
                return Err(DataError::invalid(
                    "pool.class",
                    entry.class,
                    format!("must be a non-empty class of the source (pool {})", pool.name()),
                ));
            }
        }
        Ok(Self { data, pool, batch_size, seed, position: 0, transforms: Transforms::default() })
    }

    /// The same sampler applying `transforms` to its images.
    pub fn with_transforms(mut self, transforms: Transforms) -> Self {
        self.transforms = transforms;
        self
    }

    /// The number of classes `C` (the labels are `0..C`).
    pub fn num_classes(&self) -> usize {
        self.pool.len()
    }

    /// The number of batches drawn so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Continues from batch `position`.
    pub fn seek(&mut self, position: u64) {
        self.position = position;
    }

    /// The next batch on `device`.
    pub fn sample_batch(&mut self, device: Device) -> Result<TaskBatch> {
        let mut rng = substream(self.seed, self.position);
        let mut augment_rng = augmentation_stream(self.seed, self.position);
        self.position += 1;
        let [c, h, w] = self.data.image_shape();
        let mut pixels = vec![0u8; self.batch_size * c * h * w];
        let mut labels = Vec::with_capacity(self.batch_size);
        for dst in pixels.chunks_mut(c * h * w) {
            let label = rng.gen_range(0..self.pool.len());
            let entry = self.pool.classes()[label];
            let image = self.data.image(entry.class, rng.gen_range(0..self.data.class_len(entry.class)));
            let turns = match entry.rotation {
                Rotation::Fixed(k) => k,
                Rotation::Random => rng.gen_range(0..4u8),
            };
            if turns == 0 {
                dst.copy_from_slice(image);
            } else {
                rotate_square(image, c, h, turns, dst);
            }
            self.transforms.augment(dst, [c, h, w], &mut augment_rng);
            labels.push(label as i64);
        }
        let b = self.batch_size as i64;
        let x = Tensor::f_from_slice(&pixels)?
            .f_view([1, b, c as i64, h as i64, w as i64])?
            .f_to_device(device)?
            .f_to_kind(Kind::Float)?
            .f_div_scalar(255.0)?;
        let x = self.transforms.normalize(x)?;
        let y = Tensor::f_from_slice(&labels)?.f_view([1, b])?.f_to_device(device)?;
        Ok(TaskBatch { support_x: x.shallow_clone(), support_y: y.shallow_clone(), query_x: x, query_y: y })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{ImageStore, StoredClass};

    #[test]
    fn labels_are_pool_indices_and_batches_are_seeded() {
        // Class c's images are filled with the value c.
        let classes =
            (0..4).map(|c| StoredClass { name: format!("c{c}"), group: 0, first: 3 * c, len: 3 }).collect();
        let pixels: Vec<u8> = (0..12).flat_map(|i| [(i / 3) as u8; 4]).collect();
        let store = Arc::new(ImageStore::new([1, 2, 2], pixels, classes, vec!["g".into()]).unwrap());
        let pool = ClassPool::unrotated("p", [3, 1]);
        let mut sampler = PoolBatchSampler::new(Arc::clone(&store), pool.clone(), 16, 7).unwrap();
        let batch = sampler.sample_batch(Device::Cpu).unwrap();
        let labels = Vec::<i64>::try_from(batch.support_y.reshape([-1])).unwrap();
        let values = Vec::<f32>::try_from(batch.support_x.reshape([16, -1]).select(1, 0)).unwrap();
        for (label, value) in labels.iter().zip(values) {
            let class = [3.0, 1.0][*label as usize];
            assert_eq!(value * 255.0, class);
        }
        let again = PoolBatchSampler::new(store, pool, 16, 7).unwrap().sample_batch(Device::Cpu).unwrap();
        assert!(again.support_x.equal(&batch.support_x));
        assert!(PoolBatchSampler::new(
            Arc::new(ImageStore::new([1, 2, 2], vec![], vec![], vec![]).unwrap()),
            ClassPool::unrotated("e", []),
            4,
            0
        )
        .is_err());
    }
}
