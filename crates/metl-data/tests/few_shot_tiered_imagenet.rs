//! tieredImageNet from Ren et al.'s pickles, on a fixture in their layout (Python 2
//! pickles of PNG arrays and label dicts): classes per split, categories as groups, every
//! image in its class, and the error of a missing dataset.

mod common;

use metl_data::{
    few_shot::{fixtures, FewShotConfig, TieredImagenet},
    ClassImages, DataError,
};

#[test]
fn splits_categories_and_images_of_the_fixture() {
    let dir = common::temp_dir("tiered");
    fixtures::write_tiered_imagenet(&dir.join("tiered-imagenet"), 4, 3).unwrap();
    let tiered = TieredImagenet::load(FewShotConfig::new(&dir, 84)).unwrap();
    let s = tiered.splits();
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (4, 4, 4));
    assert_eq!(tiered.class_name(s.val.classes()[1].class), "class val 1");
    // Two categories per split, six in all; classes 0 and 2 of a split share one.
    assert_eq!(tiered.store().groups().len(), 6);
    assert_eq!(tiered.class_group(0), tiered.class_group(2));
    assert_ne!(tiered.class_group(0), tiered.class_group(1));
    for class in [0, 5, 11] {
        for image in 0..3 {
            let got = tiered.image(class, image);
            assert_eq!([got[0], got[84 * 84], got[2 * 84 * 84]], fixtures::fixture_color(class, image));
        }
    }
    let err = TieredImagenet::load(FewShotConfig::new(dir.join("none"), 84)).unwrap_err();
    assert!(matches!(err, DataError::MissingDataset { .. }));
    assert!(err.to_string().contains("METL_TIERED_IMAGENET_DIR"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
