//! [`Sequential`]: a ready [`Model`] for stacks of layers built by a builder, as
//! `torch.nn.Sequential` builds them — linear and 2-d convolution layers, batch norm (in
//! metl's three modes), activations, pooling and flatten — so that a network needs no
//! `Model` written by hand to be meta-learned or trained on several tasks.
//!
//! Parameters are named as PyTorch names those of an `nn.Sequential`: layer `i`'s
//! `i.weight` and `i.bias` (batch norm's buffers `i.running_mean`, `i.running_var`,
//! `i.num_batches_tracked`), every layer counting, activations and pooling included; they
//! are initialised as PyTorch initialises them.
//!
//! ```
//! use metl_models::{sequential::Sequential, BatchNormConfig, Model};
//! use tch::{nn, Device, Kind, Tensor};
//!
//! // MAML's Omniglot network: 4 × [conv 3×3 (padding 1) → batch norm → ReLU → max-pool 2], a 5-way head.
//! let mut builder = Sequential::builder();
//! for c_in in [1, 64, 64, 64] {
//!     builder = builder
//!         .conv2d_with(c_in, 64, 3, 1, 1)
//!         .batch_norm2d_with(64, BatchNormConfig::batch())
//!         .relu()
//!         .max_pool2d(2);
//! }
//! let net = builder.flatten().linear(64, 5).build().unwrap();
//! let vs = nn::VarStore::new(Device::Cpu);
//! let theta = net.init(&vs.root()).unwrap();
//! assert_eq!(theta.numel(), 112_261);
//! assert_eq!(&theta.names()[..3], ["0.weight", "0.bias", "1.weight"]);
//! let logits = net.forward(&theta, &Tensor::rand([10, 1, 28, 28], (Kind::Float, Device::Cpu)), true);
//! assert_eq!(logits.size(), [10, 5]);
//! ```
//!
//! Inputs are `[B, C, H, W]` before a convolution and `[B, F]` before a linear layer; a
//! mismatch of sizes between consecutive layers is caught by [`SequentialBuilder::build`]
//! where the builder knows both (channels and features), otherwise by libtorch at the first
//! forward pass. Task-stacked passes ([`Model::forward_tasks`]) run the tasks one after
//! another.

use crate::{
    batch_norm::{collect_buffers, load_all_buffers, BatchNorm, BatchNormConfig},
    error::{ModelError, Result},
    layers::{Conv2d, Layout, Linear, WeightInit},
    mlp::Activation,
    model::Mode,
    Model, Params, ParamsBuilder,
};
use tch::{nn, Tensor};

/// One layer of a [`Sequential`].
#[derive(Debug, Clone)]
enum Layer {
    Linear(Linear),
    Conv2d(Conv2d),
    BatchNorm(BatchNorm),
    Activation(Activation),
    LeakyRelu(f64),
    MaxPool2d(i64),
    AvgPool2d(i64),
    Flatten,
}

impl Layer {
    fn describe(&self) -> String {
        match self {
            Layer::Linear(l) => format!("linear({}, {})", l.in_features, l.out_features),
            Layer::Conv2d(c) => format!("conv2d({}, {}, {})", c.in_channels, c.out_channels, c.kernel),
            Layer::BatchNorm(b) => format!("batch_norm({})", b.name()),
            Layer::Activation(a) => format!("{a:?}").to_lowercase(),
            Layer::LeakyRelu(s) => format!("leaky_relu({s})"),
            Layer::MaxPool2d(k) => format!("max_pool2d({k})"),
            Layer::AvgPool2d(k) => format!("avg_pool2d({k})"),
            Layer::Flatten => "flatten".into(),
        }
    }
}

/// Builds a [`Sequential`] layer by layer; see the [module documentation](self).
#[derive(Debug, Clone, Default)]
pub struct SequentialBuilder {
    layers: Vec<Layer>,
    /// Batch norm's channel count per batch-norm layer index (checked at build).
    norms: Vec<(usize, i64, BatchNormConfig)>,
}

impl SequentialBuilder {
    fn name(&self) -> String {
        self.layers.len().to_string()
    }

    fn push(mut self, layer: Layer) -> Self {
        self.layers.push(layer);
        self
    }

    /// `nn.Linear(inputs, outputs)`.
    pub fn linear(self, inputs: i64, outputs: i64) -> Self {
        let name = self.name();
        self.push(Layer::Linear(Linear::new(name, inputs, outputs)))
    }

    /// `nn.Linear(inputs, outputs, bias=False)`.
    pub fn linear_without_bias(self, inputs: i64, outputs: i64) -> Self {
        let name = self.name();
        self.push(Layer::Linear(Linear { bias: false, ..Linear::new(name, inputs, outputs) }))
    }

    /// `nn.Conv2d(in_channels, out_channels, kernel)`: stride 1, no padding, with bias.
    pub fn conv2d(self, in_channels: i64, out_channels: i64, kernel: i64) -> Self {
        self.conv2d_with(in_channels, out_channels, kernel, 1, 0)
    }

    /// `nn.Conv2d(in_channels, out_channels, kernel, stride, padding)`, with bias.
    pub fn conv2d_with(
        self,
        in_channels: i64,
        out_channels: i64,
        kernel: i64,
        stride: i64,
        padding: i64,
    ) -> Self {
        let name = self.name();
        let conv =
            Conv2d { padding, ..Conv2d::same(name, in_channels, out_channels, kernel).with_stride(stride) };
        self.push(Layer::Conv2d(conv))
    }

    /// Batch norm over `channels` features of `[B, F]` inputs, with PyTorch's running
    /// averages ([`BatchNormConfig::default`]).
    pub fn batch_norm1d(self, channels: i64) -> Self {
        self.batch_norm2d_with(channels, BatchNormConfig::default())
    }

    /// Batch norm over the `channels` of `[B, C, H, W]` inputs, with PyTorch's running
    /// averages ([`BatchNormConfig::default`]).
    pub fn batch_norm2d(self, channels: i64) -> Self {
        self.batch_norm2d_with(channels, BatchNormConfig::default())
    }

    /// Batch norm over `channels` (of `[B, C, ...]` inputs) in any of metl's modes: batch
    /// statistics (MAML), running averages, MAML++'s per-step statistics.
    pub fn batch_norm2d_with(mut self, channels: i64, config: BatchNormConfig) -> Self {
        let name = self.name();
        self.norms.push((self.layers.len(), channels, config));
        self.push(Layer::BatchNorm(BatchNorm::new(name, channels, config)))
    }

    /// `nn.ReLU()`.
    pub fn relu(self) -> Self {
        self.push(Layer::Activation(Activation::Relu))
    }

    /// `nn.Tanh()`.
    pub fn tanh(self) -> Self {
        self.push(Layer::Activation(Activation::Tanh))
    }

    /// `nn.Sigmoid()`.
    pub fn sigmoid(self) -> Self {
        self.push(Layer::Activation(Activation::Sigmoid))
    }

    /// `nn.GELU()`.
    pub fn gelu(self) -> Self {
        self.push(Layer::Activation(Activation::Gelu))
    }

    /// `nn.LeakyReLU(slope)`.
    pub fn leaky_relu(self, slope: f64) -> Self {
        self.push(Layer::LeakyRelu(slope))
    }

    /// `nn.MaxPool2d(kernel)` (stride = kernel).
    pub fn max_pool2d(self, kernel: i64) -> Self {
        self.push(Layer::MaxPool2d(kernel))
    }

    /// `nn.AvgPool2d(kernel)` (stride = kernel).
    pub fn avg_pool2d(self, kernel: i64) -> Self {
        self.push(Layer::AvgPool2d(kernel))
    }

    /// `nn.Flatten()`: `[B, ...]` to `[B, F]`.
    pub fn flatten(self) -> Self {
        self.push(Layer::Flatten)
    }

    /// The network, after checking the stack: at least one layer with parameters, positive
    /// sizes, consecutive layers that agree on channels or features where both are known,
    /// no convolution after a flatten or a linear layer, valid batch-norm settings.
    pub fn build(self) -> Result<Sequential> {
        let bad = |i: usize, layer: &Layer, why: String| {
            ModelError::invalid("sequential", format!("layer {i} ({})", layer.describe()), why)
        };
        // What the previous layers produce: channels of images, or features of vectors.
        #[derive(Clone, Copy)]
        enum Shape {
            Unknown,
            Channels(i64),
            Features(i64),
            Flat,
        }
        let mut shape = Shape::Unknown;
        for (i, layer) in self.layers.iter().enumerate() {
            shape = match layer {
                Layer::Linear(l) => {
                    if l.in_features < 1 || l.out_features < 1 {
                        return Err(bad(i, layer, "sizes must be >= 1".into()));
                    }
                    match shape {
                        Shape::Features(f) if f != l.in_features => {
                            return Err(bad(
                                i,
                                layer,
                                format!("takes {} features, the layer before gives {f}", l.in_features),
                            ));
                        }
                        Shape::Channels(_) => {
                            return Err(bad(
                                i,
                                layer,
                                "needs [B, F] inputs: add flatten() after the convolutions".into(),
                            ));
                        }
                        _ => Shape::Features(l.out_features),
                    }
                }
                Layer::Conv2d(c) => {
                    if c.in_channels < 1
                        || c.out_channels < 1
                        || c.kernel < 1
                        || c.stride < 1
                        || c.padding < 0
                    {
                        return Err(bad(i, layer, "sizes and stride must be >= 1, padding >= 0".into()));
                    }
                    match shape {
                        Shape::Channels(ch) if ch != c.in_channels => {
                            return Err(bad(
                                i,
                                layer,
                                format!("takes {} channels, the layer before gives {ch}", c.in_channels),
                            ));
                        }
                        Shape::Features(_) | Shape::Flat => {
                            return Err(bad(
                                i,
                                layer,
                                "a convolution needs [B, C, H, W] inputs, not flattened ones".into(),
                            ));
                        }
                        _ => Shape::Channels(c.out_channels),
                    }
                }
                Layer::BatchNorm(b) => {
                    let channels = self.norms.iter().find(|(j, _, _)| *j == i).map_or(0, |n| n.1);
                    b.config().validate()?;
                    if channels < 1 {
                        return Err(bad(i, layer, "channels must be >= 1".into()));
                    }
                    match shape {
                        Shape::Channels(c) | Shape::Features(c) if c != channels => {
                            return Err(bad(
                                i,
                                layer,
                                format!("normalises {channels} channels, the layer before gives {c}"),
                            ));
                        }
                        other => other,
                    }
                }
                Layer::MaxPool2d(k) | Layer::AvgPool2d(k) => {
                    if *k < 1 {
                        return Err(bad(i, layer, "kernel must be >= 1".into()));
                    }
                    shape
                }
                Layer::Flatten => Shape::Flat,
                Layer::Activation(_) | Layer::LeakyRelu(_) => shape,
            };
        }
        if !self.layers.iter().any(|l| matches!(l, Layer::Linear(_) | Layer::Conv2d(_) | Layer::BatchNorm(_)))
        {
            return Err(ModelError::invalid(
                "sequential",
                format!("{} layers", self.layers.len()),
                "needs at least one layer with parameters (linear, conv2d, batch norm)",
            ));
        }
        Ok(Sequential { layers: self.layers })
    }
}

/// A stack of layers applied in order; see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct Sequential {
    layers: Vec<Layer>,
}

impl Sequential {
    /// An empty builder.
    pub fn builder() -> SequentialBuilder {
        SequentialBuilder::default()
    }

    /// The number of layers (activations and pooling included).
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are no layers (never, for a built network).
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    fn norms(&self) -> impl Iterator<Item = &BatchNorm> {
        self.layers.iter().filter_map(|l| match l {
            Layer::BatchNorm(b) => Some(b),
            _ => None,
        })
    }

    fn run(&self, params: &Params, x: &Tensor, mode: Mode) -> Tensor {
        self.layers.iter().fold(x.shallow_clone(), |h, layer| match layer {
            Layer::Linear(l) => l.forward(params, &h, Layout::Single),
            Layer::Conv2d(c) => c.forward(params, &h, Layout::Single),
            Layer::BatchNorm(b) => b.forward(params, &h, mode),
            Layer::Activation(a) => a.apply(&h),
            Layer::LeakyRelu(slope) => h.where_self(&h.ge(0.0), &(&h * *slope)),
            Layer::MaxPool2d(k) => h.max_pool2d([*k, *k], [*k, *k], [0, 0], [1, 1], false),
            Layer::AvgPool2d(k) => h.avg_pool2d([*k, *k], [*k, *k], [0, 0], false, true, None::<i64>),
            Layer::Flatten => h.flatten(1, -1),
        })
    }
}

impl Model for Sequential {
    fn init(&self, path: &nn::Path<'_>) -> Result<Params> {
        let mut builder = ParamsBuilder::new(path);
        for layer in &self.layers {
            match layer {
                Layer::Linear(l) => l.init(&mut builder)?,
                Layer::Conv2d(c) => c.init(&mut builder, WeightInit::TorchDefault)?,
                Layer::BatchNorm(b) => b.init(&mut builder)?,
                _ => {}
            }
        }
        builder.build()
    }

    fn forward(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        self.run(params, x, Mode::new(train, 0))
    }

    fn forward_at_step(&self, params: &Params, x: &Tensor, train: bool, step: usize) -> Tensor {
        self.run(params, x, Mode::new(train, step))
    }

    fn buffers(&self) -> Params {
        collect_buffers(self.norms())
    }

    fn load_buffers(&self, buffers: &Params) -> Result<()> {
        load_all_buffers(self.norms(), buffers)
    }
}
