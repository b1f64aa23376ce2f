//! miniImageNet from the pickles and from class folders, on fixtures in the real layouts:
//! Ravi & Larochelle's split, every image in its class, resizing, normalisation and
//! augmentation through the episode sampler, and the errors of missing or mixed-up data.

mod common;

use metl_data::{
    episode::Transforms,
    few_shot::{fixtures, FewShotConfig, MiniImagenet},
    image::Augmentation,
    ClassImages, DataError, EpisodeConfig, EpisodeSampler,
};
use std::sync::Arc;
use tch::Device;

#[test]
fn pickles_and_folders_load_the_same_classes() {
    let dir = common::temp_dir("mini-imagenet");
    fixtures::write_mini_imagenet_pickles(&dir.join("pickles"), 5, 6).unwrap();
    fixtures::write_mini_imagenet_folders(&dir.join("folders"), 5, 6).unwrap();
    let pickles = MiniImagenet::load(FewShotConfig::new(dir.join("pickles"), 84)).unwrap();
    let folders = MiniImagenet::load(FewShotConfig::new(dir.join("folders"), 84)).unwrap();
    for mini in [&pickles, &folders] {
        assert_eq!((mini.num_classes(), mini.image_shape()), (15, [3, 84, 84]));
        let s = mini.splits();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (5, 5, 5));
        // Ravi & Larochelle's first training and test classes.
        assert_eq!(mini.class_name(s.train.classes()[0].class), "n01532829");
        assert_eq!(mini.class_name(s.test.classes()[0].class), "n01930112");
    }
    for class in [0, 7, 14] {
        for image in [0, 5] {
            let color = fixtures::fixture_color(class, image);
            let exact = pickles.image(class, image);
            assert_eq!([exact[0], exact[84 * 84], exact[2 * 84 * 84]], color);
            // The JPEGs, resized from 96×80, are within two levels.
            let jpeg = folders.image(class, image);
            for (c, want) in color.iter().enumerate() {
                let got = jpeg[c * 84 * 84 + 42 * 84 + 42];
                assert!(got.abs_diff(*want) <= 2, "class {class} image {image} channel {c}: {got} vs {want}");
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn episodes_are_normalised_and_augmented_reproducibly() {
    let dir = common::temp_dir("mini-imagenet-episodes");
    fixtures::write_mini_imagenet_pickles(&dir, 5, 4).unwrap();
    let mini = Arc::new(MiniImagenet::load(FewShotConfig::new(&dir, 32)).unwrap());
    let config = EpisodeConfig { ways: 5, shots: 1, queries: 3, meta_batch: 2, within_group: false };
    let pool = mini.splits().train.clone();
    let plain = EpisodeSampler::new(Arc::clone(&mini), pool.clone(), config, 7).unwrap();
    let normalised = EpisodeSampler::new(Arc::clone(&mini), pool.clone(), config, 7)
        .unwrap()
        .with_transforms(Transforms::default().normalizing(MiniImagenet::normalization()).unwrap());
    let augmented = |seed| {
        EpisodeSampler::new(Arc::clone(&mini), pool.clone(), config, seed)
            .unwrap()
            .with_transforms(Transforms::default().augmenting(Augmentation::standard(32)).unwrap())
    };
    let (mut plain, mut normalised, mut a, mut b) = (plain, normalised, augmented(7), augmented(7));
    let x = plain.sample_batch(Device::Cpu).unwrap();
    let n = normalised.sample_batch(Device::Cpu).unwrap();
    let mean = MiniImagenet::normalization().mean[1] as f32;
    let std = MiniImagenet::normalization().std[1] as f32;
    let green = |t: &tch::Tensor| t.select(2, 1).double_value(&[0, 0, 5, 5]) as f32;
    assert!((green(&n.support_x) - (green(&x.support_x) - mean) / std).abs() < 1e-5);
    // Same seed, same augmented batch; the labels and classes are those of the plain sampler.
    let (ba, bb) = (a.sample_batch(Device::Cpu).unwrap(), b.sample_batch(Device::Cpu).unwrap());
    assert!(ba.support_x.equal(&bb.support_x));
    assert!(ba.query_y.equal(&x.query_y));
    assert!(!ba.query_x.equal(&x.query_x), "augmentation changed nothing");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_and_mixed_up_data_are_explained() {
    let dir = common::temp_dir("mini-imagenet-errors");
    let err = MiniImagenet::load(FewShotConfig::new(&dir, 84)).unwrap_err();
    assert!(matches!(err, DataError::MissingDataset { .. }), "{err}");
    let message = err.to_string();
    for needle in
        ["miniImageNet", "mini-imagenet-cache-train.pkl", "METL_MINI_IMAGENET_DIR", "meta-learning-lstm"]
    {
        assert!(message.contains(needle), "{needle} not in: {message}");
    }
    // A test class among the training folders.
    fixtures::write_mini_imagenet_folders(&dir, 1, 1).unwrap();
    std::fs::rename(dir.join("test/n01930112"), dir.join("train/n01930112")).unwrap();
    let message = MiniImagenet::load(FewShotConfig::new(&dir, 84)).unwrap_err().to_string();
    assert!(message.contains("class n01930112 is a test class"), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}
