//! [`CsvDataset`]: your own multi-task data from one CSV file — numeric feature columns (or
//! a column of image files) as the input and one column per task.
//!
//! ```text
//! sqft,rooms,age,price,kind,split
//! 1200,3,15,310000,flat,train
//! 2300,5,2,,house,val          <- no price: unlabelled for that task only
//! ```
//!
//! - **Features**: the columns listed in [`CsvConfig::features`], by default every column
//!   that is not a task, the split column or the image column; every value must be a
//!   finite number. With [`CsvConfig::standardize`] (the default) each feature is shifted
//!   and scaled by the mean and standard deviation of the training split.
//! - **Images**: with [`CsvConfig::image`], the input is the image file named in that
//!   column (relative to the CSV's folder), decoded and resized as an image folder's are.
//! - **Tasks** ([`CsvTask`]): `regression` (a number per row; targets `[N, 1]`),
//!   `classification` (any labels; the classes are the distinct labels, sorted — numerically
//!   when all are integers), `binary` (`0`/`1`, `-1`/`1` or `false`/`true`; targets
//!   `[N, 1]`). An empty cell leaves the row unlabelled for that task (its mask is false),
//!   so partially labelled data needs nothing else.
//! - **Splits**: by [`CsvConfig::split_column`] (values `train`, `val`/`valid`/`validation`,
//!   `test`), otherwise at random by [`CsvConfig::split`] fractions with the seed.

use super::{
    check_indices, csv_file::CsvTable, split_by_fractions, MultiTaskBatch, MultiTaskDataset, TaskInfo,
    TaskKind,
};
use crate::{
    error::{DataError, Result},
    Split,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// What a CSV task column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CsvTaskKind {
    /// A real number per row (mean squared error).
    Regression,
    /// A class label per row (cross-entropy over the distinct labels).
    Classification,
    /// A yes/no label per row: `0`/`1`, `-1`/`1` or `false`/`true` (binary cross-entropy).
    Binary,
}

/// One task: a column of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvTask {
    /// The column holding the task's labels.
    pub column: String,
    /// What the column holds.
    pub kind: CsvTaskKind,
    /// The task's name in logs and results; default the column's.
    #[serde(default)]
    pub name: Option<String>,
}

/// A column of image files as the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvImage {
    /// The column holding the image paths (PNG or JPEG), relative to `root`.
    pub column: String,
    /// The folder the paths are relative to; default the CSV file's folder.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// `[height, width]` after resizing; default `[64, 64]`.
    #[serde(default = "default_image_size")]
    pub size: [usize; 2],
    /// 1 (gray) or 3 (RGB); default 3.
    #[serde(default = "default_channels")]
    pub channels: usize,
}

fn default_image_size() -> [usize; 2] {
    [64, 64]
}

fn default_channels() -> usize {
    3
}

fn default_fractions() -> [f64; 3] {
    [0.8, 0.1, 0.1]
}

fn default_delimiter() -> char {
    ','
}

fn yes() -> bool {
    true
}

/// How to read a CSV file as a multi-task dataset (`[data.csv]` in configs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvConfig {
    /// The CSV file: a header row of column names, then one row per sample.
    pub path: PathBuf,
    /// The tasks, one column each, in the order of the model's heads.
    pub tasks: Vec<CsvTask>,
    /// The input columns; default every column that is not a task, the split column or
    /// the image column.
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// Images as the input instead of feature columns.
    #[serde(default)]
    pub image: Option<CsvImage>,
    /// A column naming each row's split (`train`, `val`, `test`); without it, rows are
    /// split at random by `split`.
    #[serde(default)]
    pub split_column: Option<String>,
    /// Fractions of the rows for train, validation and test when there is no split
    /// column; default `[0.8, 0.1, 0.1]`.
    #[serde(default = "default_fractions")]
    pub split: [f64; 3],
    /// Seed of the random split; default 0.
    #[serde(default)]
    pub seed: u64,
    /// The field separator; default `,` (`"\t"` for TSV).
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// Standardise every feature by the training split's mean and standard deviation;
    /// default true.
    #[serde(default = "yes")]
    pub standardize: bool,
}

impl CsvConfig {
    /// A file with these tasks and every default.
    pub fn new(path: impl Into<PathBuf>, tasks: Vec<CsvTask>) -> Self {
        Self {
            path: path.into(),
            tasks,
            features: None,
            image: None,
            split_column: None,
            split: default_fractions(),
            seed: 0,
            delimiter: default_delimiter(),
            standardize: true,
        }
    }
}

/// The labels of one task, one entry per row of the file.
#[derive(Debug, Clone)]
enum Labels {
    /// Class indices (classification), `None` when missing.
    Classes(Vec<Option<i64>>),
    /// Real values (regression; binary as 0.0/1.0), `None` when missing.
    Values(Vec<Option<f32>>),
}

/// The inputs of every row of the file.
#[derive(Debug, Clone)]
enum Inputs {
    /// `[rows, F]` row-major.
    Features { values: Vec<f32>, width: usize },
    /// `[rows, C, H, W]` bytes (only read with feature `images`).
    #[cfg_attr(not(feature = "images"), allow(dead_code))]
    Images { pixels: Vec<u8>, shape: [usize; 3] },
}

/// A CSV file as a [`MultiTaskDataset`] (see the module docs).
#[derive(Debug, Clone)]
pub struct CsvDataset {
    tasks: Vec<TaskInfo>,
    /// Per task, the class names (classification tasks) in index order.
    classes: Vec<Vec<String>>,
    labels: Vec<Labels>,
    inputs: Inputs,
    feature_names: Vec<String>,
    /// The file rows of each split.
    rows: [Vec<usize>; 3],
}

impl CsvDataset {
    /// Reads `config.path` and builds the dataset; every error names the file, and the line
    /// and column where a value is at fault.
    pub fn load(config: &CsvConfig) -> Result<Self> {
        if !config.path.is_file() {
            return Err(DataError::NotFound {
                path: config.path.clone(),
                what: "the CSV file of data.csv.path".into(),
            });
        }
        let table = CsvTable::read(&config.path, config.delimiter)?;
        if config.tasks.is_empty() {
            return Err(DataError::invalid("csv.tasks", "[]", "list at least one task column"));
        }
        let mut used = Vec::new();
        let mut task_columns = Vec::with_capacity(config.tasks.len());
        for task in &config.tasks {
            let c = table.column(&task.column, "csv.tasks.column")?;
            if used.contains(&c) {
                return Err(DataError::invalid(
                    "csv.tasks.column",
                    &task.column,
                    "each task needs its own column",
                ));
            }
            used.push(c);
            task_columns.push(c);
        }
        let split_column =
            config.split_column.as_deref().map(|s| table.column(s, "csv.split_column")).transpose()?;
        let image_column =
            config.image.as_ref().map(|i| table.column(&i.column, "csv.image.column")).transpose()?;
        used.extend(split_column.iter().chain(&image_column));
        let rows = match split_column {
            Some(c) => rows_by_column(&table, c)?,
            None => split_by_fractions(table.records.len(), config.split, config.seed, "csv.split")?,
        };
        if rows[0].is_empty() {
            return Err(DataError::layout(&config.path, "no row in the train split"));
        }
        let (inputs, feature_names) = match &config.image {
            Some(image) => {
                if config.features.is_some() {
                    return Err(DataError::invalid(
                        "csv.features",
                        "(set)",
                        "the input is either feature columns or csv.image, not both",
                    ));
                }
                (read_images(&table, image_column.expect("resolved above"), image, &config.path)?, Vec::new())
            }
            None => {
                let names: Vec<String> = match &config.features {
                    Some(f) => f.clone(),
                    None => (0..table.columns.len())
                        .filter(|c| !used.contains(c))
                        .map(|c| table.columns[c].clone())
                        .collect(),
                };
                if names.is_empty() {
                    return Err(DataError::invalid(
                        "csv.features",
                        "[]",
                        "no feature column left: name the inputs, or give csv.image",
                    ));
                }
                let columns =
                    names.iter().map(|n| table.column(n, "csv.features")).collect::<Result<Vec<_>>>()?;
                if let Some(c) = columns.iter().find(|c| used.contains(c)) {
                    return Err(DataError::invalid(
                        "csv.features",
                        &table.columns[*c],
                        "a task, split or image column cannot be a feature",
                    ));
                }
                let mut values = read_features(&table, &columns)?;
                if config.standardize {
                    standardize(&mut values, columns.len(), &rows[0]);
                }
                (Inputs::Features { values, width: columns.len() }, names)
            }
        };
        let mut tasks = Vec::with_capacity(config.tasks.len());
        let mut classes = Vec::with_capacity(config.tasks.len());
        let mut labels = Vec::with_capacity(config.tasks.len());
        for (task, &column) in config.tasks.iter().zip(&task_columns) {
            let (kind, names, l) = read_labels(&table, column, task.kind)?;
            let name = task.name.clone().unwrap_or_else(|| task.column.clone());
            let train_labelled = rows[0].iter().any(|&r| match &l {
                Labels::Classes(v) => v[r].is_some(),
                Labels::Values(v) => v[r].is_some(),
            });
            if !train_labelled {
                return Err(DataError::layout(
                    &config.path,
                    format!("column {:?}: no labelled row in the train split", task.column),
                ));
            }
            tasks.push(TaskInfo { name, kind });
            classes.push(names);
            labels.push(l);
        }
        Ok(Self { tasks, classes, labels, inputs, feature_names, rows })
    }

    /// The class names of task `task` in index order (empty for other kinds of task).
    pub fn classes(&self, task: usize) -> &[String] {
        &self.classes[task]
    }

    /// The feature columns, in input order (empty when the input is an image).
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// The file rows (0 = the first record after the header) of `split`, in order.
    pub fn rows(&self, split: Split) -> &[usize] {
        &self.rows[split.index()]
    }
}

/// The rows of each split, read from the split column.
fn rows_by_column(table: &CsvTable, column: usize) -> Result<[Vec<usize>; 3]> {
    let mut rows: [Vec<usize>; 3] = Default::default();
    for (r, (line, fields)) in table.records.iter().enumerate() {
        let split = match fields[column].trim().to_ascii_lowercase().as_str() {
            "train" => Split::Train,
            "val" | "valid" | "validation" => Split::Val,
            "test" => Split::Test,
            other => {
                return Err(DataError::layout(
                    &table.path,
                    format!(
                        "line {line}, column {:?}: split {other:?} is not train, val or test",
                        table.columns[column]
                    ),
                ))
            }
        };
        rows[split.index()].push(r);
    }
    Ok(rows)
}

fn read_features(table: &CsvTable, columns: &[usize]) -> Result<Vec<f32>> {
    let mut values = Vec::with_capacity(table.records.len() * columns.len());
    for r in 0..table.records.len() {
        for &c in columns {
            values.push(table.number(r, c)? as f32);
        }
    }
    Ok(values)
}

/// Shifts and scales every column of `values` (`width` wide) by the mean and standard
/// deviation of the rows `train`; constant columns are only shifted.
fn standardize(values: &mut [f32], width: usize, train: &[usize]) {
    let n = train.len() as f64;
    for c in 0..width {
        let mean = train.iter().map(|&r| values[r * width + c] as f64).sum::<f64>() / n;
        let var = train.iter().map(|&r| (values[r * width + c] as f64 - mean).powi(2)).sum::<f64>() / n;
        let std = if var > 0.0 { var.sqrt() } else { 1.0 };
        for row in values.chunks_mut(width) {
            row[c] = ((row[c] as f64 - mean) / std) as f32;
        }
    }
}

/// The task kind, class names and labels of a task column.
fn read_labels(
    table: &CsvTable,
    column: usize,
    kind: CsvTaskKind,
) -> Result<(TaskKind, Vec<String>, Labels)> {
    let cell = |r: usize| table.records[r].1[column].trim();
    let rows = 0..table.records.len();
    let bad = |r: usize, what: &str| {
        DataError::layout(
            &table.path,
            format!(
                "line {}, column {:?}: {:?} is not {what}",
                table.records[r].0,
                table.columns[column],
                cell(r)
            ),
        )
    };
    match kind {
        CsvTaskKind::Regression => {
            let values = rows
                .map(|r| {
                    if cell(r).is_empty() {
                        Ok(None)
                    } else {
                        table.number(r, column).map(|v| Some(v as f32))
                    }
                })
                .collect::<Result<_>>()?;
            Ok((TaskKind::Regression { dims: 1 }, Vec::new(), Labels::Values(values)))
        }
        CsvTaskKind::Binary => {
            let values = rows
                .map(|r| match cell(r).to_ascii_lowercase().as_str() {
                    "" => Ok(None),
                    "1" | "1.0" | "true" => Ok(Some(1.0)),
                    "0" | "0.0" | "-1" | "-1.0" | "false" => Ok(Some(0.0)),
                    _ => Err(bad(r, "a binary label (0/1, -1/1, false/true)")),
                })
                .collect::<Result<_>>()?;
            Ok((TaskKind::Binary, Vec::new(), Labels::Values(values)))
        }
        CsvTaskKind::Classification => {
            let mut names: Vec<String> =
                rows.clone().map(cell).filter(|c| !c.is_empty()).map(str::to_owned).collect();
            names.sort_unstable();
            names.dedup();
            if names.iter().all(|n| n.parse::<i64>().is_ok()) {
                names.sort_by_key(|n| n.parse::<i64>().expect("checked"));
            }
            if names.len() < 2 {
                return Err(DataError::layout(
                    &table.path,
                    format!(
                        "column {:?}: a classification task needs at least 2 distinct labels",
                        table.columns[column]
                    ),
                ));
            }
            let classes = rows
                .map(|r| match cell(r) {
                    "" => None,
                    c => Some(names.iter().position(|n| n == c).expect("every label is a class") as i64),
                })
                .collect();
            Ok((TaskKind::Classification { classes: names.len() }, names, Labels::Classes(classes)))
        }
    }
}

#[cfg(feature = "images")]
fn read_images(table: &CsvTable, column: usize, image: &CsvImage, csv: &Path) -> Result<Inputs> {
    use crate::image::{Preprocess, ResizeFilter};
    use rayon::prelude::*;
    if image.size.iter().any(|s| !(1..=4096).contains(s)) {
        return Err(DataError::invalid(
            "csv.image.size",
            format!("{:?}", image.size),
            "both sides in 1..=4096",
        ));
    }
    if image.channels != 1 && image.channels != 3 {
        return Err(DataError::invalid("csv.image.channels", image.channels, "must be 1 or 3"));
    }
    let root = image.root.clone().unwrap_or_else(|| csv.parent().map(Path::to_owned).unwrap_or_default());
    let preprocess = Preprocess::new(image.size, image.channels, ResizeFilter::default(), false);
    let images: Vec<Vec<u8>> = table
        .records
        .par_iter()
        .map(|(_, fields)| preprocess.load(&root.join(fields[column].trim())))
        .collect::<Result<_>>()?;
    let [h, w] = image.size;
    Ok(Inputs::Images { pixels: images.concat(), shape: [image.channels, h, w] })
}

#[cfg(not(feature = "images"))]
fn read_images(_: &CsvTable, _: usize, _: &CsvImage, _: &Path) -> Result<Inputs> {
    Err(DataError::invalid("csv.image", "(set)", "needs metl-data's `images` feature"))
}

impl MultiTaskDataset for CsvDataset {
    fn tasks(&self) -> &[TaskInfo] {
        &self.tasks
    }

    fn input_shape(&self) -> Vec<i64> {
        match &self.inputs {
            Inputs::Features { width, .. } => vec![*width as i64],
            Inputs::Images { shape, .. } => shape.iter().map(|&d| d as i64).collect(),
        }
    }

    fn len(&self, split: Split) -> usize {
        self.rows[split.index()].len()
    }

    /// Inputs `[N, F]` (standardised features) or `[N, C, H, W]` (images in `[0, 1]`);
    /// targets `[N]` `Int64` (classification) or `[N, 1]` `Float` (regression, binary), 0
    /// where a row is unlabelled; the mask marks the labelled cells.
    fn batch(&self, split: Split, indices: &[usize], device: Device) -> Result<MultiTaskBatch> {
        check_indices(split, indices, self.len(split))?;
        let rows: Vec<usize> = indices.iter().map(|&i| self.rows[split.index()][i]).collect();
        let n = rows.len() as i64;
        let inputs = match &self.inputs {
            Inputs::Features { values, width } => {
                let x: Vec<f32> =
                    rows.iter().flat_map(|&r| &values[r * width..(r + 1) * width]).copied().collect();
                Tensor::f_from_slice(&x)?.f_view([n, *width as i64])?.f_to_device(device)?
            }
            Inputs::Images { pixels, shape } => {
                let len: usize = shape.iter().product();
                let x: Vec<u8> =
                    rows.iter().flat_map(|&r| &pixels[r * len..(r + 1) * len]).copied().collect();
                let dims = [n, shape[0] as i64, shape[1] as i64, shape[2] as i64];
                super::images_to_float(&x, &dims, device)?
            }
        };
        let mut mask = Vec::with_capacity(rows.len() * self.tasks.len());
        let mut targets = Vec::with_capacity(self.tasks.len());
        for labels in &self.labels {
            let target = match labels {
                Labels::Classes(v) => {
                    let y: Vec<i64> = rows.iter().map(|&r| v[r].unwrap_or(0)).collect();
                    Tensor::f_from_slice(&y)?
                }
                Labels::Values(v) => {
                    let y: Vec<f32> = rows.iter().map(|&r| v[r].unwrap_or(0.0)).collect();
                    Tensor::f_from_slice(&y)?.f_view([n, 1])?
                }
            };
            targets.push(target.f_to_device(device)?);
        }
        for &r in &rows {
            for labels in &self.labels {
                mask.push(match labels {
                    Labels::Classes(v) => v[r].is_some(),
                    Labels::Values(v) => v[r].is_some(),
                });
            }
        }
        let mask = Tensor::f_from_slice(&mask)?.f_view([n, self.tasks.len() as i64])?.f_to_device(device)?;
        Ok(MultiTaskBatch { inputs: inputs.f_to_kind(Kind::Float)?, targets, mask, task_ids: None })
    }
}
