//! CelebA from its official label files and aligned JPEGs (written by the fixtures, and
//! hand-written files in the official format): the 40 attribute tasks, the partition, both
//! folder layouts, attribute subsets, and errors naming the file and the line.

mod common;

use common::temp_dir;
use metl_data::{
    multitask::{fixtures, Celeba, CelebaConfig, CELEBA_ATTRIBUTES},
    MultiTaskDataset, Split,
};
use std::fs;
use tch::{Device, Kind};

fn config(root: &std::path::Path) -> CelebaConfig {
    CelebaConfig { root: root.to_owned(), image_size: [8, 6], ..CelebaConfig::default() }
}

#[test]
fn attributes_partitions_and_images() {
    let root = temp_dir("celeba");
    fixtures::write_celeba(&root, 10, 0).unwrap();
    let data = Celeba::load(&config(&root)).unwrap();
    let names: Vec<&str> = data.tasks().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, CELEBA_ATTRIBUTES);
    assert_eq!((data.len(Split::Train), data.len(Split::Val), data.len(Split::Test)), (6, 2, 2));
    assert_eq!(data.input_shape(), [3, 8, 6]);
    // The labels as the attribute file has them: row 000009.jpg is the first test image.
    let text = fs::read_to_string(root.join("list_attr_celeba.txt")).unwrap();
    let row: Vec<&str> = text.lines().nth(2 + 8).unwrap().split_whitespace().collect();
    assert_eq!(row[0], "000009.jpg");
    let batch = data.batch(Split::Test, &[0], Device::Cpu).unwrap();
    assert_eq!(batch.targets.len(), 40);
    for (t, value) in row[1..].iter().enumerate() {
        assert_eq!(batch.targets[t].size(), [1, 1]);
        assert_eq!(
            batch.targets[t].double_value(&[0, 0]),
            if *value == "1" { 1.0 } else { 0.0 },
            "attribute {t}"
        );
    }
    // The fixture paints Male, Smiling and Eyeglasses into red, green and blue (220 or 30):
    // JPEG and resizing keep a flat colour to a level or two.
    assert_eq!(batch.inputs.size(), [1, 3, 8, 6]);
    for (channel, attribute) in [(0, "Male"), (1, "Smiling"), (2, "Eyeglasses")] {
        let t = CELEBA_ATTRIBUTES.iter().position(|a| *a == attribute).unwrap();
        let want = if batch.targets[t].double_value(&[0, 0]) > 0.5 { 220.0 } else { 30.0 };
        let mean = batch.inputs.get(0).get(channel).mean(Kind::Float).double_value(&[]) * 255.0;
        assert!((mean - want).abs() < 3.0, "{attribute}: {mean}");
    }
    // The layout of the Google Drive folder; a subset of attributes; the first images only.
    for (from, to) in [
        ("list_attr_celeba.txt", "Anno/list_attr_celeba.txt"),
        ("list_eval_partition.txt", "Eval/list_eval_partition.txt"),
        ("img_align_celeba", "Img/img_align_celeba"),
    ] {
        fs::create_dir_all(root.join(to).parent().unwrap()).unwrap();
        fs::rename(root.join(from), root.join(to)).unwrap();
    }
    let subset = CelebaConfig {
        attributes: Some(vec!["Smiling".into(), "Male".into()]),
        limit: Some(4),
        ..config(&root)
    };
    let small = Celeba::load(&subset).unwrap();
    assert_eq!(small.tasks().iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["Smiling", "Male"]);
    assert_eq!((small.len(Split::Train), small.len(Split::Val)), (4, 2));
    let b = small.batch(Split::Test, &[0], Device::Cpu).unwrap();
    assert_eq!(b.targets[1].double_value(&[0, 0]), batch.targets[20].double_value(&[0, 0]));
}

/// Hand-written files in the official format: two header lines (the count, the names with a
/// trailing space), values aligned with two spaces before `1`, a blank last line.
#[test]
fn the_official_text_format_is_read() {
    let root = temp_dir("celeba-text");
    fs::write(
        root.join("list_attr_celeba.txt"),
        "3\nSmiling Young Male \n000001.jpg -1  1 -1\n000002.jpg  1  1  1\n000003.jpg -1 -1  1\n\n",
    )
    .unwrap();
    fs::write(root.join("list_eval_partition.txt"), "000001.jpg 0\n000002.jpg 2\n000003.jpg 1\n").unwrap();
    fs::create_dir_all(root.join("img_align_celeba")).unwrap();
    let data = Celeba::load(&config(&root)).unwrap();
    assert_eq!(data.tasks().len(), 3);
    assert_eq!(data.image_path(Split::Test, 0), root.join("img_align_celeba/000002.jpg"));
    assert_eq!(data.image_path(Split::Val, 0), root.join("img_align_celeba/000003.jpg"));
    // Decoding happens per batch: a missing image is an error naming it.
    let err = data.batch(Split::Train, &[0], Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("000001.jpg"), "{err}");

    let err = |attr: &str, partition: &str| {
        fs::write(root.join("list_attr_celeba.txt"), attr).unwrap();
        fs::write(root.join("list_eval_partition.txt"), partition).unwrap();
        Celeba::load(&config(&root)).unwrap_err().to_string()
    };
    let ok_partition = "000001.jpg 0\n000002.jpg 1\n";
    let e = err("2\nA B\n000001.jpg 1 0\n000002.jpg 1 1\n", ok_partition);
    assert!(
        e.contains("list_attr_celeba.txt: unexpected layout: line 3: 000001.jpg: attribute value \"0\""),
        "{e}"
    );
    let e = err("2\nA B\n000001.jpg 1\n000002.jpg 1 1\n", ok_partition);
    assert!(e.contains("line 3: 000001.jpg: 1 values for 2 attributes"), "{e}");
    let e = err("3\nA B\n000001.jpg 1 1\n000002.jpg 1 1\n", ok_partition);
    assert!(e.contains("announces 3 images, lists 2"), "{e}");
    let e = err("2\nA B\n000001.jpg 1 1\n000002.jpg 1 1\n", "000001.jpg 0\n000002.jpg 3\n");
    assert!(e.contains("list_eval_partition.txt") && e.contains("line 2"), "{e}");
    let e = err("2\nA B\n000001.jpg 1 1\n000002.jpg 1 1\n", "000001.jpg 0\n");
    assert!(e.contains("000002.jpg (listed in list_attr_celeba.txt) is missing"), "{e}");
    fs::write(root.join("list_eval_partition.txt"), ok_partition).unwrap();
    let unknown = CelebaConfig { attributes: Some(vec!["Beard".into()]), ..config(&root) };
    let e = Celeba::load(&unknown).unwrap_err().to_string();
    assert!(e.starts_with("celeba.attributes = Beard: one of A, B"), "{e}");
}

#[test]
fn a_missing_dataset_says_what_to_download() {
    let root = temp_dir("celeba-missing");
    let e = Celeba::load(&config(&root.join("celeba"))).unwrap_err().to_string();
    assert!(e.contains("not found") && e.contains("mmlab.ie.cuhk.edu.hk/projects/CelebA.html"), "{e}");
    fs::write(root.join("list_attr_celeba.txt"), "0\nA\n").unwrap();
    let e = Celeba::load(&config(&root)).unwrap_err().to_string();
    assert!(e.contains("list_eval_partition.txt: not found") && e.contains("Eval/"), "{e}");
}
