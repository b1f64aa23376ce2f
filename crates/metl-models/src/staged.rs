//! [`StagedModel`]: a backbone seen as a sequence of stages, for the multi-task
//! architectures that act between layers (cross-stitch, MTAN, PLE).

use crate::{error::Result, Mode, Model, Params};
use tch::Tensor;

/// A backbone whose forward pass is `finish(stage_{S−1}(… stage_0(x)))`.
///
/// A stage is one block of the backbone (a Conv4 block, a ResNet-12 residual block, an MLP
/// layer); `finish` turns the last stage's output into the feature vector the backbone
/// returns (flattening, global average pooling, or nothing). Stage outputs are `[B, C, H, W]`
/// for convolutional backbones and `[B, F]` for MLPs. The parameters passed to
/// [`StagedModel::forward_stage`] are the backbone's whole parameter set.
pub trait StagedModel: Model {
    /// The number of stages `S`.
    fn num_stages(&self) -> usize;

    /// The per-sample output shape of every stage for a per-sample input shape (e.g.
    /// `[1, 28, 28]`), or an error naming the input when it is too small or has the wrong
    /// number of channels.
    fn stage_shapes(&self, input_shape: &[i64]) -> Result<Vec<Vec<i64>>>;

    /// The per-sample shape of the backbone's output for a per-sample input shape.
    fn output_shape(&self, input_shape: &[i64]) -> Result<Vec<i64>>;

    /// Stage `stage` applied to `h`, the input (for stage 0) or the previous stage's output.
    fn forward_stage(&self, params: &Params, stage: usize, h: &Tensor, mode: Mode) -> Tensor;

    /// The backbone's output from the last stage's output.
    fn finish(&self, h: &Tensor) -> Tensor;

    /// The whole forward pass through the stages; equals [`Model::forward_at_step`].
    fn forward_staged(&self, params: &Params, x: &Tensor, mode: Mode) -> Tensor {
        let h =
            (0..self.num_stages()).fold(x.shallow_clone(), |h, s| self.forward_stage(params, s, &h, mode));
        self.finish(&h)
    }
}
