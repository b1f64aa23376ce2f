//! Loads Omniglot (from the zips, or from the cache when it is valid) and samples
//! meta-batches of 5-way 1-shot 15-query episodes, printing the timings.
//!
//! `cargo run --release -p metl-data --example omniglot_load -- [/path/to/omniglot] [--no-cache]`
//!
//! The folder holds `images_background.zip` and `images_evaluation.zip`; without one on the
//! command line, `$METL_OMNIGLOT_DIR`, else `data/omniglot`.

use metl_data::{
    episode::{EpisodeConfig, EpisodeSampler},
    ClassImages, Omniglot, OmniglotConfig, OmniglotProtocol,
};
use std::{sync::Arc, time::Instant};
use tch::Device;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = match args.iter().find(|a| !a.starts_with("--")) {
        Some(dir) => dir.into(),
        None => metl_data::omniglot::omniglot_dir("data/omniglot"),
    };
    let config =
        OmniglotConfig { cache: !args.iter().any(|a| a == "--no-cache"), ..OmniglotConfig::new(root) };
    let omniglot = Arc::new(Omniglot::load(config)?);
    let report = omniglot.load_report();
    println!(
        "{} classes, {} images of {:?} in {:.3} s (from cache: {}; cache file: {:?}; cache error: {:?})",
        omniglot.num_classes(),
        omniglot.store().num_images(),
        omniglot.image_shape(),
        report.seconds,
        report.from_cache,
        report.cache_file,
        report.cache_error
    );
    let splits = omniglot.splits(OmniglotProtocol::Vinyals, 0)?;
    let config = EpisodeConfig { ways: 5, shots: 1, queries: 15, meta_batch: 32, within_group: false };
    let mut sampler = EpisodeSampler::new(omniglot, splits.train, config, 0)?;
    let batches = 100;
    let start = Instant::now();
    for _ in 0..batches {
        sampler.sample_batch(Device::Cpu)?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{:.0} episodes/s (5-way 1-shot 15-query, meta-batch 32)", (batches * 32) as f64 / secs);
    Ok(())
}
