//! Loading all of Omniglot (32,460 PNGs, 105×105 → 28×28 Lanczos): cold from the official
//! zips (decode + resize on all cores, no cache) and warm from the on-disk cache.
//! Targets on two cores: cold < 10 s, warm < 1 s.
//!
//! Needs Omniglot in `$METL_OMNIGLOT_DIR` or the workspace's `data/omniglot`; registers no
//! benchmark (and says so) without it.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use metl_data::{omniglot::omniglot_dir, Omniglot, OmniglotConfig};
use std::time::Duration;

fn load(c: &mut Criterion) {
    let root = omniglot_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/omniglot"));
    if !root.exists() {
        return eprintln!("data_omniglot: no Omniglot at {}; set METL_OMNIGLOT_DIR", root.display());
    }
    let mut group = c.benchmark_group("data_omniglot_load");
    group.sample_size(10).measurement_time(Duration::from_secs(30));
    group.bench_function("cold_from_zip", |b| {
        b.iter(|| Omniglot::load(OmniglotConfig { cache: false, ..OmniglotConfig::new(&root) }).unwrap())
    });
    let cache_dir = std::env::temp_dir().join(format!("metl-bench-cache-{}", std::process::id()));
    let warm = OmniglotConfig { cache_dir: Some(cache_dir.clone()), ..OmniglotConfig::new(&root) };
    Omniglot::load(warm.clone()).unwrap();
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("warm_from_cache", |b| {
        b.iter(|| {
            let o = Omniglot::load(warm.clone()).unwrap();
            assert!(o.load_report().from_cache);
            o
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(cache_dir);
}

criterion_group!(benches, load);
criterion_main!(benches);
