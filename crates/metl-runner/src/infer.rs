//! Inference on your own images with a trained run:
//!
//! - `metl embed RUN_DIR IMAGE...` (or image paths on stdin): one embedding per image —
//!   the backbone's features — as text lines or a `.npy` file;
//! - `metl fewshot RUN_DIR --support DIR --query DIR`: adapts to the support classes (a
//!   folder of class folders, any number of images each) and writes, per query image, the
//!   predicted class and its probability as CSV.
//!
//! Images go through exactly the preprocessing of the run's training data
//! ([`metl_data::image::Preprocess`]: channels, resizing filter and size, inversion).

use crate::{
    device::parse_device,
    error::bad_input,
    eval::{saved_state, Which},
    experiment::{data::DataConfig, Experiment, Kind},
    run_dir::{write_atomically, RunDir},
    train::{load_experiment, meta::learner_for},
    zoo::Backbone,
};
use anyhow::Context;
use metl_data::{image::Preprocess, TaskBatch};
use metl_meta::MetaLearner;
use metl_models::{Model, Params};
use std::{
    io::BufRead,
    path::{Path, PathBuf},
};
use tch::{nn, Device, Kind as TKind, Tensor};

/// A trained run, ready for inference.
struct Trained {
    experiment: Experiment,
    learner: Box<dyn MetaLearner>,
    preprocess: Preprocess,
    input_shape: Vec<i64>,
    device: Device,
}

fn load(run_dir: &Path, which: Which, device: Option<&str>) -> anyhow::Result<Trained> {
    let run = RunDir::open(run_dir)?;
    let overrides: Vec<String> = device.map(|d| format!("device={d:?}")).into_iter().collect();
    let (experiment, _) = load_experiment(&run.config_path(), &overrides)?;
    if experiment.kind() != Kind::Meta {
        return Err(bad_input("embed and fewshot work with meta-learning runs on images"));
    }
    let preprocess = experiment
        .data
        .input_spec()
        .preprocess
        .ok_or_else(|| bad_input("this run was not trained on images (data.sinusoid)"))?;
    let device = parse_device(&experiment.device)?;
    let (saved, _) = saved_state(&run, which, device)?;
    // The baselines' pre-training head is sized by the training classes it saw.
    let train_classes = saved.get("head.weight").map_or(0, |w| w.size()[0] as usize);
    let (mut learner, input_shape) = learner_for(&experiment, device, train_classes)?;
    learner.load_state(&saved)?;
    Ok(Trained { experiment, learner, preprocess, input_shape, device })
}

/// Images `[N, C, H, W]` on the run's device from image files, preprocessed and
/// normalised as the run's training data: in `[0, 1]`, or standardised per channel where
/// the dataset is.
fn images(trained: &Trained, paths: &[PathBuf]) -> anyhow::Result<Tensor> {
    let mut pixels = Vec::with_capacity(paths.len() * trained.preprocess.output_len());
    for path in paths {
        pixels.extend(trained.preprocess.load(path).map_err(bad_input)?);
    }
    let mut dims = vec![paths.len() as i64];
    dims.extend_from_slice(&trained.input_shape);
    let x = Tensor::from_slice(&pixels).view(dims.as_slice()).to_device(trained.device).to_kind(TKind::Float)
        / 255.0;
    match trained.experiment.data.normalization() {
        Some(n) => Ok(n.apply(&x)?),
        None => Ok(x),
    }
}

/// The embedding network's weights: the backbone part of the learner's state (its own
/// names for metric learners, `backbone.*` for learners with a classification head),
/// with batch-norm buffers loaded into `backbone`.
fn backbone_weights(trained: &Trained, backbone: &Backbone) -> anyhow::Result<Params> {
    let state = trained.learner.state();
    let has_prefix = state.names().iter().any(|n| n.starts_with("backbone."));
    let part = if has_prefix { state.sub("backbone") } else { state };
    let vs = nn::VarStore::new(trained.device);
    let params = backbone.init(&vs.root())?;
    params.copy_from(&part).context("the run's weights do not fit its configured backbone")?;
    backbone.load_buffers(&part)?;
    Ok(params.detach())
}

/// Options of `metl embed`.
#[derive(Debug, Clone)]
pub struct EmbedOptions {
    /// The run folder.
    pub run_dir: PathBuf,
    /// The images; empty reads paths from stdin, one per line.
    pub images: Vec<PathBuf>,
    /// Write a `.npy` file `[N, D]` instead of text lines.
    pub npy: Option<PathBuf>,
    /// Which weights.
    pub which: Which,
    /// The device.
    pub device: Option<String>,
}

/// Runs `metl embed`.
pub fn embed(options: &EmbedOptions) -> anyhow::Result<()> {
    let mut paths = options.images.clone();
    if paths.is_empty() {
        for line in std::io::stdin().lock().lines() {
            let line = line?;
            if !line.trim().is_empty() {
                paths.push(PathBuf::from(line.trim()));
            }
        }
    }
    if paths.is_empty() {
        return Err(bad_input("no images: give image paths as arguments or on stdin"));
    }
    let trained = load(&options.run_dir, options.which, options.device.as_deref())?;
    let backbone = trained.experiment.model.build().map_err(bad_input)?;
    let params = backbone_weights(&trained, &backbone)?;
    let mut rows = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(256) {
        let x = images(&trained, chunk)?;
        let z = tch::no_grad(|| backbone.forward(&params, &x, false)).flatten(1, -1);
        rows.push(z.to_device(Device::Cpu).to_kind(TKind::Float));
    }
    let embeddings = Tensor::cat(&rows, 0);
    match &options.npy {
        Some(path) => {
            embeddings.write_npy(path).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote {} embeddings of {} values to {}",
                paths.len(),
                embeddings.size()[1],
                path.display()
            );
        }
        None => {
            let values = Vec::<f32>::try_from(embeddings.reshape([-1]))?;
            let d = embeddings.size()[1] as usize;
            for row in values.chunks(d) {
                println!("{}", row.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" "));
            }
        }
    }
    Ok(())
}

/// Options of `metl fewshot`.
#[derive(Debug, Clone)]
pub struct FewshotOptions {
    /// The run folder.
    pub run_dir: PathBuf,
    /// A folder of class folders of support images.
    pub support: PathBuf,
    /// A folder of query images.
    pub query: PathBuf,
    /// The CSV file (default: standard output).
    pub out: Option<PathBuf>,
    /// Adaptation steps (gradient-based learners; default: the run's last test step count).
    pub steps: Option<usize>,
    /// Which weights.
    pub which: Which,
    /// The device.
    pub device: Option<String>,
}

fn image_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| bad_input(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Runs `metl fewshot`.
pub fn fewshot(options: &FewshotOptions) -> anyhow::Result<()> {
    let mut classes: Vec<(String, Vec<PathBuf>)> = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&options.support)
        .map_err(|e| bad_input(format!("--support {}: {e}", options.support.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let files = image_files(&dir)?;
        if files.is_empty() {
            return Err(bad_input(format!(
                "--support: class folder {} has no PNG/JPEG image",
                dir.display()
            )));
        }
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        classes.push((name, files));
    }
    if classes.len() < 2 {
        return Err(bad_input(format!(
            "--support {}: needs at least two class folders of images",
            options.support.display()
        )));
    }
    let queries = image_files(&options.query)?;
    if queries.is_empty() {
        return Err(bad_input(format!("--query {}: no PNG/JPEG image", options.query.display())));
    }
    let trained = load(&options.run_dir, options.which, options.device.as_deref())?;
    let algorithm = trained.experiment.meta.as_ref().expect("a meta run");
    if algorithm.takes_steps()
        && (matches!(trained.experiment.data, DataConfig::Omniglot(_) | DataConfig::ImageFolder(_))
            || trained.experiment.data.few_shot().is_some())
    {
        let ways = trained.experiment.train_episodes().ways;
        if classes.len() != ways {
            return Err(bad_input(format!(
                "--support has {} classes; this {} run has a {ways}-way head: give {ways} class folders",
                classes.len(),
                algorithm.name()
            )));
        }
    }
    let support_paths: Vec<PathBuf> = classes.iter().flat_map(|(_, f)| f.clone()).collect();
    let labels: Vec<i64> =
        classes.iter().enumerate().flat_map(|(i, (_, f))| std::iter::repeat_n(i as i64, f.len())).collect();
    let device = trained.device;
    let batch = TaskBatch {
        support_x: images(&trained, &support_paths)?.unsqueeze(0),
        support_y: Tensor::from_slice(&labels).to_device(device).unsqueeze(0),
        query_x: images(&trained, &queries)?.unsqueeze(0),
        query_y: Tensor::zeros([1, queries.len() as i64], (TKind::Int64, device)),
    };
    let steps = options.steps.unwrap_or_else(|| *trained.experiment.test_steps().last().unwrap_or(&0));
    let logits = trained.learner.adapt_and_predict(&batch, steps)?.squeeze_dim(0);
    let probabilities = logits.softmax(-1, TKind::Float).to_device(Device::Cpu);
    let (score, predicted) = probabilities.max_dim(-1, false);
    let scores = Vec::<f32>::try_from(score)?;
    let predicted = Vec::<i64>::try_from(predicted)?;
    let mut csv = String::from("image,class,probability\n");
    for ((path, class), p) in queries.iter().zip(predicted).zip(scores) {
        let name = &classes[class as usize].0;
        csv.push_str(&format!("{},{},{p:.6}\n", csv_field(&path.display().to_string()), csv_field(name)));
    }
    match &options.out {
        Some(path) => {
            write_atomically(path, csv.as_bytes())?;
            eprintln!("wrote {} predictions to {}", queries.len(), path.display());
        }
        None => print!("{csv}"),
    }
    Ok(())
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}
