//! [`EpisodeSampler`]: seeded N-way K-shot episodes, assembled into meta-batches.

use super::{
    augmentation_stream, sample_distinct, ClassPool, EpisodeConfig, Prefetcher, Rotation, Transforms,
};
use crate::{
    error::{DataError, Result},
    image::{rotate_square, ClassImages},
    rng::substream,
    TaskBatch,
};
use rand::Rng as _;
use rayon::prelude::*;
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// A class of an episode: the source class and its quarter turns in this episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EpisodeClass {
    /// The class index in the source.
    pub class: usize,
    /// Counter-clockwise quarter turns (0..4) applied to its images.
    pub rotation: u8,
}

/// One episode: which classes, in label order, and which of their images.
///
/// Label `l` is `classes[l]`. Support row `i` holds image `support[i]` of class
/// `classes[i / K]`, query row `j` image `query[j]` of class `classes[j / Q]`: rows are
/// grouped by label, so that `support_x.view([B, N, K, ...])` gives the shots of each class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    /// The N classes, in label order.
    pub classes: Vec<EpisodeClass>,
    /// `N·K` image indices within their class, label-major.
    pub support: Vec<usize>,
    /// `N·Q` image indices within their class, label-major.
    pub query: Vec<usize>,
}

/// A meta-batch in host memory, before it becomes tensors
/// ([`EpisodeSampler::sample_buffers`]; [`EpisodeBuffers::to_batch`] makes the tensors).
#[derive(Debug, Clone)]
pub struct EpisodeBuffers {
    /// The episodes.
    pub episodes: Vec<Episode>,
    /// `[B, N·K, C, H, W]` pixels.
    pub support_x: Vec<u8>,
    /// `[B, N·K]` labels.
    pub support_y: Vec<i64>,
    /// `[B, N·Q, C, H, W]` pixels.
    pub query_x: Vec<u8>,
    /// `[B, N·Q]` labels.
    pub query_y: Vec<i64>,
    shape: [usize; 3],
    config: EpisodeConfig,
    transforms: Transforms,
}

impl EpisodeBuffers {
    /// The meta-batch as a [`TaskBatch`] on `device`: `Float` images in `[0, 1]` (or
    /// standardised, with [`EpisodeSampler::with_transforms`]) shaped
    /// `[B, N·K, C, H, W]` and `[B, N·Q, C, H, W]`, `Int64` labels `[B, N·K]` and `[B, N·Q]`.
    /// Pixels travel as bytes and become floats on the device.
    pub fn to_batch(&self, device: Device) -> Result<TaskBatch> {
        let b = self.episodes.len() as i64;
        let [c, h, w] = self.shape.map(|d| d as i64);
        let images = |pixels: &[u8], rows: usize| -> Result<Tensor> {
            let t = Tensor::f_from_slice(pixels)?.f_view([b, rows as i64, c, h, w])?.f_to_device(device)?;
            self.transforms.normalize(t.f_to_kind(Kind::Float)?.f_div_scalar_(255.0)?)
        };
        let labels = |labels: &[i64], rows: usize| -> Result<Tensor> {
            Ok(Tensor::f_from_slice(labels)?.f_view([b, rows as i64])?.f_to_device(device)?)
        };
        let (s, q) = (self.config.support_size(), self.config.query_size());
        Ok(TaskBatch {
            support_x: images(&self.support_x, s)?,
            support_y: labels(&self.support_y, s)?,
            query_x: images(&self.query_x, q)?,
            query_y: labels(&self.query_y, q)?,
        })
    }
}

/// Draws N-way K-shot episodes from a [`ClassPool`] of a [`ClassImages`] source.
///
/// Per episode: N pool classes without replacement (all from one group with
/// [`EpisodeConfig::within_group`]), uniformly; labels `0..N` assigned to them in random
/// order; for each class `K + Q` distinct images, uniformly; a random rotation for classes
/// whose rule is [`Rotation::Random`]. Episode `i` draws only from ChaCha8 stream `i` of the
/// seed, so the episodes are the same whatever the thread count, and a meta-batch is
/// assembled in parallel with rayon.
#[derive(Debug)]
pub struct EpisodeSampler<D: ClassImages + ?Sized> {
    data: Arc<D>,
    pool: ClassPool,
    config: EpisodeConfig,
    seed: u64,
    position: u64,
    /// Episodes from the start of one meta-batch to the next: the meta-batch size, or the
    /// whole meta-batch's for a shard ([`EpisodeSampler::shard`]).
    stride: u64,
    /// A shard's first episode within each meta-batch.
    offset: u64,
    /// With `within_group`: the pool positions of each group that has at least N classes.
    groups: Vec<Vec<usize>>,
    transforms: Transforms,
}

impl<D: ClassImages + ?Sized> EpisodeSampler<D> {
    /// A sampler of `config` episodes from `pool` of `data`, deterministic from `seed`.
    ///
    /// Errors when the configuration is invalid, when the pool (or, within groups, every
    /// group) has fewer than N classes, when a class has fewer than K + Q images, when a
    /// pool entry is not a class of `data`, or when rotations are asked of non-square images.
    pub fn new(data: Arc<D>, pool: ClassPool, config: EpisodeConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let needed = config.shots + config.queries;
        let [_, h, w] = data.image_shape();
        for entry in pool.classes() {
            if entry.class >= data.num_classes() {
                return Err(DataError::invalid(
                    "pool.class",
                    entry.class,
                    format!(
                        "must be below the source's {} classes (pool {})",
                        data.num_classes(),
                        pool.name()
                    ),
                ));
            }
            let available = data.class_len(entry.class);
            if available < needed {
                return Err(DataError::NotEnoughExamples {
                    class: data.class_name(entry.class),
                    needed,
                    available,
                });
            }
            if entry.rotation != Rotation::Fixed(0) && h != w {
                return Err(DataError::invalid(
                    "pool.rotation",
                    format!("{:?}", entry.rotation),
                    format!("rotations need square images, not {h}×{w}"),
                ));
            }
            if let Rotation::Fixed(k) = entry.rotation {
                if k >= 4 {
                    return Err(DataError::invalid("pool.rotation", k, "quarter turns must be 0..4"));
                }
            }
        }
        let mut groups = Vec::new();
        if config.within_group {
            let mut by_group: Vec<Vec<usize>> = Vec::new();
            for (i, entry) in pool.classes().iter().enumerate() {
                let g = data.class_group(entry.class);
                if by_group.len() <= g {
                    by_group.resize(g + 1, Vec::new());
                }
                by_group[g].push(i);
            }
            let largest = by_group.iter().map(Vec::len).max().unwrap_or(0);
            groups = by_group.into_iter().filter(|g| g.len() >= config.ways).collect();
            if groups.is_empty() {
                return Err(DataError::NotEnoughClasses {
                    pool: format!("{} (within one group)", pool.name()),
                    ways: config.ways,
                    available: largest,
                });
            }
        } else if pool.len() < config.ways {
            return Err(DataError::NotEnoughClasses {
                pool: pool.name().to_owned(),
                ways: config.ways,
                available: pool.len(),
            });
        }
        let stride = config.meta_batch as u64;
        Ok(Self {
            data,
            pool,
            config,
            seed,
            position: 0,
            stride,
            offset: 0,
            groups,
            transforms: Transforms::default(),
        })
    }

    /// The same sampler applying `transforms` to its images: augmenting every support and
    /// query image, normalising the batches.
    pub fn with_transforms(mut self, transforms: Transforms) -> Self {
        self.transforms = transforms;
        self
    }

    /// Rank `rank`'s share of every meta-batch among `world` data-parallel ranks: episodes
    /// `k·B + rank·B/world ..` `k·B + (rank + 1)·B/world` of meta-batch `k` (B the configured
    /// meta-batch), so that the ranks together draw exactly the episodes one sampler would.
    /// [`EpisodeSampler::config`] then reports the share's size `B/world`. Call it on a new
    /// sampler, then [`EpisodeSampler::seek_batch`] to resume. Errors unless `world`
    /// divides B and `rank < world`.
    pub fn shard(mut self, rank: usize, world: usize) -> Result<Self> {
        let b = self.config.meta_batch;
        if world == 0 || rank >= world || b % world != 0 {
            return Err(DataError::invalid(
                "episodes.meta_batch",
                b,
                format!("must be a multiple of the number of data-parallel processes ({world})"),
            ));
        }
        let share = b / world;
        self.config.meta_batch = share;
        self.stride = b as u64;
        self.offset = (rank * share) as u64;
        self.position = self.offset;
        Ok(self)
    }

    /// Continues from meta-batch `index` (of this sampler's meta-batches, or of the whole
    /// meta-batches for a shard).
    pub fn seek_batch(&mut self, index: u64) {
        self.position = index * self.stride + self.offset;
    }

    /// The episode configuration.
    pub fn config(&self) -> &EpisodeConfig {
        &self.config
    }

    /// The class pool.
    pub fn pool(&self) -> &ClassPool {
        &self.pool
    }

    /// The image source.
    pub fn data(&self) -> &Arc<D> {
        &self.data
    }

    /// The number of episodes drawn so far (the index of the next one).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Continues from episode `position` (e.g. to resume training, or to replay the same
    /// evaluation episodes).
    pub fn seek(&mut self, position: u64) {
        self.position = position;
    }

    /// Episode number `index` of this seed (a pure function of seed and index).
    pub fn episode(&self, index: u64) -> Episode {
        let mut rng = substream(self.seed, index);
        let c = &self.config;
        let candidates: Option<&[usize]> =
            (!self.groups.is_empty()).then(|| self.groups[rng.gen_range(0..self.groups.len())].as_slice());
        let available = candidates.map_or(self.pool.len(), <[usize]>::len);
        let picks = sample_distinct(&mut rng, available, c.ways);
        let mut episode = Episode {
            classes: Vec::with_capacity(c.ways),
            support: Vec::with_capacity(c.support_size()),
            query: Vec::with_capacity(c.query_size()),
        };
        for pick in picks {
            let entry = self.pool.classes()[candidates.map_or(pick, |g| g[pick])];
            let rotation = match entry.rotation {
                Rotation::Fixed(k) => k,
                Rotation::Random => rng.gen_range(0..4),
            };
            episode.classes.push(EpisodeClass { class: entry.class, rotation });
            let examples = sample_distinct(&mut rng, self.data.class_len(entry.class), c.shots + c.queries);
            episode.support.extend_from_slice(&examples[..c.shots]);
            episode.query.extend_from_slice(&examples[c.shots..]);
        }
        episode
    }

    /// The next `B` episodes in host memory (gathered in parallel).
    pub fn sample_buffers(&mut self) -> EpisodeBuffers {
        let c = self.config;
        let start = self.position;
        self.position += self.stride;
        let episodes: Vec<Episode> =
            (start..start + c.meta_batch as u64).into_par_iter().map(|i| self.episode(i)).collect();
        let shape = self.data.image_shape();
        let image_len = shape.iter().product::<usize>();
        let mut support_x = vec![0u8; c.meta_batch * c.support_size() * image_len];
        let mut query_x = vec![0u8; c.meta_batch * c.query_size() * image_len];
        support_x
            .par_chunks_mut(c.support_size() * image_len)
            .zip(query_x.par_chunks_mut(c.query_size() * image_len))
            .zip(&episodes)
            .enumerate()
            .for_each(|(i, ((sx, qx), episode))| {
                self.gather(episode, &episode.support, c.shots, sx);
                self.gather(episode, &episode.query, c.queries, qx);
                if self.transforms.augments() {
                    let mut rng = augmentation_stream(self.seed, start + i as u64);
                    self.transforms.augment(sx, shape, &mut rng);
                    self.transforms.augment(qx, shape, &mut rng);
                }
            });
        let labels = |per_class: usize| -> Vec<i64> {
            (0..c.meta_batch)
                .flat_map(|_| (0..c.ways as i64).flat_map(move |l| std::iter::repeat_n(l, per_class)))
                .collect()
        };
        EpisodeBuffers {
            support_y: labels(c.shots),
            query_y: labels(c.queries),
            episodes,
            support_x,
            query_x,
            shape,
            config: c,
            transforms: self.transforms,
        }
    }

    /// Copies (and rotates) the images of one episode's support or query rows into `out`.
    fn gather(&self, episode: &Episode, rows: &[usize], per_class: usize, out: &mut [u8]) {
        let [channels, side, _] = self.data.image_shape();
        let image_len = out.len() / rows.len().max(1);
        for (r, (&index, dst)) in rows.iter().zip(out.chunks_exact_mut(image_len)).enumerate() {
            let class = episode.classes[r / per_class];
            let src = self.data.image(class.class, index);
            if class.rotation == 0 {
                dst.copy_from_slice(src);
            } else {
                rotate_square(src, channels, side, class.rotation, dst);
            }
        }
    }

    /// The next meta-batch of `B` episodes as a [`TaskBatch`] on `device`.
    pub fn sample_batch(&mut self, device: Device) -> Result<TaskBatch> {
        self.sample_buffers().to_batch(device)
    }

    /// Like [`EpisodeSampler::sample_batch`], also returning the episodes drawn.
    pub fn sample_batch_with_episodes(&mut self, device: Device) -> Result<(TaskBatch, Vec<Episode>)> {
        let buffers = self.sample_buffers();
        Ok((buffers.to_batch(device)?, buffers.episodes))
    }

    /// Moves the sampler to a background thread that keeps up to `depth` meta-batches
    /// ready; iterate the returned [`Prefetcher`] for [`TaskBatch`]es on `device`. The
    /// batches are exactly those [`EpisodeSampler::sample_batch`] would have given.
    pub fn prefetch(self, depth: usize, device: Device) -> Prefetcher
    where
        D: Send + Sync + 'static,
    {
        Prefetcher::spawn(self, depth, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{ImageStore, StoredClass};

    fn sampler(meta_batch: usize) -> EpisodeSampler<ImageStore> {
        let classes =
            (0..10).map(|c| StoredClass { name: format!("c{c}"), group: 0, first: 6 * c, len: 6 }).collect();
        let pixels: Vec<u8> = (0..60 * 16).map(|i| (i % 251) as u8).collect();
        let store = ImageStore::new([1, 4, 4], pixels, classes, vec!["all".into()]).unwrap();
        let config = EpisodeConfig { ways: 3, shots: 1, queries: 1, meta_batch, within_group: false };
        EpisodeSampler::new(Arc::new(store), ClassPool::unrotated("all", 0..10), config, 5).unwrap()
    }

    #[test]
    fn shards_draw_together_exactly_the_whole_meta_batches() {
        let mut whole = sampler(6);
        let mut shards: Vec<_> = (0..3).map(|r| sampler(6).shard(r, 3).unwrap()).collect();
        assert_eq!(shards[0].config().meta_batch, 2);
        for batch in 0..3 {
            let expected = whole.sample_batch(Device::Cpu).unwrap();
            let parts: Vec<_> = shards.iter_mut().map(|s| s.sample_batch(Device::Cpu).unwrap()).collect();
            let joined = Tensor::cat(&parts.iter().map(|p| &p.support_x).collect::<Vec<_>>(), 0);
            assert!(joined.equal(&expected.support_x), "meta-batch {batch}");
        }
        // Resuming a shard at meta-batch 2 gives its share of meta-batch 2 again.
        let mut again = sampler(6).shard(1, 3).unwrap();
        again.seek_batch(2);
        let mut reference = sampler(6);
        reference.seek_batch(2);
        let full = reference.sample_batch(Device::Cpu).unwrap();
        assert!(again.sample_batch(Device::Cpu).unwrap().support_x.equal(&full.support_x.narrow(0, 2, 2)));
        let err = sampler(6).shard(0, 4).unwrap_err().to_string();
        assert!(err.contains("multiple of the number of data-parallel processes (4)"), "{err}");
    }
}
