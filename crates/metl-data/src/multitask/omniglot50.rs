//! Omniglot-50: Omniglot as 50 classification tasks, one per alphabet, as in Meyerson &
//! Miikkulainen (2018), "Beyond Shared Hierarchies: Deep Multitask Learning through Soft
//! Layer Ordering", and Liang, Meyerson & Miikkulainen (2018), "Evolutionary Architecture
//! Search for Deep Multitask Networks".
//!
//! Task `t` classifies the characters of alphabet `t` (14 to 55 classes). Each character's
//! 20 drawings are split 10 / 4 / 6 into train / validation / test, by a shuffle seeded per
//! character; every sample belongs to exactly one task, which batches carry
//! ([`MultiTaskBatch::task_ids`]). The papers used the 105×105 originals: load Omniglot
//! with `image_size: 105` for that (the default 28 is much cheaper).

use super::{check_indices, MultiTaskBatch, MultiTaskDataset, TaskInfo, TaskKind};
use crate::{
    error::{DataError, Result},
    image::ClassImages,
    omniglot::{Omniglot, OmniglotConfig},
    rng::substream,
    Split,
};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// How drawings are split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Omniglot50Config {
    /// Drawings per character in train, validation and test; default `[10, 4, 6]`.
    pub drawings: [usize; 3],
    /// Seed of the per-character shuffles; default 0.
    pub seed: u64,
    /// The alphabets to keep as tasks, by index into [`Omniglot::alphabets`] (task `t` is
    /// `alphabets[t]`); default all of them. One alphabet gives a single-task baseline on
    /// exactly the samples it has in the multi-task dataset.
    pub alphabets: Option<Vec<usize>>,
}

impl Default for Omniglot50Config {
    fn default() -> Self {
        Self { drawings: [10, 4, 6], seed: 0, alphabets: None }
    }
}

/// One sample: a class (character) and one of its drawings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    class: u32,
    drawing: u32,
}

/// Omniglot's alphabets as a [`MultiTaskDataset`] (see the module docs).
#[derive(Debug)]
pub struct Omniglot50 {
    omniglot: Arc<Omniglot>,
    tasks: Vec<TaskInfo>,
    /// Per class: its index within its alphabet.
    label: Vec<i64>,
    /// Per alphabet: its task, if kept.
    task_of_alphabet: Vec<Option<usize>>,
    samples: [Vec<Sample>; 3],
}

impl Omniglot50 {
    /// Loads Omniglot with `omniglot` and splits it with `config`.
    pub fn load(omniglot: OmniglotConfig, config: Omniglot50Config) -> Result<Self> {
        Self::new(Arc::new(Omniglot::load(omniglot)?), config)
    }

    /// Splits an already loaded Omniglot.
    pub fn new(omniglot: Arc<Omniglot>, config: Omniglot50Config) -> Result<Self> {
        let needed: usize = config.drawings.iter().sum();
        if config.drawings[0] == 0 {
            return Err(DataError::invalid(
                "omniglot50.drawings",
                format!("{:?}", config.drawings),
                "needs at least one training drawing",
            ));
        }
        let all = omniglot.alphabets().len();
        let kept: Vec<usize> = config.alphabets.clone().unwrap_or_else(|| (0..all).collect());
        let mut task_of_alphabet = vec![None; all];
        for (t, &a) in kept.iter().enumerate() {
            if a >= all || task_of_alphabet[a].is_some() {
                return Err(DataError::invalid(
                    "omniglot50.alphabets",
                    format!("{kept:?}"),
                    format!("distinct alphabet indices below {all}"),
                ));
            }
            task_of_alphabet[a] = Some(t);
        }
        if kept.is_empty() {
            return Err(DataError::invalid("omniglot50.alphabets", "[]", "at least one alphabet"));
        }
        let mut tasks = Vec::with_capacity(kept.len());
        let mut label = vec![0; omniglot.num_classes()];
        for &a in &kept {
            let classes = omniglot.classes_of_alphabet(a);
            for (i, class) in classes.clone().enumerate() {
                label[class] = i as i64;
            }
            tasks.push(TaskInfo {
                name: omniglot.alphabets()[a].clone(),
                kind: TaskKind::Classification { classes: classes.len() },
            });
        }
        let mut samples: [Vec<Sample>; 3] = Default::default();
        for class in 0..omniglot.num_classes() {
            if task_of_alphabet[omniglot.alphabet_of(class)].is_none() {
                continue;
            }
            let available = omniglot.class_len(class);
            if available < needed {
                return Err(DataError::NotEnoughExamples {
                    class: omniglot.class_name(class),
                    needed,
                    available,
                });
            }
            // The shuffle depends on the class only: a subset of alphabets keeps exactly
            // the samples these alphabets have in the full dataset.
            let mut drawings: Vec<u32> = (0..available as u32).collect();
            drawings.shuffle(&mut substream(config.seed, class as u64));
            let mut rest = &drawings[..];
            for (split, &n) in samples.iter_mut().zip(&config.drawings) {
                split.extend(rest[..n].iter().map(|&drawing| Sample { class: class as u32, drawing }));
                rest = &rest[n..];
            }
        }
        Ok(Self { omniglot, tasks, label, task_of_alphabet, samples })
    }

    /// The underlying Omniglot.
    pub fn omniglot(&self) -> &Arc<Omniglot> {
        &self.omniglot
    }

    /// `(class, drawing)` of sample `index` of `split`.
    pub fn sample(&self, split: Split, index: usize) -> (usize, usize) {
        let s = self.samples[split.index()][index];
        (s.class as usize, s.drawing as usize)
    }
}

impl MultiTaskDataset for Omniglot50 {
    fn tasks(&self) -> &[TaskInfo] {
        &self.tasks
    }

    fn input_shape(&self) -> Vec<i64> {
        self.omniglot.image_shape().iter().map(|&d| d as i64).collect()
    }

    fn len(&self, split: Split) -> usize {
        self.samples[split.index()].len()
    }

    /// Images `[N, 1, S, S]` (`Float`, strokes 1.0), per-task labels `[N]` (the
    /// character's index within its alphabet, 0 in rows of other tasks), task ids `[N]`.
    fn batch(&self, split: Split, indices: &[usize], device: Device) -> Result<MultiTaskBatch> {
        check_indices(split, indices, self.len(split))?;
        let n = indices.len();
        let shape = self.omniglot.image_shape();
        let mut pixels = Vec::with_capacity(n * shape.iter().product::<usize>());
        let mut task_ids = Vec::with_capacity(n);
        let mut targets = vec![vec![0i64; n]; self.tasks.len()];
        for (row, &i) in indices.iter().enumerate() {
            let (class, drawing) = self.sample(split, i);
            pixels.extend_from_slice(self.omniglot.image(class, drawing));
            let task = self.task_of_alphabet[self.omniglot.alphabet_of(class)]
                .expect("only kept alphabets have samples");
            task_ids.push(task as i64);
            targets[task][row] = self.label[class];
        }
        let mut dims = vec![n as i64];
        dims.extend(shape.iter().map(|&d| d as i64));
        let inputs = Tensor::f_from_slice(&pixels)?.f_view(dims.as_slice())?.f_to_device(device)?;
        let inputs = inputs.f_to_kind(Kind::Float)?.f_div_scalar(255.0)?;
        let targets = targets
            .iter()
            .map(|t| Tensor::f_from_slice(t)?.f_to_device(device))
            .collect::<Result<Vec<_>, _>>()?;
        let task_ids = Tensor::f_from_slice(&task_ids)?.f_to_device(device)?;
        Ok(MultiTaskBatch::one_task_per_sample(inputs, targets, task_ids))
    }
}
