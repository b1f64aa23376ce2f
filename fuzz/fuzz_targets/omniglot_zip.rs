//! Any bytes as `images_background.zip` (beside a valid `images_evaluation.zip`) through
//! `Omniglot::load`: listing, layout checks, inflating, decoding and resizing. Errors are
//! fine, panics, hangs and unbounded allocations are not.

#![no_main]

use libfuzzer_sys::fuzz_target;
use metl_data::{ClassImages, Omniglot, OmniglotConfig};
use std::{io::Write, path::PathBuf, sync::OnceLock};

/// A folder with a one-image `images_evaluation.zip`, made once per process.
fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("metl-fuzz-omniglot-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let mut png = Vec::new();
        let mut encoder = png::Encoder::new(&mut png, 4, 4);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.write_header().unwrap().write_image_data(&[200; 16]).unwrap();
        let mut zip = zip::ZipWriter::new(std::fs::File::create(root.join("images_evaluation.zip")).unwrap());
        zip.start_file("images_evaluation/A/character01/0001_01.png", Default::default()).unwrap();
        zip.write_all(&png).unwrap();
        zip.finish().unwrap();
        root
    })
}

fuzz_target!(|data: &[u8]| {
    let root = root();
    std::fs::write(root.join("images_background.zip"), data).unwrap();
    let config = OmniglotConfig { image_size: 6, cache: false, ..OmniglotConfig::new(root) };
    if let Ok(omniglot) = Omniglot::load(config) {
        assert!(omniglot.num_classes() >= 2);
        for class in 0..omniglot.num_classes() {
            assert!(omniglot.class_len(class) > 0);
            assert_eq!(omniglot.image(class, 0).len(), 36);
        }
    }
});
