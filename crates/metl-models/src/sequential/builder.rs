//! [`SequentialBuilder`]: a [`Sequential`] layer by layer, checked by
//! [`SequentialBuilder::build`].

use super::{layer::Layer, Sequential};
use crate::{
    batch_norm::{BatchNorm, BatchNormConfig},
    error::{ModelError, Result},
    layers::{Conv2d, Linear},
    mlp::Activation,
};

/// Stride, padding and bias of a [`SequentialBuilder::conv2d_with`] convolution; the
/// default is PyTorch's `nn.Conv2d` default: stride 1, no padding, with bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvOptions {
    /// The stride along both spatial axes (default 1).
    pub stride: i64,
    /// The zero padding on every side (default 0; `kernel / 2` keeps the size of odd
    /// kernels at stride 1).
    pub padding: i64,
    /// Whether the layer has a bias (default true).
    pub bias: bool,
}

impl Default for ConvOptions {
    fn default() -> Self {
        Self { stride: 1, padding: 0, bias: true }
    }
}

impl ConvOptions {
    /// The same with another stride.
    pub fn with_stride(mut self, stride: i64) -> Self {
        self.stride = stride;
        self
    }

    /// The same with another padding.
    pub fn with_padding(mut self, padding: i64) -> Self {
        self.padding = padding;
        self
    }

    /// The same without bias (`bias=False`, as before a batch norm).
    pub fn without_bias(mut self) -> Self {
        self.bias = false;
        self
    }
}

/// Builds a [`Sequential`] layer by layer, in the order of a `torch.nn.Sequential`; see
/// the [module documentation](super). Nothing is checked before [`SequentialBuilder::build`].
#[derive(Debug, Clone, Default)]
pub struct SequentialBuilder {
    layers: Vec<Layer>,
}

impl SequentialBuilder {
    /// The name of the next layer: its index, as `nn.Sequential` names its children.
    fn next_name(&self) -> String {
        self.layers.len().to_string()
    }

    fn push(mut self, layer: Layer) -> Self {
        self.layers.push(layer);
        self
    }

    /// `nn.Linear(inputs, outputs)`: on `[B, inputs]`, parameters `i.weight`
    /// `[outputs, inputs]` and `i.bias` `[outputs]`.
    pub fn linear(self, inputs: i64, outputs: i64) -> Self {
        let name = self.next_name();
        self.push(Layer::Linear(Linear::new(name, inputs, outputs)))
    }

    /// `nn.Linear(inputs, outputs, bias=False)`.
    pub fn linear_without_bias(self, inputs: i64, outputs: i64) -> Self {
        let name = self.next_name();
        self.push(Layer::Linear(Linear { bias: false, ..Linear::new(name, inputs, outputs) }))
    }

    /// `nn.Conv2d(in_channels, out_channels, kernel)` with PyTorch's defaults: stride 1,
    /// **no padding**, with bias; on `[B, in_channels, H, W]`, parameters `i.weight`
    /// `[out_channels, in_channels, kernel, kernel]` and `i.bias` `[out_channels]`.
    pub fn conv2d(self, in_channels: i64, out_channels: i64, kernel: i64) -> Self {
        self.conv2d_with(in_channels, out_channels, kernel, ConvOptions::default())
    }

    /// `nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias)`.
    pub fn conv2d_with(self, in_channels: i64, out_channels: i64, kernel: i64, options: ConvOptions) -> Self {
        let ConvOptions { stride, padding, bias } = options;
        let name = self.next_name();
        let conv = Conv2d { name, in_channels, out_channels, kernel, stride, padding, bias };
        self.push(Layer::Conv2d(conv))
    }

    /// `nn.BatchNorm1d(features)`: on `[B, features]`, with PyTorch's running averages
    /// ([`BatchNormConfig::default`]).
    pub fn batch_norm1d(self, features: i64) -> Self {
        self.batch_norm1d_with(features, BatchNormConfig::default())
    }

    /// Batch norm over `[B, features]` in any of metl's modes ([`crate::batch_norm`]):
    /// batch statistics (MAML), running averages, MAML++'s per-step statistics.
    pub fn batch_norm1d_with(self, features: i64, config: BatchNormConfig) -> Self {
        self.batch_norm(features, config, false)
    }

    /// `nn.BatchNorm2d(channels)`: on `[B, channels, H, W]`, with PyTorch's running averages
    /// ([`BatchNormConfig::default`]); MAML's transductive batch norm is
    /// `batch_norm2d_with(channels, BatchNormConfig::batch())`.
    pub fn batch_norm2d(self, channels: i64) -> Self {
        self.batch_norm2d_with(channels, BatchNormConfig::default())
    }

    /// Batch norm over the channels of `[B, channels, H, W]` in any of metl's modes
    /// ([`crate::batch_norm`]): batch statistics (MAML), running averages, MAML++'s per-step
    /// statistics.
    pub fn batch_norm2d_with(self, channels: i64, config: BatchNormConfig) -> Self {
        self.batch_norm(channels, config, true)
    }

    fn batch_norm(self, channels: i64, config: BatchNormConfig, images: bool) -> Self {
        let bn = BatchNorm::new(self.next_name(), channels, config);
        self.push(Layer::BatchNorm { bn, channels, images })
    }

    /// An element-wise non-linearity (no parameters).
    pub fn activation(self, activation: Activation) -> Self {
        self.push(Layer::Activation(activation))
    }

    /// `nn.ReLU()`.
    pub fn relu(self) -> Self {
        self.activation(Activation::Relu)
    }

    /// `nn.Tanh()`.
    pub fn tanh(self) -> Self {
        self.activation(Activation::Tanh)
    }

    /// `nn.Sigmoid()`.
    pub fn sigmoid(self) -> Self {
        self.activation(Activation::Sigmoid)
    }

    /// `nn.GELU()` (exact, erf form).
    pub fn gelu(self) -> Self {
        self.activation(Activation::Gelu)
    }

    /// `nn.LeakyReLU(negative_slope)`: `x` for `x ≥ 0`, else `negative_slope · x`.
    pub fn leaky_relu(self, negative_slope: f64) -> Self {
        self.push(Layer::LeakyRelu(negative_slope))
    }

    /// `nn.MaxPool2d(kernel)`: windows of `kernel × kernel` with stride `kernel`, no padding
    /// (`H → ⌊H / kernel⌋`).
    pub fn max_pool2d(self, kernel: i64) -> Self {
        self.push(Layer::MaxPool2d(kernel))
    }

    /// `nn.AvgPool2d(kernel)`: windows of `kernel × kernel` with stride `kernel`, no padding.
    pub fn avg_pool2d(self, kernel: i64) -> Self {
        self.push(Layer::AvgPool2d(kernel))
    }

    /// `nn.Flatten()`: `[B, ...]` to `[B, F]`.
    pub fn flatten(self) -> Self {
        self.push(Layer::Flatten)
    }

    /// The network, after checking the stack: at least one layer with parameters; positive
    /// sizes, kernels and strides, non-negative padding, finite leaky-ReLU slopes, valid
    /// batch-norm settings; consecutive layers that agree on channels or features where both
    /// are known; no convolution, pooling or 2-d batch norm on flattened features (after
    /// `flatten` or a linear layer) and no linear layer or 1-d batch norm on images (after a
    /// convolution or pooling without `flatten`).
    ///
    /// Errors are [`ModelError::Config`] naming the layer by its index, as
    /// `sequential.layers[2] = conv2d(8, 8, 3): ...`.
    pub fn build(self) -> Result<Sequential> {
        if !self.layers.iter().any(Layer::has_params) {
            return Err(ModelError::invalid(
                "sequential.layers",
                format!("{} layers without parameters", self.layers.len()),
                "needs at least one layer with parameters (linear, conv2d, batch norm)",
            ));
        }
        let mut shape = Shape::Unknown;
        for (i, layer) in self.layers.iter().enumerate() {
            shape = next_shape(layer, shape).map_err(|why| {
                ModelError::invalid(format!("sequential.layers[{i}]"), layer.describe(), why)
            })?;
        }
        Ok(Sequential { layers: self.layers })
    }
}

/// What the layers so far produce, as far as the builder knows without an input shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Whatever the input is (no layer that fixes it yet).
    Unknown,
    /// Images with this many channels, or an unknown number.
    Images(Option<i64>),
    /// Flat features `[B, F]`, of this many or an unknown number.
    Features(Option<i64>),
}

/// The shape after `layer` given the shape before it, or why the layer cannot follow.
fn next_shape(layer: &Layer, shape: Shape) -> std::result::Result<Shape, String> {
    let mismatch = |what: &str, wanted: i64, given: Option<i64>| match given {
        Some(g) if g != wanted => Err(format!("takes {wanted} {what}, the layer before gives {g}")),
        _ => Ok(()),
    };
    let on_images = |what: &str| match shape {
        Shape::Features(_) => Err(format!(
            "{what} needs [B, C, H, W] inputs, not the flat features of a flatten or linear layer before it"
        )),
        _ => Ok(()),
    };
    let on_features = |what: &str| match shape {
        Shape::Images(_) => Err(format!("{what} needs [B, F] inputs: add flatten() after the convolutions")),
        _ => Ok(()),
    };
    match layer {
        Layer::Linear(l) => {
            if l.in_features < 1 || l.out_features < 1 {
                return Err("features must be >= 1".into());
            }
            on_features("a linear layer")?;
            if let Shape::Features(f) = shape {
                mismatch("features", l.in_features, f)?;
            }
            Ok(Shape::Features(Some(l.out_features)))
        }
        Layer::Conv2d(c) => {
            if c.in_channels < 1 || c.out_channels < 1 || c.kernel < 1 || c.stride < 1 || c.padding < 0 {
                return Err("channels, kernel and stride must be >= 1, padding >= 0".into());
            }
            on_images("a convolution")?;
            if let Shape::Images(ch) = shape {
                mismatch("channels", c.in_channels, ch)?;
            }
            Ok(Shape::Images(Some(c.out_channels)))
        }
        Layer::BatchNorm { bn, channels, images } => {
            bn.config().validate().map_err(|e| e.to_string())?;
            if *channels < 1 {
                return Err("channels must be >= 1".into());
            }
            if *images {
                on_images("batch_norm2d")?;
            } else {
                on_features("batch_norm1d")?;
            }
            match shape {
                Shape::Images(c) => {
                    mismatch("channels", *channels, c).map(|()| Shape::Images(Some(*channels)))
                }
                Shape::Features(f) => {
                    mismatch("features", *channels, f).map(|()| Shape::Features(Some(*channels)))
                }
                Shape::Unknown if *images => Ok(Shape::Images(Some(*channels))),
                Shape::Unknown => Ok(Shape::Features(Some(*channels))),
            }
        }
        Layer::MaxPool2d(k) | Layer::AvgPool2d(k) => {
            if *k < 1 {
                return Err("the kernel must be >= 1".into());
            }
            on_images("pooling")?;
            Ok(match shape {
                Shape::Unknown => Shape::Images(None),
                other => other,
            })
        }
        Layer::Flatten => Ok(match shape {
            Shape::Features(f) => Shape::Features(f),
            _ => Shape::Features(None),
        }),
        Layer::LeakyRelu(slope) if !slope.is_finite() => Err("the slope must be finite".into()),
        Layer::Activation(_) | Layer::LeakyRelu(_) => Ok(shape),
    }
}
