//! Few-shot episode sampling on Omniglot (Vinyals train split, 4,112 classes), meta-batches
//! of 32 episodes on the CPU; throughput in episodes per second. `sample_batch` is the
//! whole path (sampling, gathering, tensors); `gather` and `to_tensors` are its two halves
//! (meta-batch assembly in host memory, and its conversion to `Float` tensors).
//! Target on two cores: at least 2,000 5-way 1-shot episodes per second.
//!
//! Needs Omniglot in `$METL_OMNIGLOT_DIR` or the workspace's `data/omniglot` (decoded once, then
//! read from the cache); registers no benchmark (and says so) without it.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use metl_data::{
    omniglot::omniglot_dir, EpisodeConfig, EpisodeSampler, Omniglot, OmniglotConfig, OmniglotProtocol,
};
use std::sync::Arc;
use tch::Device;

fn episodes(c: &mut Criterion) {
    let root = omniglot_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/omniglot"));
    if !root.exists() {
        return eprintln!("data_episodes: no Omniglot at {}; set METL_OMNIGLOT_DIR", root.display());
    }
    // libtorch intra-op threads for the tensor conversion: the two cores by default;
    // METL_BENCH_TORCH_THREADS overrides (1 is faster on a machine shared with other jobs).
    let threads = std::env::var("METL_BENCH_TORCH_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2);
    tch::set_num_threads(threads);
    let omniglot = Arc::new(Omniglot::load(OmniglotConfig::new(root)).unwrap());
    let pool = omniglot.splits(OmniglotProtocol::Vinyals, 0).unwrap().train;
    let mut group = c.benchmark_group("data_episodes");
    for (name, ways, shots, queries) in [("5w1s15q", 5, 1, 15), ("5w1s1q", 5, 1, 1), ("20w1s15q", 20, 1, 15)]
    {
        let config = EpisodeConfig { ways, shots, queries, meta_batch: 32, within_group: false };
        let mut sampler = EpisodeSampler::new(omniglot.clone(), pool.clone(), config, 0).unwrap();
        group.throughput(Throughput::Elements(config.meta_batch as u64));
        group.bench_function(format!("{name}/sample_batch"), |b| {
            b.iter(|| sampler.sample_batch(Device::Cpu).unwrap())
        });
        group.bench_function(format!("{name}/gather"), |b| b.iter(|| sampler.sample_buffers()));
        let buffers = sampler.sample_buffers();
        group.bench_function(format!("{name}/to_tensors"), |b| {
            b.iter(|| buffers.to_batch(Device::Cpu).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, episodes);
criterion_main!(benches);
