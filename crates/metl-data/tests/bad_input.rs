//! The Omniglot loader on small hand-made datasets: good layouts from zips and folders,
//! the cache, and every kind of bad input as a typed error naming the path.

mod common;

use common::{gray_png, temp_dir};
use metl_data::{ClassImages, DataError, Omniglot, OmniglotConfig};
use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

/// `(entry name, bytes)`: a tiny Omniglot set of 2 alphabets × 2 characters × 3 drawings.
fn tiny_set(set: &str) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for alphabet in ["Alpha", "Beta"] {
        for character in ["character01", "character02"] {
            for drawer in 1..=3 {
                let name = format!("{set}/{alphabet}/{character}/0001_{drawer:02}.png");
                files.push((name, gray_png(10, 10, 40 * drawer as u8)));
            }
        }
    }
    files
}

fn write_zip(path: &Path, files: &[(String, Vec<u8>)], dirs: &[&str]) {
    let mut zip = zip::ZipWriter::new(fs::File::create(path).unwrap());
    for dir in dirs {
        zip.add_directory(*dir, Default::default()).unwrap();
    }
    for (name, bytes) in files {
        zip.start_file(name.as_str(), Default::default()).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

fn write_folder(root: &Path, files: &[(String, Vec<u8>)]) {
    for (name, bytes) in files {
        let path = root.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }
}

fn config(root: &Path) -> OmniglotConfig {
    OmniglotConfig { image_size: 5, cache: false, ..OmniglotConfig::new(root) }
}

fn zips(name: &str) -> PathBuf {
    let root = temp_dir(name);
    write_zip(&root.join("images_background.zip"), &tiny_set("images_background"), &[]);
    write_zip(&root.join("images_evaluation.zip"), &tiny_set("images_evaluation"), &[]);
    root
}

#[test]
fn tiny_zips_and_folders_load_alike() {
    let root = zips("tiny-zip");
    let from_zip = Omniglot::load(config(&root)).unwrap();
    assert_eq!(from_zip.num_classes(), 8);
    assert_eq!(from_zip.alphabets(), ["Alpha", "Beta", "Alpha", "Beta"]);
    assert_eq!(from_zip.image_shape(), [1, 5, 5]);
    // White 40·k on a gray scale, inverted: 255 − 40k everywhere.
    assert!(from_zip.image(3, 1).iter().all(|&v| v == 255 - 80));
    let folders = temp_dir("tiny-folder");
    write_folder(&folders, &tiny_set("images_background"));
    write_folder(&folders, &tiny_set("images_evaluation"));
    let from_folder = Omniglot::load(config(&folders)).unwrap();
    assert_eq!(from_folder.store(), from_zip.store());
    fs::remove_dir_all(root).unwrap();
    fs::remove_dir_all(folders).unwrap();
}

#[test]
fn the_cache_is_used_and_invalidated() {
    let root = zips("cache");
    let cache_dir = root.join("cache");
    let cached = OmniglotConfig { cache: true, cache_dir: Some(cache_dir.clone()), ..config(&root) };
    let first = Omniglot::load(cached.clone()).unwrap();
    assert!(!first.load_report().from_cache && first.load_report().cache_error.is_none());
    let second = Omniglot::load(cached.clone()).unwrap();
    assert!(second.load_report().from_cache);
    assert_eq!(second.store(), first.store());
    // Another size is another cache entry.
    let other = Omniglot::load(OmniglotConfig { image_size: 4, ..cached.clone() }).unwrap();
    assert!(!other.load_report().from_cache);
    // A changed zip (other size) misses the cache.
    let mut files = tiny_set("images_evaluation");
    files[0].1 = gray_png(10, 10, 7);
    write_zip(&root.join("images_evaluation.zip"), &files[..], &["images_evaluation/"]);
    let third = Omniglot::load(cached.clone()).unwrap();
    assert!(!third.load_report().from_cache);
    assert_ne!(third.store(), first.store());
    // A corrupt cache file is ignored and rewritten.
    let file = third.load_report().cache_file.clone().unwrap();
    fs::write(&file, b"garbage").unwrap();
    let fourth = Omniglot::load(cached).unwrap();
    assert!(!fourth.load_report().from_cache);
    assert_eq!(fourth.store(), third.store());
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_missing_folder_or_zip_is_not_found() {
    let root = temp_dir("missing").join("nowhere");
    let err = Omniglot::load(config(&root)).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("nowhere"), "{err}");
    let empty = temp_dir("no-zips");
    let err = Omniglot::load(config(&empty)).unwrap_err();
    assert!(err.to_string().contains("images_background.zip: not found"), "{err}");
}

#[test]
fn a_corrupt_png_is_named() {
    let root = zips("corrupt");
    let mut files = tiny_set("images_background");
    let png = files[4].1.clone();
    files[4].1 = png[..png.len() - 15].to_vec(); // truncated
    write_zip(&root.join("images_background.zip"), &files, &[]);
    let err = Omniglot::load(config(&root)).unwrap_err();
    assert!(matches!(err, DataError::Image { .. }), "{err}");
    let want = root.join("images_background.zip").join(&files[4].0);
    assert!(err.to_string().starts_with(&format!("{}: cannot decode image", want.display())), "{err}");

    let folders = temp_dir("corrupt-folder");
    let mut files = tiny_set("images_background");
    files[2].1 = b"\x89PNG\r\n\x1a\nnot really".to_vec();
    write_folder(&folders, &files);
    write_folder(&folders, &tiny_set("images_evaluation"));
    let err = Omniglot::load(config(&folders)).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!("{}: cannot decode", folders.join(&files[2].0).display())),
        "{err}"
    );
}

#[test]
fn a_zip_entry_outside_the_layout_is_refused() {
    for (bad, why) in [
        ("images_background/readme.txt", "a file beside the alphabets"),
        ("images_background/Alpha/character01/deeper/0001_01.png", "too deep"),
        ("elsewhere/Alpha/character01/0001_01.png", "another top folder"),
        ("images_background/../escape/x/0001_01.png", "a parent component"),
        ("images_background/Alpha/character01/0001_01.txt", "not a PNG"),
    ] {
        let root = zips("outside");
        let mut files = tiny_set("images_background");
        files.push((bad.to_owned(), gray_png(2, 2, 0)));
        write_zip(&root.join("images_background.zip"), &files, &[]);
        let Err(err) = Omniglot::load(config(&root)) else { panic!("{why} accepted") };
        assert!(matches!(err, DataError::Layout { .. }), "{why}: {err}");
        assert!(err.to_string().contains(bad), "{why}: {err}");
    }
    // macOS metadata is skipped, not refused.
    let root = zips("macos");
    let mut files = tiny_set("images_background");
    files.push(("__MACOSX/images_background/._x.png".into(), vec![0; 4]));
    files.push(("images_background/Alpha/.DS_Store".into(), vec![0; 4]));
    write_zip(&root.join("images_background.zip"), &files, &[]);
    assert_eq!(Omniglot::load(config(&root)).unwrap().num_classes(), 8);
}

#[test]
fn empty_classes_are_errors() {
    let root = zips("empty-zip");
    let dirs = ["images_evaluation/", "images_evaluation/Beta/", "images_evaluation/Beta/character09/"];
    write_zip(&root.join("images_evaluation.zip"), &tiny_set("images_evaluation"), &dirs);
    let err = Omniglot::load(config(&root)).unwrap_err();
    assert!(matches!(err, DataError::EmptyClass { .. }), "{err}");
    assert!(err.to_string().contains("Beta/character09: empty class"), "{err}");

    let folders = temp_dir("empty-folder");
    write_folder(&folders, &tiny_set("images_background"));
    write_folder(&folders, &tiny_set("images_evaluation"));
    fs::create_dir_all(folders.join("images_background/Alpha/character07")).unwrap();
    let err = Omniglot::load(config(&folders)).unwrap_err();
    assert!(
        err.to_string().ends_with("images_background/Alpha/character07: empty class (no PNG or JPEG image)"),
        "{err}"
    );
}

#[test]
fn a_wrong_folder_layout_is_refused() {
    let folders = temp_dir("layout");
    write_folder(&folders, &tiny_set("images_background"));
    write_folder(&folders, &tiny_set("images_evaluation"));
    // A drawing directly in an alphabet folder.
    fs::write(folders.join("images_evaluation/Beta/0001_01.png"), gray_png(2, 2, 0)).unwrap();
    let err = Omniglot::load(config(&folders)).unwrap_err();
    assert!(matches!(err, DataError::Layout { .. }), "{err}");
    assert!(err.to_string().contains("images_evaluation/Beta/0001_01.png: unexpected layout"), "{err}");
    // A set folder without alphabets.
    let bare = temp_dir("bare");
    fs::create_dir_all(bare.join("images_background")).unwrap();
    fs::create_dir_all(bare.join("images_evaluation")).unwrap();
    let err = Omniglot::load(config(&bare)).unwrap_err();
    assert!(err.to_string().contains("no alphabet found"), "{err}");
    // Not a zip at all.
    let junk = temp_dir("junk");
    fs::write(junk.join("images_background.zip"), b"PK but not a zip").unwrap();
    fs::write(junk.join("images_evaluation.zip"), b"").unwrap();
    let err = Omniglot::load(config(&junk)).unwrap_err();
    assert!(matches!(err, DataError::Archive { .. }), "{err}");
    assert!(err.to_string().contains("images_background.zip: cannot read zip archive"), "{err}");
}

#[test]
fn a_bad_image_size_is_a_config_error() {
    let err = Omniglot::load(OmniglotConfig { image_size: 0, ..OmniglotConfig::new("x") }).unwrap_err();
    assert_eq!(err.to_string(), "omniglot.image_size = 0: must be in 1..=1024");
}
