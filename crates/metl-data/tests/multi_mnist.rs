//! MultiMNIST and its Fashion variants from idx files written by the fixtures (plain and
//! gzipped): Sener & Koltun's geometry and contrast stretch, labels of both items, seeded
//! partners, the validation split, and the errors for missing or malformed files.

mod common;

use common::temp_dir;
use metl_data::{
    multitask::{compose_multi_mnist, fixtures, idx, DigitSource, MultiMnist, MultiMnistConfig},
    MultiTaskDataset, Split,
};
use std::fs;
use tch::Device;

#[test]
fn the_canvas_follows_sener_and_koltun() {
    // Left: one pixel of 100 at (0, 0) and one at (27, 27); right: 50 at (0, 0) and 80 at (21, 21).
    let mut left = vec![0u8; 28 * 28];
    left[0] = 100;
    left[27 * 28 + 27] = 100;
    let mut right = vec![0u8; 28 * 28];
    right[0] = 50;
    right[21 * 28 + 21] = 80;
    let canvas = compose_multi_mnist(&left, &right, None);
    assert_eq!(canvas.len(), 36 * 36);
    // Stretched by 255 / 100 (the canvas maximum) and rounded as scipy's bytescale does,
    // `floor(v · (255 / 100) + 0.5)` in float64: 100 → 255, 80 → 204, and 50 → 127
    // (50 · 2.55 is 127.49999999999999 in float64).
    let at = |y: usize, x: usize| canvas[y * 36 + x];
    assert_eq!(at(0, 0), 255);
    // The right image starts at (6, 6); its (21, 21) lands on the left image's (27, 27):
    // the overlap keeps the larger value.
    assert_eq!(at(6, 6), 127);
    assert_eq!(at(27, 27), 255);
    assert_eq!(canvas.iter().filter(|&&v| v > 0).count(), 3);
    // An image whose maximum is already 255 is not stretched.
    left[5] = 255;
    assert_eq!(compose_multi_mnist(&left, &right, None)[6 * 36 + 6], 50);
}

#[test]
fn pairs_labels_and_splits_from_idx_files() {
    let dir = temp_dir("multi-mnist");
    fixtures::write_mnist(&dir.join("mnist"), 30, 10, true, 0).unwrap();
    fixtures::write_mnist(&dir.join("fashion"), 20, 10, false, 1).unwrap();
    let config = MultiMnistConfig {
        mnist_dir: dir.join("mnist"),
        fashion_dir: dir.join("fashion"),
        ..MultiMnistConfig::default()
    };
    let data = MultiMnist::load(config.clone()).unwrap();
    assert_eq!(data.input_shape(), [1, 28, 28]);
    assert_eq!((data.len(Split::Train), data.len(Split::Val), data.len(Split::Test)), (30, 10, 10));
    let batch = data.batch(Split::Train, &[0, 13, 29], Device::Cpu).unwrap();
    assert_eq!(batch.inputs.size(), [3, 1, 28, 28]);
    // The fixture's image i has label i % 10: the left labels follow the image order.
    assert_eq!(Vec::<i64>::try_from(&batch.targets[0]).unwrap(), [0, 3, 9]);
    // Every sample is the composition of its left image and some right image of its labels.
    let train = idx::read_split(&dir.join("mnist"), true, "MNIST").unwrap();
    let resizer = metl_data::image::Resizer::new(36, 36, 28, 28, metl_data::image::ResizeFilter::Nearest);
    for i in 0..30 {
        let (image, left, right) = data.sample(Split::Train, i);
        assert_eq!(left, i as i64 % 10);
        let matches = (0..30).filter(|&j| train.labels[j] as i64 == right).any(|j| {
            compose_multi_mnist(train.images.image(i), train.images.image(j), Some(&resizer)) == image
        });
        assert!(matches, "sample {i}");
    }
    // The validation split is the test split by default; a fraction holds out training pairs.
    assert_eq!(data.sample(Split::Val, 4), data.sample(Split::Test, 4));
    let held = MultiMnist::load(MultiMnistConfig { val_fraction: 0.2, ..config.clone() }).unwrap();
    assert_eq!((held.len(Split::Train), held.len(Split::Val)), (24, 6));
    // The seed decides the partners.
    let same = MultiMnist::load(config.clone()).unwrap();
    let other = MultiMnist::load(MultiMnistConfig { seed: 3, ..config.clone() }).unwrap();
    let rights = |d: &MultiMnist| (0..30).map(|i| d.sample(Split::Train, i).2).collect::<Vec<_>>();
    assert_eq!(rights(&data), rights(&same));
    assert_ne!(rights(&data), rights(&other));
    // Multi-Fashion+MNIST at 36×36, two partners per image.
    let mixed = MultiMnist::load(MultiMnistConfig {
        right: DigitSource::Fashion,
        image_size: 36,
        pairs_per_image: 2,
        ..config
    })
    .unwrap();
    assert_eq!(mixed.input_shape(), [1, 36, 36]);
    assert_eq!((mixed.len(Split::Train), mixed.len(Split::Test)), (60, 20));
    assert_eq!(mixed.sample(Split::Train, 3).1, 1, "pairs of left image 1");
}

#[test]
fn missing_and_malformed_files_are_named() {
    let dir = temp_dir("multi-mnist-bad");
    let config = MultiMnistConfig { mnist_dir: dir.join("mnist"), ..MultiMnistConfig::default() };
    let err = MultiMnist::load(config.clone()).unwrap_err().to_string();
    assert!(
        err.contains("mnist/train-images-idx3-ubyte: not found")
            && err.contains("train-images-idx3-ubyte.gz")
            && err.contains("yann.lecun.com/exdb/mnist"),
        "{err}"
    );
    fixtures::write_mnist(&dir.join("mnist"), 5, 5, false, 0).unwrap();
    fs::write(dir.join("mnist/t10k-labels-idx1-ubyte"), idx::encode(&[4], &[1, 2, 3, 4])).unwrap();
    let err = MultiMnist::load(config.clone()).unwrap_err().to_string();
    assert!(err.contains("t10k-labels-idx1-ubyte") && err.contains("4 labels for 5 images"), "{err}");
    fs::write(dir.join("mnist/t10k-labels-idx1-ubyte.gz"), b"\x1f\x8bnot gzip").unwrap();
    fs::remove_file(dir.join("mnist/t10k-labels-idx1-ubyte")).unwrap();
    assert!(MultiMnist::load(config.clone()).unwrap_err().to_string().contains("cannot inflate gzip"));
    let fashion = MultiMnistConfig { right: DigitSource::Fashion, fashion_dir: dir.join("none"), ..config };
    let err = MultiMnist::load(fashion).unwrap_err().to_string();
    assert!(err.contains("zalandoresearch/fashion-mnist"), "{err}");
    let bad = MultiMnistConfig { val_fraction: 1.0, ..MultiMnistConfig::default() };
    assert!(MultiMnist::load(bad).unwrap_err().to_string().starts_with("multi_mnist.val_fraction = 1"));
}
