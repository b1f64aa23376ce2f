//! [`Sequential`]: a ready [`Model`] for a stack of layers built by a builder, as
//! `torch.nn.Sequential` stacks them — linear and 2-d convolution layers, batch norm (in
//! metl's three modes), activations, pooling and flatten — so that a network is
//! meta-learned (MAML and the other learners take any [`Model`]) or trained on several
//! tasks without a `Model` written by hand.
//!
//! The builder's calls mirror PyTorch's constructors and defaults: [`SequentialBuilder::conv2d`]
//! is `nn.Conv2d(c_in, c_out, k)` — stride 1 and **no padding** — and
//! [`SequentialBuilder::conv2d_with`] takes stride, padding and bias ([`ConvOptions`]);
//! [`SequentialBuilder::batch_norm2d`] keeps running averages as `nn.BatchNorm2d` does, and
//! [`SequentialBuilder::batch_norm2d_with`] takes any [`BatchNormConfig`](crate::BatchNormConfig)
//! (MAML normalises with the statistics of the current batch only:
//! `BatchNormConfig::batch()`). [`SequentialBuilder::build`] checks the stack and names the
//! first layer at fault by its index.
//!
//! Parameters are named as PyTorch names those of an `nn.Sequential`: layer `i` has
//! `i.weight` and `i.bias`, and batch norm the buffers `i.running_mean`, `i.running_var`
//! and `i.num_batches_tracked` (unless it uses batch statistics only); every layer counts,
//! activations and pooling included, so a `state_dict` moves between the two. They are
//! initialised as PyTorch initialises them.
//!
//! Inputs are `[B, C, H, W]` images for a stack that starts with a convolution or pooling,
//! and `[B, F]` features for one that starts with a linear layer; the output is whatever the
//! last layer gives (`[B, K]` after a linear layer). Channels and features of consecutive
//! layers are checked when the stack is built; spatial sizes (an image too small for the
//! layers) only when an input shape is known: [`Sequential::shapes`], or a bad input at
//! forward time, where libtorch panics as for the crate's other models.
//!
//! The task-batched pass ([`Model::forward_tasks`], `[T, B, ...]` inputs with task-stacked
//! parameters) evaluates all tasks with one kernel per layer, as the crate's own models do:
//! grouped convolutions over the tasks' channels, batched matrix products for linear layers,
//! per-task statistics in batch norm; its results and gradients are those of one
//! [`Model::forward`] per task. Inputs of other ranks (`[T, B, C, L]`, say) run the tasks
//! one after another.
//!
//! As a [`StagedModel`] (for the multi-task architectures acting between layers), a stage
//! begins at every linear or convolution layer and takes the layers that follow it up to
//! the next one (batch norm, activation, pooling, flatten).
//!
//! ```
//! use metl_models::{sequential::{ConvOptions, Sequential}, BatchNormConfig, Model};
//! use tch::{nn, Device, Kind, Tensor};
//!
//! // MAML's Omniglot network: 4 × [conv 3×3 (padding 1) → batch norm → ReLU → max-pool 2],
//! // then a 5-way linear layer on the 64 features.
//! let mut builder = Sequential::builder();
//! for c_in in [1, 64, 64, 64] {
//!     builder = builder
//!         .conv2d_with(c_in, 64, 3, ConvOptions::default().with_padding(1))
//!         .batch_norm2d_with(64, BatchNormConfig::batch())
//!         .relu()
//!         .max_pool2d(2);
//! }
//! let net = builder.flatten().linear(64, 5).build().unwrap();
//! let vs = nn::VarStore::new(Device::Cpu);
//! let theta = net.init(&vs.root()).unwrap();
//! assert_eq!(theta.numel(), 112_261); // as in PyTorch
//! assert_eq!(&theta.names()[..3], ["0.weight", "0.bias", "1.weight"]);
//! let x = Tensor::rand([10, 1, 28, 28], (Kind::Float, Device::Cpu));
//! assert_eq!(net.forward(&theta, &x, true).size(), [10, 5]);
//! // A meta-batch of 4 tasks at once, each with its own parameters.
//! let x = Tensor::rand([4, 10, 1, 28, 28], (Kind::Float, Device::Cpu));
//! assert_eq!(net.forward_tasks(&theta.expand_tasks(4), &x, true).size(), [4, 10, 5]);
//!
//! // Stacks that cannot work are errors naming the layer.
//! let err = Sequential::builder().conv2d(1, 8, 3).relu().linear(8, 2).build().unwrap_err();
//! assert!(err.to_string().starts_with("sequential.layers[2] = linear(8, 2)"));
//! ```

mod builder;
mod layer;
#[cfg(test)]
mod tests;

pub use builder::{ConvOptions, SequentialBuilder};

use crate::{
    batch_norm::{collect_buffers, load_all_buffers, BatchNorm},
    error::{ModelError, Result},
    layers::{images_to_conv_format, images_to_task_channels, in_task_chunks},
    model::{forward_tasks_looped_at_step, Mode},
    params::ParamsBuilder,
    staged::StagedModel,
    Model, Params,
};
use layer::{Layer, TaskActivation};
use tch::{nn, Kind, Tensor};

/// A stack of layers applied in order, made by [`Sequential::builder`]; see the [module
/// documentation](self).
///
/// Cloning copies batch norm's running averages (a clone is an independent network).
#[derive(Debug, Clone)]
pub struct Sequential {
    layers: Vec<Layer>,
}

impl Sequential {
    /// An empty builder.
    pub fn builder() -> SequentialBuilder {
        SequentialBuilder::default()
    }

    /// The number of layers (activations, pooling and flatten included).
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are no layers (never, for a built network).
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The per-sample output shape of every layer for a per-sample input shape (`[C, H, W]`
    /// or `[F]`), or an error naming the first layer the input does not fit (wrong channels
    /// or features, an image smaller than a kernel or a pooling window).
    pub fn shapes(&self, input_shape: &[i64]) -> Result<Vec<Vec<i64>>> {
        let mut shape = input_shape.to_vec();
        let mut shapes = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            shape = layer.output_shape(&shape).map_err(|why| {
                ModelError::invalid(
                    "sequential input shape",
                    format!("{input_shape:?}"),
                    format!("does not fit layer {i} ({}): {why}", layer.describe()),
                )
            })?;
            shapes.push(shape.clone());
        }
        Ok(shapes)
    }

    fn norms(&self) -> impl Iterator<Item = &BatchNorm> {
        self.layers.iter().filter_map(Layer::batch_norm)
    }

    /// The bytes of the largest activation of a pass on a batch of `shape` `[B, ...]`
    /// (for the [`crate::batching`] policy; the layers it cannot follow are left out).
    fn largest_activation_bytes(&self, shape: &[i64], kind: Kind) -> usize {
        let (batch, mut sample) = (shape[0], shape[1..].to_vec());
        let mut largest: i64 = sample.iter().product();
        for layer in &self.layers {
            let Ok(next) = layer.output_shape(&sample) else { break };
            largest = largest.max(next.iter().product());
            sample = next;
        }
        (batch * largest) as usize * kind.elt_size_in_bytes()
    }

    fn run(&self, params: &Params, x: &Tensor, mode: Mode) -> Tensor {
        let h = if x.dim() == 4 {
            images_to_conv_format(x, self.largest_activation_bytes(&x.size(), x.kind()))
        } else {
            x.shallow_clone()
        };
        self.layers.iter().fold(h, |h, layer| layer.forward(params, &h, mode))
    }

    /// Whether every layer has a task-batched kernel for the layout it receives when the
    /// input is images (else features).
    fn task_batchable(&self, images: bool) -> bool {
        self.layers.iter().try_fold(images, |images, layer| layer.task_layout_after(images)).is_some()
    }

    fn run_tasks(&self, params: &Params, x: &Tensor, mode: Mode) -> Tensor {
        let tasks = x.size()[0];
        match x.dim() {
            3 if self.task_batchable(false) => {
                self.task_pass(params, TaskActivation::Features(x.shallow_clone()), mode, tasks)
            }
            5 if self.task_batchable(true) => {
                let bytes = |x: &Tensor| self.largest_activation_bytes(&x.size()[1..], x.kind());
                in_task_chunks(params, x, bytes(x), |p, x| {
                    let h = images_to_task_channels(x, bytes(x));
                    self.task_pass(p, TaskActivation::Images(h), mode, x.size()[0])
                })
            }
            _ => forward_tasks_looped_at_step(self, params, x, mode.train, mode.step),
        }
    }

    /// Every layer on task-batched activations, then the output as `[T, B, ...]`.
    fn task_pass(&self, params: &Params, h: TaskActivation, mode: Mode, tasks: i64) -> Tensor {
        let h = self.layers.iter().fold(h, |h, layer| layer.forward_tasks(params, h, mode, tasks));
        match h {
            TaskActivation::Features(h) => h,
            TaskActivation::Images(h) => {
                let s = h.size();
                h.reshape([s[0], tasks, -1, s[2], s[3]]).transpose(0, 1)
            }
        }
    }

    /// The index of the first layer of every stage (see the [module documentation](self)).
    fn stage_starts(&self) -> Vec<usize> {
        let mut starts: Vec<usize> = (0..self.layers.len())
            .filter(|&i| matches!(self.layers[i], Layer::Linear(_) | Layer::Conv2d(_)))
            .collect();
        match starts.first_mut() {
            Some(first) => *first = 0,
            None => starts.push(0),
        }
        starts
    }

    /// The layer indices of stage `stage`.
    fn stage_layers(&self, stage: usize) -> std::ops::Range<usize> {
        let starts = self.stage_starts();
        starts[stage]..starts.get(stage + 1).copied().unwrap_or(self.layers.len())
    }
}

impl Model for Sequential {
    fn init(&self, path: &nn::Path<'_>) -> Result<Params> {
        let mut builder = ParamsBuilder::new(path);
        for layer in &self.layers {
            layer.init(&mut builder)?;
        }
        builder.build()
    }

    /// The layers in order on `x` `[B, C, H, W]` or `[B, F]` (see the [module
    /// documentation](self)).
    fn forward(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        self.run(params, x, Mode::new(train, 0))
    }

    fn forward_at_step(&self, params: &Params, x: &Tensor, train: bool, step: usize) -> Tensor {
        self.run(params, x, Mode::new(train, step))
    }

    /// Grouped convolutions over `[B, T·C, H, W]`, batched matrix products over `[T, B, F]`
    /// and per-task batch norm, for `x` `[T, B, C, H, W]` or `[T, B, F]` (other ranks run
    /// task by task).
    fn forward_tasks(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        self.run_tasks(params, x, Mode::new(train, 0))
    }

    fn forward_tasks_at_step(&self, params: &Params, x: &Tensor, train: bool, step: usize) -> Tensor {
        self.run_tasks(params, x, Mode::new(train, step))
    }

    fn buffers(&self) -> Params {
        collect_buffers(self.norms())
    }

    fn load_buffers(&self, buffers: &Params) -> Result<()> {
        load_all_buffers(self.norms(), buffers)
    }
}

impl StagedModel for Sequential {
    fn num_stages(&self) -> usize {
        self.stage_starts().len()
    }

    fn stage_shapes(&self, input_shape: &[i64]) -> Result<Vec<Vec<i64>>> {
        let shapes = self.shapes(input_shape)?;
        Ok((0..self.num_stages()).map(|s| shapes[self.stage_layers(s).end - 1].clone()).collect())
    }

    fn output_shape(&self, input_shape: &[i64]) -> Result<Vec<i64>> {
        Ok(self.shapes(input_shape)?.pop().expect("a built network has layers"))
    }

    fn forward_stage(&self, params: &Params, stage: usize, h: &Tensor, mode: Mode) -> Tensor {
        self.layers[self.stage_layers(stage)]
            .iter()
            .fold(h.shallow_clone(), |h, layer| layer.forward(params, &h, mode))
    }

    fn finish(&self, h: &Tensor) -> Tensor {
        h.shallow_clone()
    }
}
