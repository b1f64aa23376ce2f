//! The preprocessed NYUv2 (MTAN's layout) from `.npy` files written as `np.save` writes
//! them: shapes and channel order of the three tasks, ignore values, float64 arrays, the
//! validation split, and the errors for a missing dataset and bad files.

mod common;

use common::temp_dir;
use metl_data::{
    multitask::{fixtures, npy, Nyuv2, Nyuv2Config, TaskKind},
    MultiTaskDataset, Split,
};
use std::fs;
use tch::{Device, Kind, Tensor};

fn config(root: &std::path::Path) -> Nyuv2Config {
    Nyuv2Config { root: root.to_owned(), ..Nyuv2Config::default() }
}

#[test]
fn three_dense_tasks_channels_first() {
    let root = temp_dir("nyuv2");
    fixtures::write_nyuv2(&root, 4, 3, [32, 64], 0).unwrap();
    let data = Nyuv2::load(&config(&root)).unwrap();
    let kinds: Vec<TaskKind> = data.tasks().iter().map(|t| t.kind).collect();
    assert_eq!(kinds, [TaskKind::Segmentation { classes: 13 }, TaskKind::Depth, TaskKind::SurfaceNormals]);
    assert_eq!(data.input_shape(), [3, 32, 64]);
    assert_eq!((data.len(Split::Train), data.len(Split::Val), data.len(Split::Test)), (4, 3, 3));
    assert_eq!(data.path(Split::Val, 2, "image"), data.path(Split::Test, 2, "image"));
    assert_eq!(data.path(Split::Test, 2, "depth"), root.join("val/depth/2.npy"));
    let batch = data.batch(Split::Train, &[3, 1], Device::Cpu).unwrap();
    assert_eq!(batch.inputs.size(), [2, 3, 32, 64]);
    let [label, depth, normal] = [&batch.targets[0], &batch.targets[1], &batch.targets[2]];
    assert_eq!((label.size(), label.kind()), (vec![2, 32, 64], Kind::Int64));
    assert_eq!(depth.size(), [2, 1, 32, 64]);
    assert_eq!(normal.size(), [2, 3, 32, 64]);
    // Channels last on disk, first in the batch: image[y, x, c] = inputs[., c, y, x].
    let image = npy::read_npy(&root.join("train/image/3.npy")).unwrap();
    let normal_3 = npy::read_npy(&root.join("train/normal/3.npy")).unwrap();
    for (y, x, c) in [(0, 0, 0), (5, 17, 1), (31, 63, 2)] {
        assert_eq!(batch.inputs.double_value(&[0, c, y, x]), image.double_value(&[y, x, c]));
        assert_eq!(normal.double_value(&[0, c, y, x]), normal_3.double_value(&[y, x, c]));
    }
    // Ignored pixels: label −1, depth 0, normal 0 on roughly a tenth each.
    let share = |m: Tensor| m.to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
    assert!((0.05..0.15).contains(&share(label.eq(-1))));
    assert!((0.05..0.15).contains(&share(depth.eq(0.0))));
    assert!((0.05..0.15).contains(&share(normal.abs().sum_dim_intlist(1, false, Kind::Float).eq(0.0))));
    assert!(label.max().int64_value(&[]) <= 12);
    // A held-out validation split.
    let held = Nyuv2::load(&Nyuv2Config { val_fraction: 0.25, ..config(&root) }).unwrap();
    assert_eq!((held.len(Split::Train), held.len(Split::Val), held.len(Split::Test)), (3, 1, 3));
    assert!(held.path(Split::Val, 0, "label").starts_with(root.join("train/label")));
}

#[test]
fn float64_arrays_and_bad_files() {
    let root = temp_dir("nyuv2-bad");
    let err = Nyuv2::load(&config(&root)).unwrap_err().to_string();
    assert!(err.contains("train/image: not found") && err.contains("lorenmt/mtan"), "{err}");
    fixtures::write_nyuv2(&root, 2, 1, [32, 32], 1).unwrap();
    // MTAN's files may be float64: they are read and converted.
    let image64 = Tensor::rand([32, 32, 3], (Kind::Double, Device::Cpu));
    fs::write(root.join("train/image/1.npy"), npy::encode_npy(&image64).unwrap()).unwrap();
    let data = Nyuv2::load(&config(&root)).unwrap();
    let x = data.batch(Split::Train, &[1], Device::Cpu).unwrap().inputs;
    assert_eq!(x.kind(), Kind::Float);
    assert!((x.double_value(&[0, 2, 7, 9]) - image64.double_value(&[7, 9, 2])).abs() < 1e-6);

    let load_err = |split| data.batch(split, &[0], Device::Cpu).unwrap_err().to_string();
    fs::write(
        root.join("val/depth/0.npy"),
        npy::encode_npy(&Tensor::zeros([32, 31, 1], (Kind::Float, Device::Cpu))).unwrap(),
    )
    .unwrap();
    let e = load_err(Split::Test);
    assert!(e.contains("val/depth/0.npy") && e.contains("shape [32, 31, 1], expected [32, 32, 1]"), "{e}");
    let bytes = fs::read(root.join("train/label/0.npy")).unwrap();
    fs::write(root.join("train/label/0.npy"), &bytes[..bytes.len() - 4]).unwrap();
    let e = load_err(Split::Train);
    assert!(e.contains("train/label/0.npy") && e.contains("the file holds"), "{e}");
    let labels = Tensor::full([32, 32], 13.0, (Kind::Float, Device::Cpu));
    fs::write(root.join("train/label/0.npy"), npy::encode_npy(&labels).unwrap()).unwrap();
    assert!(load_err(Split::Train).contains("labels in [13, 13]"));
    fs::remove_file(root.join("train/normal/1.npy")).unwrap();
    let e = Nyuv2::load(&config(&root)).unwrap_err().to_string();
    assert!(e.contains("train/normal/1.npy: not found (sample 1 of train/"), "{e}");
}
