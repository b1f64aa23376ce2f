//! Shared helpers of the integration tests: where Omniglot is, loaded once per binary.

#![allow(dead_code)]

use metl_data::{Omniglot, OmniglotConfig};
use std::{
    path::PathBuf,
    sync::{Arc, OnceLock},
};

/// `$METL_OMNIGLOT_DIR`, else the repository's `../shared/data/omniglot`, if it exists.
pub fn omniglot_dir() -> Option<PathBuf> {
    let dir = metl_data::omniglot::omniglot_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/omniglot"
    ));
    dir.exists().then_some(dir)
}

/// Omniglot at 28×28, decoded once per test binary (and cached on disk across runs);
/// `None`, with the reason printed, when the data is absent.
pub fn omniglot() -> Option<Arc<Omniglot>> {
    static LOADED: OnceLock<Option<Arc<Omniglot>>> = OnceLock::new();
    let loaded = LOADED.get_or_init(|| {
        let dir = omniglot_dir()?;
        Some(Arc::new(Omniglot::load(OmniglotConfig::new(dir)).expect("loading Omniglot")))
    });
    if loaded.is_none() {
        eprintln!(
            "SKIPPED: Omniglot not found (set METL_OMNIGLOT_DIR or provide ../shared/data/omniglot with \
             images_background.zip and images_evaluation.zip)"
        );
    }
    loaded.clone()
}

/// A fresh, empty temporary folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("metl-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `width × height` 8-bit gray PNG filled with `value`.
pub fn gray_png(width: u32, height: u32, value: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header().unwrap().write_image_data(&vec![value; (width * height) as usize]).unwrap();
    out
}
