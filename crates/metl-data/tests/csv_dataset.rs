//! [`CsvDataset`] on small hand-written files: features, standardisation, the three kinds
//! of task, missing labels, both ways of splitting, image columns, and every input error
//! naming the file, the line and the column.

mod common;

use common::{gray_png, temp_dir};
use metl_data::{
    multitask::{CsvConfig, CsvDataset, CsvImage, CsvTask, CsvTaskKind, MultiTaskLoader, TaskKind},
    MultiTaskDataset, Split,
};
use std::{
    fs,
    path::PathBuf,
    sync::atomic::{AtomicUsize, Ordering},
};
use tch::Device;

fn task(column: &str, kind: CsvTaskKind) -> CsvTask {
    CsvTask { column: column.into(), kind, name: None }
}

const HOUSES: &str = "\
sqft,rooms,price,kind,sold,split
100,1,10.5,flat,1,train
300,3,,house,-1,train
200,2,20,\"flat\",true,train
400,4,40,villa,,val
500,5,50,house,0,test
";

/// Writes `text` as `data.csv` in a folder of its own: tests run in parallel, and one
/// rewriting a file another reads would make either fail.
fn write(name: &str, text: &str) -> PathBuf {
    static WRITES: AtomicUsize = AtomicUsize::new(0);
    let dir = temp_dir(&format!("{name}-{}", WRITES.fetch_add(1, Ordering::Relaxed)));
    let path = dir.join("data.csv");
    fs::write(&path, text).unwrap();
    path
}

fn houses() -> CsvConfig {
    CsvConfig {
        split_column: Some("split".into()),
        ..CsvConfig::new(
            write("houses", HOUSES),
            vec![
                task("price", CsvTaskKind::Regression),
                task("kind", CsvTaskKind::Classification),
                task("sold", CsvTaskKind::Binary),
            ],
        )
    }
}

fn values(t: &tch::Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
}

#[test]
fn features_tasks_and_missing_labels() {
    let data = CsvDataset::load(&houses()).unwrap();
    assert_eq!(data.feature_names(), ["sqft", "rooms"]);
    assert_eq!(data.input_shape(), [2]);
    assert_eq!((data.len(Split::Train), data.len(Split::Val), data.len(Split::Test)), (3, 1, 1));
    let kinds: Vec<TaskKind> = data.tasks().iter().map(|t| t.kind).collect();
    assert_eq!(
        kinds,
        [TaskKind::Regression { dims: 1 }, TaskKind::Classification { classes: 3 }, TaskKind::Binary]
    );
    assert_eq!(data.tasks()[1].name, "kind");
    assert_eq!(data.classes(1), ["flat", "house", "villa"]);
    let batch = data.batch(Split::Train, &[0, 1, 2], Device::Cpu).unwrap();
    // sqft over the train rows 100, 300, 200: mean 200, std √(20000/3) = 81.65.
    let std = (20000.0f64 / 3.0).sqrt();
    let x = values(&batch.inputs);
    for (got, want) in x.iter().step_by(2).zip([-100.0 / std, 100.0 / std, 0.0]) {
        assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
    }
    assert_eq!(batch.targets[0].size(), [3, 1]);
    assert_eq!(values(&batch.targets[0]), [10.5, 0.0, 20.0]);
    assert_eq!(Vec::<i64>::try_from(&batch.targets[1]).unwrap(), [0, 1, 0]);
    assert_eq!(values(&batch.targets[2]), [1.0, 0.0, 1.0]);
    let mask = Vec::<bool>::try_from(batch.mask.flatten(0, -1)).unwrap();
    // Row 2 has no price.
    assert_eq!(mask, [true, true, true, false, true, true, true, true, true]);
    let val = data.batch(Split::Val, &[0], Device::Cpu).unwrap();
    // sqft 400 standardised with the training statistics; no `sold` label.
    assert!((values(&val.inputs)[0] as f64 - 200.0 / std).abs() < 1e-6);
    assert_eq!(Vec::<bool>::try_from(val.mask.flatten(0, -1)).unwrap(), [true, true, false]);
    let mut loader = MultiTaskLoader::new(&data, Split::Train, 2, Some(0)).unwrap();
    assert_eq!(loader.next_batch(Device::Cpu).unwrap().len(), 2);
}

#[test]
fn raw_features_integer_classes_and_random_splits() {
    let mut text = String::from("a,b,label\n");
    for i in 0..20 {
        text.push_str(&format!("{i},{},{}\n", 2 * i, [10, 2, 7][i % 3]));
    }
    let path = write("fractions", &text);
    let config = CsvConfig {
        features: Some(vec!["b".into()]),
        standardize: false,
        split: [0.5, 0.25, 0.25],
        seed: 4,
        ..CsvConfig::new(&path, vec![task("label", CsvTaskKind::Classification)])
    };
    let data = CsvDataset::load(&config).unwrap();
    // Integer labels are ordered as numbers, not as text ("10" < "2").
    assert_eq!(data.classes(0), ["2", "7", "10"]);
    let sizes: Vec<usize> = Split::ALL.iter().map(|&s| data.len(s)).collect();
    assert_eq!(sizes, [10, 5, 5]);
    let mut all: Vec<usize> = Split::ALL.iter().flat_map(|&s| data.rows(s).to_vec()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..20).collect::<Vec<_>>());
    let row = data.rows(Split::Test)[0];
    let batch = data.batch(Split::Test, &[0], Device::Cpu).unwrap();
    assert_eq!(values(&batch.inputs), [2.0 * row as f32]);
    let label = [10, 2, 7][row % 3];
    let class = data.classes(0).iter().position(|c| c == &label.to_string()).unwrap() as i64;
    assert_eq!(Vec::<i64>::try_from(&batch.targets[0]).unwrap(), [class]);
    // The same seed gives the same split; another seed another one.
    assert_eq!(CsvDataset::load(&config).unwrap().rows(Split::Val), data.rows(Split::Val));
    let other = CsvDataset::load(&CsvConfig { seed: 5, ..config }).unwrap();
    assert_ne!(other.rows(Split::Val), data.rows(Split::Val));
}

#[test]
fn image_columns_are_decoded_and_resized() {
    let path = write("images", "file,y,split\na.png,1,train\nsub/b.png,2,train\na.png,3,val\na.png,4,test\n");
    let dir = path.parent().unwrap();
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("a.png"), gray_png(6, 4, 51)).unwrap();
    fs::write(dir.join("sub/b.png"), gray_png(5, 5, 255)).unwrap();
    let image = CsvImage { column: "file".into(), root: None, size: [2, 3], channels: 1 };
    let config = CsvConfig {
        image: Some(image.clone()),
        split_column: Some("split".into()),
        ..CsvConfig::new(&path, vec![task("y", CsvTaskKind::Regression)])
    };
    let data = CsvDataset::load(&config).unwrap();
    assert_eq!(data.input_shape(), [1, 2, 3]);
    let x = data.batch(Split::Train, &[0, 1], Device::Cpu).unwrap().inputs;
    assert_eq!(x.size(), [2, 1, 2, 3]);
    assert_eq!(values(&x), [[0.2f32; 6], [1.0; 6]].concat());
    fs::remove_file(dir.join("sub/b.png")).unwrap();
    let err = CsvDataset::load(&config).unwrap_err().to_string();
    assert!(err.contains("b.png"), "{err}");
    let both = CsvConfig { features: Some(vec!["y".into()]), ..config };
    assert!(CsvDataset::load(&both).unwrap_err().to_string().contains("not both"));
}

#[test]
fn bad_files_and_columns_are_named() {
    let err = |config: &CsvConfig| CsvDataset::load(config).unwrap_err().to_string();
    let missing = CsvConfig::new("/no/such/file.csv", vec![task("y", CsvTaskKind::Regression)]);
    assert!(err(&missing).contains("/no/such/file.csv: not found"), "{}", err(&missing));

    let mut config = houses();
    config.tasks[1].column = "colour".into();
    let e = err(&config);
    assert!(e.contains("csv.tasks.column = colour") && e.contains("sqft, rooms, price"), "{e}");

    let config = CsvConfig { path: write("bad-number", &HOUSES.replace("300,3", "300,three")), ..houses() };
    let e = err(&config);
    assert!(
        e.contains("data.csv") && e.contains("line 3, column \"rooms\": \"three\" is not a finite number"),
        "{e}"
    );

    let config = CsvConfig { path: write("bad-split", &HOUSES.replace("val\n", "dev\n")), ..houses() };
    assert!(err(&config).contains("line 5, column \"split\": split \"dev\" is not train, val or test"));

    let config = CsvConfig { path: write("bad-binary", &HOUSES.replace(",true,", ",yes,")), ..houses() };
    assert!(err(&config).contains("line 4, column \"sold\": \"yes\" is not a binary label"));

    let config =
        CsvConfig { path: write("short-row", &HOUSES.replace("500,5,50,house,0,test", "500,5")), ..houses() };
    assert!(err(&config).contains("line 6: 2 fields, but the header has 6 columns"));

    let mut config = houses();
    config.tasks[2].column = "price".into();
    assert!(err(&config).contains("each task needs its own column"));

    let config = CsvConfig { features: Some(vec!["sqft".into(), "split".into()]), ..houses() };
    assert!(err(&config).contains("cannot be a feature"));

    let text = "x,y,split\n1,,train\n2,5,val\n";
    let config = CsvConfig {
        split_column: Some("split".into()),
        ..CsvConfig::new(write("unlabelled", text), vec![task("y", CsvTaskKind::Regression)])
    };
    assert!(err(&config).contains("column \"y\": no labelled row in the train split"));
    let config = CsvConfig { split: [0.5, 0.5, 0.5], ..houses() };
    let config = CsvConfig { split_column: None, ..config };
    assert!(err(&config).starts_with("csv.split = [0.5, 0.5, 0.5]"));
    assert!(CsvDataset::load(&houses()).unwrap().batch(Split::Val, &[1], Device::Cpu).is_err());
}
