//! CUB-200-2011 from its folder on a fixture in the real layout: Chen et al.'s split by
//! class index, every image in its class, and the error of a missing dataset.

mod common;

use metl_data::{
    few_shot::{fixtures, Cub, FewShotConfig},
    ClassImages, DataError,
};

#[test]
fn chen_et_al_split_of_the_fixture() {
    let dir = common::temp_dir("cub");
    fixtures::write_cub(&dir, 12, 3).unwrap();
    let cub = Cub::load(FewShotConfig::new(&dir, 84)).unwrap();
    let s = cub.splits();
    // Classes 0, 2, 4, ... train; 1, 5, 9 val; 3, 7, 11 test.
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (6, 3, 3));
    let names = |pool: &metl_data::ClassPool| -> Vec<String> {
        pool.classes().iter().map(|c| cub.class_name(c.class)).collect()
    };
    assert_eq!(names(&s.val), ["002.Bird_002", "006.Bird_006", "010.Bird_010"]);
    assert_eq!(names(&s.test)[0], "004.Bird_004");
    // The store holds the split classes train first; each image is its colour, resized.
    assert_eq!(cub.image_shape(), [3, 84, 84]);
    let class = s.test.classes()[1].class; // 008.Bird_008, class index 7
    for image in 0..3 {
        let color = fixtures::fixture_color(7, image);
        let got = cub.image(class, image);
        for (c, want) in color.iter().enumerate() {
            let v = got[c * 84 * 84 + 40 * 84 + 40];
            assert!(v.abs_diff(*want) <= 2, "image {image} channel {c}: {v} vs {want}");
        }
    }
    let err = Cub::load(FewShotConfig::new(dir.join("missing"), 84)).unwrap_err();
    assert!(matches!(err, DataError::MissingDataset { .. }));
    assert!(err.to_string().contains("CUB_200_2011.tgz"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
