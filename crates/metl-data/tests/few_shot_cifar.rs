//! CIFAR-FS and FC100 from CIFAR-100's python pickles, on a fixture written in the real
//! layout: class order and superclasses, the splits' class counts, every image in its class,
//! resizing, and the errors of a missing or wrong dataset.

mod common;

use metl_data::{
    few_shot::{fixtures, Cifar100, Cifar100Protocol, FewShotConfig},
    ClassImages, DataError, Split,
};

#[test]
fn cifar_fs_and_fc100_splits_of_the_fixture() {
    let dir = common::temp_dir("cifar100");
    fixtures::write_cifar100(&dir, 3, 2).unwrap();
    let cifar = Cifar100::load(FewShotConfig::new(&dir, 32)).unwrap();
    assert_eq!((cifar.num_classes(), cifar.image_shape()), (100, [3, 32, 32]));
    assert_eq!((cifar.class_name(0), cifar.class_name(99)), ("apple".into(), "worm".into()));
    assert_eq!(cifar.store().groups().len(), 20);
    assert_eq!(cifar.store().groups()[cifar.class_group(0)], "fruit_and_vegetables");
    // Five images per class (three of `train`, then two of `test`), each its colour.
    for class in [0, 41, 99] {
        assert_eq!(cifar.class_len(class), 5);
        for image in 0..5 {
            let pixels = cifar.image(class, image);
            let color = fixtures::fixture_color(class, image);
            assert_eq!([pixels[0], pixels[1024], pixels[2048 + 1023]], color, "class {class} image {image}");
        }
    }
    let fs = cifar.splits(Cifar100Protocol::CifarFs).unwrap();
    assert_eq!((fs.train.len(), fs.val.len(), fs.test.len()), (64, 16, 20));
    assert_eq!(fs.get(Split::Val).name(), "cifar_fs/val");
    let fc = cifar.splits(Cifar100Protocol::Fc100).unwrap();
    assert_eq!((fc.train.len(), fc.val.len(), fc.test.len()), (60, 20, 20));
    // FC100: no superclass in two splits; CIFAR-FS: every class in exactly one split.
    let groups = |pool: &metl_data::ClassPool| -> std::collections::BTreeSet<usize> {
        pool.classes().iter().map(|c| cifar.class_group(c.class)).collect()
    };
    assert!(groups(&fc.train).is_disjoint(&groups(&fc.test)));
    assert_eq!(groups(&fc.train).len(), 12);
    let mut all: Vec<usize> =
        [&fs.train, &fs.val, &fs.test].iter().flat_map(|p| p.classes().iter().map(|c| c.class)).collect();
    all.sort_unstable();
    assert_eq!(all, (0..100).collect::<Vec<_>>());

    // Resized on load: a one-colour image stays that colour.
    let big = Cifar100::load(FewShotConfig::new(dir.join("cifar-100-python"), 84)).unwrap();
    assert_eq!(big.image_shape(), [3, 84, 84]);
    assert_eq!(big.image(7, 4)[84 * 84 + 100], fixtures::fixture_color(7, 4)[1]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_or_foreign_files_say_what_to_download() {
    let dir = common::temp_dir("cifar100-missing");
    let err = Cifar100::load(FewShotConfig::new(dir.join("nowhere"), 32)).unwrap_err();
    assert!(matches!(err, DataError::MissingDataset { .. }), "{err}");
    let message = err.to_string();
    for needle in
        ["CIFAR-100", "cifar-100-python.tar.gz", "METL_CIFAR100_DIR", "[data.cifar_fs]", "{train,test,meta}"]
    {
        assert!(message.contains(needle), "{needle} not in: {message}");
    }
    fixtures::write_cifar100(&dir, 1, 1).unwrap();
    std::fs::remove_file(dir.join("cifar-100-python/test")).unwrap();
    let message = Cifar100::load(FewShotConfig::new(&dir, 32)).unwrap_err().to_string();
    assert!(message.contains("cifar-100-python/test is missing"), "{message}");
    std::fs::write(dir.join("cifar-100-python/test"), b"not a pickle").unwrap();
    let err = Cifar100::load(FewShotConfig::new(&dir, 32)).unwrap_err();
    assert!(matches!(err, DataError::Pickle { .. }), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
