//! What Conv4 and ResNet-12 share: a stack of convolutional blocks on images, run on one
//! parameter set or task-batched (in task chunks and in the memory format of the
//! [`crate::batching`] policy), and implemented as a [`Model`] once for both.

use crate::{
    batch_norm::{collect_buffers, load_all_buffers, BatchNorm},
    error::Result,
    layers::{images_to_conv_format, images_to_task_channels, in_task_chunks, Layout},
    params::ParamsBuilder,
    Mode, Model, Params,
};
use tch::{nn, Tensor};

/// A convolutional backbone: its blocks, features and batch norm layers.
pub(crate) trait ConvNet {
    /// Registers the parameters (and resets the buffers).
    fn init_params(&self, builder: &mut ParamsBuilder<'_>) -> Result<()>;

    /// Every block, then the feature vector, for images `h` already in `layout`.
    fn blocks_and_features(&self, params: &Params, h: Tensor, mode: Mode, layout: Layout) -> Tensor;

    /// The channels, height and width of the largest activation (the first convolution's
    /// output) for `height × width` inputs.
    fn largest_activation(&self, height: i64, width: i64) -> (i64, i64, i64);

    /// Every batch norm layer, in order.
    fn batch_norms(&self) -> Vec<&BatchNorm>;
}

/// The bytes of one task's largest activation for task-stacked images `x` `[T, B, C, H, W]`.
fn bytes_per_task<N: ConvNet + ?Sized>(net: &N, x: &Tensor) -> usize {
    let s = x.size();
    let (c, h, w) = net.largest_activation(s[3], s[4]);
    (s[1] * c * h * w) as usize * x.kind().elt_size_in_bytes()
}

/// One parameter set on `[B, C, H, W]`, or task-stacked parameters on `[T, B, C, H, W]`
/// (in chunks of tasks).
fn run<N: ConvNet + ?Sized>(net: &N, params: &Params, x: &Tensor, mode: Mode, tasks: bool) -> Tensor {
    if !tasks {
        let h = images_to_conv_format(x, bytes_per_task(net, &x.unsqueeze(0)));
        return net.blocks_and_features(params, h, mode, Layout::Single);
    }
    in_task_chunks(params, x, bytes_per_task(net, x), |p, x| {
        let h = images_to_task_channels(x, bytes_per_task(net, x));
        net.blocks_and_features(p, h, mode, Layout::Tasks(x.size()[0]))
    })
}

impl<N: ConvNet> Model for N {
    fn init(&self, path: &nn::Path<'_>) -> Result<Params> {
        let mut builder = ParamsBuilder::new(path);
        self.init_params(&mut builder)?;
        builder.build()
    }

    fn forward(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        run(self, params, x, Mode::new(train, 0), false)
    }

    fn forward_at_step(&self, params: &Params, x: &Tensor, train: bool, step: usize) -> Tensor {
        run(self, params, x, Mode::new(train, step), false)
    }

    /// Grouped convolutions over `[B, T·C, H, W]` and per-task batch norm (see
    /// `docs/models.md`).
    fn forward_tasks(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        run(self, params, x, Mode::new(train, 0), true)
    }

    fn forward_tasks_at_step(&self, params: &Params, x: &Tensor, train: bool, step: usize) -> Tensor {
        run(self, params, x, Mode::new(train, step), true)
    }

    fn buffers(&self) -> Params {
        collect_buffers(self.batch_norms())
    }

    fn load_buffers(&self, buffers: &Params) -> Result<()> {
        load_all_buffers(self.batch_norms(), buffers)
    }
}
