//! The layers networks are built from — convolutions and linear maps — as parameter
//! specifications with functional forward passes that run either one parameter set or `T`
//! task-stacked ones.
//!
//! Task-batched passes keep images as `[B, T·C, H, W]`, the channels of task `t` being
//! `t·C .. (t+1)·C`: a grouped convolution with `groups = T` and the task-stacked filters
//! reshaped to `[T·C_out, C_in, k, k]` then applies each task's filters to its own channels
//! in one kernel, batch norm over `T·C` channels normalises each task with its own
//! statistics, and pooling and activations do not care. Features are `[T, B, F]`, and a
//! linear layer is one batched matrix product `baddbmm(b, x, Wᵀ)`.

use crate::{batching::task_batching, error::Result, params::ParamsBuilder, Params};
use tch::{nn, Tensor};

/// How activations are laid out in a forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// One parameter set: images `[B, C, H, W]`, features `[B, F]`.
    Single,
    /// `T` task-stacked parameter sets: images `[B, T·C, H, W]` (task-major channels),
    /// features `[T, B, F]`.
    Tasks(i64),
}

impl Layout {
    /// The number of tasks (1 for [`Layout::Single`]).
    pub(crate) fn tasks(self) -> i64 {
        match self {
            Layout::Single => 1,
            Layout::Tasks(t) => t,
        }
    }
}

/// Images `[B, C, H, W]` in the memory format of the [`crate::batching`] policy for a pass
/// whose largest activation takes `bytes` bytes.
///
/// Channels-last strides are set explicitly on the NHWC data rather than by permuting back:
/// for one-channel images (Omniglot) the NHWC copy is a no-op that keeps NCHW strides, which
/// libtorch reads as NCHW, and its convolution would then keep every later activation NCHW.
pub(crate) fn images_to_conv_format(x: &Tensor, bytes: usize) -> Tensor {
    if !task_batching().channels_last(x.device(), bytes) {
        return x.shallow_clone();
    }
    let s = x.size();
    let (c, h, w) = (s[1], s[2], s[3]);
    x.permute([0, 2, 3, 1]).contiguous().as_strided(s.as_slice(), [h * w * c, 1, w * c, c], None)
}

/// Task-stacked images `[T, B, C, H, W]` in the task-batched layout `[B, T·C, H, W]`, in
/// the memory format of the [`crate::batching`] policy for a pass whose largest activation
/// takes `bytes_per_task` bytes per task (one copy either way).
pub(crate) fn images_to_task_channels(x: &Tensor, bytes_per_task: usize) -> Tensor {
    let s = x.size();
    let (t, b, c, h, w) = (s[0], s[1], s[2], s[3], s[4]);
    if task_batching().channels_last(x.device(), bytes_per_task) {
        x.permute([1, 3, 4, 0, 2]).contiguous().view([b, h, w, t * c]).permute([0, 3, 1, 2])
    } else {
        x.transpose(0, 1).reshape([b, t * c, h, w])
    }
}

/// Runs `f` on chunks of the `T` tasks of task-stacked `params` and `x` `[T, ...]` — as many
/// tasks per chunk as the [`crate::batching`] policy allows for `bytes_per_task` — and
/// concatenates the outputs along the task dimension.
pub(crate) fn in_task_chunks(
    params: &Params,
    x: &Tensor,
    bytes_per_task: usize,
    f: impl Fn(&Params, &Tensor) -> Tensor,
) -> Tensor {
    let tasks = x.size()[0];
    let chunk = task_batching().chunk_tasks(x.device(), tasks, bytes_per_task);
    if chunk >= tasks {
        return f(params, x);
    }
    let outputs: Vec<Tensor> = (0..tasks)
        .step_by(chunk as usize)
        .map(|start| {
            let len = chunk.min(tasks - start);
            f(&params.map(|_, p| p.narrow(0, start, len)), &x.narrow(0, start, len))
        })
        .collect();
    Tensor::cat(&outputs, 0)
}

/// Task-batched image features `[B, T·C, H, W]` flattened per task to `[T, B, C·H·W]`.
pub(crate) fn flatten_task_channels(h: &Tensor, tasks: i64) -> Tensor {
    let b = h.size()[0];
    h.reshape([b, tasks, -1]).transpose(0, 1)
}

/// The name of parameter `leaf` of the layer called `prefix` (`leaf` alone for an unnamed
/// top-level layer).
pub(crate) fn param_name(prefix: &str, leaf: &str) -> String {
    if prefix.is_empty() {
        leaf.to_owned()
    } else {
        format!("{prefix}.{leaf}")
    }
}

/// How a layer's weights are initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WeightInit {
    /// PyTorch's default for `nn.Conv2d` and `nn.Linear`: weight and bias
    /// `U(−1/√fan_in, 1/√fan_in)` (Kaiming uniform with `a = √5`).
    TorchDefault,
    /// `nn.init.kaiming_normal_(w, mode='fan_out', nonlinearity='leaky_relu')` (with the
    /// default slope 0, i.e. gain √2): `N(0, 2 / fan_out)`, as the ResNet-12 of MetaOptNet
    /// initialises its convolutions.
    KaimingNormalFanOut,
    /// `nn.init.xavier_normal_(w)` and a zero bias: `N(0, 2 / (fan_in + fan_out))`, as
    /// MTAN's SegNet initialises its convolutions.
    XavierNormal,
}

/// A 2-d convolution `{name}.weight` `[C_out, C_in, k, k]` (and `{name}.bias` `[C_out]`), as
/// `nn.Conv2d(C_in, C_out, k, stride, padding, bias)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conv2d {
    pub name: String,
    pub in_channels: i64,
    pub out_channels: i64,
    pub kernel: i64,
    pub stride: i64,
    pub padding: i64,
    pub bias: bool,
}

impl Conv2d {
    /// A `k`×`k` convolution with `padding = k / 2` and stride 1.
    pub(crate) fn same(name: impl Into<String>, in_channels: i64, out_channels: i64, kernel: i64) -> Self {
        Self {
            name: name.into(),
            in_channels,
            out_channels,
            kernel,
            stride: 1,
            padding: kernel / 2,
            bias: true,
        }
    }

    /// The same with another stride.
    pub(crate) fn with_stride(mut self, stride: i64) -> Self {
        self.stride = stride;
        self
    }

    /// The same without bias.
    pub(crate) fn without_bias(mut self) -> Self {
        self.bias = false;
        self
    }

    /// The output size along one spatial axis.
    pub(crate) fn output_size(&self, input: i64) -> i64 {
        (input + 2 * self.padding - self.kernel) / self.stride + 1
    }

    /// The number of scalars of its parameters.
    #[cfg(test)]
    pub(crate) fn numel(&self) -> i64 {
        self.out_channels * self.in_channels * self.kernel * self.kernel
            + if self.bias { self.out_channels } else { 0 }
    }

    pub(crate) fn init(&self, builder: &mut ParamsBuilder<'_>, init: WeightInit) -> Result<()> {
        let fan_in = self.in_channels * self.kernel * self.kernel;
        let weight_init = match init {
            WeightInit::TorchDefault => crate::params::torch_default_init(fan_in),
            WeightInit::KaimingNormalFanOut => {
                let fan_out = self.out_channels * self.kernel * self.kernel;
                nn::Init::Randn { mean: 0.0, stdev: (2.0 / fan_out as f64).sqrt() }
            }
            WeightInit::XavierNormal => {
                let fan_out = self.out_channels * self.kernel * self.kernel;
                nn::Init::Randn { mean: 0.0, stdev: (2.0 / (fan_in + fan_out) as f64).sqrt() }
            }
        };
        let k = self.kernel;
        builder.var(
            &param_name(&self.name, "weight"),
            &[self.out_channels, self.in_channels, k, k],
            weight_init,
        )?;
        if self.bias {
            let bias_init = match init {
                WeightInit::TorchDefault => crate::params::torch_default_init(fan_in),
                WeightInit::KaimingNormalFanOut | WeightInit::XavierNormal => nn::Init::Const(0.0),
            };
            builder.var(&param_name(&self.name, "bias"), &[self.out_channels], bias_init)?;
        }
        Ok(())
    }

    pub(crate) fn forward(&self, params: &Params, x: &Tensor, layout: Layout) -> Tensor {
        let weight = &params[param_name(&self.name, "weight").as_str()];
        let bias = self.bias.then(|| &params[param_name(&self.name, "bias").as_str()]);
        let (stride, padding) = ([self.stride, self.stride], [self.padding, self.padding]);
        match layout {
            Layout::Single => x.conv2d(weight, bias, stride, padding, [1, 1], 1),
            Layout::Tasks(t) => {
                let k = self.kernel;
                let weight = weight.reshape([t * self.out_channels, self.in_channels, k, k]);
                let bias = bias.map(|b| b.reshape([t * self.out_channels]));
                x.conv2d(&weight, bias.as_ref(), stride, padding, [1, 1], t)
            }
        }
    }
}

/// A linear map `{name}.weight` `[out, in]` and `{name}.bias` `[out]`, as `nn.Linear`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Linear {
    pub name: String,
    pub in_features: i64,
    pub out_features: i64,
    pub bias: bool,
}

impl Linear {
    pub(crate) fn new(name: impl Into<String>, in_features: i64, out_features: i64) -> Self {
        Self { name: name.into(), in_features, out_features, bias: true }
    }

    pub(crate) fn init(&self, builder: &mut ParamsBuilder<'_>) -> Result<()> {
        let init = crate::params::torch_default_init(self.in_features);
        builder.var(&param_name(&self.name, "weight"), &[self.out_features, self.in_features], init)?;
        if self.bias {
            builder.var(&param_name(&self.name, "bias"), &[self.out_features], init)?;
        }
        Ok(())
    }

    /// `x Wᵀ + b` for `x` `[B, in]` ([`Layout::Single`]) or `[T, B, in]` ([`Layout::Tasks`]).
    pub(crate) fn forward(&self, params: &Params, x: &Tensor, layout: Layout) -> Tensor {
        let weight = &params[param_name(&self.name, "weight").as_str()];
        let bias = self.bias.then(|| &params[param_name(&self.name, "bias").as_str()]);
        match (layout, bias) {
            (Layout::Single, bias) => x.linear(weight, bias),
            (Layout::Tasks(_), Some(b)) => b.unsqueeze(1).baddbmm(x, &weight.transpose(1, 2), 1.0, 1.0),
            (Layout::Tasks(_), None) => x.bmm(&weight.transpose(1, 2)),
        }
    }
}

/// 2×2 max pooling with stride 2 (`nn.MaxPool2d(2)`), layout-agnostic.
pub(crate) fn max_pool2(x: &Tensor) -> Tensor {
    x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn max_error(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1.0)
    }

    /// Under a channels-last policy the first convolution's output is channels-last for
    /// one-channel and three-channel images alike, contiguous or sliced, with the same
    /// values as in NCHW.
    #[test]
    fn images_in_channels_last_make_channels_last_convolutions() {
        use crate::batching::{set_task_batching, ConvFormat, TaskBatching};
        for (c, sliced) in [(1, false), (3, false), (1, true)] {
            let x = Tensor::randn([6, c, 9, 8], (Kind::Double, Device::Cpu));
            let x = if sliced { x.narrow(3, 1, 7) } else { x };
            let w = Tensor::randn([8, c, 3, 3], (Kind::Double, Device::Cpu));
            let conv = |x: &Tensor| x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
            let expected = conv(&x);
            set_task_batching(TaskBatching { format: ConvFormat::ChannelsLast, chunk_bytes: None });
            let y = conv(&images_to_conv_format(&x, 0));
            set_task_batching(TaskBatching::default());
            assert_eq!(y.stride()[1], 1, "{c} channel(s), sliced {sliced}: strides {:?}", y.stride());
            assert!(max_error(&y, &expected) < 1e-12, "{c} channel(s), sliced {sliced}");
        }
    }

    /// The grouped convolution over `[B, T·C, H, W]` equals one convolution per task, in
    /// float32, for the outputs and the gradients of filters, biases and inputs.
    #[test]
    fn grouped_convolution_equals_per_task_convolutions() {
        let (t, b) = (4, 5);
        for (c_in, stride) in [(1, 1), (3, 2), (16, 1)] {
            let conv = Conv2d::same("c", c_in, 8, 3).with_stride(stride);
            let opts = (Kind::Float, Device::Cpu);
            let params = Params::from_named(vec![
                ("c.weight".into(), Tensor::randn([t, 8, c_in, 3, 3], opts).set_requires_grad(true)),
                ("c.bias".into(), Tensor::randn([t, 8], opts).set_requires_grad(true)),
            ])
            .unwrap();
            let x = Tensor::randn([t, b, c_in, 12, 12], opts).set_requires_grad(true);
            let batched = conv.forward(&params, &images_to_task_channels(&x, 0), Layout::Tasks(t));
            let size = batched.size();
            let batched = batched.view([b, t, 8, size[2], size[3]]).transpose(0, 1);
            let looped = Tensor::stack(
                &(0..t)
                    .map(|i| conv.forward(&params.task(i as usize), &x.get(i), Layout::Single))
                    .collect::<Vec<_>>(),
                0,
            );
            assert!(max_error(&batched, &looped) < 1e-5);
            let w = Tensor::randn_like(&looped);
            let mut inputs: Vec<&Tensor> = params.tensors().iter().collect();
            inputs.push(&x);
            let gb = Tensor::run_backward(&[(&batched * &w).sum(Kind::Float)], &inputs, false, false);
            let gl = Tensor::run_backward(&[(&looped * &w).sum(Kind::Float)], &inputs, false, false);
            for (a, b) in gb.iter().zip(&gl) {
                assert!(max_error(a, b) < 1e-5, "c_in {c_in}: {}", max_error(a, b));
            }
        }
    }

    #[test]
    fn batched_linear_equals_per_task_linear() {
        let opts = (Kind::Float, Device::Cpu);
        let linear = Linear::new("", 6, 4);
        let params = Params::from_named(vec![
            ("weight".into(), Tensor::randn([3, 4, 6], opts)),
            ("bias".into(), Tensor::randn([3, 4], opts)),
        ])
        .unwrap();
        let x = Tensor::randn([3, 5, 6], opts);
        let batched = linear.forward(&params, &x, Layout::Tasks(3));
        for i in 0..3 {
            let single = linear.forward(&params.task(i), &x.get(i as i64), Layout::Single);
            assert!(max_error(&batched.get(i as i64), &single) < 1e-6);
        }
    }
}
