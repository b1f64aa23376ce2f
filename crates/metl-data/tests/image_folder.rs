//! [`ImageFolder`] on small hand-made folders: PNG and JPEG, channels, sizes, skipped
//! files, errors, and episodes drawn from it.

mod common;

use common::{gray_png, temp_dir};
use metl_data::{
    image_folder::{ImageFolder, ImageFolderConfig},
    ClassImages, ClassPool, DataError, EpisodeConfig, EpisodeSampler,
};
use std::{fs, path::Path, sync::Arc};
use tch::Device;

const RED_JPEG: &[u8] = include_bytes!("data/red_8x6.jpg");

/// `cats/` with 3 PNGs and a JPEG, `dogs/` with 4 PNGs, plus files that must be skipped.
fn make_folder(root: &Path) {
    for (class, n) in [("cats", 3), ("dogs", 4)] {
        fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..n {
            fs::write(root.join(class).join(format!("{i}.png")), gray_png(12, 6, 50 + i as u8)).unwrap();
        }
    }
    fs::write(root.join("cats/z.JPG"), RED_JPEG).unwrap();
    fs::write(root.join("cats/notes.txt"), "not an image").unwrap();
    fs::write(root.join("cats/.hidden.png"), "not an image").unwrap();
    fs::write(root.join("README.md"), "a file beside the classes").unwrap();
    fs::create_dir_all(root.join(".git")).unwrap();
}

#[test]
fn classes_images_channels_and_sizes() {
    let root = temp_dir("folder-ok");
    make_folder(&root);
    let rgb =
        ImageFolder::load(ImageFolderConfig { image_size: [3, 4], ..ImageFolderConfig::new(&root) }).unwrap();
    assert_eq!(rgb.num_classes(), 2);
    assert_eq!((rgb.class_name(0), rgb.class_len(0), rgb.class_len(1)), ("cats".to_owned(), 4, 4));
    assert_eq!(rgb.image_shape(), [3, 3, 4]);
    // A gray PNG becomes three equal planes; a constant image stays constant when resized.
    assert!(rgb.image(1, 2).iter().all(|&v| v == 52));
    // The JPEG (200, 30, 60), planar: the red plane first. Decoders may differ by a unit.
    let jpeg = rgb.image(0, 3);
    let near = |plane: &[u8], want: i32| plane.iter().all(|&v| (v as i32 - want).abs() <= 2);
    assert!(near(&jpeg[..12], 200) && near(&jpeg[12..24], 30) && near(&jpeg[24..], 60), "{jpeg:?}");

    let gray = ImageFolder::load(ImageFolderConfig {
        image_size: [2, 2],
        channels: 1,
        invert: true,
        ..ImageFolderConfig::new(&root)
    })
    .unwrap();
    assert_eq!(gray.image_shape(), [1, 2, 2]);
    assert!(gray.image(1, 0).iter().all(|&v| v == 255 - 50));
    // Pillow: Image.new("RGB", (1, 1), (200, 30, 59)).convert("L") is 84; inverted 171.
    assert!(gray.image(0, 3).iter().all(|&v| (v as i32 - 171).abs() <= 2), "{:?}", gray.image(0, 3));
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn episodes_from_a_folder() {
    let root = temp_dir("folder-episodes");
    make_folder(&root);
    let folder = Arc::new(
        ImageFolder::load(ImageFolderConfig { image_size: [8, 8], ..ImageFolderConfig::new(&root) }).unwrap(),
    );
    let config = EpisodeConfig { ways: 2, shots: 2, queries: 2, meta_batch: 3, within_group: false };
    let mut sampler =
        EpisodeSampler::new(folder.clone(), ClassPool::unrotated("folder", 0..2), config, 0).unwrap();
    let batch = sampler.sample_batch(Device::Cpu).unwrap();
    assert_eq!(batch.support_x.size(), [3, 4, 3, 8, 8]);
    let err = EpisodeSampler::new(
        folder.clone(),
        ClassPool::unrotated("folder", 0..2),
        EpisodeConfig::new(2, 3, 2),
        0,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "class cats: needs 5 examples (shots + queries) but has 4");
    // Rotations need square images.
    let wide = Arc::new(
        ImageFolder::load(ImageFolderConfig { image_size: [8, 6], ..ImageFolderConfig::new(&root) }).unwrap(),
    );
    let err =
        EpisodeSampler::new(wide, ClassPool::randomly_rotated("wide", 0..2), EpisodeConfig::new(2, 1, 1), 0)
            .unwrap_err();
    assert!(err.to_string().contains("rotations need square images"), "{err}");
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn bad_folders_are_typed_errors() {
    let err = ImageFolder::load(ImageFolderConfig::new("/nonexistent/metl/folder")).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err}");
    assert!(err.to_string().starts_with("/nonexistent/metl/folder: not found"), "{err}");

    let flat = temp_dir("folder-flat");
    fs::write(flat.join("a.png"), gray_png(2, 2, 0)).unwrap();
    let err = ImageFolder::load(ImageFolderConfig::new(&flat)).unwrap_err();
    assert!(matches!(err, DataError::Layout { .. }), "{err}");

    let empty = temp_dir("folder-empty");
    make_folder(&empty);
    fs::create_dir_all(empty.join("fish")).unwrap();
    fs::write(empty.join("fish/readme.txt"), "no images here").unwrap();
    let err = ImageFolder::load(ImageFolderConfig::new(&empty)).unwrap_err();
    assert!(matches!(err, DataError::EmptyClass { .. }), "{err}");
    assert!(err.to_string().contains("fish: empty class"), "{err}");

    let corrupt = temp_dir("folder-corrupt");
    make_folder(&corrupt);
    fs::write(corrupt.join("dogs/2.png"), &gray_png(12, 6, 0)[..40]).unwrap();
    let err = ImageFolder::load(ImageFolderConfig::new(&corrupt)).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{}: cannot decode image", corrupt.join("dogs/2.png").display())),
        "{err}"
    );
    let err =
        ImageFolder::load(ImageFolderConfig { channels: 2, ..ImageFolderConfig::new(&corrupt) }).unwrap_err();
    assert_eq!(err.to_string(), "image_folder.channels = 2: must be 1 or 3");
    for dir in [flat, empty, corrupt] {
        fs::remove_dir_all(dir).unwrap();
    }
}
