//! The layers of a [`super::Sequential`]: their parameters, their per-sample output shapes
//! and their forward passes on one parameter set or on `T` task-stacked ones.

use crate::{
    batch_norm::BatchNorm,
    error::Result,
    layers::{flatten_task_channels, Conv2d, Layout, Linear, WeightInit},
    mlp::Activation,
    model::Mode,
    params::ParamsBuilder,
    Params,
};
use tch::Tensor;

/// One layer of a [`super::Sequential`].
#[derive(Debug, Clone)]
pub(super) enum Layer {
    Linear(Linear),
    Conv2d(Conv2d),
    /// Batch norm over `channels`; `images` for `batch_norm2d` (`[B, C, H, W]` inputs),
    /// else `batch_norm1d` (`[B, F]`).
    BatchNorm {
        bn: BatchNorm,
        channels: i64,
        images: bool,
    },
    Activation(Activation),
    LeakyRelu(f64),
    MaxPool2d(i64),
    AvgPool2d(i64),
    Flatten,
}

/// Activations of a task-batched pass: images `[B, T·C, H, W]` (task-major channels) or
/// features `[T, B, F]`.
pub(super) enum TaskActivation {
    Images(Tensor),
    Features(Tensor),
}

impl Layer {
    /// The layer as its builder call, for error messages.
    pub(super) fn describe(&self) -> String {
        match self {
            Layer::Linear(l) => format!("linear({}, {})", l.in_features, l.out_features),
            Layer::Conv2d(c) => format!("conv2d({}, {}, {})", c.in_channels, c.out_channels, c.kernel),
            Layer::BatchNorm { channels, images: true, .. } => format!("batch_norm2d({channels})"),
            Layer::BatchNorm { channels, images: false, .. } => format!("batch_norm1d({channels})"),
            Layer::Activation(a) => format!("{a:?}").to_lowercase(),
            Layer::LeakyRelu(s) => format!("leaky_relu({s})"),
            Layer::MaxPool2d(k) => format!("max_pool2d({k})"),
            Layer::AvgPool2d(k) => format!("avg_pool2d({k})"),
            Layer::Flatten => "flatten".into(),
        }
    }

    /// Whether the layer has parameters (and so starts a stage when it is linear or conv).
    pub(super) fn has_params(&self) -> bool {
        matches!(self, Layer::Linear(_) | Layer::Conv2d(_) | Layer::BatchNorm { .. })
    }

    /// Registers the layer's parameters (and resets batch norm's buffers).
    pub(super) fn init(&self, builder: &mut ParamsBuilder<'_>) -> Result<()> {
        match self {
            Layer::Linear(l) => l.init(builder),
            Layer::Conv2d(c) => c.init(builder, WeightInit::TorchDefault),
            Layer::BatchNorm { bn, .. } => bn.init(builder),
            _ => Ok(()),
        }
    }

    /// The batch norm layer, if this is one.
    pub(super) fn batch_norm(&self) -> Option<&BatchNorm> {
        match self {
            Layer::BatchNorm { bn, .. } => Some(bn),
            _ => None,
        }
    }

    /// The per-sample output shape for a per-sample input shape (`[C, H, W]` or `[F]`), or
    /// why the input does not fit.
    pub(super) fn output_shape(&self, input: &[i64]) -> std::result::Result<Vec<i64>, String> {
        let image = |what: &str| match *input {
            [c, h, w] => Ok((c, h, w)),
            _ => Err(format!("{what} needs [C, H, W] samples, got {input:?}")),
        };
        match self {
            Layer::Linear(l) => match input.split_last() {
                Some((&f, rest)) if f == l.in_features => Ok([rest, &[l.out_features]].concat()),
                _ => Err(format!("takes {} features, got samples of shape {input:?}", l.in_features)),
            },
            Layer::Conv2d(conv) => {
                let (c, h, w) = image("a convolution")?;
                let out = [conv.out_channels, conv.output_size(h), conv.output_size(w)];
                if c != conv.in_channels {
                    Err(format!("takes {} channels, got {c}", conv.in_channels))
                } else if out[1] < 1 || out[2] < 1 {
                    Err(format!("{h}×{w} inputs are smaller than the kernel"))
                } else {
                    Ok(out.to_vec())
                }
            }
            Layer::BatchNorm { channels, .. } => match input.first() {
                Some(c) if c == channels => Ok(input.to_vec()),
                _ => Err(format!("normalises {channels} channels, got samples of shape {input:?}")),
            },
            Layer::MaxPool2d(k) | Layer::AvgPool2d(k) => {
                let (c, h, w) = image("pooling")?;
                if h < *k || w < *k {
                    return Err(format!("{h}×{w} inputs are smaller than the window"));
                }
                Ok(vec![c, h / k, w / k])
            }
            Layer::Flatten => Ok(vec![input.iter().product()]),
            Layer::Activation(_) | Layer::LeakyRelu(_) => Ok(input.to_vec()),
        }
    }

    /// The layer on one parameter set: `h` is `[B, ...]`.
    pub(super) fn forward(&self, params: &Params, h: &Tensor, mode: Mode) -> Tensor {
        match self {
            Layer::Linear(l) => l.forward(params, h, Layout::Single),
            Layer::Conv2d(c) => c.forward(params, h, Layout::Single),
            Layer::BatchNorm { bn, .. } => bn.forward(params, h, mode),
            _ => self.apply_parameter_free(h),
        }
    }

    /// Activations, pooling and flatten, which do not care about the layout (flatten only on
    /// one parameter set).
    fn apply_parameter_free(&self, h: &Tensor) -> Tensor {
        match self {
            Layer::Activation(a) => a.apply(h),
            Layer::LeakyRelu(slope) => h.where_self(&h.ge(0.0), &(h * *slope)),
            Layer::MaxPool2d(k) => h.max_pool2d([*k, *k], [*k, *k], [0, 0], [1, 1], false),
            Layer::AvgPool2d(k) => h.avg_pool2d([*k, *k], [*k, *k], [0, 0], false, true, None::<i64>),
            Layer::Flatten => h.flatten(1, -1),
            Layer::Linear(_) | Layer::Conv2d(_) | Layer::BatchNorm { .. } => {
                unreachable!("layers with parameters are handled by the callers")
            }
        }
    }

    /// Whether the task-batched pass can run this layer on `images` (else features), and
    /// whether its output is images.
    pub(super) fn task_layout_after(&self, images: bool) -> Option<bool> {
        match self {
            Layer::Conv2d(_) | Layer::MaxPool2d(_) | Layer::AvgPool2d(_) => images.then_some(true),
            Layer::Linear(_) => (!images).then_some(false),
            Layer::Flatten => Some(false),
            Layer::BatchNorm { .. } | Layer::Activation(_) | Layer::LeakyRelu(_) => Some(images),
        }
    }

    /// The layer on `T` task-stacked parameter sets (see [`Layer::task_layout_after`] for
    /// the layouts it accepts).
    pub(super) fn forward_tasks(
        &self,
        params: &Params,
        h: TaskActivation,
        mode: Mode,
        tasks: i64,
    ) -> TaskActivation {
        use TaskActivation::{Features, Images};
        let layout = Layout::Tasks(tasks);
        match (self, h) {
            (Layer::Conv2d(c), Images(h)) => Images(c.forward(params, &h, layout)),
            (Layer::Linear(l), Features(h)) => Features(l.forward(params, &h, layout)),
            (Layer::BatchNorm { bn, .. }, Images(h)) => Images(bn.forward_in(params, &h, mode, layout)),
            (Layer::BatchNorm { bn, .. }, Features(h)) => {
                // [T, B, F] as [B, T·F]: each task's features are its own channels.
                let s = h.size();
                let merged = h.transpose(0, 1).reshape([s[1], s[0] * s[2]]);
                let y = bn.forward_in(params, &merged, mode, layout);
                Features(y.view([s[1], s[0], s[2]]).transpose(0, 1))
            }
            (Layer::Flatten, Images(h)) => Features(flatten_task_channels(&h, tasks)),
            (Layer::Flatten, Features(h)) => Features(h),
            (layer, Images(h)) => Images(layer.apply_parameter_free(&h)),
            (layer, Features(h)) => Features(layer.apply_parameter_free(&h)),
        }
    }
}
